package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleanline/cleanline/sip/siptest"
)

// Reload through serve's doors (issue 13): POST /v1/reload and `cleanline
// reload` here, in-process; SIGHUP and sd_notify in sighup_test.go.

const annexNumber = "+442079460125" // a line a reload adds

// annexLine is the YAML of a line at phone, to add to startServe's lines.
func annexLine(phone *siptest.Phone) string {
	return fmt.Sprintf("    - {name: annex, numbers: [%q], contact: %q}\n", annexNumber, phone.URI("annex"))
}

// rewrite edits serve's config file: old, which must be there, becomes new.
func (r *running) rewrite(t *testing.T, old, new string) {
	t.Helper()
	b, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("config has no %q:\n%s", old, b)
	}
	if err := os.WriteFile(r.cfg, []byte(strings.Replace(string(b), old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// flat2Line is how startServe's config names its second line.
const flat2Line = `    - {name: flat-2, numbers: ["+442079460124"], contact: "sip:flat2@127.0.0.5:5060"}` + "\n"

// request sends method path with token (none when empty) to serve's API.
func (r *running) request(t *testing.T, method, path, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+r.admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// metric is the value of one sample of serve's /metrics ("name{labels}").
func metric(t *testing.T, body, sample string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sample) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no %s", sample)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// connect places a call from the trunk to number and answers it at phone.
func (r *running) connect(t *testing.T, ctx context.Context, number string, phone *siptest.Phone) (*siptest.Outgoing, *siptest.Incoming) {
	t.Helper()
	out, err := r.trunk.Dial(ctx, "sip:"+number+"@"+r.sipAddr, siptest.DialOptions{FromUser: "+442079460018"})
	if err != nil {
		t.Fatal(err)
	}
	in, err := phone.Incoming(ctx)
	if err != nil {
		t.Fatalf("a call to %s did not ring: %v", number, err)
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("call to %s: %v %v, want 200", number, res, err)
	}
	return out, in
}

// audioCrosses sends RTP each way across a connected call and waits for
// it on the far side.
func audioCrosses(t *testing.T, ctx context.Context, out *siptest.Outgoing, in *siptest.Incoming) {
	t.Helper()
	for _, d := range []struct {
		what     string
		from, to *siptest.RTP
	}{{"caller → line", out.RTP, in.RTP}, {"line → caller", in.RTP, out.RTP}} {
		before := d.to.Count()
		if err := d.from.Send(10, 8, 0x55); err != nil {
			t.Fatal(err)
		}
		if err := d.to.WaitCount(ctx, before+10); err != nil {
			t.Fatalf("%s: %d of 10 RTP packets arrived: %v", d.what, d.to.Count()-before, err)
		}
	}
}

// hangUp ends a connected call from the caller: the line gets BYE.
func hangUp(t *testing.T, ctx context.Context, out *siptest.Outgoing, in *siptest.Incoming) {
	t.Helper()
	if err := out.Bye(ctx); err != nil {
		t.Fatalf("BYE: %v", err)
	}
	select {
	case <-in.Ended():
	case <-ctx.Done():
		t.Fatal("the line never got BYE")
	}
}

// A call in progress (connected, audio both ways) survives a reload (POST
// /v1/reload) that adds a line: its audio still crosses afterwards and it
// ends cleanly with BYE, while the new line takes calls: a trunk INVITE to
// its number rings it. The reload is counted, and `lines` shows the line.
func TestReloadAddsLineWhileCallLives(t *testing.T) {
	r := startServe(t, "file:"+filepath.Join(t.TempDir(), "cl.db"), "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, in := r.connect(t, ctx, "+442079460123", r.line)
	audioCrosses(t, ctx, out, in)

	annex := siptest.NewPhone(t, "127.0.0.6")
	r.rewrite(t, flat2Line, flat2Line+annexLine(annex))
	if code, body := r.request(t, http.MethodPost, "/v1/reload", ""); code != http.StatusOK {
		t.Fatalf("POST /v1/reload: %d %s", code, body)
	}
	audioCrosses(t, ctx, out, in)
	out2, in2 := r.connect(t, ctx, annexNumber, annex)
	audioCrosses(t, ctx, out2, in2)
	audioCrosses(t, ctx, out, in)
	hangUp(t, ctx, out2, in2)
	hangUp(t, ctx, out, in)

	cli(t, "lines", "--config", r.cfg).expect(t, exitOK, "annex numbers="+annexNumber)
	_, m := r.request(t, http.MethodGet, "/metrics", "")
	if ok, refused := metric(t, m, `cleanline_config_reloads_total{result="ok"}`), metric(t, m, `cleanline_config_reloads_total{result="refused"}`); ok != 1 || refused != 0 {
		t.Fatalf("reloads counted: ok %v, refused %v; want 1, 0", ok, refused)
	}
	if at := metric(t, m, "cleanline_config_last_reload_success_timestamp_seconds"); time.Since(time.Unix(int64(at), 0)) > time.Minute {
		t.Fatalf("last successful reload at %v", at)
	}
	if !strings.Contains(r.stderr.String(), "configuration reloaded") {
		t.Fatalf("serve did not log the reload: %s", r.stderr)
	}
}

// A bad configuration is refused with the key-named error start-up gives,
// through the API (a JSON error) and the CLI (printed, exit 3); a change
// only a restart applies is refused naming its key. Each refusal is
// counted and logged, and the old configuration still routes calls: the
// home line rings, the line the refused file would add does not exist.
func TestReloadRefusedThroughAPIAndCLI(t *testing.T) {
	r := startServe(t, "file:"+filepath.Join(t.TempDir(), "cl.db"), "", nil)
	good, err := os.ReadFile(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	annex := siptest.NewPhone(t, "127.0.0.6")
	typo := strings.Replace(annexLine(annex), "numbers:", "numbres:", 1)
	r.rewrite(t, flat2Line, flat2Line+typo)

	code, body := r.request(t, http.MethodPost, "/v1/reload", "")
	var e struct {
		Error struct{ Code, Message string }
	}
	if err := json.Unmarshal([]byte(body), &e); err != nil || code != http.StatusUnprocessableEntity || e.Error.Code != "invalid_config" ||
		!strings.Contains(e.Error.Message, "sip.lines[2].numbres: unknown key") || !strings.Contains(e.Error.Message, r.cfg+":") {
		t.Fatalf("POST /v1/reload of a typo: %d %s; want 422 invalid_config naming the file, line and key", code, body)
	}
	// The CLI reads the same file to find the service: it refuses it alike.
	cli(t, "reload", "--config", r.cfg).expect(t, exitError, "cleanline reload: config: ", "sip.lines[2].numbres: unknown key")

	// A file the CLI can read, that the service refuses: a restart-only key.
	if err := os.WriteFile(r.cfg, good, 0o600); err != nil {
		t.Fatal(err)
	}
	r.rewrite(t, flat2Line, flat2Line+annexLine(annex))
	r.rewrite(t, "media: {bind: 127.0.0.1,", "media: {bind: 127.0.0.1, warm_ports: 7,")
	res := cli(t, "reload", "--config", r.cfg)
	res.expect(t, exitError, "cleanline reload: ", `sip.media.warm_ports: "4096" → "7": only a restart applies this change`)
	if strings.Count(res.stderr, "\n") != 1 {
		t.Fatalf("want one line of error, got %q", res.stderr)
	}

	_, m := r.request(t, http.MethodGet, "/metrics", "")
	if refused := metric(t, m, `cleanline_config_reloads_total{result="refused"}`); refused != 2 {
		t.Fatalf("refused reloads counted %v, want 2 (the POST and the CLI's; the typo the CLI refused itself never reached serve)", refused)
	}
	if ok := metric(t, m, "cleanline_config_last_reload_successful"); ok != 0 {
		t.Fatalf("cleanline_config_last_reload_successful %v after a refusal, want 0", ok)
	}
	if log := r.stderr.String(); !strings.Contains(log, "configuration refused") || !strings.Contains(log, "sip.media.warm_ports") {
		t.Fatalf("serve did not log the refusals: %s", log)
	}
	if code, rang := r.call(t, "+442079460018"); code != http.StatusOK || !rang {
		t.Fatalf("after refused reloads a call to home: %d, rang %v", code, rang)
	}
	out, err := r.trunk.Dial(context.Background(), "sip:"+annexNumber+"@"+r.sipAddr, siptest.DialOptions{FromUser: "+442079460018"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != http.StatusNotFound {
		t.Fatalf("a call to the refused file's line: %v %v, want 404", res, err)
	}

	// The good file again: the reload goes through, from the CLI.
	if err := os.WriteFile(r.cfg, good, 0o600); err != nil {
		t.Fatal(err)
	}
	cli(t, "reload", "--config", r.cfg).expect(t, exitOK, "reloaded")
}

// A reload that removes a line: its live call goes on until the line
// hangs up (the trunk then gets BYE), and new calls to its number get the
// not-found answer (404).
func TestReloadRemovesLine(t *testing.T) {
	r := startServe(t, "file:"+filepath.Join(t.TempDir(), "cl.db"), "", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, in := r.connect(t, ctx, "+442079460123", r.line)
	r.rewrite(t, fmt.Sprintf("    - {name: home, numbers: [\"+442079460123\"], contact: %q}\n", r.line.URI("landline")), "")
	cli(t, "reload", "--config", r.cfg).expect(t, exitOK, "reloaded")
	audioCrosses(t, ctx, out, in)

	again, err := r.trunk.Dial(ctx, "sip:+442079460123@"+r.sipAddr, siptest.DialOptions{FromUser: "+442079460019"})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := again.WaitFinal(ctx); err != nil || res.StatusCode != http.StatusNotFound {
		t.Fatalf("a new call to the removed line: %v %v, want 404", res, err)
	}
	audioCrosses(t, ctx, out, in)
	if err := in.Bye(ctx); err != nil {
		t.Fatalf("the removed line's BYE: %v", err)
	}
	select {
	case <-out.Ended():
	case <-ctx.Done():
		t.Fatal("the trunk never got BYE after the removed line hung up")
	}
	if res := cli(t, "lines", "--config", r.cfg); strings.Contains(res.stdout, "home ") {
		t.Fatalf("lines still shows home: %s", res.stdout)
	}
}

// Tokens are reloaded: a token removed from the file gets 401 from the
// next request on, one added works, and a token file's new content
// replaces the old secret.
func TestReloadTokens(t *testing.T) {
	dir := t.TempDir()
	opsFile := filepath.Join(dir, "ops.token")
	if err := os.WriteFile(opsFile, []byte(opsSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const goneSecret, newSecret, rotated = "gone-reader-0123456789abcdef", "new-reader-0123456789abcdef", "ops-rotated-0123456789abcdef"
	gone := fmt.Sprintf("      - {name: gone, token: %q, scope: read}\n", goneSecret)
	r := startServe(t, "file:"+filepath.Join(dir, "cl.db"), fmt.Sprintf(`    tokens:
      - {name: ops, token_file: %q, scope: admin}
%s`, opsFile, strings.TrimSuffix(gone, "\n")), nil)
	for _, tok := range []string{opsSecret, goneSecret} {
		if code, body := r.request(t, http.MethodGet, "/v1/lines", tok); code != http.StatusOK {
			t.Fatalf("before the reload: %d %s", code, body)
		}
	}
	if code, _ := r.request(t, http.MethodGet, "/v1/lines", newSecret); code != http.StatusUnauthorized {
		t.Fatalf("a token not yet configured: %d, want 401", code)
	}
	r.rewrite(t, gone, fmt.Sprintf("      - {name: new, token: %q, scope: read}\n", newSecret))
	if err := os.WriteFile(opsFile, []byte(rotated+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, body := r.request(t, http.MethodPost, "/v1/reload", opsSecret); code != http.StatusOK {
		t.Fatalf("POST /v1/reload: %d %s", code, body)
	}
	for _, c := range []struct {
		what, token string
		want        int
	}{{"removed token", goneSecret, 401}, {"old secret of a rotated file", opsSecret, 401}, {"added token", newSecret, 200}, {"rotated secret", rotated, 200}} {
		if code, body := r.request(t, http.MethodGet, "/v1/lines", c.token); code != c.want {
			t.Errorf("%s after the reload: %d %s, want %d", c.what, code, body, c.want)
		}
	}
	if log := r.stderr.String(); strings.Contains(log, goneSecret) || strings.Contains(log, rotated) || strings.Contains(log, newSecret) {
		t.Fatal("a secret reached serve's log")
	}
}

// writeTone writes d of a sine at freq Hz as an 8 kHz mono 16-bit WAV.
func writeTone(t *testing.T, path string, freq float64, d time.Duration) {
	t.Helper()
	n := int(d.Seconds() * 8000)
	data := make([]byte, 2*n)
	for i := range n {
		binary.LittleEndian.PutUint16(data[2*i:], uint16(int16(12000*math.Sin(2*math.Pi*freq*float64(i)/8000))))
	}
	h := make([]byte, 44)
	copy(h, "RIFF")
	binary.LittleEndian.PutUint32(h[4:], uint32(36+len(data)))
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1) // PCM
	binary.LittleEndian.PutUint16(h[22:], 1) // mono
	binary.LittleEndian.PutUint32(h[24:], 8000)
	binary.LittleEndian.PutUint32(h[28:], 16000)
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], uint32(len(data)))
	if err := os.WriteFile(path, append(h, data...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Prompts are reloaded: the blocked notice a blocked caller hears is read
// from its file again at each reload, so replacing the file (a 600 Hz tone
// by a 1400 Hz one) changes what the next blocked caller hears.
func TestReloadPrompts(t *testing.T) {
	dir := t.TempDir()
	r := startServe(t, "file:"+filepath.Join(dir, "cl.db"), "", nil)
	cli(t, "block", "add", "020 7946 0666", "--config", r.cfg).expect(t, exitOK, "added +442079460666")
	wav := filepath.Join(dir, "blocked.wav")
	heard := func(freq, other float64) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		out, err := r.trunk.Dial(ctx, "sip:+442079460123@"+r.sipAddr, siptest.DialOptions{FromUser: "+442079460666"})
		if err != nil {
			t.Fatal(err)
		}
		if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 603 {
			t.Fatalf("blocked caller: %v %v, want 603 after the notice", res, err)
		}
		pcm := out.RTP.Audio()
		if ok, ratio := siptest.ToneDominates(pcm, freq, []float64{other}, 10); !ok || len(pcm) < 2000 {
			t.Fatalf("the blocked caller heard %d samples, %g Hz at %.1f times %g Hz; want the file's %g Hz tone", len(pcm), freq, ratio, other, freq)
		}
	}
	writeTone(t, wav, 600, 500*time.Millisecond)
	r.rewrite(t, "trunks: [{name: provider, sources: [127.0.0.2]}]", "trunks: [{name: provider, sources: [127.0.0.2], announce_blocked: true}]\n  prompts: {blocked: "+strconv.Quote(wav)+"}")
	cli(t, "reload", "--config", r.cfg).expect(t, exitOK, "reloaded")
	heard(600, 1400)

	writeTone(t, wav, 1400, 500*time.Millisecond)
	cli(t, "reload", "--config", r.cfg).expect(t, exitOK, "reloaded")
	heard(1400, 600)

	// A prompt file that cannot be read is refused by its key; the notice
	// in force stays.
	if err := os.WriteFile(wav, []byte("not a wav"), 0o600); err != nil {
		t.Fatal(err)
	}
	cli(t, "reload", "--config", r.cfg).expect(t, exitError, "sip.prompts.blocked")
	heard(1400, 600)
}
