package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLineNamesMustBeConfigured: with sip.lines in the config, trust and
// check --line refuse a line it does not have, naming those it has.
func TestLineNamesMustBeConfigured(t *testing.T) {
	dir := t.TempDir()
	store := "file:" + filepath.Join(dir, "cl.db")
	withLines := filepath.Join(dir, "lines.yaml")
	os.WriteFile(withLines, []byte("sip:\n  lines:\n    - name: home\n    - name: office\n"), 0o600)
	noLines := filepath.Join(dir, "nolines.yaml")
	os.WriteFile(noLines, []byte("screening: {region: GB}\n"), 0o600)

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"trust", "add", "nosuchline", "020 7946 0111"}, `cleanline trust: line "nosuchline" is not in the config (lines: home, office)` + "\n"},
		{[]string{"trust", "remove", "nosuchline", "020 7946 0111"}, `cleanline trust: line "nosuchline" is not in the config (lines: home, office)` + "\n"},
		{[]string{"trust", "list", "nosuchline"}, `cleanline trust: line "nosuchline" is not in the config (lines: home, office)` + "\n"},
		{[]string{"check", "020 7946 0111", "--line", "nosuch"}, `cleanline check: line "nosuch" is not in the config (lines: home, office)` + "\n"},
		{[]string{"check", "--line=default", "020 7946 0111"}, `cleanline check: line "default" is not in the config (lines: home, office)` + "\n"},
	} {
		r := cli(t, append(c.args, "--store", store, "--config", withLines)...)
		r.expect(t, exitError)
		if r.stderr != c.want || r.stdout != "" {
			t.Errorf("%v: stdout %q, stderr %q; want stderr %q", c.args, r.stdout, r.stderr, c.want)
		}
	}
	// the lines it has work; check without --line is still a generic check
	cli(t, "trust", "add", "office", "020 7946 0111", "--store", store, "--config", withLines).expect(t, exitOK, "trusted +442079460111 for line office")
	cli(t, "trust", "list", "office", "--store", store, "--config", withLines).expect(t, exitOK, "+442079460111")
	cli(t, "check", "020 7946 0111", "--line", "office", "--store", store, "--config", withLines).expect(t, exitOK, "allow +442079460111 trusted")
	cli(t, "check", "020 7946 0111", "--json", "--store", store, "--config", withLines).expect(t, exitOK, `"line":"default"`)
	cli(t, "trust", "remove", "office", "020 7946 0111", "--store", store, "--config", withLines).expect(t, exitOK, "untrusted")

	// no lines known (no config, or one without sip.lines): any name goes
	for _, cfg := range [][]string{{"--config", ""}, {"--config", noLines}} {
		cli(t, append([]string{"trust", "add", "flat-9", "020 7946 0112", "--store", store}, cfg...)...).expect(t, exitOK, "for line flat-9")
		cli(t, append([]string{"check", "020 7946 0112", "--line", "flat-9", "--store", store}, cfg...)...).expect(t, exitOK, "trusted")
		cli(t, append([]string{"check", "020 7946 0112", "--store", store}, cfg...)...).expect(t, exitOK, "allow")
		cli(t, append([]string{"trust", "remove", "flat-9", "020 7946 0112", "--store", store}, cfg...)...).expect(t, exitOK, "untrusted")
	}
}

// TestLinesAndUpstreamWithoutService: with no serve running, lines names a
// line's devices and says none is registered (registrations live in
// serve); upstream says it needs the running service.
func TestLinesAndUpstreamWithoutService(t *testing.T) {
	dir := t.TempDir()
	store := "file:" + filepath.Join(dir, "cl.db")
	cfg := filepath.Join(dir, "devices.yaml")
	os.WriteFile(cfg, []byte(`sip:
  lines:
    - {name: home, numbers: ["+442079460123"], devices: [{username: hall-ata, password: "a secret"}, {username: kitchen, password: "another"}]}
    - {name: office, numbers: ["+442079460124"], contact: "sip:office@127.0.0.9"}
`), 0o600)
	r := cli(t, "lines", "--store", store, "--config", cfg)
	r.expect(t, exitOK, "home numbers=+442079460123 ", " devices=hall-ata,kitchen registered=none\n")
	if office := r.stdout[strings.Index(r.stdout, "office"):]; strings.Contains(office, "devices=") {
		t.Errorf("a line without devices lists some: %q", office)
	}
	cli(t, "upstream", "--store", store, "--config", cfg).expect(t, exitError, "no service running: registrations are known only to a running cleanline serve")
}
