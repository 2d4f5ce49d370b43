package sip

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/cleanline/cleanline/sip/siptest"
)

// What a registration is for: calls reach a device behind NAT through the
// address its REGISTER came from, a device's own calls are known by its
// registration, a guesser is locked out while the device keeps
// registering, and bindings outlive reloads and restarts.

// A device behind NAT registers a Contact it cannot be reached at (a
// private address, or its own address with a port its NAT does not
// forward) from another address, with rport: the 200 tells it where it
// was seen, the inbound call and cleanline's BYE reach it at that
// address, and its media, which leaves from yet another port than its SDP
// says, is taken (the line's nat rule, applied for the device).
func TestRegistrarNATRoutesThroughTheFlow(t *testing.T) {
	for name, contact := range map[string]string{"private address": "10.9.9.9:5060", "another port": ipLine + ":5999"} {
		t.Run(name, func(t *testing.T) { natFlow(t, contact) })
	}
}

func natFlow(t *testing.T, contact string) {
	e := newEnv(t, withDevices)
	ctx := ctxT(t, 15*time.Second)
	p := siptest.NewPhone(t, ipLine)
	res, err := p.Register(ctx, siptest.RegisterOptions{Registrar: e.s.Addr("udp"), User: devA, Password: passA, Expires: 20,
		Contact: "<sip:landline@" + contact + ">"})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER from behind NAT: %v, %v", res, err)
	}
	v := res.Via()
	if rport, _ := v.Params.Get("rport"); rport != fmt.Sprint(p.Addr.Port()) {
		t.Errorf("Via rport %q, want the port it came from, %d (RFC 3581)", rport, p.Addr.Port())
	}
	if received, _ := v.Params.Get("received"); received != ipLine {
		t.Errorf("Via received %q, want %s", received, ipLine)
	}
	out := e.dial(callerOK)
	in, err := p.Incoming(ctx)
	if err != nil {
		t.Fatalf("the INVITE never reached the device's flow: %v", err)
	}
	if want := "sip:landline@" + contact; in.Req.Recipient.String() != want {
		t.Errorf("Request-URI %s, want the device's Contact %s", in.Req.Recipient.String(), want)
	}
	natSrc, err := in.RTP.BehindNAT()
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	if err := in.RTP.Send(10, 8, 0x22); err != nil {
		t.Fatal(err)
	}
	if err := out.RTP.WaitCount(ctx, 10); err != nil {
		t.Fatalf("caller got %d packets of the device's media from %s (behind NAT): %v", out.RTP.Count(), natSrc, err)
	}
	if err := out.RTP.Send(10, 8, 0x11); err != nil {
		t.Fatal(err)
	}
	if err := in.RTP.WaitCount(ctx, 10); err != nil {
		t.Fatalf("device got %d packets at its NAT's source: %v", in.RTP.Count(), err)
	}
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	waitEnded(ctx, t, in.Ended()) // cleanline's BYE went to the flow, not to the Contact
	e.waitNoCalls()
}

// A device's own calls are known by where its registration came from and
// proved with its own credentials (407): then they reach the trunk as the
// line's; another device's credentials do not do; an unregistered phone
// at the same address is a stranger (403). D5 and D4 work for a device as
// for a line known by its address.
func TestRegistrarDeviceCallsKnownByRegistration(t *testing.T) {
	e := newEnv(t, withDevices)
	ctx := ctxT(t, 20*time.Second)
	a, b := e.twoDevices()
	cl := e.s.Addr("udp")
	dial := func(p *siptest.Phone, number, user, pass string) *siptest.Outgoing {
		t.Helper()
		o, err := p.Dial(ctx, fmt.Sprintf("sip:%s@%s", number, cl), siptest.DialOptions{FromUser: user, Username: user, Password: pass})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	wantFinal(t, dial(a, "02079460018", devA, ""), 407)
	wantFinal(t, dial(a, "02079460018", devA, passB), 407)
	stranger := siptest.NewPhone(t, ipLine)
	wantFinal(t, dial(stranger, "02079460018", devA, passA), 403)
	if err := e.trunk.NoIncoming(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}

	o := dial(a, "02079460018", devA, passA)
	in, err := e.trunk.Incoming(ctx)
	if err != nil {
		t.Fatalf("the device's authenticated call never reached the trunk: %v", err)
	}
	if u := in.Req.From().Address.User; u != lineNumber {
		t.Errorf("trunk got the call from %q, want the line's number", u)
	}
	_ = in.Reject(486, "Busy Here")
	wantFinal(t, o, 486)
	e.waitNoCalls()

	// D5 from a device: answered by cleanline, "your line is clear".
	o = dial(b, "*99", devB, passB)
	wantFinal(t, o, 200)
	if err := o.RTP.WaitCount(ctx, 10); err != nil {
		t.Fatalf("the line check's prompt: %v", err)
	}
	waitEnded(ctx, t, o.Ended())
	e.waitNoCalls()

	// D4 from a device: an inbound call is up on device A; device B dials
	// 999, and the inbound call ends before the 999 reaches the trunk.
	out := e.dial(callerOK)
	inA, inB := ringing(t, ctx, a, b)
	if err := inA.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	cancelled(t, ctx, inB, "device B")
	o = dial(b, "999", devB, passB)
	if _, err := e.trunk.WaitRequest(ctx, sip.BYE); err != nil {
		t.Fatalf("the line's other call was not ended (D4): %v", err)
	}
	waitEnded(ctx, t, inA.Ended())
	in, err = e.trunk.Incoming(ctx)
	if err != nil || in.Req.Recipient.User != "999" {
		t.Fatalf("999 never reached the trunk: %v", err)
	}
	_ = in.Reject(486, "Busy Here")
	wantFinal(t, o, 486)
	e.waitNoCalls()

	// The report code from a device reports the line's last caller.
	o = dial(a, "*57", devA, passA)
	wantFinal(t, o, 200)
	waitEnded(ctx, t, o.Ended())
	if n, err := e.store.Get(ctx, callerOK, false); err != nil || n.Reports < 1 {
		t.Fatalf("the device's report: %+v, %v; want %s reported", n, err, callerOK)
	}
	e.waitNoCalls()
}

// A guesser from a stranger's address gets auth_failures wrong answers,
// then it is locked out: even the right password is answered 401, and
// nothing binds; the lockout is counted. The real device, elsewhere,
// registers all along, and wrong answers from its own flow never lock it
// out.
func TestRegistrarLocksOutGuessersNotTheDevice(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, withDevices, withServerOpts(WithMetrics(reg)), withCfg(func(c *Config) {
		c.Limits.AuthFailures, c.Limits.AuthLockout = 3, time.Minute
	}))
	ctx := ctxT(t, 15*time.Second)
	guesser := siptest.NewPhone(t, ipStranger)
	try := func(p *siptest.Phone, pass string) int {
		t.Helper()
		res, err := p.Register(ctx, e.regOpts(devA, pass, 20))
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode
	}
	e.register(e.line, devA, passA)
	for i := range 4 {
		if code := try(guesser, fmt.Sprint("guess", i)); code != 401 {
			t.Fatalf("guess %d: %d, want 401", i, code)
		}
	}
	if n := value(t, e.s.metrics.authLockouts); n != 1 {
		t.Fatalf("cleanline_auth_lockouts_total = %v after 4 wrong answers with auth_failures 3, want 1", n)
	}
	if code := try(guesser, passA); code != 401 {
		t.Fatalf("the right password from a locked-out source: %d, want 401", code)
	}
	for _, b := range e.s.binds.line("home") {
		if b.Flow.Addr().String() == ipStranger {
			t.Fatalf("the guesser got a binding: %+v", b)
		}
	}
	for i := range 5 {
		if code := try(e.line, fmt.Sprint("typo", i)); code != 401 {
			t.Fatalf("wrong answer %d from the device: %d", i, code)
		}
	}
	if code := try(e.line, passA); code != 200 {
		t.Fatalf("the device after wrong answers from its own flow: %d, want 200", code)
	}
	if n := value(t, e.s.metrics.authLockouts); n != 1 {
		t.Errorf("lockouts %v: the device's own flow was locked out", n)
	}
	if g := scraped(t, reg, "cleanline_auth_sources_locked_out").GetGauge().GetValue(); g != 1 {
		t.Errorf("cleanline_auth_sources_locked_out = %v, want 1", g)
	}
	if f := value(t, e.s.metrics.authFailures.WithLabelValues("REGISTER")); f != 9 {
		t.Errorf("cleanline_auth_failures_total{method=REGISTER} = %v, want 9 (4 guesses, 5 typos; a right answer while locked out is none)", f)
	}
}

// Bindings outlive a reload, but not a device the reload removed (the
// file follows); bindings_file is restart-only; and a new server started
// on the file rings the device that registered with the old one.
func TestRegistrarBindingsSurviveReloadAndRestart(t *testing.T) {
	file := filepath.Join(t.TempDir(), "bindings.json")
	e := newEnv(t, withDevices, withCfg(func(c *Config) { c.Registrar.BindingsFile = file }))
	ctx := ctxT(t, 20*time.Second)
	a, _ := e.twoDevices()
	cfg := e.s.routing().cfg
	if err := e.s.Reload(cfg, e.sc); err != nil {
		t.Fatal(err)
	}
	if n := len(e.s.binds.line("home")); n != 2 {
		t.Fatalf("%d bindings after a reload, want 2", n)
	}
	cfg.Lines = slices.Clone(cfg.Lines)
	cfg.Lines[0].Devices = []LineAuth{{Username: devA, Password: passA}}
	if err := e.s.Reload(cfg, e.sc); err != nil {
		t.Fatal(err)
	}
	got := e.s.binds.line("home")
	if len(got) != 1 || got[0].Device != devA {
		t.Fatalf("after removing %s: %+v, want only %s's", devB, got, devA)
	}
	var saved bindingsFile
	data, err := os.ReadFile(file)
	if err != nil || json.Unmarshal(data, &saved) != nil || len(saved.Bindings) != 1 {
		t.Fatalf("bindings file after the reload: %v, %s", err, data)
	}
	if strings.Contains(string(data), passA) {
		t.Fatal("the bindings file holds a password")
	}
	moved := cfg
	moved.Registrar.BindingsFile = file + ".new"
	if err := e.s.Reload(moved, e.sc); err == nil || !strings.Contains(err.Error(), "sip.registrar.bindings_file") {
		t.Fatalf("reload moving the bindings file: %v, want refused by key", err)
	}

	// Restart: the old server goes, a new one reads the file.
	if err := e.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	e.s.Close()
	s2, err := NewServer(cfg, e.sc, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s2.Shutdown(sctx)
		s2.Close()
	})
	if got := s2.binds.line("home"); len(got) != 1 || got[0].Flow != a.Addr {
		t.Fatalf("restored bindings %+v, want %s's at %s", got, devA, a.Addr)
	}
	out, err := e.trunk.Dial(ctx, fmt.Sprintf("sip:%s@%s", lineNumber, s2.Addr("udp")), siptestOpts(callerOK))
	if err != nil {
		t.Fatal(err)
	}
	in, err := a.Incoming(ctx)
	if err != nil {
		t.Fatalf("the restarted server did not ring the registered device: %v", err)
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	waitEnded(ctx, t, in.Ended())

	// A reload that makes the device's address a trunk's drops its
	// binding: the trunk's calls must not be taken for the device's.
	cfg.Trunks = slices.Clone(cfg.Trunks)
	cfg.Trunks[0].Sources = []string{ipTrunk, ipLine}
	if err := s2.Reload(cfg, e.sc); err != nil {
		t.Fatal(err)
	}
	if got := s2.binds.line("home"); len(got) != 0 {
		t.Fatalf("a binding from a trunk's address survived the reload: %+v", got)
	}
}
