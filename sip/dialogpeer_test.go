package sip

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/siptest"
)

// In-dialog requests are taken only from the dialog's own peer: a BYE or
// INFO naming the line's dialog exactly (Call-ID and both tags), forged from
// the trunk's address, gets 403 and changes nothing; the same from the line
// ends the call. (A stranger gets 403 before any dialog is looked up.)
func TestInDialogRequestsOnlyFromTheDialogsPeer(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	out, in := e.connect()
	send := func(p *rawPeer, method, body string) int {
		t.Helper()
		return forgeLineRequest(ctx, t, e, in, p, method, body)
	}
	forger := newRawPeer(t, ipTrunk)
	for _, method := range []string{"INFO", "BYE"} {
		if code := send(forger, method, "Signal=1\r\nDuration=100\r\n"); code != sip.StatusForbidden {
			t.Errorf("forged %s from the trunk's address: %d, want 403", method, code)
		}
	}
	// Still up: audio crosses both ways.
	if err := out.RTP.Send(5, 8, 0x11); err != nil {
		t.Fatal(err)
	}
	if err := in.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatalf("call broken by a forged request: %v", err)
	}
	select {
	case <-out.Ended():
		t.Fatal("forged BYE ended the caller's leg")
	default:
	}
	// The line itself (any port of its address) may hang up.
	if code := send(newRawPeer(t, ipLine), "BYE", ""); code != sip.StatusOK {
		t.Fatalf("line's own BYE: %d, want 200", code)
	}
	waitEnded(ctx, t, out.Ended())
	e.waitNoCalls()
}

// A line source with a port (for a device that cannot authenticate) takes
// only datagrams from that port: the line's own calls go out, a datagram
// forged from another port of the same host is a stranger's (403).
func TestLineSourceWithPort(t *testing.T) {
	e := newEnv(t)
	// The line's address with its port (known only once its phone listens).
	if err := e.reload(func(c *Config) { c.Lines[0].Sources = []string{e.line.Addr.String()} }); err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	call, err := e.line.Dial(ctx, "sip:02079460018@"+e.s.Addr("udp").String(), siptestOpts("landline"))
	if err != nil {
		t.Fatal(err)
	}
	in, err := e.trunk.Incoming(ctx)
	if err != nil {
		t.Fatalf("the line's own call from its port: %v", err)
	}
	_ = in.Reject(486, "Busy Here")
	wantFinal(t, call, 486)

	forger := newRawPeer(t, ipLine) // the line's host, another port
	to := net.UDPAddrFromAddrPort(e.s.Addr("udp"))
	id := sip.GenerateTagN(16) + "@forger"
	msg := fmt.Sprintf("INVITE sip:09012345678@%[1]s SIP/2.0\r\nVia: SIP/2.0/UDP %[2]s;branch=z9hG4bK%[3]s\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:landline@%[4]s>;tag=%[3]s\r\nTo: <sip:09012345678@%[1]s>\r\nCall-ID: %[5]s\r\n"+
		"CSeq: 1 INVITE\r\nContact: <sip:landline@%[2]s>\r\nContent-Length: 0\r\n\r\n", to, forger.addr, sip.GenerateTagN(10), ipLine, id)
	if _, err := forger.pc.WriteTo([]byte(msg), to); err != nil {
		t.Fatal(err)
	}
	m, err := forger.take(ctx, "answer", func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.CallID() != nil && r.CallID().Value() == id && r.StatusCode >= 200
	})
	if err != nil {
		t.Fatal(err)
	}
	if code := m.msg.(*sip.Response).StatusCode; code != sip.StatusForbidden {
		t.Fatalf("forged INVITE from the line's host, another port: %d, want 403", code)
	}
	if err := e.trunk.NoIncoming(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := parseSources("k", []string{"127.0.0.3:notaport"}); err == nil {
		t.Error("bad IP:port accepted")
	}
}

// forgeLineRequest sends from p an in-dialog request on the line's leg of
// the call in exactly as the line would write it (the Call-ID and both
// tags, From the line), with an application/dtmf-relay body, and returns
// cleanline's status.
func forgeLineRequest(ctx context.Context, t *testing.T, e *env, in *siptest.Incoming, p *rawPeer, method, body string) int {
	t.Helper()
	// The line leg as the line sees it: its request to cleanline would carry
	// From = the line (its tag), To = cleanline (our tag).
	res := in.D.InviteResponse
	if res == nil {
		t.Fatal("line's 200 unknown")
	}
	callID := in.Req.CallID().Value()
	ourTag, _ := in.Req.From().Params.Get("tag")
	lineTag, _ := res.To().Params.Get("tag")
	to := net.UDPAddrFromAddrPort(e.s.Addr("udp"))
	branch := sip.GenerateTagN(12)
	msg := fmt.Sprintf("%[1]s sip:cleanline@%[2]s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %[3]s;branch=z9hG4bK%[4]s\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:landline@%[5]s>;tag=%[6]s\r\n"+
		"To: <sip:cleanline@%[2]s>;tag=%[7]s\r\n"+
		"Call-ID: %[8]s\r\n"+
		"CSeq: 50 %[1]s\r\n"+
		"Content-Type: application/dtmf-relay\r\n"+
		"Content-Length: %[9]d\r\n\r\n%[10]s",
		method, to, p.addr, branch, ipLine, lineTag, ourTag, callID, len(body), body)
	if _, err := p.pc.WriteTo([]byte(msg), to); err != nil {
		t.Fatal(err)
	}
	m, err := p.take(ctx, method+" answer", func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.CallID() != nil && r.CallID().Value() == callID && r.CSeq().MethodName == sip.RequestMethod(method)
	})
	if err != nil {
		t.Fatal(err)
	}
	return m.msg.(*sip.Response).StatusCode
}
