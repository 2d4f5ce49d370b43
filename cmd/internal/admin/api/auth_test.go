package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/cleanline/cleanline/cmd/internal/admin"
)

// TestEveryRouteNeedsItsScope sends every route of the table with no token,
// an unknown one, and each scope's, and holds each answer to the scope
// rules: no token or an unknown one → 401 with a Bearer challenge; a token
// whose scope does not reach the route, or a carer's on another line →
// 403; otherwise the route is served (whatever the service then says).
func TestEveryRouteNeedsItsScope(t *testing.T) {
	f := newFixture(t, testTokens)
	routes := Routes(Handlers{})
	for _, rt := range routes {
		if rt.access == accessOpen {
			continue
		}
		for _, line := range []string{"home", "flat-2"} {
			if line == "flat-2" && !rt.inPath("line") {
				continue
			}
			path := pathFor(rt, line)
			for _, c := range []struct {
				who     string // token name, "" none, "bogus" unknown
				allowed bool
			}{
				{"", false},
				{"bogus", false},
				{"ops", true},
				{"grafana", rt.Method == http.MethodGet && (rt.access == accessRead || rt.access == accessLine)},
				{"home-carer", rt.access == accessLine && line == "home"},
				{"flat-carer", rt.access == accessLine && line == "flat-2"},
			} {
				name := rt.ID + " " + path + " as " + c.who
				sec := ""
				switch c.who {
				case "":
				case "bogus":
					sec = "not-a-configured-token-at-all"
				default:
					sec = secret(c.who)
				}
				body := ""
				if hasJSON(rt.in) {
					body = "{}"
				}
				res := f.request(rt.Method, path, sec, body)
				switch {
				case c.who == "" || c.who == "bogus":
					if res.status != http.StatusUnauthorized || !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer ") {
						t.Errorf("%s: %d %q, want 401 with a Bearer challenge", name, res.status, res.header.Get("WWW-Authenticate"))
					}
					wantCode(t, name, res, "unauthenticated")
				case c.allowed:
					if res.status == http.StatusUnauthorized || res.status == http.StatusForbidden {
						t.Errorf("%s: %d %s, want it served", name, res.status, res.body)
					}
				default:
					if res.status != http.StatusForbidden {
						t.Errorf("%s: %d %s, want 403", name, res.status, res.body)
					}
					wantCode(t, name, res, "forbidden")
				}
			}
		}
	}
	// Open routes need nothing.
	for _, p := range []string{"/healthz", "/openapi.json"} {
		if res := f.request("GET", p, "", ""); res.status != http.StatusOK {
			t.Errorf("GET %s without a token: %d", p, res.status)
		}
	}
	// A route that does not exist says so only to a token.
	if res := f.request("GET", "/v1/nosuch", "", ""); res.status != http.StatusUnauthorized {
		t.Errorf("GET /v1/nosuch without a token: %d, want 401", res.status)
	}
	if res := f.request("GET", "/v1/nosuch", secret("ops"), ""); res.status != http.StatusNotFound {
		t.Errorf("GET /v1/nosuch: %d, want 404", res.status)
	}
}

func wantCode(t *testing.T, name string, res response, code string) {
	t.Helper()
	var eb errorBody
	if err := json.Unmarshal([]byte(res.body), &eb); err != nil || eb.Error.Code != code || eb.Error.Message == "" {
		t.Errorf("%s: body %q, want {\"error\":{\"code\":%q,...}}", name, res.body, code)
	}
}

// A carer's and a reader's refused writes change nothing; the carer's own
// line works.
func TestRefusedWritesStoreNothing(t *testing.T) {
	f := newFixture(t, testTokens)
	ctx := context.Background()
	flat, reader := f.client("flat-carer"), f.client("grafana")
	for what, err := range map[string]error{
		"trust on another line": func() error {
			_, err := flat.TrustAdd(ctx, admin.LineNumber{Line: "home", Number: "020 7946 0555"})
			return err
		}(),
		"block on another line": func() error {
			_, err := flat.LineBlockAdd(ctx, admin.LineNumber{Line: "home", Number: "020 7946 0555"})
			return err
		}(),
		"block for every line": func() error {
			_, err := flat.BlockAdd(ctx, admin.BlockAdd{Number: "020 7946 0555"})
			return err
		}(),
		"read token blocks": func() error {
			_, err := reader.BlockAdd(ctx, admin.BlockAdd{Number: "020 7946 0555"})
			return err
		}(),
	} {
		if code, _ := admin.CodeOf(err); code != "forbidden" {
			t.Errorf("%s: %v, want forbidden", what, err)
		}
	}
	if got, _ := f.store.Trusted(ctx, "home"); len(got) != 0 {
		t.Errorf("home trusts %v after refused writes", got)
	}
	if got, _ := f.store.BlockedForLine(ctx, "home"); len(got) != 0 {
		t.Errorf("home blocks %v after refused writes", got)
	}
	if _, err := f.store.Get(ctx, "+442079460555", false); err == nil {
		t.Error("the shared blocklist was written by a refused request")
	}
	if _, err := flat.LineBlockAdd(ctx, admin.LineNumber{Line: "flat-2", Number: "020 7946 0555"}); err != nil {
		t.Fatalf("the carer's own line: %v", err)
	}
	if got, _ := f.store.BlockedForLine(ctx, "flat-2"); len(got) != 1 {
		t.Errorf("flat-2 blocks %v", got)
	}
}

// Secrets never reach the logs, whether accepted, refused or unknown;
// the token's name does.
func TestTokensNeverLogged(t *testing.T) {
	f := newFixture(t, testTokens)
	unknown := "a-token-nobody-configured-1234"
	for _, sec := range []string{secret("ops"), secret("grafana"), secret("home-carer"), unknown} {
		f.request("GET", "/v1/lines/home/trusted", sec, "")
		f.request("POST", "/v1/lines/flat-2/trusted", sec, `{"number":"020 7946 0555"}`)
		f.request("POST", "/v1/blocklist", sec, `{"number":"not a number"}`)
	}
	entries := f.logs.All()
	if len(entries) == 0 {
		t.Fatal("nothing logged: the test would prove nothing")
	}
	named := false
	for _, e := range entries {
		text := e.Message
		for k, v := range e.ContextMap() {
			text += " " + k + "=" + toString(v)
		}
		for _, tok := range append([]Token{{Secret: unknown}}, testTokens...) {
			if strings.Contains(text, tok.Secret) {
				t.Fatalf("a token's secret in the log: %s", text)
			}
		}
		named = named || strings.Contains(text, `token="home-carer"`)
	}
	if !named {
		t.Error("no log line names the token that was used")
	}
}

func toString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// Without tokens (a loopback listener of one box), every route is served.
func TestNoTokensEverythingOpen(t *testing.T) {
	f := newFixture(t, nil)
	for _, rt := range Routes(Handlers{}) {
		if res := f.request(rt.Method, pathFor(rt, "home"), "", ""); res.status == http.StatusUnauthorized || res.status == http.StatusForbidden {
			t.Errorf("%s with no tokens configured: %d", rt.ID, res.status)
		}
	}
}

// Tokens are checked when the handler is built: a short secret, a carer
// without lines, a name or a secret used twice.
func TestTokenValidation(t *testing.T) {
	good := Token{Name: "a", Secret: strings.Repeat("x", MinSecret), Scope: ScopeAdmin}
	for _, c := range []struct {
		tokens []Token
		want   string
	}{
		{[]Token{{Name: "a", Secret: "short", Scope: ScopeAdmin}}, "shorter than"},
		{[]Token{{Name: "a", Secret: good.Secret, Scope: "root"}}, `scope "root"`},
		{[]Token{{Name: "a", Secret: good.Secret, Scope: ScopeCarer}}, "needs the lines"},
		{[]Token{{Name: "a", Secret: good.Secret, Scope: ScopeRead, Lines: []string{"home"}}}, "only a carer"},
		{[]Token{{Secret: good.Secret, Scope: ScopeAdmin}}, "name: empty"},
		{[]Token{good, {Name: "a", Secret: strings.Repeat("y", MinSecret), Scope: ScopeRead}}, "used twice"},
		{[]Token{good, {Name: "b", Secret: good.Secret, Scope: ScopeRead}}, "same secret"},
	} {
		if _, err := NewHandler(Config{Tokens: c.tokens}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.tokens, err, c.want)
		}
	}
}
