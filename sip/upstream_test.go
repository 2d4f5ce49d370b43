package sip

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/siptest"
)

// Registering upstream (issue 14): cleanline registers to a provider's
// registrar (siptest.Registrar here; Kamailio in upstream_kamailio_test.go).

const (
	upUser = "subscriber"
	upPass = "correct horse battery staple"
)

// upEnv is cleanline with its trunk registering at registrar as upUser, its
// contact ringing the line; f changes the registration's configuration.
func upEnv(t *testing.T, registrar string, f func(*Register), opts ...envOption) *env {
	t.Helper()
	r := &Register{Registrar: registrar, Username: upUser, Password: upPass, ContactUser: lineNumber,
		KeepAlive: -1, RetryMin: 100 * time.Millisecond, RetryMax: 2 * time.Second}
	if f != nil {
		f(r)
	}
	return newEnv(t, append([]envOption{withCfg(func(c *Config) {
		c.Trunks[0].Sources = nil // the registrar's address
		c.Trunks[0].Register = r
	})}, opts...)...)
}

// digestGrant answers a REGISTER as a registrar with digest
// authentication does: a challenge without valid credentials, else a
// binding for expires with hdrs.
func digestGrant(expires time.Duration, hdrs ...sip.Header) func(*sip.Request) *sip.Response {
	return func(req *sip.Request) *sip.Response {
		if ok, _ := siptest.Authorized(req, upUser, upPass); !ok {
			return siptest.Challenge(req, "provider.example", false)
		}
		return siptest.Grant(req, expires, hdrs...)
	}
}

// waitUpstream waits until the trunk's registration satisfies ok.
func (e *env) waitUpstream(ctx context.Context, what string, ok func(UpstreamState) bool) UpstreamState {
	e.t.Helper()
	for {
		var last UpstreamState
		if regs := e.s.Upstream(); len(regs) == 1 {
			if last = regs[0]; ok(last) {
				return last
			}
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("registration never %s: last %+v", what, last)
		case <-time.After(10 * time.Millisecond): // poll pace, nothing orders on it
		}
	}
}

func upRegistered(st UpstreamState) bool { return st.State == UpstreamRegistered }

func cseqOf(r siptest.Received) uint32 { return r.Req.CSeq().SeqNo }

func hasAuth(r siptest.Received) bool { return r.Req.GetHeader("Authorization") != nil }

// cleanline registers with its credentials on the registrar's challenge
// (one Call-ID, CSeq up by one each time), from its own listener, as the
// subscriber's address of record with the line's contact; it refreshes
// the 2 s binding well before it lapses; its state, metrics and the
// registrar's Service-Route and Path show it.
func TestUpstreamRegistersWithDigestAndRefreshesBeforeExpiry(t *testing.T) {
	reg := siptest.NewRegistrar(t, ipTrunk)
	reg.SetAnswer(digestGrant(2*time.Second, sip.NewHeader("Service-Route", "<sip:orig@127.0.0.2:5099;lr>"),
		sip.NewHeader("Path", "<sip:edge.provider.example;lr>, <sip:core.provider.example;lr>")))
	e := upEnv(t, reg.URI(), nil, withServerOpts(WithMetrics(prometheus.NewRegistry())))
	ctx := ctxT(t, 10*time.Second)
	got, err := reg.Wait(ctx, sip.REGISTER, 4)
	if err != nil {
		t.Fatal(err)
	}
	if hasAuth(got[0]) || !hasAuth(got[1]) || hasAuth(got[2]) || !hasAuth(got[3]) {
		t.Fatalf("REGISTERs with credentials: %v %v %v %v; want only on the challenge's answers", hasAuth(got[0]), hasAuth(got[1]), hasAuth(got[2]), hasAuth(got[3]))
	}
	first := got[0].Req
	for i, g := range got {
		r := g.Req
		if r.CallID().Value() != first.CallID().Value() || cseqOf(g) != cseqOf(got[0])+uint32(i) {
			t.Errorf("REGISTER %d: Call-ID %s CSeq %d; want %s and %d", i, r.CallID().Value(), cseqOf(g), first.CallID().Value(), cseqOf(got[0])+uint32(i))
		}
		if to, from := r.To().Address.String(), r.From().Address.String(); to != "sip:subscriber@127.0.0.2" || from != to {
			t.Errorf("REGISTER %d: To %s From %s; want the address of record sip:subscriber@127.0.0.2", i, to, from)
		}
		if r.Recipient.User != "" || r.Recipient.Host != ipTrunk {
			t.Errorf("REGISTER %d: Request-URI %s; want the registrar's, without a user", i, r.Recipient.String())
		}
		ct := r.Contact().Address
		if ct.User != lineNumber || ct.Host != ipCleanline || ct.Port != int(e.s.Addr("udp").Port()) {
			t.Errorf("REGISTER %d: Contact %s; want %s@%s", i, ct.String(), lineNumber, e.s.Addr("udp"))
		}
		if src := r.Source(); src != e.s.Addr("udp").String() {
			t.Errorf("REGISTER %d came from %s; want our listener %s", i, src, e.s.Addr("udp"))
		}
		if exp := r.GetHeader("Expires"); exp == nil || exp.Value() != "3600" {
			t.Errorf("REGISTER %d: Expires %v; want 3600 (the default asked for)", i, exp)
		}
		if !r.Via().Params.Has("rport") {
			t.Errorf("REGISTER %d: Via %s without rport (RFC 3581)", i, r.Via().Value())
		}
	}
	if ok, user := siptest.Authorized(got[1].Req, upUser, upPass); !ok {
		t.Errorf("the challenge's answer does not prove the password (user %q)", user)
	}
	// The 2 s binding is refreshed before it lapses, not at once.
	if d := got[2].At.Sub(got[1].At); d < 400*time.Millisecond || d >= 2*time.Second {
		t.Errorf("refreshed %s after the binding was granted for 2s; want from 0.5s and before 2s", d)
	}
	st := e.waitUpstream(ctx, "registered", upRegistered)
	if st.LastStatus != 200 || st.Failures != 0 || st.AOR != "sip:subscriber@127.0.0.2" || !strings.HasPrefix(st.Contact, "sip:"+lineNumber+"@") {
		t.Errorf("state %+v", st)
	}
	if until := time.Until(st.Expires); until <= 0 || until > 2*time.Second || !st.NextAttempt.Before(st.Expires) {
		t.Errorf("binding lapses in %s, next refresh %s: want within the 2 s granted, refresh first", until, st.NextAttempt)
	}
	if fmt.Sprint(st.ServiceRoute) != "[<sip:orig@127.0.0.2:5099;lr>]" || len(st.Path) != 2 || st.Path[1] != "<sip:core.provider.example;lr>" {
		t.Errorf("Service-Route %q, Path %q", st.ServiceRoute, st.Path)
	}
	if v := testutil.ToFloat64(e.s.metrics.up.registered.WithLabelValues("provider")); v != 1 {
		t.Errorf("cleanline_upstream_registered = %v, want 1", v)
	}
}

// A registrar's 423 is honoured: the REGISTER goes again at once asking for
// its Min-Expires (RFC 3261 §10.2.8), on the same Call-ID.
func TestUpstream423AsksForMinExpires(t *testing.T) {
	reg := siptest.NewRegistrar(t, ipTrunk)
	grant := digestGrant(120 * time.Second)
	reg.SetAnswer(func(req *sip.Request) *sip.Response {
		if ok, _ := siptest.Authorized(req, upUser, upPass); ok && siptest.Expires(req) < 120*time.Second {
			res := sip.NewResponseFromRequest(req, 423, "Interval Too Brief", nil)
			res.AppendHeader(sip.NewHeader("Min-Expires", "120"))
			return res
		}
		return grant(req)
	})
	e := upEnv(t, reg.URI(), func(r *Register) { r.Expires = 60 * time.Second })
	ctx := ctxT(t, 10*time.Second)
	st := e.waitUpstream(ctx, "registered", upRegistered)
	got := reg.Received(sip.REGISTER)
	if len(got) != 4 {
		t.Fatalf("%d REGISTERs; want 4 (challenged, 423, challenged, granted)", len(got))
	}
	for i, want := range []string{"60", "60", "120", "120"} {
		if exp := got[i].Req.GetHeader("Expires").Value(); exp != want || got[i].Req.CallID().Value() != got[0].Req.CallID().Value() {
			t.Errorf("REGISTER %d: Expires %s, Call-ID %s; want %s on one Call-ID", i, exp, got[i].Req.CallID().Value(), want)
		}
	}
	if until := time.Until(st.Expires); until < 100*time.Second || until > 120*time.Second {
		t.Errorf("binding lapses in %s; want the 120 s granted", until)
	}
}

// Shutdown removes our binding, and only ours (RFC 3261 §10.2.2: Expires
// 0 for our contact, never "*"), answering the registrar's challenge.
func TestUpstreamUnregistersAtShutdown(t *testing.T) {
	reg := siptest.NewRegistrar(t, ipTrunk)
	reg.SetAnswer(digestGrant(time.Hour))
	e := upEnv(t, reg.URI(), nil)
	ctx := ctxT(t, 10*time.Second)
	e.waitUpstream(ctx, "registered", upRegistered)
	if err := e.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	got := reg.Received(sip.REGISTER)
	if len(got) != 4 {
		t.Fatalf("%d REGISTERs; want 2 to register, 2 to un-register", len(got))
	}
	last := got[3].Req
	if exp := last.GetHeader("Expires"); exp == nil || exp.Value() != "0" || !hasAuth(got[3]) {
		t.Fatalf("last REGISTER: Expires %v, authorized %v; want 0 with credentials", exp, hasAuth(got[3]))
	}
	if ct := last.Contact(); ct == nil || ct.Address.Wildcard || ct.Address.User != lineNumber {
		t.Fatalf("un-REGISTER's Contact %v; want ours", ct)
	}
	if regs := e.s.Upstream(); len(regs) != 0 {
		t.Fatalf("registrations after shutdown: %+v", regs)
	}
}

// Credentials refused, by a 403 or by a second challenge, are said
// plainly (which user, which keys to check; never the password), the
// state says failing with the status, and the next attempt waits the
// long backoff (retry_max, drawn from its upper half).
func TestUpstreamWrongCredentialsBackOffLong(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer func(*sip.Request) *sip.Response
		status int
	}{
		{"second challenge", func(req *sip.Request) *sip.Response { return siptest.Challenge(req, "provider.example", false) }, 401},
		{"403", func(req *sip.Request) *sip.Response { return sip.NewResponseFromRequest(req, 403, "Forbidden", nil) }, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := siptest.NewRegistrar(t, ipTrunk)
			reg.SetAnswer(tc.answer)
			e := upEnv(t, reg.URI(), func(r *Register) { r.RetryMin, r.RetryMax = 50*time.Millisecond, 2*time.Second },
				withServerOpts(WithMetrics(prometheus.NewRegistry())))
			ctx := ctxT(t, 10*time.Second)
			st := e.waitUpstream(ctx, "failing", func(st UpstreamState) bool { return st.State == UpstreamFailing })
			if st.LastStatus != tc.status || st.Failures != 1 {
				t.Errorf("state %+v; want failing after one attempt with %d", st, tc.status)
			}
			if wait := st.NextAttempt.Sub(st.Since); wait < time.Second || wait > 2*time.Second {
				t.Errorf("next attempt in %s; want retry_max's upper half, 1-2 s", wait)
			}
			logged := e.logs.FilterMessageSnippet("refused the subscriber's credentials").All()
			if len(logged) != 1 || logged[0].ContextMap()["username"] != upUser {
				t.Fatalf("credentials log lines: %+v", logged)
			}
			for _, l := range e.logs.All() {
				if strings.Contains(fmt.Sprint(l.Message, l.ContextMap()), upPass) {
					t.Fatalf("the password was logged: %s %v", l.Message, l.ContextMap())
				}
			}
			// The attempts (a REGISTER without credentials begins each) are
			// a long backoff apart.
			attempts := func() []siptest.Received {
				var out []siptest.Received
				for _, g := range reg.Received(sip.REGISTER) {
					if !hasAuth(g) {
						out = append(out, g)
					}
				}
				return out
			}
			for len(attempts()) < 2 {
				if _, err := reg.Wait(ctx, sip.REGISTER, len(reg.Received(sip.REGISTER))+1); err != nil {
					t.Fatal(err)
				}
			}
			if a := attempts(); a[1].At.Sub(a[0].At) < time.Second {
				t.Errorf("attempts %s apart; want at least retry_max/2 = 1s", a[1].At.Sub(a[0].At))
			}
			if v := testutil.ToFloat64(e.s.metrics.up.failures.WithLabelValues("provider", fmt.Sprint(tc.status))); v < 1 {
				t.Errorf("cleanline_upstream_register_failures_total{status=%d} = %v", tc.status, v)
			}
		})
	}
}

// A second challenge that says stale=true (the answer was right, its
// nonce had expired) is answered once more and the registration stands;
// a provider that says stale every time is a refusal after that one more
// answer, not a loop.
func TestUpstreamStaleNonceAnsweredOnce(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stales    int
		registers int
		state     func(UpstreamState) bool
	}{
		{"once", 1, 3, upRegistered},
		{"always", 1000, 3, func(st UpstreamState) bool { return st.State == UpstreamFailing }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := siptest.NewRegistrar(t, ipTrunk)
			var mu sync.Mutex
			stales := tc.stales
			reg.SetAnswer(func(req *sip.Request) *sip.Response {
				mu.Lock()
				defer mu.Unlock()
				switch ok, _ := siptest.Authorized(req, upUser, upPass); {
				case req.GetHeader("Authorization") == nil:
					return siptest.Challenge(req, "provider.example", false)
				case !ok:
					return sip.NewResponseFromRequest(req, 403, "Wrong answer", nil)
				case stales > 0:
					stales--
					return siptest.StaleChallenge(req, "provider.example", false)
				}
				return siptest.Grant(req, time.Minute)
			})
			e := upEnv(t, reg.URI(), func(r *Register) { r.RetryMin, r.RetryMax = time.Minute, 2*time.Minute })
			ctx := ctxT(t, 10*time.Second)
			st := e.waitUpstream(ctx, tc.name, tc.state)
			got := reg.Received(sip.REGISTER)
			if len(got) != tc.registers {
				t.Fatalf("%d REGISTERs; want %d (no credentials, the answer, the stale nonce's answer)", len(got), tc.registers)
			}
			for i, g := range got {
				if cseqOf(g) != cseqOf(got[0])+uint32(i) || hasAuth(g) != (i > 0) {
					t.Errorf("REGISTER %d: CSeq %d, credentials %v", i, cseqOf(g), hasAuth(g))
				}
			}
			if tc.stales == 1 && (st.Failures != 0 || st.LastStatus != 200) {
				t.Errorf("state %+v; want registered without a failure", st)
			}
			if tc.stales > 1 && st.LastStatus != 401 {
				t.Errorf("state %+v; want failing with 401", st)
			}
		})
	}
}

// Other failures back off from retry_min, doubling: each wait at least
// half its bound, all far below retry_max.
func TestUpstreamBackoffDoubles(t *testing.T) {
	reg := siptest.NewRegistrar(t, ipTrunk)
	reg.SetAnswer(func(req *sip.Request) *sip.Response {
		return sip.NewResponseFromRequest(req, 503, "Service Unavailable", nil)
	})
	upEnv(t, reg.URI(), func(r *Register) { r.RetryMin, r.RetryMax = 200*time.Millisecond, time.Minute })
	got, err := reg.Wait(ctxT(t, 10*time.Second), sip.REGISTER, 4)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < 4; i++ {
		floor := 200 * time.Millisecond << (i - 1) / 2
		if gap := got[i].At.Sub(got[i-1].At); gap < floor {
			t.Errorf("attempt %d came %s after the one before; want at least %s", i+1, gap, floor)
		}
	}
}

// Every mistake in a trunk's register: is refused at start, naming its key.
func TestUpstreamConfigErrors(t *testing.T) {
	dir := t.TempDir()
	empty, withLF := filepath.Join(dir, "empty"), filepath.Join(dir, "pw")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(withLF, []byte(upPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func(f func(*Register)) Config {
		r := &Register{Registrar: "sip:provider.example", Username: upUser, Password: upPass, ContactUser: lineNumber}
		f(r)
		cfg := Config{Advertise: ipCleanline, Listen: []Listener{{Network: "udp", Addr: ipCleanline + ":5060"}},
			Trunks: []Trunk{{Name: "provider", Register: r}},
			Lines:  []Line{{Name: "home", Numbers: []string{lineNumber}, Contact: "sip:home@127.0.0.3"}}}
		cfg.Defaults()
		return cfg
	}
	for _, c := range []struct {
		f    func(*Register)
		want string
	}{
		{func(r *Register) { r.Registrar = "" }, `sip.trunks[0].register.registrar: "": want a SIP URI`},
		{func(r *Register) { r.Registrar = "http://provider.example" }, "sip.trunks[0].register.registrar"},
		{func(r *Register) { r.Registrar = "sip:someone@provider.example" }, "register.registrar: \"sip:someone@provider.example\": the registrar's URI has no user"},
		{func(r *Register) { r.Registrar = "sip:provider.example;transport=sctp" }, "register.registrar: \"sip:provider.example;transport=sctp\": transport sctp: want udp, tcp or tls"},
		{func(r *Register) { r.Registrar = "sip:provider.example;transport=tls" }, "sip.trunks[0].register: registering over tls needs a tls listener in sip.listen"},
		{func(r *Register) { r.Registrar = "sip:provider.example;transport=tcp" }, "sip.trunks[0].register: registering over tcp needs a tcp listener in sip.listen"},
		{func(r *Register) { r.OutboundProxy = "proxy.example" }, "sip.trunks[0].register.outbound_proxy"},
		{func(r *Register) { r.Username = "" }, "sip.trunks[0].register.username"},
		{func(r *Register) { r.Username = "sub scriber" }, "sip.trunks[0].register.username: \"sub scriber\""},
		{func(r *Register) { r.ContactUser = "home;x=1" }, "sip.trunks[0].register.contact_user"},
		{func(r *Register) { r.AuthUsername = "a\"b" }, "sip.trunks[0].register.auth_username"},
		{func(r *Register) { r.Password = "" }, "sip.trunks[0].register.password: empty"},
		{func(r *Register) { r.PasswordFile = withLF }, "sip.trunks[0].register: password and password_file are both set"},
		{func(r *Register) { r.Password, r.PasswordFile = "", filepath.Join(dir, "absent") }, "sip.trunks[0].register.password_file: open"},
		{func(r *Register) { r.Password, r.PasswordFile = "", empty }, "sip.trunks[0].register.password_file: " + empty + " is empty"},
		{func(r *Register) { r.Expires = 500 * time.Millisecond }, "sip.trunks[0].register.expires: 500ms: want from 1s"},
		{func(r *Register) { r.RetryMin = -time.Second }, "sip.trunks[0].register.retry_min"},
		{func(r *Register) { r.RetryMin, r.RetryMax = time.Minute, time.Second }, "sip.trunks[0].register.retry_max: 1s is below retry_min 1m0s"},
	} {
		cfg := base(c.f)
		err := cfg.Validate()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v; want an ErrConfig saying %q", err, c.want)
		}
	}
	// A password file's trailing newline is no part of the password; a
	// registration needs no sources, a plain trunk does.
	cfg := base(func(r *Register) { r.Password, r.PasswordFile = "", withLF })
	if err := cfg.Validate(); err != nil || cfg.Trunks[0].Register.password != upPass {
		t.Fatalf("password_file: %v, password %q", err, cfg.Trunks[0].Register.password)
	}
	cfg.Trunks[0].Register = nil
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "sip.trunks[0].sources: empty") {
		t.Fatalf("a trunk with neither sources nor register: %v", err)
	}
	// The contact must ring a line: checked with the screener's lines.
	cfg = base(func(r *Register) { r.ContactUser = "nobody" })
	st, err := blocklist.OpenFile(filepath.Join(dir, "cl.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	sc, err := screening.New(st, screening.Config{Region: "GB", Lines: cfg.ScreeningLines()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(cfg, sc, nil); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `sip.trunks[0].register.contact_user: "nobody" rings no line`) {
		t.Fatalf("contact_user ringing no line: %v", err)
	}
}

// headerList reads a registrar's Service-Route and Path, whatever they
// hold: never a panic, never an empty or untrimmed element, and a list of
// plain name-addrs comes back as written.
func FuzzHeaderList(f *testing.F) {
	for _, s := range []string{"<sip:a;lr>, <sip:b;lr>", `"x, y" <sip:c>`, "<sip:d,e>", ",,", `"`, "<<>>,>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		res := sip.NewResponseFromRequest(sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "h"}), 200, "OK", nil)
		res.AppendHeader(sip.NewHeader("Path", v))
		got := headerList(res, "Path")
		for _, g := range got {
			if g == "" || g != strings.TrimSpace(g) {
				t.Fatalf("element %q of %q", g, v)
			}
		}
		if len(got) > strings.Count(v, ",")+1 {
			t.Fatalf("%d elements from %q", len(got), v)
		}
	})
}

func TestHeaderListSplitsNameAddrs(t *testing.T) {
	res := sip.NewResponseFromRequest(sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "h"}), 200, "OK", nil)
	res.AppendHeader(sip.NewHeader("Service-Route", `<sip:p1.example;lr>, "Core, B" <sip:p2.example;lr>`))
	res.AppendHeader(sip.NewHeader("Service-Route", "<sip:p3.example;lr;x=a,b>"))
	want := []string{"<sip:p1.example;lr>", `"Core, B" <sip:p2.example;lr>`, "<sip:p3.example;lr;x=a,b>"}
	if got := headerList(res, "Service-Route"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("headerList = %q; want %q", got, want)
	}
}

// A binding is refreshed at half its life, never later than its end less
// a REGISTER's longest transaction (32 s), and a short one at a quarter.
func TestUpstreamRefreshAfter(t *testing.T) {
	for g, want := range map[time.Duration]time.Duration{
		2 * time.Second: 500 * time.Millisecond, 60 * time.Second: 28 * time.Second,
		100 * time.Second: 50 * time.Second, time.Hour: 30 * time.Minute,
	} {
		if got := refreshAfter(g); got != want {
			t.Errorf("refreshAfter(%s) = %s, want %s", g, got, want)
		}
	}
}
