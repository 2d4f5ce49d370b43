package web

import (
	"context"
	"encoding/json"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/cmd/internal/admin/api"
	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip"
)

// The page served as serve serves it: package api's mux with the page on
// it, over a real admin.Service on an embedded store, on a loopback
// socket. The live calls and the call events are the two parts a test
// sets (a running B2BUA and the event store are the browser test's, in
// cmd/cleanline).

var testTokens = []api.Token{
	{Name: "ops", Secret: "admin-secret-0123456789", Scope: api.ScopeAdmin},
	{Name: "grafana", Secret: "read-secret-0123456789", Scope: api.ScopeRead},
	{Name: "home-carer", Secret: "carer-home-0123456789", Scope: api.ScopeCarer, Lines: []string{"home"}},
	{Name: "flat-carer", Secret: "carer-flat2-0123456789", Scope: api.ScopeCarer, Lines: []string{"flat-2"}},
}

func secretOf(name string) string {
	for _, t := range testTokens {
		if t.Name == name {
			return t.Secret
		}
	}
	panic(name)
}

// calls are the live calls a test shows (admin.Calls, as *sip.Server is).
type calls struct {
	mu    sync.Mutex
	live  []sip.LiveCall
	ended []string
}

func (c *calls) LiveCalls() []sip.LiveCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]sip.LiveCall(nil), c.live...)
}

func (c *calls) EndCall(id string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, l := range c.live {
		if l.ID == id {
			c.live = append(c.live[:i], c.live[i+1:]...)
			c.ended = append(c.ended, id)
			return nil
		}
	}
	return sip.ErrNoSuchCall
}

// events are the call records a test shows (admin.Events).
type events struct{ records []admin.Record }

func (e *events) RecentCalls(ctx context.Context, q admin.RecentQuery) (admin.Page[admin.Record], error) {
	return admin.Page[admin.Record]{Items: e.records}, nil
}

// clock is a test's time, moved by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	store *blocklist.FileStore
	svc   *admin.Service
	calls *calls
	clock *clock
	srv   *httptest.Server
	site  *site
	logs  *observer.ObservedLogs
	gone  sync.Map // names of tokens a test removed, as a reload would
}

// revocable is the listener's token check, less the tokens a test removed.
type revocable struct {
	api.Tokens
	gone *sync.Map
}

func (r *revocable) Named(name string) (api.Token, bool) {
	if _, gone := r.gone.Load(name); gone {
		return api.Token{}, false
	}
	return r.Tokens.Named(name)
}

type option func(*admin.Deps, *Config)

func newFixture(t *testing.T, opts ...option) *fixture {
	t.Helper()
	st, err := blocklist.OpenFile(filepath.Join(t.TempDir(), "cl.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	sc, err := screening.New(st, screening.Config{Region: "GB"})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, store: st, calls: &calls{}, clock: &clock{t: time.Date(2026, 3, 2, 14, 0, 0, 0, time.UTC)}}
	deps := admin.Deps{Store: st, Screener: sc, Calls: f.calls, Lines: admin.LinesFunc(func() []admin.Line {
		return []admin.Line{{Name: "home", Numbers: []string{"+442079460123"}}, {Name: "flat-2", Numbers: []string{"+442079460124"}}}
	})}
	core, logs := observer.New(zapcore.DebugLevel)
	cfg := Config{Log: zap.New(core), Now: f.clock.now}
	for _, o := range opts {
		o(&deps, &cfg)
	}
	if f.svc, err = admin.New(deps); err != nil {
		t.Fatal(err)
	}
	h, err := api.NewHandler(api.Config{API: f.svc, Tokens: testTokens, Log: zap.New(core), Pages: func(tk api.Tokens) (http.Handler, error) {
		cfg.API, cfg.Tokens = f.svc, &revocable{Tokens: tk, gone: &f.gone}
		h, err := New(cfg)
		if err == nil {
			f.site = h.(*site)
		}
		return h, err
	}})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewUnstartedServer(h)
	if cfg.Secure {
		f.srv.StartTLS()
	} else {
		f.srv.Start()
	}
	t.Cleanup(f.srv.Close)
	f.logs = logs
	return f
}

// browser is a client with its own cookies, from a loopback address of
// its own (the sign-in limit counts by source).
type browser struct {
	f      *fixture
	c      *http.Client
	header http.Header // sent with every request
	// signedIn is the answer to the last sign-in.
	signedIn page
}

func (f *fixture) browser(ip string) *browser {
	jar, _ := cookiejar.New(nil)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := f.srv.Client().Transport.(*http.Transport).Clone() // trusts the server's certificate
	tr.DialContext = d.DialContext
	return &browser{f: f, header: http.Header{}, c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		Transport: tr,
		// Redirects are followed by hand, to see them.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// page is an answer: body as sent, text with its character references
// read (html/template writes + as &#43;).
type page struct {
	status     int
	header     http.Header
	body, text string
}

func (b *browser) do(method, path string, form url.Values) page {
	b.f.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.f.srv.URL+path, body)
	if err != nil {
		b.f.t.Fatal(err)
	}
	for k, v := range b.header {
		req.Header[k] = v
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.f.t.Fatal(err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return page{res.StatusCode, res.Header, string(data), html.UnescapeString(string(data))}
}

func (b *browser) get(path string) page { return b.do(http.MethodGet, path, nil) }

// post sends a form, with the page's csrf value unless the form has one.
func (b *browser) post(path string, form url.Values) page { return b.do(http.MethodPost, path, form) }

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the form token on the page at path.
func (b *browser) csrf(path string) string {
	b.f.t.Helper()
	p := b.get(path)
	m := csrfField.FindStringSubmatch(p.body)
	if m == nil {
		b.f.t.Fatalf("GET %s: %d, no form token in\n%s", path, p.status, p.body)
	}
	return m[1]
}

// signIn signs in with the named token and returns the page it lands on.
func (b *browser) signIn(token string) page {
	b.f.t.Helper()
	p := b.post("/carer/signin", url.Values{"csrf": {b.csrf("/carer/")}, "token": {secretOf(token)}})
	b.signedIn = p
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/carer/" {
		b.f.t.Fatalf("sign in as %s: %d %s\n%s", token, p.status, p.header.Get("Location"), p.body)
	}
	return b.follow(b.get("/carer/"))
}

// follow follows redirects from p.
func (b *browser) follow(p page) page {
	for i := 0; p.status == http.StatusSeeOther && i < 5; i++ {
		p = b.get(p.header.Get("Location"))
	}
	return p
}

func (f *fixture) trusted(line string) []string {
	f.t.Helper()
	got, err := f.store.Trusted(context.Background(), line)
	if err != nil {
		f.t.Fatal(err)
	}
	return got
}

func record(t *testing.T, fields map[string]any) admin.Record {
	t.Helper()
	fields["v"] = 1
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
