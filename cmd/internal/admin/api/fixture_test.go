package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/screening"
)

// The test tokens: one of each scope, and two carers of different lines.
var testTokens = []Token{
	{Name: "ops", Secret: "admin-secret-0123456789", Scope: ScopeAdmin},
	{Name: "grafana", Secret: "read-secret-0123456789", Scope: ScopeRead},
	{Name: "home-carer", Secret: "carer-home-0123456789", Scope: ScopeCarer, Lines: []string{"home"}},
	{Name: "flat-carer", Secret: "carer-flat2-0123456789", Scope: ScopeCarer, Lines: []string{"flat-2"}},
}

func secret(name string) string {
	for _, t := range testTokens {
		if t.Name == name {
			return t.Secret
		}
	}
	panic(name)
}

// fixture is the API served over a real Service on an embedded store, on
// a loopback socket.
type fixture struct {
	t     *testing.T
	store *blocklist.FileStore
	svc   *admin.Service
	mux   *http.ServeMux
	srv   *httptest.Server
	logs  *observer.ObservedLogs
}

func newFixture(t *testing.T, tokens []Token) *fixture {
	t.Helper()
	st, err := blocklist.OpenFile(filepath.Join(t.TempDir(), "cl.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lines := []screening.Line{{Name: "home", Numbers: []string{"+442079460123"}}, {Name: "flat-2", Numbers: []string{"+442079460124"}}}
	sc, err := screening.New(st, screening.Config{Region: "GB", Lines: lines})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := admin.New(admin.Deps{Store: st, Screener: sc, Lines: admin.LinesFunc(func() []admin.Line {
		return []admin.Line{{Name: "home", Numbers: []string{"+442079460123"}}, {Name: "flat-2", Numbers: []string{"+442079460124"}}}
	})})
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	reg := prometheus.NewRegistry()
	mux, err := newMux(Config{API: svc, Tokens: tokens, Log: zap.New(core), Handlers: Handlers{
		Health:  http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }),
		Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &fixture{t: t, store: st, svc: svc, mux: mux, srv: srv, logs: logs}
}

// client is a Client of the fixture with the named token ("": none).
func (f *fixture) client(token string) *Client {
	s := ""
	if token != "" {
		s = secret(token)
	}
	return NewClient(f.srv.URL, s, f.srv.Client())
}

// response is one raw answer.
type response struct {
	status int
	header http.Header
	body   string
}

// request sends method path (already escaped) with the raw secret.
func (f *fixture) request(method, path, secret, body string) response {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, f.srv.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	res, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return response{res.StatusCode, res.Header, string(b)}
}

// pathFor fills a route's path: its {line} with line, and the others with
// values that exist or not, as it may be.
func pathFor(rt Route, line string) string {
	p := rt.Path
	for k, v := range map[string]string{"line": line, "number": url.PathEscape("+442079460555"), "id": "nosuchcall", "name": "heap"} {
		p = strings.ReplaceAll(p, "{"+k+"}", v)
	}
	return p
}
