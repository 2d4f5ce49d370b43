package sip

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// waitLive waits until LiveCalls shows one call in state, and returns it.
func (e *env) waitLive(ctx context.Context, state string) LiveCall {
	e.t.Helper()
	var last []LiveCall
	for {
		last = e.s.LiveCalls()
		if len(last) == 1 && last[0].State == state {
			return last[0]
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("live calls %+v; want one call in state %q", last, state)
		case <-time.After(5 * time.Millisecond): // poll pace, nothing orders on it
		}
	}
}

// EndCall on a connected call ends it as a hang-up does (D1): both the
// trunk's phone and the line's get BYE, no RTP crosses afterwards in
// either direction, nothing is left registered, and the call record says
// who ended it.
func TestEndCallByesBothLegs(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 15*time.Second)
	out, in := e.connect()
	lc := e.waitLive(ctx, CallConnected)
	if lc.Direction != "inbound" || lc.Line != "home" || lc.Trunk != "provider" || lc.Number != callerOK ||
		lc.Action != "allow" || lc.Withheld || lc.Since.IsZero() || lc.Answered.Before(lc.Since) || lc.Answered.After(time.Now()) {
		t.Fatalf("live call %+v", lc)
	}
	if want := "sip:" + callerOK + "@"; len(lc.Caller) < len(want) || lc.Caller[:len(want)] != want {
		t.Fatalf("caller as presented %q, want the From URI %s...", lc.Caller, want)
	}
	// Media crosses both ways before: the relay is really up.
	_ = out.RTP.Send(5, 8, 1)
	_ = in.RTP.Send(5, 8, 2)
	if err := in.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := out.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatal(err)
	}

	if err := e.s.EndCall(lc.ID); err != nil {
		t.Fatal(err)
	}
	ended := time.Now()
	for _, p := range []struct {
		name string
		wait func(context.Context, sip.RequestMethod) (*sip.Request, error)
		gone <-chan struct{}
	}{{"trunk", e.trunk.WaitRequest, out.Ended()}, {"line", e.line.WaitRequest, in.Ended()}} {
		if _, err := p.wait(ctx, sip.BYE); err != nil {
			t.Fatalf("%s phone got no BYE: %v", p.name, err)
		}
		select {
		case <-p.gone:
		case <-ctx.Done():
			t.Fatalf("%s phone's dialog still up", p.name)
		}
	}
	// Both sides keep talking into the old relay ports: nothing arrives.
	for end := time.Now().Add(600 * time.Millisecond); time.Now().Before(end); {
		_ = out.RTP.Send(1, 8, 3)
		_ = in.RTP.Send(1, 8, 4)
		time.Sleep(20 * time.Millisecond) // pacing the audio, not synchronisation
	}
	if n, m := in.RTP.CountSince(ended), out.RTP.CountSince(ended); n != 0 || m != 0 {
		t.Fatalf("after EndCall the line received %d RTP packets and the trunk %d", n, m)
	}
	e.waitNoCalls()
	if calls := e.s.LiveCalls(); len(calls) != 0 {
		t.Fatalf("live calls after EndCall: %+v", calls)
	}
	if err := e.waitRecord(ctx, outcomeEnded); err != nil {
		t.Fatal(err)
	}
	if err := e.s.EndCall(lc.ID); !errors.Is(err, ErrNoSuchCall) {
		t.Fatalf("EndCall of an ended call: %v, want ErrNoSuchCall", err)
	}
}

// A warned call shows its verdict and the warning state while the person
// hears the warning; ending it then refuses the caller, who was never
// connected (603), and hangs up the line with BYE.
func TestEndCallDuringWarning(t *testing.T) {
	e := newEnv(t, withCfg(func(c *Config) { c.Timers.WarningChoice = 20 * time.Second }))
	ctx := ctxT(t, 15*time.Second)
	out, in := e.warned()
	lc := e.waitLive(ctx, CallWarning)
	if lc.Action != "warn" || !slices.Equal(lc.Reasons, []string{"blocklist.reported"}) || lc.Number != callerSuspect {
		t.Fatalf("live call %+v", lc)
	}
	if err := e.s.EndCall(lc.ID); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 603)
	if _, err := e.line.WaitRequest(ctx, sip.BYE); err != nil {
		t.Fatalf("line got no BYE: %v", err)
	}
	select {
	case <-in.Ended():
	case <-ctx.Done():
		t.Fatal("line's dialog still up")
	}
	e.waitNoCalls()
}
