package sip

import (
	"context"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/sip/siptest"
)

// registerNATted registers p as user with a private Contact: behind NAT.
func (e *env) registerNATted(p *siptest.Phone, user, password, contact string) {
	e.t.Helper()
	res, err := p.Register(ctxT(e.t, 5*time.Second), siptest.RegisterOptions{Registrar: e.s.Addr("udp"), User: user, Password: password,
		Expires: 20, Contact: "<" + contact + ">"})
	if err != nil || res.StatusCode != 200 {
		e.t.Fatalf("REGISTER from behind NAT: %v, %v", res, err)
	}
}

// options are the OPTIONS p received.
func options(p *siptest.Phone) []*sip.Request {
	var out []*sip.Request
	for _, r := range p.Requests() {
		if r.Method == sip.OPTIONS {
			out = append(out, r)
		}
	}
	return out
}

// A device registered over UDP from behind NAT is sent an OPTIONS through
// its flow every nat_keepalive, from cleanline's listener (the address its
// NAT's mapping points at), to its Contact; a device reached at its
// Contact is not. When one device behind NAT stops answering while another
// answers, its registration is dropped after 3 unanswered in a row,
// counted and logged, and the line's call no longer rings it while the
// others still ring. `go test -run NATKeepAlive ./sip/`.
func TestRegistrarNATKeepAlive(t *testing.T) {
	const every = 200 * time.Millisecond
	e := newEnv(t, withDevices, withCfg(func(c *Config) { c.Registrar.NATKeepAlive = every }),
		withServerOpts(WithMetrics(prometheus.NewRegistry())))
	ctx := ctxT(t, 15*time.Second)
	natted, kitchen, direct := siptest.NewPhone(t, ipLine), siptest.NewPhone(t, ipLine), siptest.NewPhone(t, ipLine)
	const contact = "sip:landline@10.9.9.9:5060"
	e.registerNATted(natted, devA, passA, contact)
	e.registerNATted(kitchen, devB, passB, "sip:kitchen@10.9.9.10:5060")
	e.register(direct, devB, passB)

	start := time.Now()
	if err := natted.WaitRequests(ctx, sip.OPTIONS, 3); err != nil {
		t.Fatalf("keep-alives through the flow: %v", err)
	}
	if d := time.Since(start); d < 2*every {
		t.Errorf("3 keep-alives within %s; want one each %s", d, every)
	}
	for i, r := range options(natted) {
		if r.Recipient.String() != contact {
			t.Errorf("keep-alive %d to %s; want the device's Contact %s", i, r.Recipient.String(), contact)
		}
		if src := r.Source(); src != e.s.Addr("udp").String() {
			t.Errorf("keep-alive %d from %s; want cleanline's listener %s, where the NAT's mapping points", i, src, e.s.Addr("udp"))
		}
		if r.To().Params.Has("tag") {
			t.Errorf("keep-alive %d is in a dialog: To %s", i, r.To().Value())
		}
	}
	if r := options(direct); len(r) != 0 {
		t.Fatalf("a device reached at its Contact got a keep-alive: %s", r[0].Recipient.String())
	}
	// Counted when the answers are back at cleanline, a moment after.
	waitFor(t, 5*time.Second, "cleanline_registrar_nat_keepalives_total{result=answered} at 6", func() bool {
		return value(t, e.s.metrics.natPings.WithLabelValues("answered")) >= 6
	})

	// The landline goes quiet: its binding goes after 3 misses, the others stay.
	natted.SetReply(sip.OPTIONS, -1)
	waitFor(t, 10*time.Second, "the quiet device's registration dropped", func() bool { return len(e.s.binds.line("home")) == 2 })
	for _, b := range e.s.binds.line("home") {
		if b.Device != devB {
			t.Fatalf("left %+v; want only %s's two", e.s.binds.line("home"), devB)
		}
	}
	if n := value(t, e.s.metrics.natPings.WithLabelValues("unanswered")); n < natPingMisses {
		t.Errorf("unanswered keep-alives %v; want %d or more", n, natPingMisses)
	}
	if n := value(t, e.s.metrics.natDropped); n != 1 {
		t.Errorf("cleanline_registrar_nat_dropped_total = %v; want 1", n)
	}
	if l := e.logs.FilterMessageSnippet("answered no keep-alive").All(); len(l) != 1 || l[0].ContextMap()["device"] != devA {
		t.Errorf("logged %+v; want one line naming %s", l, devA)
	}
	out := e.dial(callerOK)
	in, err := direct.Incoming(ctx)
	if err != nil {
		t.Fatalf("the reachable device did not ring: %v", err)
	}
	if _, err := kitchen.Incoming(ctx); err != nil {
		t.Fatalf("the other device behind NAT did not ring: %v", err)
	}
	if err := natted.NoIncoming(300 * time.Millisecond); err != nil {
		t.Fatalf("the dropped device still rang: %v", err)
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	e.hangUp(ctx, out, in)
}

// When no device behind NAT answers, the silence may be cleanline's own
// network: nothing is dropped however long it lasts (logged once); when
// one answers again, the one still quiet is dropped 3 rounds later.
func TestRegistrarNATKeepAliveSilenceDropsNothing(t *testing.T) {
	const every = 100 * time.Millisecond
	e := newEnv(t, withDevices, withCfg(func(c *Config) { c.Registrar.NATKeepAlive = every }),
		withServerOpts(WithMetrics(prometheus.NewRegistry())))
	a, b := siptest.NewPhone(t, ipLine), siptest.NewPhone(t, ipLine)
	a.SetReply(sip.OPTIONS, -1)
	b.SetReply(sip.OPTIONS, -1)
	e.registerNATted(a, devA, passA, "sip:landline@10.9.9.9:5060")
	e.registerNATted(b, devB, passB, "sip:kitchen@10.9.9.10:5060")
	waitFor(t, 15*time.Second, "5 silent rounds", func() bool {
		return value(t, e.s.metrics.natPings.WithLabelValues("unanswered")) >= 2*(natPingMisses+2)
	})
	if n := len(e.s.binds.line("home")); n != 2 || value(t, e.s.metrics.natDropped) != 0 {
		t.Fatalf("%d registrations left after silent rounds; want both kept", n)
	}
	if l := e.logs.FilterMessageSnippet("no device behind NAT answered").All(); len(l) != 1 {
		t.Errorf("logged the silence %d times; want once", len(l))
	}
	b.SetReply(sip.OPTIONS, 0)
	waitFor(t, 15*time.Second, "the still quiet device dropped", func() bool { return len(e.s.binds.line("home")) == 1 })
	if left := e.s.binds.line("home"); left[0].Device != devB {
		t.Fatalf("left %+v; want %s's", left, devB)
	}
}

// A keep-alive's result counts only for the registration it was sent
// for: a refresh in between resets the count, and the off switch (-1s)
// sends none.
func TestRegistrarNATKeepAliveMissesAndOff(t *testing.T) {
	tb := newBindings("", zap.NewNop())
	flow := netip.MustParseAddrPort(ipLine + ":40000")
	var contact sip.Uri
	if err := sip.ParseUri("sip:a@10.0.0.2:5060", &contact); err != nil {
		t.Fatal(err)
	}
	reg := func(cseq uint32) {
		t.Helper()
		_, _, err := tb.apply(registration{line: "home", device: "a", callID: "c1", cseq: cseq, flow: flow, transport: "udp", max: 4,
			changes: []contactChange{{uri: contact, expires: time.Minute}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	reg(1)
	snap := tb.natUDP()
	if len(snap) != 1 {
		t.Fatalf("natUDP %+v; want the one binding behind NAT", snap)
	}
	var k string
	var b binding
	for k, b = range snap {
	}
	// pings records each result of answered in turn; want says which drops the binding.
	pings := func(what string, answered []bool, want []bool) {
		t.Helper()
		for i, a := range answered {
			if got := tb.pinged(k, b, a); got != want[i] {
				t.Fatalf("%s: ping %d (answered %v) dropped=%v, want %v", what, i, a, got, want[i])
			}
		}
	}
	pings("two misses", []bool{false, false}, []bool{false, false})
	reg(2) // a refresh: the device was heard
	pings("a miss of the registration before the refresh", []bool{false}, []bool{false})
	for k, b = range tb.natUDP() {
	}
	pings("an answer between misses", []bool{false, true, false, false}, []bool{false, false, false, false})
	pings("the third miss in a row", []bool{false}, []bool{true})
	if l := tb.line("home"); len(l) != 0 {
		t.Fatalf("3 misses in a row left %+v", l)
	}

	e := newEnv(t, withDevices, withCfg(func(c *Config) { c.Registrar.NATKeepAlive = -time.Second }))
	p := siptest.NewPhone(t, ipLine)
	ctx := ctxT(t, 5*time.Second)
	if res, err := p.Register(ctx, siptest.RegisterOptions{Registrar: e.s.Addr("udp"), User: devA, Password: passA, Expires: 20,
		Contact: "<sip:landline@10.9.9.9:5060>"}); err != nil || res.StatusCode != 200 {
		t.Fatalf("REGISTER: %v, %v", res, err)
	}
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := p.WaitRequests(wctx, sip.OPTIONS, 1); err == nil {
		t.Fatal("a keep-alive with nat_keepalive off")
	}
}

// One keep-alive to a device behind NAT: an OPTIONS transaction out and
// its answer back, cleanline's side and a siptest phone's in this process,
// so cpu-µs/op is an upper bound for cleanline's share. At the default
// 30 s, N devices cost N/30 of it per second.
// `go test -run '^$' -bench NATPing -count 5 ./sip/`.
func BenchmarkNATPing(b *testing.B) {
	e := newEnv(b, withDevices, withCfg(func(c *Config) { c.Registrar.NATKeepAlive = -time.Second }))
	p := siptest.NewPhone(b, ipLine)
	if res, err := p.Register(ctxT(b, 5*time.Second), siptest.RegisterOptions{Registrar: e.s.Addr("udp"), User: devA, Password: passA,
		Expires: 600, Contact: "<sip:landline@10.9.9.9:5060>"}); err != nil || res.StatusCode != 200 {
		b.Fatalf("REGISTER: %v, %v", res, err)
	}
	var bd binding
	for _, bd = range e.s.binds.natUDP() {
	}
	cpu0 := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if !e.s.natPing(bd, 2*time.Second) {
			b.Fatal("a keep-alive went unanswered on loopback")
		}
	}
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
