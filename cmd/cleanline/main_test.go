package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cleanline/cleanline/blocklist/redistest"
)

func TestMain(m *testing.M) {
	if cfg := os.Getenv(serveChild); cfg != "" {
		os.Exit(runServeChild(cfg))
	}
	if cfg := os.Getenv(reloadChild); cfg != "" {
		os.Exit(runReloadChild(cfg))
	}
	quietRedis()
	os.Exit(m.Run())
}

type result struct {
	code           int
	stdout, stderr string
}

func cli(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return result{code, out.String(), errb.String()}
}

func (r result) expect(t *testing.T, code int, contains ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	for _, c := range contains {
		if !strings.Contains(r.stdout+r.stderr, c) {
			t.Fatalf("output lacks %q\nstdout: %s\nstderr: %s", c, r.stdout, r.stderr)
		}
	}
}

// TestDoneWhen runs issue 2's acceptance commands against both stores.
func TestDoneWhen(t *testing.T) {
	srv := redistest.Start(t)
	for name, store := range map[string]string{
		"embedded": "file:" + filepath.Join(t.TempDir(), "cl.db"),
		"redis":    "redis://" + srv.Addr,
	} {
		t.Run(name, func(t *testing.T) {
			cli(t, "block", "add", "020", "7946", "0123", "--store", store).expect(t, exitOK, "added +442079460123 (confirmed)")
			cli(t, "check", "+442079460123", "--store", store).expect(t, exitBlock, "block +442079460123 blocklist.confirmed")
			cli(t, "--store", store, "check", "12").expect(t, exitBlock, "cli.invalid")
			cli(t, "check", "07700900124", "--store", store).expect(t, exitBlock, "cli.invalid")
			cli(t, "protect", "add", "+44 20 7946 0999", "--store", store).expect(t, exitOK, "protected +442079460999")
			cli(t, "check", "020 7946 0999", "--store", store).expect(t, exitBlock, "protected.spoofed")
			cli(t, "check", "159", "--store", store).expect(t, exitBlock, "protected.spoofed")
			cli(t, "check", "020 7946 0456", "--store", store).expect(t, exitOK, "allow +442079460456")
			cli(t, "block", "add", "020 7946 0457", "--reported", "--store", store).expect(t, exitOK, "(reported)")
			cli(t, "check", "020 7946 0457", "--store", store).expect(t, exitWarn, "warn +442079460457 blocklist.reported")
		})
	}
}

func TestCheckJSONAndFlagPlacement(t *testing.T) {
	store := "file:" + filepath.Join(t.TempDir(), "cl.db")
	cli(t, "trust", "add", "flat-2", "020 7946 0111", "--store", store).expect(t, exitOK, "trusted +442079460111 for line flat-2")
	r := cli(t, "check", "--json", "020", "7946", "0111", "--store", store, "--line", "flat-2")
	r.expect(t, exitOK)
	var v struct {
		Input, Line, Action, Number string
		Reasons                     []string
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("check --json printed %q: %v", r.stdout, err)
	}
	if v.Action != "allow" || v.Number != "+442079460111" || v.Line != "flat-2" || len(v.Reasons) != 1 || v.Reasons[0] != "trusted" {
		t.Fatalf("check --json = %+v", v)
	}
	cli(t, "trust", "list", "flat-2", "--store", store).expect(t, exitOK, "+442079460111")
	cli(t, "trust", "remove", "flat-2", "+442079460111", "--store", store).expect(t, exitOK, "untrusted")
	cli(t, "trust", "remove", "flat-2", "+442079460111", "--store", store).expect(t, exitError, "not found")
	cli(t, "check", "--store", store, "--international", "020 7946 0111").expect(t, exitBlock, "cli.uk_from_international")
}

func TestBlockRangeAndList(t *testing.T) {
	store := "file:" + filepath.Join(t.TempDir(), "cl.db")
	cli(t, "block", "add", "020 7946 03*", "--reason", "spoofing campaign", "--store", store).expect(t, exitOK, "added +4420794603*")
	cli(t, "check", "020 7946 0345", "--store", store).expect(t, exitBlock, "blocklist.confirmed,blocklist.range")
	cli(t, "report", "020 7946 0777", "--line", "home", "--store", store).expect(t, exitOK, "reported +442079460777: reported, 1 reports")
	r := cli(t, "block", "list", "--store", store)
	r.expect(t, exitOK, "+4420794603*", "+442079460777", "spoofing campaign")
	cli(t, "block", "remove", "020 7946 03*", "--store", store).expect(t, exitOK, "removed +4420794603*")
	cli(t, "check", "020 7946 0345", "--store", store).expect(t, exitOK)
}

func TestImport(t *testing.T) {
	dir := t.TempDir()
	store := "file:" + filepath.Join(dir, "cl.db")
	feed := filepath.Join(dir, "feed.csv")
	body := "number,reason,source\n" +
		"020 7946 0200,bank impersonation,police\n" +
		"not a number,x,y\n" +
		"\n# a comment\n" +
		"+442079460201\n" +
		"07700 900123,drama range,z\n" +
		"020 7946 04*,range,feed\n"
	if err := os.WriteFile(feed, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	r := cli(t, "import", feed, "--store", store)
	r.expect(t, exitRejected, "added 3, updated 0, rejected 2", "feed.csv:3:", "feed.csv:7:")
	cli(t, "import", feed, "--store", store).expect(t, exitRejected, "added 0, updated 3, rejected 2")
	cli(t, "check", "+442079460200", "--store", store).expect(t, exitBlock, "blocklist.confirmed")
	cli(t, "check", "+442079460499", "--store", store).expect(t, exitBlock, "blocklist.range")
}

// TestErrors: every mistake is one clear line and a non-zero exit, never a
// stack trace.
func TestErrors(t *testing.T) {
	dir := t.TempDir()
	store := "file:" + filepath.Join(dir, "cl.db")
	// a port nothing listens on
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	badKey := filepath.Join(dir, "bad.yaml")
	os.WriteFile(badKey, []byte("store: file:x.db\nscreening:\n  regoin: GB\n"), 0o600)
	badPolicy := filepath.Join(dir, "badpolicy.yaml")
	os.WriteFile(badPolicy, []byte("screening:\n  default_policy:\n    store_failure: maybe\n"), 0o600)

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, exitUsage, "Usage"},
		{[]string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{[]string{"block", "add", "abc", "--store", store}, exitError, `not a phone number`},
		{[]string{"block", "add", "07700 900123", "--store", store}, exitError, `not an allocated, dialable number`},
		{[]string{"block", "zap", "1", "--store", store}, exitUsage, `unknown action "zap"`},
		{[]string{"check", "--store", store}, exitUsage, "no number given"},
		{[]string{"check", "1", "--nosuchflag"}, exitUsage, "flag provided but not defined"},
		{[]string{"check", "+442079460123", "--store", "redis://" + dead}, exitError, dead},
		{[]string{"check", "+442079460123", "--store", "redis://" + dead}, exitError, "--store file:PATH"},
		{[]string{"check", "+442079460123", "--store", "mysql://x"}, exitError, "want file:PATH"},
		{[]string{"import", filepath.Join(dir, "missing.csv"), "--store", store}, exitError, "missing.csv"},
		{[]string{"check", "1", "--config", filepath.Join(dir, "missing.yaml")}, exitError, "missing.yaml"},
		{[]string{"check", "1", "--config", badKey}, exitError, "regoin"},
		{[]string{"check", "1", "--config", badPolicy}, exitError, "store_failure"},
		{[]string{"protect", "remove", "+442079460999", "--store", store}, exitError, "not found"},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			r := cli(t, c.args...)
			r.expect(t, c.code, c.want)
			if strings.Contains(r.stderr, "goroutine ") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 && c.code != exitUsage {
				t.Fatalf("error is not one line:\n%s", r.stderr)
			}
		})
	}
}

func TestLockedStoreIsAClearError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cl.db")
	st, err := openStore(context.Background(), "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	r := cli(t, "check", "+442079460123", "--store", "file:"+path)
	r.expect(t, exitError, path)
}

// TestImportExitStatus: a clean import exits 0; one with rejected lines
// stores the good lines and exits exitRejected, distinct from an error.
func TestImportExitStatus(t *testing.T) {
	dir := t.TempDir()
	store := "file:" + filepath.Join(dir, "cl.db")
	write := func(name, body string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	clean := write("clean.csv", "number,reason\n020 7946 0300,bank\n+442079460301\n")
	cli(t, "import", clean, "--store", store).expect(t, exitOK, "added 2, updated 0, rejected 0")
	partial := write("partial.csv", "+442079460302\nnot a number\n+442079460303,x,y,maybe\n+442079460304\n")
	r := cli(t, "import", partial, "--store", store)
	r.expect(t, exitRejected, "added 2, updated 0, rejected 2", "partial.csv:2:", "partial.csv:3:")
	for _, n := range []string{"+442079460302", "+442079460304"} {
		cli(t, "check", n, "--store", store).expect(t, exitBlock, "blocklist.confirmed")
	}
	// Nothing but rejected lines: still exitRejected, nothing stored.
	bad := write("bad.csv", "junk1\njunk2\n")
	cli(t, "import", bad, "--store", store).expect(t, exitRejected, "added 0, updated 0, rejected 2")
	if !strings.Contains(cli(t, "help").stdout, "import exits 4") {
		t.Fatal("usage does not document import's exit status 4")
	}
}

// TestReportedDoesNotDowngrade: import --reported and block add --reported
// leave a confirmed number confirmed (still blocked) unless --force is
// given, on both stores.
func TestReportedDoesNotDowngrade(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	feed := filepath.Join(dir, "reported.csv")
	if err := os.WriteFile(feed, []byte("020 7946 0400,feed reason\n020 7946 0401\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, store := range map[string]string{
		"embedded": "file:" + filepath.Join(dir, "cl.db"),
		"redis":    "redis://" + srv.Addr,
	} {
		t.Run(name, func(t *testing.T) {
			cli(t, "block", "add", "020 7946 0400", "--reason", "bank impersonation", "--store", store).expect(t, exitOK, "added +442079460400 (confirmed)")
			cli(t, "import", feed, "--reported", "--store", store).expect(t, exitOK, "added 1, updated 1, rejected 0")
			cli(t, "check", "+442079460400", "--store", store).expect(t, exitBlock, "blocklist.confirmed", `reason "bank impersonation"`)
			cli(t, "check", "+442079460401", "--store", store).expect(t, exitWarn, "blocklist.reported")

			cli(t, "block", "add", "020 7946 0400", "--reported", "--store", store).expect(t, exitOK, "updated +442079460400 (still confirmed", "--force")
			cli(t, "check", "+442079460400", "--store", store).expect(t, exitBlock, "blocklist.confirmed")
			cli(t, "block", "add", "020 7946 0400", "--reported", "--force", "--store", store).expect(t, exitOK, "updated +442079460400 (reported)")
			cli(t, "check", "+442079460400", "--store", store).expect(t, exitWarn, "blocklist.reported")

			cli(t, "block", "add", "020 7946 0400", "--store", store).expect(t, exitOK, "updated +442079460400 (confirmed)")
			cli(t, "import", feed, "--reported", "--force", "--store", store).expect(t, exitOK, "added 0, updated 2, rejected 0")
			cli(t, "check", "+442079460400", "--store", store).expect(t, exitWarn, "blocklist.reported", `reason "feed reason"`)
		})
	}
}
