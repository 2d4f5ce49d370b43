package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/sip/siptest"
)

// The registrar (RFC 3261 §10.3) over real sockets: siptest phones
// REGISTER to cleanline with digest credentials, and what they are
// answered, what is bound and where calls then go is asserted.
// `go test -run Registrar ./sip/`.

const (
	devA, passA = "landline", "correct horse battery"
	devB, passB = "kitchen", "staple paper clip"
)

// withDevices gives the line no static contact and two registering
// devices, with expiries short enough for a test to watch.
func withDevices(s *envSetup) {
	s.noContact = true
	s.cfg.Lines[0].Devices = []LineAuth{{Username: devA, Password: passA}, {Username: devB, Password: passB}}
	s.cfg.Registrar = RegistrarConfig{MinExpires: 2 * time.Second, MaxExpires: 30 * time.Second, DefaultExpires: 20 * time.Second}
}

// regOpts are a phone's registration as device user with password.
func (e *env) regOpts(user, password string, expires int) siptest.RegisterOptions {
	return siptest.RegisterOptions{Registrar: e.s.Addr("udp"), User: user, Password: password, Expires: expires}
}

// register registers p as user and fails the test unless it is bound.
func (e *env) register(p *siptest.Phone, user, password string) *sip.Response {
	e.t.Helper()
	res, err := p.Register(ctxT(e.t, 5*time.Second), e.regOpts(user, password, 20))
	if err != nil || res.StatusCode != 200 {
		e.t.Fatalf("%s's REGISTER: %v, %v; want 200", user, res, err)
	}
	return res
}

// shape is what a guesser can tell a response by: its status line, its
// header names and its challenges without their nonces.
func shape(t *testing.T, res *sip.Response) string {
	t.Helper()
	var names []string
	for _, h := range res.Headers() {
		names = append(names, h.Name())
	}
	slices.Sort(names)
	out := fmt.Sprintf("%d %s %v", res.StatusCode, res.Reason, names)
	for _, h := range res.GetHeaders("WWW-Authenticate") {
		c, err := digest.ParseChallenge(h.Value())
		if err != nil {
			t.Fatal(err)
		}
		out += fmt.Sprintf(" [%s %s %v %v]", c.Realm, c.Algorithm, c.QOP, c.Stale)
	}
	return out
}

func contacts(res *sip.Response) map[string]string {
	out := map[string]string{}
	for _, h := range res.GetHeaders("Contact") {
		ct := h.(*sip.ContactHeader)
		exp, _ := ct.Params.Get("expires")
		out[ct.Address.String()] = exp
	}
	return out
}

// A REGISTER without credentials, with a wrong password, or for a
// username no device has, gets the same 401 with fresh SHA-256 and MD5
// challenges and binds nothing; the right password binds the phone, and
// the 200 lists the line's contacts with their expiry and a Date.
func TestRegistrarAuthenticatesWhoeverItNames(t *testing.T) {
	e := newEnv(t, withDevices)
	ctx := ctxT(t, 10*time.Second)
	none, err := e.line.Register(ctx, e.regOpts(devA, "", 20))
	if err != nil || none.StatusCode != 401 {
		t.Fatalf("REGISTER without credentials: %v, %v; want 401", none, err)
	}
	chals := none.GetHeaders("WWW-Authenticate")
	if len(chals) != 2 || !strings.Contains(chals[0].Value(), "SHA-256") || !strings.Contains(chals[1].Value(), "MD5") {
		t.Fatalf("challenges %v: want SHA-256, then MD5 (RFC 8760)", chals)
	}
	wrong, err := e.line.Register(ctx, e.regOpts(devA, "guess", 20))
	if err != nil {
		t.Fatal(err)
	}
	unknown, err := e.line.Register(ctx, e.regOpts("nobody", "guess", 20))
	if err != nil {
		t.Fatal(err)
	}
	md5, err := e.line.Register(ctx, siptest.RegisterOptions{Registrar: e.s.Addr("udp"), User: devA, Password: "guess", Algorithm: "MD5", Expires: 20})
	if err != nil {
		t.Fatal(err)
	}
	want := shape(t, none)
	for name, res := range map[string]*sip.Response{"wrong password": wrong, "unknown user": unknown, "wrong password (MD5)": md5} {
		if got := shape(t, res); got != want {
			t.Errorf("%s answered\n%s\nwant as without credentials\n%s", name, got, want)
		}
	}
	if b := e.s.binds.line("home"); len(b) != 0 {
		t.Fatalf("bound without the password: %+v", b)
	}
	if n := value(t, e.s.metrics.authFailures.WithLabelValues("REGISTER")); n != 3 {
		t.Errorf("cleanline_auth_failures_total{method=REGISTER} = %v, want 3", n)
	}

	res := e.register(e.line, devA, passA)
	ct := contacts(res)
	self := fmt.Sprintf("sip:%s@%s", devA, e.line.Addr)
	if len(ct) != 1 || ct[self] != "20" {
		t.Fatalf("200 lists %v, want %s;expires=20", ct, self)
	}
	if d := res.GetHeader("Date"); d == nil || !strings.HasSuffix(d.Value(), "GMT") {
		t.Errorf("200 without a SIP-date: %v", d)
	}
	if v := res.Via(); v == nil || !v.Params.Has("received") || !v.Params.Has("rport") {
		t.Errorf("Via %v: want received and rport filled (RFC 3581)", res.Via())
	}
	// The same device with MD5, from another phone: a second contact, and
	// the 200 lists both.
	other := siptest.NewPhone(t, ipLine)
	res, err = other.Register(ctx, siptest.RegisterOptions{Registrar: e.s.Addr("udp"), User: devB, Password: passB, Algorithm: "MD5", Expires: 20})
	if err != nil || res.StatusCode != 200 || len(contacts(res)) != 2 {
		t.Fatalf("second device: %v, %v; want 200 listing both contacts", res, err)
	}
	// A device may register its own username or its line's number, not
	// another line's name.
	res, err = other.Register(ctx, siptest.RegisterOptions{Registrar: e.s.Addr("udp"), User: "elsewhere", Username: devB, Password: passB, Expires: 20})
	if err != nil || res.StatusCode != 403 {
		t.Fatalf("device registering another address-of-record: %v, %v; want 403", res, err)
	}
	res, err = other.Register(ctx, siptest.RegisterOptions{Registrar: e.s.Addr("udp"), User: lineNumber, Username: devB, Password: passB, Expires: 20})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("device registering its line's number: %v, %v; want 200", res, err)
	}
}

// A device's out-of-dialog OPTIONS (a keep-alive, or asking what the
// server takes) is answered 200 with REGISTER in Allow when lines take
// registrations, and without it when none does (RFC 3261 §11.2).
func TestRegistrarOptionsAllowRegister(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup []envOption
		want  bool
	}{{"registrar", []envOption{withDevices}, true}, {"static contact", nil, false}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.setup...)
			if tc.want {
				e.register(e.line, devA, passA)
			}
			res, err := e.line.Options(ctxT(t, 5*time.Second), e.s.Addr("udp"))
			if err != nil || res.StatusCode != 200 {
				t.Fatalf("OPTIONS: %v, %v; want 200", res, err)
			}
			allow := res.GetHeader("Allow")
			if allow == nil || !strings.Contains(allow.Value(), "INVITE") || strings.Contains(allow.Value(), "REGISTER") != tc.want {
				t.Errorf("Allow %v; want REGISTER listed: %v", allow, tc.want)
			}
		})
	}
}

// Expiry (RFC 3261 §10.3 step 7): below min_expires 423 with Min-Expires,
// above max_expires cut to it, none asked the default; a refresh keeps
// one binding; Expires 0 removes one contact, "*" with Expires 0 all of
// the device's, "*" otherwise is 400; a binding that is not refreshed
// expires, and the line is then unreachable (480), its phone never rung.
func TestRegistrarExpiryRefreshAndUnregister(t *testing.T) {
	e := newEnv(t, withDevices)
	ctx := ctxT(t, 20*time.Second)
	reg := func(o siptest.RegisterOptions) *sip.Response {
		t.Helper()
		o.Registrar, o.User, o.Password = e.s.Addr("udp"), devA, passA
		res, err := e.line.Register(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	self := fmt.Sprintf("sip:%s@%s", devA, e.line.Addr)
	if res := reg(siptest.RegisterOptions{Expires: 1}); res.StatusCode != 423 || res.GetHeader("Min-Expires") == nil || res.GetHeader("Min-Expires").Value() != "2" {
		t.Fatalf("Expires 1: %v; want 423 with Min-Expires: 2", res)
	}
	if res := reg(siptest.RegisterOptions{Expires: 3600}); res.StatusCode != 200 || contacts(res)[self] != "30" {
		t.Fatalf("Expires 3600: %v; want 200 granting max_expires 30", res)
	}
	if res := reg(siptest.RegisterOptions{Expires: -1}); res.StatusCode != 200 || contacts(res)[self] != "20" {
		t.Fatalf("no Expires: %v; want default_expires 20", res)
	}
	second := "<sip:landline@" + ipLine + ":5999>;expires=25"
	res := reg(siptest.RegisterOptions{Contact: second, Expires: -1})
	if c := contacts(res); res.StatusCode != 200 || len(c) != 2 || c["sip:landline@"+ipLine+":5999"] != "25" {
		t.Fatalf("second contact: %v; want both listed, the new one for its own 25 s", c)
	}
	if n := len(e.s.binds.line("home")); n != 2 {
		t.Fatalf("%d bindings after a refresh and a second contact, want 2", n)
	}
	// What operators see (cleanline lines): both, the second one reached
	// through the flow its REGISTER came from.
	regs := e.s.Registrations("")
	if len(regs) != 2 || !slices.Equal(regs, e.s.Registrations("home")) || len(e.s.Registrations("nosuch")) != 0 {
		t.Fatalf("Registrations: %+v", regs)
	}
	for _, r := range regs {
		nat := r.Contact != self
		if r.Line != "home" || r.Device != devA || r.Flow != e.line.Addr || r.Transport != "udp" || r.BehindNAT != nat ||
			time.Until(r.Expires) > 30*time.Second || time.Until(r.Expires) < 15*time.Second {
			t.Errorf("registration %+v: want devA's from %s, behind NAT %v, lapsing in 20-25 s", r, e.line.Addr, nat)
		}
	}
	if res := reg(siptest.RegisterOptions{Contact: "*", Expires: 20}); res.StatusCode != 400 {
		t.Fatalf("* with Expires 20: %d, want 400", res.StatusCode)
	}
	if res := reg(siptest.RegisterOptions{Contact: "<sip:landline@" + ipLine + ":5999>", Expires: 0}); res.StatusCode != 200 || len(contacts(res)) != 1 {
		t.Fatalf("un-REGISTER of one contact: %v; want 200 listing the other", contacts(res))
	}
	if res := reg(siptest.RegisterOptions{Contact: "*", Expires: 0}); res.StatusCode != 200 || len(contacts(res)) != 0 {
		t.Fatalf("* with Expires 0: %v; want 200 listing none", contacts(res))
	}
	if n := len(e.s.binds.line("home")); n != 0 || len(e.s.Registrations("")) != 0 {
		t.Fatalf("%d bindings after *, want 0 (Registrations: %+v)", n, e.s.Registrations(""))
	}
	wantFinal(t, e.dial(callerOK), 480)

	// Registered for 2 s and left to expire.
	if res := reg(siptest.RegisterOptions{Expires: 2}); res.StatusCode != 200 {
		t.Fatalf("Expires 2: %d", res.StatusCode)
	}
	for deadline := time.Now().Add(6 * time.Second); len(e.s.binds.line("home")) != 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("binding outlived its 2 s")
		}
	}
	wantFinal(t, e.dial(callerOK), 480)
	if err := e.line.NoIncoming(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := e.waitRecord(ctx, "line_unregistered"); err != nil {
		t.Fatal(err)
	}
}

// The bindings' rules, on their own clock: a lower CSeq of the same
// Call-ID aborts the whole request, devices never replace each other's
// contacts, max_contacts refuses new ones (not refreshes), "*" removes
// only the device's own, and expiry forgets.
func TestRegistrarBindingRules(t *testing.T) {
	tb := newBindings("", zap.NewNop())
	now := time.Unix(1_700_000_000, 0)
	tb.now = func() time.Time { return now }
	uri := func(s string) sip.Uri {
		var u sip.Uri
		if err := sip.ParseUri(s, &u); err != nil {
			t.Fatal(err)
		}
		return u
	}
	flow := netip.MustParseAddrPort("127.0.0.3:5060")
	reg := func(dev, callID string, cseq uint32, chs ...contactChange) error {
		_, _, err := tb.apply(registration{line: "home", device: dev, changes: chs, callID: callID, cseq: cseq, flow: flow, transport: "udp", max: 3})
		return err
	}
	a1 := contactChange{uri: uri("sip:a@127.0.0.3:5060"), expires: time.Minute}
	a2 := contactChange{uri: uri("sip:a@127.0.0.3:5061"), expires: time.Minute}
	b1 := contactChange{uri: uri("sip:b@127.0.0.5:5060"), expires: time.Minute}
	if err := reg("a", "c1", 2, a1); err != nil {
		t.Fatal(err)
	}
	if err := reg("a", "c1", 2, a1, a2); err == nil || !strings.Contains(err.Error(), "CSeq") {
		t.Fatalf("same Call-ID, same CSeq: %v, want out of order", err)
	}
	if n := len(tb.line("home")); n != 1 {
		t.Fatalf("an aborted request changed the bindings: %d", n)
	}
	if err := reg("a", "c2", 1, a1, a2); err != nil {
		t.Fatalf("another Call-ID: %v", err)
	}
	// The same contact registered by another device is its own binding.
	if err := reg("b", "c3", 1, contactChange{uri: a1.uri, expires: time.Minute}); err != nil {
		t.Fatal(err)
	}
	if err := reg("b", "c3", 2, b1); err == nil || !strings.Contains(err.Error(), "too many") {
		t.Fatalf("a 4th contact on a line of 3: %v", err)
	}
	if err := reg("a", "c2", 2, a1, a2); err != nil {
		t.Fatalf("a refresh at the maximum: %v", err)
	}
	if err := reg("b", "c3", 3, contactChange{wildcard: true}); err != nil {
		t.Fatal(err)
	}
	if got := tb.line("home"); len(got) != 2 || got[0].Device != "a" || got[1].Device != "a" {
		t.Fatalf("* removed another device's contacts: %+v", got)
	}
	if _, ok := tb.fromFlow(flow, "UDP"); !ok {
		t.Error("fromFlow does not find the device")
	}
	now = now.Add(time.Minute)
	if got := tb.line("home"); len(got) != 0 {
		t.Fatalf("expired bindings still listed: %+v", got)
	}
	if _, ok := tb.fromFlow(flow, "udp"); ok || tb.hasIP(flow.Addr()) {
		t.Error("an expired binding still makes its flow known")
	}
}

// A device is behind NAT when its REGISTER came from elsewhere than its
// Contact; over TCP its flow is used whatever the Contact says.
func TestRegistrarNATDetection(t *testing.T) {
	for _, c := range []struct {
		contact, flow, transport string
		nat, viaFlow             bool
	}{
		{"sip:a@127.0.0.3:5060", "127.0.0.3:5060", "udp", false, false},
		{"sip:a@127.0.0.3", "127.0.0.3:5060", "udp", false, false},
		{"sip:a@127.0.0.3:5070", "127.0.0.3:5060", "udp", true, true},
		{"sip:a@192.168.1.20:5060", "203.0.113.7:40001", "udp", true, true},
		{"sip:a@phone.local", "127.0.0.3:5060", "udp", true, true},
		{"sip:a@127.0.0.3:5060;transport=tcp", "127.0.0.3:41234", "tcp", false, true},
	} {
		b := binding{Contact: c.contact, Flow: netip.MustParseAddrPort(c.flow), Transport: c.transport}
		if err := sip.ParseUri(c.contact, &b.uri); err != nil {
			t.Fatal(err)
		}
		if b.behindNAT() != c.nat || b.viaFlow() != c.viaFlow {
			t.Errorf("%s from %s over %s: behindNAT %v viaFlow %v, want %v %v", c.contact, c.flow, c.transport, b.behindNAT(), b.viaFlow(), c.nat, c.viaFlow)
		}
	}
}

// Configuration mistakes name their key.
func TestRegistrarConfigErrors(t *testing.T) {
	for want, change := range map[string]func(*Config){
		"sip.lines[0]: neither contact nor devices": func(c *Config) { c.Lines[0].Contact = "" },
		"sip.lines[0].devices[0]: password or password_file": func(c *Config) {
			c.Lines[0].Devices = []LineAuth{{Username: "a"}}
		},
		"sip.lines[0].devices[0]: password and password_file both": func(c *Config) {
			c.Lines[0].Devices = []LineAuth{{Username: "a", Password: "x", PasswordFile: "/nonexistent"}}
		},
		"sip.lines[0].devices[0].password_file": func(c *Config) {
			c.Lines[0].Devices = []LineAuth{{Username: "a", PasswordFile: "/nonexistent/secret"}}
		},
		"sip.lines[0].devices[1].username: \"a\" used twice": func(c *Config) {
			c.Lines[0].Devices = []LineAuth{{Username: "a", Password: "x"}, {Username: "a", Password: "y"}}
		},
		"sip.lines[0].devices[0].algorithms[0]": func(c *Config) {
			c.Lines[0].Devices = []LineAuth{{Username: "a", Password: "x", Algorithms: []string{"SHA-512"}}}
		},
		"sip.lines[0].max_contacts": func(c *Config) { c.Lines[0].MaxContacts = -1 },
		"sip.registrar.min_expires": func(c *Config) { c.Registrar.MinExpires = 500 * time.Millisecond },
		"sip.registrar.max_expires": func(c *Config) { c.Registrar.MinExpires, c.Registrar.MaxExpires = time.Hour, time.Minute },
		"sip.registrar.default_expires": func(c *Config) {
			c.Registrar.MaxExpires, c.Registrar.DefaultExpires = time.Hour, 2*time.Hour
		},
		"sip.registrar.nat_keepalive": func(c *Config) { c.Registrar.NATKeepAlive = time.Millisecond },
		"sip.limits.auth_failures":    func(c *Config) { c.Limits.AuthFailures = -1 },
		"sip.limits.auth_lockout":     func(c *Config) { c.Limits.AuthLockout = time.Millisecond },
	} {
		c := Config{Advertise: ipCleanline, Trunks: []Trunk{{Name: "p", Sources: []string{ipTrunk}}},
			Lines: []Line{{Name: "home", Contact: "sip:l@" + ipLine}}}
		change(&c)
		c.Defaults()
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want an error naming %q, got %v", want, err)
		}
	}
	// A password file's first line is the password, and it is never shown.
	path := t.TempDir() + "/secret"
	if err := os.WriteFile(path, []byte("s3cret\nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	la := LineAuth{Username: "a", PasswordFile: path}
	if err := la.validate("k"); err != nil || la.secret != "s3cret" {
		t.Fatalf("password_file: %v, secret %q", err, la.secret)
	}
	if s := fmt.Sprint(la, &la); strings.Contains(s, "s3cret") {
		t.Errorf("credentials printed with their secret: %s", s)
	}
}

// wantNoRTP fails unless r still holds before packets.
func wantNoRTP(t *testing.T, what string, r *siptest.RTP, before int) {
	t.Helper()
	if n := r.Count(); n != before {
		t.Errorf("%s received %d RTP packets, want %d", what, n, before)
	}
}

// FuzzRegistrarContacts: whatever a REGISTER's Contact and Expires say,
// reading them never panics, a refusal is 400 or 423, and what is
// granted is within the configured bounds (0 only to remove).
func FuzzRegistrarContacts(f *testing.F) {
	for _, s := range []string{"<sip:a@127.0.0.3:5060>", "*", "<sip:a@h>;expires=0, <sip:b@h>;expires=70", "<tel:123>",
		"garbage", "<sip:a@h>;expires=99999999999", "<sip:a@h>;expires=-1", "\"x\" <sips:a@[::1]:5061;transport=tls>;expires=3"} {
		f.Add(s, "60")
	}
	f.Add("*", "0")
	f.Add("<sip:a@h>", "banana")
	rt := &routing{}
	rt.cfg.Registrar.defaults()
	rc := rt.cfg.Registrar
	f.Fuzz(func(t *testing.T, contact, expires string) {
		msg := "REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.3:5060;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n" +
			"To: <sip:a@h>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContact: " + contact + "\r\nExpires: " + expires + "\r\nContent-Length: 0\r\n\r\n"
		m, err := sip.ParseMessage([]byte(msg))
		if err != nil {
			return
		}
		req, ok := m.(*sip.Request)
		if !ok {
			return
		}
		chs, err := rt.contactChanges(req)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrIntervalTooBrief) {
				t.Fatalf("contactChanges(%q, %q): %v, want 400 or 423", contact, expires, err)
			}
			return
		}
		for _, c := range chs {
			switch {
			case c.wildcard && len(chs) != 1:
				t.Fatalf("* with other contacts accepted: %q", contact)
			case !c.wildcard && c.expires != 0 && (c.expires < rc.MinExpires || c.expires > rc.MaxExpires):
				t.Fatalf("granted %s outside [%s, %s]: %q %q", c.expires, rc.MinExpires, rc.MaxExpires, contact, expires)
			case !c.wildcard && c.uri.Host == "":
				t.Fatalf("a contact without a host: %q", contact)
			}
		}
	})
}
