package web

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/sip"
)

func netipMust(s string) netip.Addr { return netip.MustParseAddr(s) }

// A carer signs in with their token and lands on their line's page; the
// browser holds a random session ID (HttpOnly, SameSite=Strict, not the
// token), the page says call history is unavailable while no event store
// answers, and signing out ends the session on the server.
func TestSignInAndOut(t *testing.T) {
	f := newFixture(t)
	b := f.browser("127.0.0.1")
	if p := b.get("/"); p.status != http.StatusSeeOther || p.header.Get("Location") != "/carer/" {
		t.Fatalf("GET /: %d %q, want a redirect to /carer/", p.status, p.header.Get("Location"))
	}
	p := b.get("/carer/")
	for _, want := range []string{`<label for="token">`, `name="viewport"`, `<html lang="en">`, "<h1>Sign in</h1>"} {
		if !strings.Contains(p.body, want) {
			t.Fatalf("sign-in page lacks %q:\n%s", want, p.body)
		}
	}
	csrf := csrfField.FindStringSubmatch(p.body)[1]
	res := b.post("/carer/signin", url.Values{"csrf": {csrf}, "token": {" " + secretOf("home-carer") + "\n"}})
	if res.status != http.StatusSeeOther {
		t.Fatalf("sign in: %d\n%s", res.status, res.body)
	}
	var session *http.Cookie
	for _, c := range (&http.Response{Header: res.header}).Cookies() {
		if c.Name == "cleanline_session" {
			session = c
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Secure ||
		session.MaxAge != int((12*time.Hour).Seconds()) || len(session.Value) < 40 {
		t.Fatalf("session cookie %+v", session)
	}
	if strings.Contains(fmt.Sprint(res.header), secretOf("home-carer")) {
		t.Fatal("the token is in the answer's headers")
	}
	p = b.follow(b.get("/carer/"))
	for _, want := range []string{"<h1>Calls to home</h1>", "+442079460123", "Call history is not available",
		"There is no call on this line right now.", "Add trusted contact", "home-carer"} {
		if !strings.Contains(p.text, want) {
			t.Fatalf("home's page lacks %q:\n%s", want, p.body)
		}
	}
	if p.header.Get("Cache-Control") != "no-store" || !strings.Contains(p.header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("page headers %v", p.header)
	}
	for _, e := range f.logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), secretOf("home-carer")) || strings.Contains(fmt.Sprint(e.ContextMap()), session.Value) {
			t.Fatalf("a secret is logged: %v", e.ContextMap())
		}
	}

	out := b.post("/carer/signout", url.Values{"csrf": {csrfField.FindStringSubmatch(p.body)[1]}})
	if out.status != http.StatusSeeOther {
		t.Fatalf("sign out: %d\n%s", out.status, out.body)
	}
	// The old cookie, replayed, is no session any more.
	replay := f.browser("127.0.0.1")
	replay.header.Set("Cookie", "cleanline_session="+session.Value)
	if p := replay.get("/carer/lines/home"); p.status != http.StatusSeeOther || p.header.Get("Location") != "/carer/" {
		t.Fatalf("the signed-out session: %d %q", p.status, p.header.Get("Location"))
	}
}

// Over TLS the cookies are Secure and __Host- (host-only, Path=/), and
// signing in again replaces the browser's session.
func TestSecureCookiesOverTLS(t *testing.T) {
	f := newFixture(t, func(_ *admin.Deps, c *Config) { c.Secure = true })
	b := f.browser("127.0.0.1")
	b.signIn("home-carer")
	var first *http.Cookie
	for _, c := range (&http.Response{Header: b.signedIn.header}).Cookies() {
		switch c.Name {
		case "__Host-cleanline_session":
			first = c
			if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
				t.Fatalf("session cookie over TLS: %+v", c)
			}
		case "__Host-cleanline_signin":
			if !c.Secure || c.MaxAge >= 0 {
				t.Fatalf("the sign-in cookie is not cleared: %+v", c)
			}
		default:
			t.Fatalf("cookie %+v over TLS", c)
		}
	}
	if first == nil {
		t.Fatalf("no session cookie: %v", b.signedIn.header)
	}
	// A browser holding a session (an old sign-in page in another tab)
	// signs in again: its old session ends.
	again := f.browser("127.0.0.1")
	csrf := again.csrf("/carer/")
	u, _ := url.Parse(f.srv.URL)
	again.c.Jar.SetCookies(u, []*http.Cookie{first})
	if p := again.post("/carer/signin", url.Values{"csrf": {csrf}, "token": {secretOf("home-carer")}}); p.status != http.StatusSeeOther {
		t.Fatalf("signing in again: %d", p.status)
	}
	if n := f.site.sessions.count(); n != 1 {
		t.Fatalf("%d sessions after signing in twice in one browser, want 1", n)
	}
	if p := b.get("/carer/lines/home"); p.status != http.StatusSeeOther {
		t.Fatalf("the replaced session: %d, want it gone", p.status)
	}
}

// Every change needs its session's token in the form, and a form from
// another site is refused before that: nothing is changed by a forged
// POST, whatever it carries.
func TestFormsNeedTheirSessionToken(t *testing.T) {
	f := newFixture(t)
	b, other := f.browser("127.0.0.1"), f.browser("127.0.0.1")
	b.signIn("home-carer")
	other.signIn("home-carer")
	csrf, otherCSRF := b.csrf("/carer/lines/home"), other.csrf("/carer/lines/home")
	if csrf == otherCSRF {
		t.Fatal("two sessions have the same form token")
	}
	// One character changed; "x"+csrf[1:] was the token itself whenever
	// the random token began with x (1 run in 64).
	wrong := "x" + csrf[1:]
	if csrf[0] == 'x' {
		wrong = "y" + csrf[1:]
	}
	for name, c := range map[string]struct {
		form   url.Values
		header map[string]string
		status int
	}{
		"no token":              {url.Values{"number": {"020 7946 0111"}}, nil, http.StatusForbidden},
		"wrong token":           {url.Values{"number": {"020 7946 0111"}, "csrf": {wrong}}, nil, http.StatusForbidden},
		"another session's":     {url.Values{"number": {"020 7946 0111"}, "csrf": {otherCSRF}}, nil, http.StatusForbidden},
		"cross-site, its token": {url.Values{"number": {"020 7946 0111"}, "csrf": {csrf}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		"other origin":          {url.Values{"number": {"020 7946 0111"}, "csrf": {csrf}}, map[string]string{"Origin": "http://evil.example"}, http.StatusForbidden},
	} {
		b.header = http.Header{}
		for k, v := range c.header {
			b.header.Set(k, v)
		}
		if p := b.post("/carer/lines/home/trust", c.form); p.status != c.status || !strings.Contains(p.body, "Nothing was changed") {
			t.Fatalf("%s: %d, want %d saying nothing was changed\n%s", name, p.status, c.status, p.body)
		}
		if got := f.trusted("home"); len(got) != 0 {
			t.Fatalf("%s: trusted %v", name, got)
		}
	}
	b.header = http.Header{"Sec-Fetch-Site": {"same-origin"}}
	p := b.post("/carer/lines/home/trust", url.Values{"number": {"020 7946 0111"}, "csrf": {csrf}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/carer/lines/home" {
		t.Fatalf("the page's own form: %d %q", p.status, p.header.Get("Location"))
	}
	if got := f.trusted("home"); !slices.Equal(got, []string{"+442079460111"}) {
		t.Fatalf("trusted %v", got)
	}
	if p := b.get("/carer/lines/home"); !strings.Contains(p.text, "+442079460111 is now a trusted contact") {
		t.Fatalf("no word of the change:\n%s", p.body)
	}
	// The sign-in form has its own token, in a signed cookie pair.
	s := f.browser("127.0.0.1")
	if p := s.post("/carer/signin", url.Values{"token": {secretOf("home-carer")}}); p.status != http.StatusForbidden {
		t.Fatalf("sign-in without the form's token: %d", p.status)
	}
	s.csrf("/carer/")
	if p := s.post("/carer/signin", url.Values{"token": {secretOf("home-carer")}, "csrf": {csrf}}); p.status != http.StatusForbidden {
		t.Fatalf("sign-in with another form's token: %d", p.status)
	}
}

// A sign-in lasts SessionTTL; after it, the page asks to sign in again
// and a form of the old session changes nothing. A session ends with its
// token (a reload that removes it). At most MaxSessions are held: the
// oldest makes room.
func TestSessionExpires(t *testing.T) {
	f := newFixture(t, func(_ *admin.Deps, c *Config) { c.SessionTTL = time.Hour; c.MaxSessions = 3 })
	b := f.browser("127.0.0.1")
	b.signIn("home-carer")
	csrf := b.csrf("/carer/lines/home")
	f.clock.add(time.Hour - time.Second)
	if p := b.get("/carer/lines/home"); p.status != http.StatusOK {
		t.Fatalf("a second before expiry: %d", p.status)
	}
	f.clock.add(time.Second)
	if p := b.get("/carer/lines/home"); p.status != http.StatusSeeOther || p.header.Get("Location") != "/carer/" {
		t.Fatalf("at expiry: %d %q, want back to sign in", p.status, p.header.Get("Location"))
	}
	if p := b.post("/carer/lines/home/trust", url.Values{"number": {"020 7946 0111"}, "csrf": {csrf}}); p.status != http.StatusUnauthorized {
		t.Fatalf("a form of the expired session: %d", p.status)
	}
	if got := f.trusted("home"); len(got) != 0 {
		t.Fatalf("trusted %v", got)
	}

	// A token removed from the configuration ends its sessions.
	b = f.browser("127.0.0.1")
	b.signIn("home-carer")
	f.gone.Store("home-carer", true)
	if p := b.get("/carer/lines/home"); p.status != http.StatusSeeOther {
		t.Fatalf("a session of a removed token: %d", p.status)
	}
	f.gone.Delete("home-carer")
	if p := b.get("/carer/lines/home"); p.status != http.StatusSeeOther {
		t.Fatalf("the session came back with its token: %d", p.status)
	}

	var bs []*browser
	for range 4 {
		nb := f.browser("127.0.0.1")
		nb.signIn("home-carer")
		bs = append(bs, nb)
		f.clock.add(time.Minute)
	}
	if n := f.site.sessions.count(); n != 3 {
		t.Fatalf("%d sessions held, want at most 3", n)
	}
	if p := bs[0].get("/carer/lines/home"); p.status != http.StatusSeeOther {
		t.Fatalf("the oldest session: %d, want it gone", p.status)
	}
	if p := bs[3].get("/carer/lines/home"); p.status != http.StatusOK {
		t.Fatalf("the newest session: %d", p.status)
	}
}

// A source gets LoginTries wrong tokens a window; then even the right
// token is refused (429, Retry-After) until the window ends, while
// another source signs in. The secret typed is never logged.
func TestSignInRateLimited(t *testing.T) {
	f := newFixture(t, func(_ *admin.Deps, c *Config) { c.LoginTries = 3; c.LoginWindow = 10 * time.Minute })
	guesser := f.browser("127.0.0.1")
	try := func(b *browser, secret string) page {
		return b.post("/carer/signin", url.Values{"csrf": {b.csrf("/carer/")}, "token": {secret}})
	}
	for i := range 3 {
		if p := try(guesser, fmt.Sprintf("guess-%d-0123456789abcdef", i)); p.status != http.StatusUnauthorized ||
			!strings.Contains(p.body, "That token was not accepted") {
			t.Fatalf("guess %d: %d\n%s", i, p.status, p.body)
		}
	}
	p := try(guesser, secretOf("home-carer"))
	retry, _ := strconv.Atoi(p.header.Get("Retry-After"))
	if p.status != http.StatusTooManyRequests || retry < 500 || retry > 601 || !strings.Contains(p.body, "Try again in 10 minutes") {
		t.Fatalf("the right token after 3 wrong ones: %d, Retry-After %q\n%s", p.status, p.header.Get("Retry-After"), p.body)
	}
	if p := try(f.browser("127.0.0.4"), secretOf("home-carer")); p.status != http.StatusSeeOther {
		t.Fatalf("another source: %d", p.status)
	}
	f.clock.add(10 * time.Minute)
	if p := try(guesser, secretOf("home-carer")); p.status != http.StatusSeeOther {
		t.Fatalf("after the window: %d", p.status)
	}
	for _, e := range f.logs.All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()), "guess-") {
			t.Fatalf("a typed token is logged: %s %v", e.Message, e.ContextMap())
		}
	}
	// A read token is a real one, but not for this page, and no guess.
	if p := try(f.browser("127.0.0.4"), secretOf("grafana")); p.status != http.StatusForbidden || !strings.Contains(p.body, "can only read") {
		t.Fatalf("a read token: %d\n%s", p.status, p.body)
	}
}

// Unit checks of the limiter's bounds: IPv6 counts by /64, and when it
// remembers as many sources as it may, a new one is refused (fail closed)
// until one's window ends.
func TestLimiterBounds(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiter(1, time.Minute, 2)
	a := netipMust("2001:db8::1")
	l.fail(a, now)
	if ok, _ := l.allowed(netipMust("2001:db8::ffff"), now); ok {
		t.Fatal("the same /64 is another source")
	}
	l.fail(netipMust("192.0.2.1"), now)
	if ok, _ := l.allowed(netipMust("192.0.2.2"), now); ok {
		t.Fatal("a third source with room for two")
	}
	if ok, _ := l.allowed(netipMust("192.0.2.2"), now.Add(time.Minute)); !ok {
		t.Fatal("a third source once the others' windows ended")
	}
}

// A caller's name or number is the caller's to choose: whatever it holds
// comes out as text, never as markup.
func TestHostileCallerEscaped(t *testing.T) {
	ev := &events{}
	f := newFixture(t, func(d *admin.Deps, _ *Config) { d.Events = ev })
	hostile := `"<script>alert(1)</script><img src=x onerror=alert(2)>" <sip:x@evil>`
	f.calls.live = []sip.LiveCall{{ID: "c1", Direction: "inbound", Line: "home", Caller: "sip:<script>alert(3)</script>@evil",
		Action: "block", Reasons: []string{"cli.invalid", "<b>new</b>"}, State: "announcing", Since: f.clock.now().Add(-time.Minute)}}
	ev.records = []admin.Record{record(t, map[string]any{"type": "call", "call": "r1", "line": "home", "direction": "inbound",
		"time": f.clock.now(), "start": f.clock.now().Add(-time.Hour), "from": hostile, "verdict": "warn",
		"reasons": []string{"blocklist.reported"}, "choice": "report", "outcome": "warn_reported", "duration_ms": 12500})}
	b := f.browser("127.0.0.1")
	p := b.signIn("home-carer")
	for _, bad := range []string{"<script>", "<img", "<b>new"} {
		if strings.Contains(p.body, bad) {
			t.Fatalf("%q came out as markup:\n%s", bad, p.body)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;script&gt;alert(3)", "&lt;b&gt;new&lt;/b&gt;"} {
		if !strings.Contains(p.body, want) {
			t.Fatalf("page lacks %q:\n%s", want, p.body)
		}
	}
	for _, want := range []string{hostile, "is not a real phone number", "Someone has reported this number",
		"Reported the caller as a scam (pressed 3)", "today at 13:00, lasted 13 seconds"} {
		if !strings.Contains(p.text, want) {
			t.Fatalf("page lacks %q:\n%s", want, p.body)
		}
	}
}

// A token sees only its own lines: another line's page is a 403 that
// shows nothing of it, its forms change nothing, its calls cannot be
// ended through the token's own line, and the lines list has only the
// token's. An admin token sees every line; a carer's lands on its own.
func TestOtherLineSeesNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	if err := f.store.Trust(ctx, "home", "+442079460111"); err != nil {
		t.Fatal(err)
	}
	f.calls.live = []sip.LiveCall{{ID: "home-call", Direction: "inbound", Line: "home", Number: "+442079460018",
		Action: "warn", State: "warning", Since: f.clock.now()}}
	flat := f.browser("127.0.0.1")
	if p := flat.signIn("flat-carer"); !strings.Contains(p.body, "<h1>Calls to flat-2</h1>") || strings.Contains(p.text, "+442079460018") {
		t.Fatalf("flat-2's carer lands on\n%s", p.body)
	}
	csrf := flat.csrf("/carer/lines/flat-2")
	p := flat.get("/carer/lines/home")
	if p.status != http.StatusForbidden {
		t.Fatalf("home's page for flat-2's carer: %d", p.status)
	}
	for _, secret := range []string{"+442079460123", "+442079460111", "+442079460018", "home-call"} {
		if strings.Contains(p.text, secret) {
			t.Fatalf("the 403 shows %s:\n%s", secret, p.body)
		}
	}
	for _, action := range []string{"trust", "untrust", "block", "report", "end"} {
		if p := flat.post("/carer/lines/home/"+action, url.Values{"csrf": {csrf}, "number": {"+442079460111"}, "call": {"home-call"}}); p.status != http.StatusForbidden {
			t.Fatalf("%s on home by flat-2's carer: %d", action, p.status)
		}
	}
	p = flat.follow(flat.post("/carer/lines/flat-2/end", url.Values{"csrf": {csrf}, "call": {"home-call"}}))
	if !strings.Contains(p.body, "That call had already ended") {
		t.Fatalf("home's call ended through flat-2:\n%s", p.body)
	}
	if len(f.calls.ended) != 0 || !slices.Equal(f.trusted("home"), []string{"+442079460111"}) {
		t.Fatalf("flat-2's carer changed home: ended %v, trusted %v", f.calls.ended, f.trusted("home"))
	}
	if e, err := f.store.Get(ctx, "+442079460111", false); err == nil {
		t.Fatalf("reported: %+v", e)
	}

	ops := f.browser("127.0.0.1")
	p = ops.signIn("ops")
	if !strings.Contains(p.body, "<h1>Your lines</h1>") || !strings.Contains(p.body, `href="/carer/lines/home"`) || !strings.Contains(p.body, `href="/carer/lines/flat-2"`) {
		t.Fatalf("the operator's lines:\n%s", p.body)
	}
	p = ops.get("/carer/lines/home")
	if !strings.Contains(p.text, "+442079460018") || !strings.Contains(p.text, "hearing the warning") {
		t.Fatalf("home's page for the operator:\n%s", p.body)
	}
	csrf = ops.csrf("/carer/lines/home")
	p = ops.follow(ops.post("/carer/lines/home/end", url.Values{"csrf": {csrf}, "call": {"home-call"}}))
	if !slices.Equal(f.calls.ended, []string{"home-call"}) || !strings.Contains(p.body, "The call has been ended") {
		t.Fatalf("ended %v; page\n%s", f.calls.ended, p.body)
	}
	if p := ops.get("/carer/lines/nosuch"); p.status != http.StatusNotFound {
		t.Fatalf("a line not configured: %d", p.status)
	}
}

// Every reason code screening gives has a sentence for carers.
func TestEveryReasonInWords(t *testing.T) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, filepath.Join("..", "..", "..", "..", "screening", "verdict.go"), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(file, func(node ast.Node) bool {
		vs, ok := node.(*ast.ValueSpec)
		if !ok || vs.Type == nil || fmt.Sprint(vs.Type) != "Reason" {
			return true
		}
		for _, v := range vs.Values {
			code, _ := strconv.Unquote(v.(*ast.BasicLit).Value)
			n++
			if _, ok := reasons[code]; !ok {
				t.Errorf("reason %q has no words on the carer's page", code)
			}
		}
		return true
	})
	if n < 10 {
		t.Fatalf("found %d reason codes in screening/verdict.go: the test no longer reads it", n)
	}
	for state := range map[string]bool{sip.CallScreening: true, sip.CallSetup: true, sip.CallAnnouncing: true, sip.CallRinging: true,
		sip.CallWarning: true, sip.CallConnecting: true, sip.CallConnected: true, sip.CallFeature: true} {
		if _, ok := states[state]; !ok {
			t.Errorf("state %q has no words", state)
		}
	}
}

// Recent calls are read from the event store's records, newest first,
// whether it gives each call's record or its events one by one: a call's
// events make one row, from its first event's time; a record of another
// schema version, or no event at all, is counted, not shown.
func TestRecentCallsFromEvents(t *testing.T) {
	now := time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)
	at := func(min int) time.Time { return now.Add(time.Duration(min) * time.Minute) }
	ev := func(fields map[string]any) admin.Record { return record(t, fields) }
	rows, unread := recentViews([]admin.Record{
		ev(map[string]any{"type": "ended", "call": "a", "time": at(-1), "outcome": "warn_reported", "duration_ms": 61000}),
		ev(map[string]any{"type": "choice", "call": "a", "time": at(-2), "choice": "report", "caller": "+442079460777"}),
		ev(map[string]any{"type": "screened", "call": "a", "time": at(-3), "direction": "inbound", "caller": "+442079460777",
			"verdict": "warn", "reasons": []string{"blocklist.reported"}}),
		admin.Record(`{"v":2,"type":"call","call":"x"}`),
		admin.Record(`not json`),
		ev(map[string]any{"type": "call", "call": "b", "time": at(-60 * 25), "start": at(-60 * 25), "direction": "outbound",
			"dialled": "0909 123 4567", "number": "+449091234567", "barred": "premium_rate", "outcome": "barred"}),
		ev(map[string]any{"type": "call", "call": "c", "time": at(-70), "direction": "inbound", "privacy": true,
			"verdict": "allow", "outcome": "completed", "duration_ms": 300}),
	}, now)
	if unread != 2 || len(rows) != 3 {
		t.Fatalf("%d rows, %d unread: %+v", len(rows), unread, rows)
	}
	a, b, c := rows[0], rows[1], rows[2]
	if a.Caller != "+442079460777" || a.Number != "+442079460777" || a.When != "today at 13:57" || a.For != "1 minute 1 second" ||
		a.Choice != "Reported the caller as a scam (pressed 3)" || a.Outcome != "Reported after the warning" ||
		!strings.HasPrefix(a.Verdict, "Warned first") || len(a.Why) != 1 {
		t.Fatalf("call a: %+v", a)
	}
	if b.Caller != "This line called +449091234567" || b.Number != "" || b.Verdict != barredText ||
		b.Why[0] != "Its settings do not allow premium rate numbers." || b.When != "yesterday at 13:00" {
		t.Fatalf("call b: %+v", b)
	}
	if c.Caller != "Number withheld" || c.Number != "" || c.For != "less than a second" || c.Outcome != "Answered" {
		t.Fatalf("call c: %+v", c)
	}
}
