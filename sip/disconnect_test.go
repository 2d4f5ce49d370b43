package sip

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// D1 and D2 with the nastiest trunk: it ignores our BYE, re-INVITEs, sends
// INFO and UPDATE and keeps sending RTP. The line hears nothing after its BYE.
func TestD1D2LineHangupIsFinalWhateverTheTrunkDoes(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 15*time.Second)
	out, in := e.connect()
	e.trunk.IgnoreBye(true)
	_ = out.RTP.Send(5, 8, 1)
	if err := in.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatal(err)
	}
	relayTrunk := out.RTP.Remote()

	if err := in.Bye(ctx); err != nil {
		t.Fatalf("line's BYE: %v", err)
	}
	hungUp := time.Now()
	// D1: BYE towards the trunk leg.
	if _, err := e.trunk.WaitRequest(ctx, sip.BYE); err != nil {
		t.Fatal(err)
	}
	// D2: the trunk carries on as if nothing happened.
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.UPDATE, sip.INFO} {
		var res *sip.Response
		var err error
		if m == sip.INVITE {
			res, err = out.ReInvite(ctx, "sendrecv")
		} else {
			res, err = out.Request(ctx, m, nil, "")
		}
		if err != nil || res.StatusCode != 481 {
			t.Fatalf("%s after hang-up: %v %v, want 481", m, res, err)
		}
	}
	end := time.Now().Add(1200 * time.Millisecond)
	for time.Now().Before(end) {
		_ = out.RTP.Send(1, 8, 2)
		time.Sleep(20 * time.Millisecond) // pacing the fraudster's audio, not synchronisation
	}
	if n := in.RTP.CountSince(hungUp); n != 0 {
		t.Fatalf("line received %d RTP packets after its BYE", n)
	}
	if out.RTP.Remote() != relayTrunk {
		t.Fatal("test bug: trunk RTP target moved")
	}
	if err := e.line.NoIncoming(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e.waitNoCalls()
}

func TestD1TrunkHangupSendsByeToLine(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	out, in := e.connect()
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-in.Ended():
	case <-ctx.Done():
		t.Fatal("line never got BYE")
	}
	e.waitNoCalls()
}

func TestReferAndReplacesRefused(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	out, in := e.connect()
	res, err := out.Request(ctx, sip.REFER, nil, "")
	if err != nil || res.StatusCode != 403 {
		t.Fatalf("REFER: %v %v, want 403", res, err)
	}
	// A second INVITE from the trunk that tries to take over the line's dialog.
	callID := in.D.InviteRequest.CallID().Value()
	toTag, _ := in.D.InviteRequest.From().Params.Get("tag")
	evil, err := e.trunk.Dial(ctx, e.lineURI(), siptestOpts(callerOK, sip.NewHeader("Replaces", callID+";to-tag="+toTag+";from-tag=x")))
	if err != nil {
		t.Fatal(err)
	}
	wantFinal(t, evil, 403)
	other, err := e.trunk.Dial(ctx, e.lineURI(), siptestOpts(callerOK, sip.NewHeader("Join", "nosuchcall;to-tag=a;from-tag=b")))
	if err != nil {
		t.Fatal(err)
	}
	wantFinal(t, other, 481)
	if err := e.line.NoIncoming(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
