package sip

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/sip/media"
	"github.com/cleanline/cleanline/sip/siptest"
)

// Forking an inbound call to every registered device of the line (RFC
// 3261 §16.7 at a B2BUA), over real sockets: the first 2xx wins, the
// others are CANCELled, a late 2xx is ACKed and hung up, the caller hears
// one 180, and nothing of the caller reaches a device that did not win, or
// any device once the call is over. `go test -run Fork ./sip/`.

// twoDevices registers the env's line phone as devA and a second phone
// on the line's IP as devB.
func (e *env) twoDevices() (a, b *siptest.Phone) {
	e.t.Helper()
	a, b = e.line, siptest.NewPhone(e.t, ipLine)
	e.register(a, devA, passA)
	e.register(b, devB, passB)
	return a, b
}

// ringing waits for the call on both phones and rings both.
func ringing(t *testing.T, ctx context.Context, a, b *siptest.Phone) (*siptest.Incoming, *siptest.Incoming) {
	t.Helper()
	inA, err := a.Incoming(ctx)
	if err != nil {
		t.Fatalf("device A never rang: %v", err)
	}
	inB, err := b.Incoming(ctx)
	if err != nil {
		t.Fatalf("device B never rang: %v", err)
	}
	if inA.Req.CallID().Value() == inB.Req.CallID().Value() {
		t.Fatal("both devices got the same dialog: each branch must be a dialog of its own")
	}
	for _, in := range []*siptest.Incoming{inA, inB} {
		if err := in.Ring(); err != nil {
			t.Fatal(err)
		}
	}
	return inA, inB
}

// cancelled waits for in to end by CANCEL.
func cancelled(t *testing.T, ctx context.Context, in *siptest.Incoming, what string) {
	t.Helper()
	select {
	case <-in.Ended():
	case <-ctx.Done():
		t.Fatalf("%s was never CANCELled", what)
	}
	if !in.Cancelled() {
		t.Fatalf("%s ended otherwise than by CANCEL", what)
	}
}

// count180 counts the 180s among responses already delivered.
func count180(out *siptest.Outgoing) int {
	n := 0
	for {
		select {
		case res := <-out.Responses():
			if res.StatusCode == 180 {
				n++
			}
		default:
			return n
		}
	}
}

// Both devices ring, the caller hears one 180; the first to answer is
// connected, the other gets CANCEL and never a packet of the call; when
// the trunk hangs up only the answering device gets BYE.
func TestForkRingsEveryDeviceFirstAnswerWins(t *testing.T) {
	e := newEnv(t, withDevices)
	ctx := ctxT(t, 15*time.Second)
	a, b := e.twoDevices()
	out := e.dial(callerOK)
	inA, inB := ringing(t, ctx, a, b)
	if _, err := out.WaitProvisional(ctx, 180); err != nil {
		t.Fatal(err)
	}
	if err := inB.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	cancelled(t, ctx, inA, "device A (lost the race)")
	if n := count180(out); n != 0 {
		t.Errorf("caller heard %d more 180s: one for the whole fork", n)
	}
	if err := out.RTP.Send(10, 8, 0x11); err != nil {
		t.Fatal(err)
	}
	if err := inB.RTP.WaitCount(ctx, 10); err != nil {
		t.Fatalf("answering device got %d of the caller's packets: %v", inB.RTP.Count(), err)
	}
	if err := inB.RTP.Send(10, 8, 0x22); err != nil {
		t.Fatal(err)
	}
	if err := out.RTP.WaitCount(ctx, 10); err != nil {
		t.Fatalf("caller got %d of the device's packets: %v", out.RTP.Count(), err)
	}
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	waitEnded(ctx, t, inB.Ended())
	e.waitNoCalls()
	wantNoRTP(t, "the CANCELled device", inA.RTP, 0)
	if r := a.Requests(); len(r) != 0 {
		t.Errorf("the CANCELled device got %d in-dialog requests, first %s", len(r), r[0].Method)
	}
	if err := e.waitRecord(ctx, outcomeCompleted); err != nil {
		t.Fatal(err)
	}
	if n := e.logs.FilterMessage("call").FilterField(zap.String("device", devB)).Len(); n != 1 {
		t.Errorf("%d call records name device %s, want 1", n, devB)
	}
}

// A busy device does not stop the others ringing; a 6xx (the person
// declined on one handset) ends the search at once and CANCELs the rest
// (§16.7 step 5); when every device refuses, a busy one is the answer.
func TestForkRefusals(t *testing.T) {
	e := newEnv(t, withDevices)
	ctx := ctxT(t, 20*time.Second)
	a, b := e.twoDevices()

	out := e.dial(callerOK)
	inA, inB := ringing(t, ctx, a, b)
	if err := inA.Reject(486, "Busy Here"); err != nil {
		t.Fatal(err)
	}
	if err := inB.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitNoCalls()

	out = e.dial(callerOK)
	inA, inB = ringing(t, ctx, a, b)
	if err := inA.Reject(603, "Decline"); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 603)
	cancelled(t, ctx, inB, "device B after A declined")
	e.waitNoCalls()

	out = e.dial(callerOK)
	inA, inB = ringing(t, ctx, a, b)
	if err := inA.Reject(480, "Temporarily Unavailable"); err != nil {
		t.Fatal(err)
	}
	if err := inB.Reject(486, "Busy Here"); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 486)
	e.waitNoCalls()
}

// rawRegister registers a raw peer as device user (digest answered by
// hand) with its own address as Contact.
func rawRegister(t *testing.T, ctx context.Context, p *rawPeer, to netip.AddrPort, user, pass string) {
	t.Helper()
	callID := sip.GenerateTagN(12) + "@raw"
	send := func(cseq int, auth string) *sip.Request {
		if auth != "" {
			auth = "Authorization: " + auth + "\r\n"
		}
		req := mustParse(t, fmt.Sprintf("REGISTER sip:%[1]s SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %[2]s;branch=z9hG4bK%[3]s;rport\r\n"+
			"Max-Forwards: 70\r\n"+
			"From: <sip:%[4]s@%[1]s>;tag=%[3]s\r\n"+
			"To: <sip:%[4]s@%[1]s>\r\n"+
			"Call-ID: %[5]s\r\n"+
			"CSeq: %[6]d REGISTER\r\n"+
			"Contact: <sip:%[4]s@%[2]s>\r\n"+
			"Expires: 20\r\n%[7]s"+
			"Content-Length: 0\r\n\r\n", to, p.addr, sip.GenerateTagN(10), user, callID, cseq, auth))
		p.send(net.UDPAddrFromAddrPort(to), req)
		return req.(*sip.Request)
	}
	req := send(1, "")
	res, err := p.response(ctx, 401)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := siptest.Answer(res, "WWW-Authenticate", "", "REGISTER", req.Recipient.String(), user, pass)
	if err != nil {
		t.Fatal(err)
	}
	send(2, auth)
	if _, err := p.response(ctx, 200); err != nil {
		t.Fatalf("raw device not registered: %v", err)
	}
}

// A device that answers after another has won (it never sent a
// provisional, so it could not be CANCELled) has its 200 ACKed and hung
// up at once (RFC 3261 §13.2.2.4); no RTP of the call ever reaches it, nor
// any request once it has been sent BYE.
func TestForkLate200IsAckedAndByed(t *testing.T) {
	e := newEnv(t, withDevices)
	ctx := ctxT(t, 15*time.Second)
	e.register(e.line, devA, passA)
	late := newRawPeer(t, ipLine)
	rawRegister(t, ctx, late, e.s.Addr("udp"), devB, passB)
	rtpB, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ipLine)})
	if err != nil {
		t.Fatal(err)
	}
	defer rtpB.Close()

	out := e.dial(callerOK)
	inA, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	invB, from, err := late.request(ctx, sip.INVITE)
	if err != nil {
		t.Fatal(err)
	}
	if err := inA.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	body, err := media.BuildOffer(rtpB.LocalAddr().(*net.UDPAddr).AddrPort(), media.CodecPCMA, media.CodecPCMU)
	if err != nil {
		t.Fatal(err)
	}
	late.reply(from, invB, 200, "OK", "late", body)
	ack, _, err := late.request(ctx, sip.ACK)
	if err != nil {
		t.Fatalf("the late 200 was not ACKed: %v", err)
	}
	bye, byeFrom, err := late.request(ctx, sip.BYE)
	if err != nil {
		t.Fatalf("the late 200's dialog was not hung up: %v", err)
	}
	if ack.CallID().Value() != invB.CallID().Value() || bye.CallID().Value() != invB.CallID().Value() {
		t.Fatalf("ACK and BYE of another dialog: %s, %s", ack.CallID().Value(), bye.CallID().Value())
	}
	late.reply(byeFrom, bye, 200, "OK", "", nil)

	// The call goes on with A, and not a packet of it reaches B.
	if err := out.RTP.Send(20, 8, 0x11); err != nil {
		t.Fatal(err)
	}
	if err := inA.RTP.WaitCount(ctx, 20); err != nil {
		t.Fatalf("the winning device got %d packets: %v", inA.RTP.Count(), err)
	}
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	waitEnded(ctx, t, inA.Ended())
	e.waitNoCalls()
	_ = rtpB.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, _, err := rtpB.ReadFrom(make([]byte, 1500)); err == nil {
		t.Fatalf("the late device received %d bytes of RTP", n)
	}
	if m, err := late.take(ctxT(t, 200*time.Millisecond), "any request", func(m sip.Message) bool {
		_, ok := m.(*sip.Request)
		return ok
	}); err == nil && m.msg.(*sip.Request).Method != sip.INVITE {
		t.Fatalf("the late device got %s after its BYE", m.msg.(*sip.Request).Method)
	}
}

// D1 per device: the answering device hangs up, the trunk gets BYE; what
// the trunk does afterwards (a re-INVITE, more RTP) reaches neither the
// device that hung up nor the one that was CANCELled.
func TestD1ForkDeviceHangsUpNothingReachesAnyDevice(t *testing.T) {
	e := newEnv(t, withDevices)
	ctx := ctxT(t, 15*time.Second)
	a, b := e.twoDevices()
	out := e.dial(callerOK)
	inA, inB := ringing(t, ctx, a, b)
	if err := inA.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	cancelled(t, ctx, inB, "device B")
	if err := out.RTP.Send(10, 8, 0x11); err != nil {
		t.Fatal(err)
	}
	if err := inA.RTP.WaitCount(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if err := inA.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.trunk.WaitRequest(ctx, sip.BYE); err != nil {
		t.Fatalf("trunk never got BYE after the device hung up: %v", err)
	}
	e.waitNoCalls()
	gotA, reqA, reqB := inA.RTP.Count(), len(a.Requests()), len(b.Requests())

	res, err := out.ReInvite(ctx, media.SendRecv)
	if err != nil || res.StatusCode != 481 {
		t.Fatalf("trunk's re-INVITE after the hang-up: %v, %v; want 481", res, err)
	}
	_ = out.RTP.Send(20, 8, 0x33)
	// Both phones answer an OPTIONS probe: whatever cleanline forwarded
	// before it would have been read first.
	probe(t, ctx, a)
	probe(t, ctx, b)
	wantNoRTP(t, "the device that hung up", inA.RTP, gotA)
	wantNoRTP(t, "the CANCELled device", inB.RTP, 0)
	if r := a.Requests(); len(r) != reqA+1 {
		t.Errorf("the device that hung up got %d requests besides the probe", len(r)-reqA-1)
	}
	if r := b.Requests(); len(r) != reqB+1 {
		t.Errorf("the CANCELled device got %d requests besides the probe", len(r)-reqB-1)
	}
}

// probe sends p an out-of-dialog OPTIONS from the trunk's address and
// waits for its answer: p has read everything sent to it before.
func probe(t *testing.T, ctx context.Context, p *siptest.Phone) {
	t.Helper()
	r := newRawPeer(t, ipTrunk)
	defer r.close()
	branch := sip.GenerateTagN(10)
	r.send(net.UDPAddrFromAddrPort(p.Addr), mustParse(t, fmt.Sprintf("OPTIONS sip:phone@%[1]s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %[2]s;branch=z9hG4bK%[3]s\r\nMax-Forwards: 70\r\nFrom: <sip:probe@%[2]s>;tag=%[3]s\r\n"+
		"To: <sip:phone@%[1]s>\r\nCall-ID: %[3]s@probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n", p.Addr, r.addr, branch)))
	if _, err := r.response(ctx, 200); err != nil {
		t.Fatalf("probe of %s: %v", p.Addr, err)
	}
}

// A warned call plays its warning to the device that answered; the other
// is CANCELled and hears nothing; pressing 1 there connects the caller.
func TestForkWarnPlaysOnTheAnsweringDevice(t *testing.T) {
	e := newEnv(t, withDevices, withCfg(func(c *Config) { c.Timers.WarningChoice = 5 * time.Second }))
	ctx := ctxT(t, 15*time.Second)
	a, b := e.twoDevices()
	out := e.dial(callerSuspect)
	if _, err := out.WaitProvisional(ctx, 180); err != nil {
		t.Fatal(err)
	}
	inA, inB := ringing(t, ctx, a, b)
	if err := inB.Answer(); err != nil {
		t.Fatal(err)
	}
	cancelled(t, ctx, inA, "device A")
	if err := inB.RTP.WaitCount(ctx, 10); err != nil {
		t.Fatalf("the answering device heard %d packets of the warning: %v", inB.RTP.Count(), err)
	}
	if err := inB.RTP.SendDTMF('1', inB.TelephoneEventPT()); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	wantNoRTP(t, "the CANCELled device", inA.RTP, 0)
	before := inB.RTP.Count()
	_ = out.RTP.Send(5, 8, 0x66)
	if err := inB.RTP.WaitCount(ctx, before+5); err != nil {
		t.Fatal("not bridged to the device that pressed 1")
	}
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitNoCalls()
}

// A line with a static contact and a registered device rings both; a
// device registered at the static contact itself rings once.
func TestForkStaticContactAndDevices(t *testing.T) {
	e := newEnv(t, withCfg(func(c *Config) {
		c.Lines[0].Devices = []LineAuth{{Username: devA, Password: passA}, {Username: devB, Password: passB}}
		c.Registrar = RegistrarConfig{MinExpires: 2 * time.Second, MaxExpires: 30 * time.Second, DefaultExpires: 20 * time.Second}
	}))
	ctx := ctxT(t, 15*time.Second)
	dev := siptest.NewPhone(t, ipLine)
	e.register(dev, devB, passB)
	// The static contact's phone registers its own contact too.
	res, err := e.line.Register(ctx, siptest.RegisterOptions{Registrar: e.s.Addr("udp"), User: devA, Password: passA, Expires: 20,
		Contact: "<" + e.line.URI("landline") + ">"})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("static contact's REGISTER: %v, %v", res, err)
	}
	out := e.dial(callerOK)
	inStatic, inDev := ringing(t, ctx, e.line, dev)
	if err := e.line.NoIncoming(300 * time.Millisecond); err != nil {
		t.Fatalf("the static contact rang twice: %v", err)
	}
	if err := inStatic.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	cancelled(t, ctx, inDev, "the registered device")
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	e.waitNoCalls()
}
