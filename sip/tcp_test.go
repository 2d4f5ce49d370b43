package sip

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// An allowed call with both legs over TCP: the line's INVITE and our
// Contacts say TCP, audio flows both ways, the trunk's BYE reaches the line.
func TestAllowOverTCP(t *testing.T) {
	e := newEnv(t, overTCP)
	ctx := ctxT(t, 10*time.Second)
	out, in := e.connect()
	if tp := in.Req.Transport(); tp != "TCP" {
		t.Fatalf("line INVITE over %s, want TCP", tp)
	}
	for what, ct := range map[string]*sip.ContactHeader{"line INVITE": in.Req.Contact(), "caller's 200": out.D.InviteResponse.Contact()} {
		if tr, _ := ct.Address.UriParams.Get("transport"); tr != "tcp" || ct.Address.Port != int(e.s.Addr("tcp").Port()) {
			t.Fatalf("%s Contact %s: want our TCP listener", what, ct.Address.String())
		}
	}
	if err := out.RTP.Send(5, 8, 0x11); err != nil {
		t.Fatal(err)
	}
	if err := in.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatalf("line got %d packets: %v", in.RTP.Count(), err)
	}
	if err := in.RTP.Send(5, 8, 0x22); err != nil {
		t.Fatal(err)
	}
	if err := out.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatalf("caller got %d packets: %v", out.RTP.Count(), err)
	}
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	wantEnded(t, ctx, "trunk BYE over TCP", in.Ended())
	e.waitNoCalls()
}

// D1 over TCP: the line's BYE is answered and our BYE reaches the trunk,
// over TCP, although the trunk's INVITE came on a connection from an
// ephemeral port and the BYE goes to its Contact (a new connection: sipgo
// issue #361), and nothing from the trunk reaches the line afterwards.
func TestD1LineHangupOverTCPByesTrunk(t *testing.T) {
	e := newEnv(t, overTCP)
	ctx := ctxT(t, 10*time.Second)
	out, in := e.connect()
	if err := in.Bye(ctx); err != nil {
		t.Fatalf("line's BYE: %v", err)
	}
	hungUp := time.Now()
	bye, err := e.trunk.WaitRequest(ctx, sip.BYE)
	if err != nil {
		t.Fatal(err)
	}
	if tp := bye.Transport(); tp != "TCP" {
		t.Fatalf("BYE to the trunk over %s, want TCP", tp)
	}
	wantEnded(t, ctx, "line BYE over TCP", out.Ended())
	_ = out.RTP.Send(10, 8, 0x33)
	if res, err := out.Request(ctx, sip.INFO, nil, ""); err != nil || res.StatusCode != 481 {
		t.Fatalf("INFO after hang-up: %v %v, want 481", res, err)
	}
	if n := in.RTP.CountSince(hungUp); n != 0 {
		t.Fatalf("line received %d RTP packets after its BYE", n)
	}
	e.waitNoCalls()
}

// Our 18x on a TCP call name our TCP listener too: a caller may send its
// in-dialog requests (UPDATE, PRACK) to the Contact of a provisional
// response (RFC 3261 §12.1.2), and a UDP Contact there would split the
// dialog across transports.
func TestRingingOverTCPCarriesTCPContact(t *testing.T) {
	e := newEnv(t, overTCP)
	ctx := ctxT(t, 10*time.Second)
	out := e.dial(callerOK)
	in, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Ring(); err != nil {
		t.Fatal(err)
	}
	res, err := out.WaitProvisional(ctx, 180)
	if err != nil {
		t.Fatal(err)
	}
	ct := res.Contact()
	if ct == nil {
		t.Fatal("180 without Contact")
	}
	if tr, _ := ct.Address.UriParams.Get("transport"); tr != "tcp" || ct.Address.Port != int(e.s.Addr("tcp").Port()) {
		t.Fatalf("180 Contact %s: want our TCP listener", ct.Address.String())
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("caller got %v, %v; want 200", res, err)
	}
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitNoCalls()
}
