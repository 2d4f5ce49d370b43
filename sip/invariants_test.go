package sip

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"gopkg.in/yaml.v3"

	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/siptest"
)

// D3: a warned caller who was refused is refused again within the cooldown.
// The line is strict (everyone not trusted is warned), so the second call
// is decided by the cooldown rule.
func TestD3CooldownAfterWarnedCall(t *testing.T) {
	e := newEnv(t, withCfg(func(c *Config) {
		c.Timers.WarningChoice = 100 * time.Millisecond
		if err := yaml.Unmarshal([]byte("strict: true"), &c.Lines[0].Policy); err != nil {
			t.Fatal(err)
		}
	}))
	if !e.sc.Policy("home").Strict {
		t.Fatalf("per-line policy not decoded: %+v", e.sc.Policy("home"))
	}
	ctx := ctxT(t, 10*time.Second)
	out := e.dial(callerOK)
	if _, err := out.WaitProvisional(ctx, 180); err != nil {
		t.Fatal(err)
	}
	in, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = in.Answer()
	wantFinal(t, out, 603)
	for !e.sc.Screen(ctx, screening.Call{Line: "home", From: callerOK, DryRun: true}).Has(screening.ReasonCooldown) {
		if ctx.Err() != nil {
			t.Fatal("cooldown never recorded")
		}
		time.Sleep(5 * time.Millisecond)
	}
	again := e.dial(callerOK)
	wantFinal(t, again, 603)
	if err := e.line.NoIncoming(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

// D4: dialling a protected number first ends every other call of the line;
// the new call is a new dialog to the trunk.
func TestD4ProtectedNumberClearsLineFirst(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	old, oldLine := e.connect()
	call, err := e.line.Dial(ctx, "sip:999@"+e.s.Addr("udp").String(), siptest.DialOptions{FromUser: "landline"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ended := range []<-chan struct{}{old.Ended(), oldLine.Ended()} {
		select {
		case <-ended:
		case <-ctx.Done():
			t.Fatal("old call still up after the line dialled 999")
		}
	}
	in, err := e.trunk.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in.Req.Recipient.User != "999" || in.Req.CallID().Value() == old.D.InviteRequest.CallID().Value() {
		t.Fatalf("trunk got %s", in.Req.StartLine())
	}
	_ = in.Answer()
	wantFinal(t, call, 200)
	_ = in.RTP.Send(5, 8, 7)
	if err := call.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatal(err)
	}
}

// D5: the line-check code says whether another call is attached: the
// clear prompt (0.4 s in tests) or the busy one (0.8 s). Counted on
// arrival, so a slow reader on a busy box cannot make busy look clear.
func TestD5LineCheck(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	check := func() *siptest.Outgoing {
		c, err := e.line.Dial(ctx, "sip:*99@"+e.s.Addr("udp").String(), siptest.DialOptions{FromUser: "landline"})
		if err != nil {
			t.Fatal(err)
		}
		wantFinal(t, c, 200)
		select {
		case <-c.Ended():
		case <-ctx.Done():
			t.Fatal("line check never hung up")
		}
		return c
	}
	clear := check()
	if err := clear.RTP.WaitCount(ctx, 15); err != nil {
		t.Fatalf("line clear: %d packets: %v", clear.RTP.Count(), err)
	}
	if span := promptSpan(clear.RTP.Packets()); span > 600*time.Millisecond {
		t.Fatalf("line clear: a %s prompt, want the 0.4 s clear prompt", span)
	}
	e.connect()
	busy := check()
	if err := busy.RTP.WaitCount(ctx, 35); err != nil {
		t.Fatalf("line busy: %d packets, want the 0.8 s busy prompt: %v", busy.RTP.Count(), err)
	}
}

// promptSpan is the audio time the packets cover, by RTP timestamp (8 kHz).
func promptSpan(pkts []siptest.Packet) time.Duration {
	if len(pkts) == 0 {
		return 0
	}
	lo, hi := pkts[0].Pkt.Timestamp, pkts[0].Pkt.Timestamp
	for _, p := range pkts {
		lo, hi = min(lo, p.Pkt.Timestamp), max(hi, p.Pkt.Timestamp)
	}
	return time.Duration(hi-lo+160) * time.Second / 8000
}

// The report code reports the line's last caller.
func TestReportCode(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	out, in := e.connect()
	_ = in.Bye(ctx)
	<-out.Ended()
	c, err := e.line.Dial(ctx, "sip:*57@"+e.s.Addr("udp").String(), siptest.DialOptions{FromUser: "landline"})
	if err != nil {
		t.Fatal(err)
	}
	wantFinal(t, c, 200)
	en, err := e.store.Get(ctx, callerOK, false)
	if err != nil || en.Reports != 1 {
		t.Fatalf("last caller not reported: %+v %v", en, err)
	}
}

// D6: shutdown ends every call with BYE on both legs.
func TestD6ShutdownByesBothLegs(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	out, in := e.connect()
	if err := e.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, ended := range []<-chan struct{}{out.Ended(), in.Ended()} {
		select {
		case <-ended:
		case <-ctx.Done():
			t.Fatal("a leg was left up")
		}
	}
	late := e.dial(callerOK)
	wantFinal(t, late, 503)
}

// D6: a silent leg ends the call.
func TestD6MediaInactivityEndsCall(t *testing.T) {
	e := newEnv(t, withCfg(func(c *Config) { c.Timers.MediaInactivity = 300 * time.Millisecond }))
	ctx := ctxT(t, 10*time.Second)
	out, in := e.connect()
	for _, ended := range []<-chan struct{}{out.Ended(), in.Ended()} {
		select {
		case <-ended:
		case <-ctx.Done():
			t.Fatal("silent call not torn down")
		}
	}
	e.waitNoCalls()
}

// Garbage at the listener is answered with an error or dropped; the next
// good call works.
func TestGarbageDoesNotHurt(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	conn, err := net.Dial("udp", e.s.Addr("udp").String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	inv := "INVITE sip:" + lineNumber + "@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKx\r\n" +
		"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
	for _, d := range []string{
		"\x00\x01garbage\xff\xfe",
		inv[:40],
		inv + "Content-Length: 9999\r\n\r\nv=0",
		inv + "X-Huge: " + strings.Repeat("A", 1200) + "\r\nContent-Length: 0\r\n\r\n",
		inv + "Content-Length: -5\r\n\r\n",
		"SIP/2.0 200 OK\r\n\r\n",
	} {
		if _, err := conn.Write([]byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	bad, err := e.trunk.Dial(ctx, e.lineURI(), siptest.DialOptions{FromUser: callerOK, Body: []byte("v=0\r\nthis is not sdp")})
	if err != nil {
		t.Fatal(err)
	}
	wantFinal(t, bad, 488)
	noOffer, err := e.trunk.Dial(ctx, e.lineURI(), siptest.DialOptions{FromUser: callerOK, NoSDP: true})
	if err != nil {
		t.Fatal(err)
	}
	wantFinal(t, noOffer, 488)
	e.connect()
	_ = context.Background
	_ = sip.BYE
}
