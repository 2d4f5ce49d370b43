package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/siptest"
)

// The carer's page in a real browser (Debian's chromium, headless, driven
// over the DevTools protocol by chromedp) against a running cleanline
// serve, with real calls from the trunk's phone to the line's.

const (
	flatSecret = "flat2-carer-0123456789abcdef"
	suspect    = "+442079460777" // reported: warned on every line
)

// chromium starts one headless browser for the test and stops it (and
// removes its profile) when the test ends. Without chromium the test fails
// on Debian, where `make deps` installs it, and is skipped elsewhere.
func chromium(t *testing.T) context.Context {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		if _, deb := os.Stat("/etc/debian_version"); deb == nil {
			t.Fatal("chromium is not installed: run `make deps` (apt-get install chromium)")
		}
		t.Skip("chromium is not installed, and this is not Debian: install Chromium to run the carer's page in a browser")
	}
	// chromedp's defaults (headless, no first run, no background
	// networking, no sync...) and what this machine needs; with no
	// user-data-dir given, chromedp makes a fresh one and removes it, with
	// any child process chromium left behind, when the browser stops.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(412, 915)) // a phone's screen
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		closing, done := context.WithTimeout(ctx, 10*time.Second)
		defer done()
		_ = chromedp.Cancel(closing) // closes chromium gracefully, or kills it at the deadline
		cancel()
		cancelAlloc() // waits for the process
	})
	attach(t, ctx, cancel, "chromium")
	return ctx
}

// attach runs the first action on a chromedp context: it starts the
// browser, or opens the tab. That action's context must have no deadline
// (the browser or the tab lives only as long as it), so the wait is
// bounded here instead.
func attach(t *testing.T, ctx context.Context, cancel context.CancelFunc, what string) {
	t.Helper()
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }()
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("%s did not start: %v", what, err)
		}
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("%s did not start within 60s", what)
	}
}

// tab is one person's browser window: its own cookies.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
}

func newTab(t *testing.T, browser context.Context, base string) *tab {
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	attach(t, ctx, cancel, "a tab")
	return &tab{t: t, ctx: ctx, base: base}
}

// do runs actions within d; on failure it says what the page showed.
func (b *tab) do(what string, d time.Duration, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v\nthe page says:\n%s", what, err, b.text())
	}
}

// text is what the page shows.
func (b *tab) text() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	url, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		return "(no page: " + err.Error() + ")"
	}
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body.innerText"))
	if err != nil {
		return url + " (no text: " + err.Error() + ")"
	}
	return url + "\n" + s
}

// open loads path and returns what it shows.
func (b *tab) open(path string) string {
	b.t.Helper()
	b.do("open "+path, 15*time.Second, chromedp.Navigate(b.base+path))
	return b.text()
}

// until reloads path until it shows every one of want, or fails at the
// deadline.
func (b *tab) until(ctx context.Context, path string, want ...string) string {
	b.t.Helper()
	for {
		got := b.open(path)
		missing := ""
		for _, w := range want {
			if !strings.Contains(got, w) {
				missing = w
				break
			}
		}
		if missing == "" {
			return got
		}
		if ctx.Err() != nil {
			b.t.Fatalf("%s never showed %q; it shows:\n%s", path, missing, got)
		}
		time.Sleep(100 * time.Millisecond) // reload pace, nothing orders on it
	}
}

// button finds the button whose text starts with label (XPath).
func button(label string) chromedp.Search {
	return chromedp.Search(fmt.Sprintf(`//button[starts-with(normalize-space(), %q)]`, label))
}

// shows finds a tag whose text contains s (XPath).
func shows(tag, s string) chromedp.Search {
	return chromedp.Search(fmt.Sprintf(`//%s[contains(normalize-space(), %q)]`, tag, s))
}

// signIn types secret into the sign-in form and submits it.
func (b *tab) signIn(secret, lands string) {
	b.t.Helper()
	b.open("/carer/")
	b.do("sign in", 15*time.Second,
		chromedp.SendKeys(chromedp.ID("token"), secret),
		chromedp.Click(button("Sign in")),
		chromedp.WaitVisible(shows("h1", lands)))
}

// The carer's page, in Chromium, while serve takes real calls: the home
// line's carer signs in, sees a warned call live while the person hears
// the warning, trusts the caller (whose next call is put through without
// a warning), and ends that connected call from the page, which hangs up
// both phones with BYE. Forms without their session's token, or from
// another site, change nothing; flat-2's carer sees nothing of home.
func TestCarerPageInChromium(t *testing.T) {
	browser := chromium(t)
	r := startServe(t, "file:"+filepath.Join(t.TempDir(), "cl.db"), fmt.Sprintf(`    tokens:
      - {name: ops, token: %q, scope: admin}
      - {name: home-carer, token: %q, scope: carer, lines: [home]}
      - {name: flat-carer, token: %q, scope: carer, lines: [flat-2]}`, opsSecret, carerSecret, flatSecret), nil)
	api := func(method, path, secret, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+r.admin+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+secret)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := api("POST", "/v1/blocklist", opsSecret, `{"number":"`+suspect+`","reported":true}`); code != 200 {
		t.Fatalf("report %s: %d %s", suspect, code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	home := newTab(t, browser, "http://"+r.admin)
	home.signIn(carerSecret, "Calls to home")
	if got := home.text(); !strings.Contains(got, "No calls yet") || !strings.Contains(got, "There is no call on this line right now") {
		t.Fatalf("home's page:\n%s", got)
	}

	// A warned call: the line answers and hears the warning; the caller
	// hears ringing. The page shows it live, and why.
	out, err := r.trunk.Dial(ctx, "sip:+442079460123@"+r.sipAddr, siptest.DialOptions{FromUser: suspect})
	if err != nil {
		t.Fatal(err)
	}
	in, err := r.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	home.until(ctx, "/carer/lines/home", suspect, "The person is hearing the warning", "Warned first",
		"Someone has reported this number as a possible scam", "End this call")
	// The carer reports it too, from the call's row: one more report.
	reports := func() int {
		code, body := api("GET", "/v1/blocklist/"+suspect, opsSecret, "")
		var e struct{ Reports int }
		if err := json.Unmarshal([]byte(body), &e); code != 200 || err != nil {
			t.Fatalf("the entry of %s: %d %s", suspect, code, body)
		}
		return e.Reports
	}
	before := reports()
	home.do("report from the call's row", 15*time.Second,
		chromedp.Click(button("Report "+suspect)),
		chromedp.WaitVisible(shows("p", suspect+" has been reported as a scam")))
	if n := reports(); n != before+1 {
		t.Fatalf("%s has %d reports after the carer's, %d before", suspect, n, before)
	}
	if err := in.Bye(ctx); err != nil { // the person hangs up on the warning
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode == 200 {
		t.Fatalf("the warned caller, refused by hanging up: %v %v", res, err)
	}
	// The call is over: it appears among the recent calls (the event
	// store's call record), with the person's choice in words.
	home.until(ctx, "/carer/lines/home", "There is no call on this line right now", suspect, "Hung up", "Warned first")

	// The carer trusts the caller.
	home.open("/carer/lines/home")
	home.do("add a trusted contact", 15*time.Second,
		chromedp.SendKeys(chromedp.ID("trust-number"), "020 7946 0777"),
		chromedp.Click(button("Add trusted contact")),
		chromedp.WaitVisible(shows("p", suspect+" is now a trusted contact")))
	if code, body := api("GET", "/v1/lines/home/trusted", carerSecret, ""); code != 200 || !strings.Contains(body, suspect) {
		t.Fatalf("home's trusted contacts: %d %s", code, body)
	}

	// Their next call is put through, not warned: the caller is answered
	// as soon as the line is.
	out, err = r.trunk.Dial(ctx, "sip:+442079460123@"+r.sipAddr, siptest.DialOptions{FromUser: suspect})
	if err != nil {
		t.Fatal(err)
	}
	if in, err = r.line.Incoming(ctx); err != nil {
		t.Fatal(err)
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("the trusted caller: %v %v, want 200 without a warning", res, err)
	}
	got := home.until(ctx, "/carer/lines/home", "Talking now", "Put through", "one of your trusted contacts")
	if live, _, _ := strings.Cut(got, "Recent calls"); strings.Contains(live, "Warned first") {
		t.Fatalf("the trusted caller's call shows a warning:\n%s", got)
	}

	// End this call: both phones get BYE for this call's dialogs.
	home.do("end the call", 15*time.Second,
		chromedp.Click(button("End this call")),
		chromedp.WaitVisible(shows("p", "The call has been ended")))
	for name, p := range map[string]struct {
		phone  *siptest.Phone
		callID string
		ended  <-chan struct{}
	}{
		"trunk": {r.trunk, out.D.InviteRequest.CallID().Value(), out.Ended()},
		"line":  {r.line, in.D.InviteRequest.CallID().Value(), in.Ended()},
	} {
		if _, err := p.phone.WaitRequest(ctx, sip.BYE); err != nil {
			t.Fatalf("the %s's phone got no BYE: %v", name, err)
		}
		byes := 0
		for _, req := range p.phone.Requests() {
			if req.Method == sip.BYE && req.CallID().Value() == p.callID {
				byes++
			}
		}
		if byes == 0 {
			t.Fatalf("the %s's BYE is not for the ended call's dialog", name)
		}
		select {
		case <-p.ended:
		case <-ctx.Done():
			t.Fatalf("the %s's dialog is still up", name)
		}
	}
	home.until(ctx, "/carer/lines/home", "There is no call on this line right now")

	// Forged forms: the session's token wrong, or missing, changes nothing.
	for name, js := range map[string]string{
		"wrong token":   `document.querySelector('#trust-number').form.querySelector('input[name=csrf]').value = 'forged'`,
		"missing token": `document.querySelector('#trust-number').form.querySelector('input[name=csrf]').remove()`,
	} {
		home.open("/carer/lines/home")
		if _, err := chromedp.Run(home.ctx, chromedp.Evaluate[bool]("("+js+", true)")); err != nil {
			t.Fatalf("forge a form: %s: %v", name, err)
		}
		home.do("forge a form: "+name, 15*time.Second,
			chromedp.SendKeys(chromedp.ID("trust-number"), "020 7946 0888"),
			chromedp.Click(button("Add trusted contact")),
			chromedp.WaitVisible(shows("h1", "This form had expired")))
	}
	// A form on another site, posting to the page with the carer's
	// browser: refused as cross-origin.
	evil := evilSite(t, "http://"+r.admin+"/carer/lines/home/trust")
	home.do("a form from another site", 15*time.Second,
		chromedp.Navigate(evil),
		chromedp.Click(button("Win a prize")),
		chromedp.WaitVisible(shows("h1", "This form came from another website")))
	if code, body := api("GET", "/v1/lines/home/trusted", carerSecret, ""); code != 200 || strings.Contains(body, "+442079460888") {
		t.Fatalf("a forged form changed home's trusted contacts: %d %s", code, body)
	}

	// flat-2's carer sees nothing of home.
	home.open("/carer/lines/home")
	home.do("sign out", 15*time.Second,
		chromedp.Click(button("Sign out")),
		chromedp.WaitVisible(shows("h1", "Sign in")))
	flat := newTab(t, browser, "http://"+r.admin)
	flat.signIn(flatSecret, "Calls to flat-2")
	got = flat.open("/carer/lines/home")
	if !strings.Contains(got, "This is not one of your lines") {
		t.Fatalf("home's page for flat-2's carer:\n%s", got)
	}
	for _, secret := range []string{suspect, "+442079460123", "Calls to home"} {
		if strings.Contains(got, secret) {
			t.Fatalf("flat-2's carer sees %s of home:\n%s", secret, got)
		}
	}
	if got := flat.open("/carer/"); strings.Contains(got, suspect) || !strings.Contains(got, "Calls to flat-2") {
		t.Fatalf("flat-2's carer's page:\n%s", got)
	}
	r.stop(t)
	for _, s := range []string{carerSecret, flatSecret} {
		if strings.Contains(r.stderr.String(), s) {
			t.Fatal("a token's secret is in serve's log")
		}
	}
}

// evilSite serves, from another loopback address (another site), a page
// with a form that posts to target; it returns the page's URL.
func evilSite(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.4:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, `<!doctype html><form method="post" action="%s"><input type="hidden" name="number" value="020 7946 0888"><input type="hidden" name="csrf" value="guess"><button type="submit">Win a prize</button></form>`, target)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}
