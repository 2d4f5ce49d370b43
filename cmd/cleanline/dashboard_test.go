package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/siptest"
)

// dashboardExprs are the queries of every panel of the Grafana dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", "grafana", "cleanline.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("deploy/grafana/cleanline.json: %v", err)
	}
	type panel struct {
		Title   string            `json:"title"`
		Panels  []json.RawMessage `json:"panels"` // a row's
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	}
	var exprs []string
	var walk func([]json.RawMessage)
	walk = func(raws []json.RawMessage) {
		for _, raw := range raws {
			var p panel
			if err := json.Unmarshal(raw, &p); err != nil {
				t.Fatal(err)
			}
			walk(p.Panels)
			for _, tg := range p.Targets {
				if err := balanced(tg.Expr); err != nil {
					t.Errorf("panel %q: %v: %s", p.Title, err, tg.Expr)
				}
				exprs = append(exprs, tg.Expr)
			}
		}
	}
	walk(d.Panels)
	return exprs
}

// balanced checks a query's brackets and quotes pair up: the mistakes a
// hand-edited query makes.
func balanced(expr string) error {
	var stack []rune
	quoted := false
	for _, r := range expr {
		switch {
		case r == '"':
			quoted = !quoted
		case quoted:
		case r == '(' || r == '{' || r == '[':
			stack = append(stack, r)
		case r == ')' || r == '}' || r == ']':
			open := map[rune]rune{')': '(', '}': '{', ']': '['}[r]
			if len(stack) == 0 || stack[len(stack)-1] != open {
				return fmt.Errorf("unbalanced %q", r)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if quoted || len(stack) > 0 {
		return errors.New("unclosed bracket or quote")
	}
	return nil
}

var metricName = regexp.MustCompile(`\b(?:cleanline|process|go)_[a-z0-9_]+`)

// Every metric the dashboard's queries name is in a real scrape of a
// running serve (after a call the line is busy for, a stranger's INVITE and a barred
// dial, so labelled series exist; the rest exist at zero from the start),
// and every cleanline metric of the scrape is on the dashboard.
func TestDashboardMetricsExist(t *testing.T) {
	exprs := dashboardExprs(t)
	trunk, line, stranger := siptest.NewPhone(t, "127.0.0.2"), siptest.NewPhone(t, "127.0.0.3"), siptest.NewPhone(t, "127.0.0.4")
	// A trunk that registers to a provider which refuses it: its
	// registration's series exist, a failure among them.
	provider := siptest.NewRegistrar(t, "127.0.0.6")
	provider.SetAnswer(func(req *sip.Request) *sip.Response { return sip.NewResponseFromRequest(req, 403, "Forbidden", nil) })
	s := serveConfig(t, fmt.Sprintf(`store: file:%s
webhooks: [{name: carer, url: "http://127.0.0.1:9/", secret: s}]
`, filepath.Join(t.TempDir(), "cl.db")), line,
		fmt.Sprintf(`{name: carrier, register: {registrar: %q, username: u, password: p, contact_user: %q}}`, provider.URI(), evLine))
	if _, err := provider.Wait(ctxT(t, 10*time.Second), sip.REGISTER, 1); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 20*time.Second)
	for _, c := range []struct {
		phone *siptest.Phone
		uri   string
		from  string
		want  int
	}{
		{trunk, "sip:" + evLine + "@" + s.sip, "+442079460018", 0}, // rings the line, which is busy
		{stranger, "sip:" + evLine + "@" + s.sip, evScam, 403},     // nobody's address
		{line, "sip:09012345678@" + s.sip, "landline", 403},        // premium rate: barred
	} {
		out, err := c.phone.Dial(ctx, c.uri, siptest.DialOptions{FromUser: c.from})
		if err != nil {
			t.Fatal(err)
		}
		if c.want == 0 {
			in, err := line.Incoming(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = in.Reject(486, "Busy Here")
			c.want = 486
		}
		if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != c.want {
			t.Fatalf("%s calling %s got %v %v, want %d", c.from, c.uri, res, err, c.want)
		}
	}
	res, err := http.Get("http://" + s.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	scraped := map[string]bool{}
	var families []string
	for _, l := range strings.Split(string(body), "\n") {
		if f, ok := strings.CutPrefix(l, "# TYPE "); ok {
			families = append(families, strings.Fields(f)[0])
			continue
		}
		if l == "" || l[0] == '#' {
			continue
		}
		scraped[strings.FieldsFunc(l, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
	}
	all := strings.Join(exprs, "\n")
	var named []string
	for _, m := range metricName.FindAllString(all, -1) {
		if !slices.Contains(named, m) {
			named = append(named, m)
		}
	}
	for _, m := range named {
		if !scraped[m] {
			t.Errorf("the dashboard queries %s, which /metrics does not have", m)
		}
	}
	for _, f := range families {
		if strings.HasPrefix(f, "cleanline_") && !strings.Contains(all, f) {
			t.Errorf("%s is on /metrics but on no panel of the dashboard", f)
		}
	}
	if len(named) < 30 {
		t.Fatalf("the dashboard names only %d metrics: %v", len(named), named)
	}
}
