package sip

import (
	"context"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/media"
	"github.com/cleanline/cleanline/sip/siptest"
)

// shortTimers makes a session expire in seconds: Min-SE 1 s (below RFC
// 4028's 90 s floor, which only tests may lift), Session-Expires 2 s, so a
// watched session ends 2 s − 2/3 s after its last refresh and we refresh
// our own after 1 s.
func shortTimers(c *Config) {
	c.minSEFloor = time.Second
	c.Timers.MinSE = time.Second
	c.Timers.SessionExpires = 2 * time.Second
}

func timerHeaders(se string) []sip.Header {
	return []sip.Header{sip.NewHeader("Supported", "timer"), sip.NewHeader("Session-Expires", se)}
}

// connectWith places an allowed call with extra INVITE headers and answers it.
func (e *env) connectWith(hdrs ...sip.Header) (*siptest.Outgoing, *siptest.Incoming, *sip.Response) {
	e.t.Helper()
	ctx := ctxT(e.t, 5*time.Second)
	out := e.dial(callerOK, hdrs...)
	in, err := e.line.Incoming(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := in.Answer(); err != nil {
		e.t.Fatal(err)
	}
	res, err := out.WaitFinal(ctx)
	if err != nil || res.StatusCode != 200 {
		e.t.Fatalf("caller got %v, %v; want 200", res, err)
	}
	return out, in, res
}

func wantEnded(t *testing.T, ctx context.Context, what string, chans ...<-chan struct{}) {
	t.Helper()
	for _, ch := range chans {
		select {
		case <-ch:
		case <-ctx.Done():
			t.Fatalf("%s: a leg was left up", what)
		}
	}
}

// RFC 4028 §9/§6: a Session-Expires below our Min-SE is refused with 422
// naming the minimum; the line never rings.
func TestSessionIntervalTooSmallGets422(t *testing.T) {
	e := newEnv(t, withCfg(func(c *Config) { c.Timers.SessionExpires = 30 * time.Minute }))
	out := e.dial(callerOK, timerHeaders("30")...)
	res := wantFinal(t, out, 422)
	if h := res.GetHeader("Min-SE"); h == nil || h.Value() != "90" {
		t.Fatalf("422 Min-SE: %v, want 90", h)
	}
	if err := e.line.NoIncoming(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

// D6: the caller is the refresher and stops refreshing: both legs get BYE.
func TestD6SessionExpiryTearsDownBothLegs(t *testing.T) {
	e := newEnv(t, withCfg(shortTimers))
	ctx := ctxT(t, 10*time.Second)
	out, in, res := e.connectWith(timerHeaders("2;refresher=uac")...)
	if se := res.GetHeader("Session-Expires"); se == nil || se.Value() != "2;refresher=uac" {
		t.Fatalf("200 Session-Expires: %v, want 2;refresher=uac", se)
	}
	if rq := res.GetHeader("Require"); rq == nil || rq.Value() != "timer" {
		t.Fatalf("200 Require: %v, want timer", rq)
	}
	answered := time.Now()
	if _, err := e.trunk.WaitRequest(ctx, sip.BYE); err != nil {
		t.Fatal(err)
	}
	wantEnded(t, ctx, "session expiry", out.Ended(), in.Ended())
	if d := time.Since(answered); d < time.Second {
		t.Fatalf("torn down after %s, before the session could expire", d)
	}
	e.waitNoCalls()
}

// Refreshes by re-INVITE and by UPDATE keep the call up well past its
// session interval; once they stop, it ends.
func TestSessionRefreshesKeepCallUp(t *testing.T) {
	e := newEnv(t, withCfg(shortTimers))
	ctx := ctxT(t, 15*time.Second)
	out, in, _ := e.connectWith(timerHeaders("2;refresher=uac")...)
	se := timerHeaders("2;refresher=uac")
	start := time.Now()
	for i := 0; time.Since(start) < 3*time.Second; i++ {
		select {
		case <-time.After(600 * time.Millisecond): // the refresher's schedule, well inside 2 s
		case <-out.Ended():
			t.Fatalf("call ended after %s despite refreshes", time.Since(start))
		}
		var res *sip.Response
		var err error
		if i%2 == 0 {
			res, err = out.ReInvite(ctx, media.SendRecv, se...)
		} else {
			res, err = out.Request(ctx, sip.UPDATE, nil, "", se...)
		}
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("refresh %d: %v %v", i, res, err)
		}
		if h := res.GetHeader("Session-Expires"); h == nil || h.Value() != "2;refresher=uac" {
			t.Fatalf("refresh %d answered Session-Expires %v", i, h)
		}
	}
	if n := e.s.ActiveCalls(); n != 1 {
		t.Fatalf("%d calls alive after 3 s of refreshes, want 1", n)
	}
	for _, r := range append(e.trunk.Requests(), e.line.Requests()...) {
		if r.Method == sip.BYE {
			t.Fatal("BYE sent while the session was being refreshed")
		}
	}
	// When refreshes stop, both legs end.
	wantEnded(t, ctx, "refreshes stopped", out.Ended(), in.Ended())
	e.waitNoCalls()
}

// A caller without session timer support cannot refresh, so cleanline does
// (refresher=uas, RFC 4028 §9): with re-INVITEs, as the caller does not
// allow UPDATE. While it answers, the call stays up; once it stops, the
// refresh fails and both legs end (D6).
func TestD6SessionTimerForCallerWithoutSupport(t *testing.T) {
	e := newEnv(t, withCfg(shortTimers))
	ctx := ctxT(t, 15*time.Second)
	out, in, res := e.connectWith()
	if se := res.GetHeader("Session-Expires"); se == nil || se.Value() != "2;refresher=uas" {
		t.Fatalf("200 Session-Expires: %v, want 2;refresher=uas", se)
	}
	if rq := res.GetHeader("Require"); rq != nil {
		t.Fatalf("200 requires %q of a caller that does not support it", rq.Value())
	}
	for n := 1; n <= 2; n++ {
		if err := e.trunk.WaitRequests(ctx, sip.INVITE, n); err != nil {
			t.Fatalf("refresh %d: %v", n, err)
		}
		select {
		case <-out.Ended():
			t.Fatal("call ended while the caller answered refreshes")
		default:
		}
	}
	e.trunk.SetReply(sip.INVITE, 481) // the caller has forgotten the call
	if _, err := e.trunk.WaitRequest(ctx, sip.BYE); err != nil {
		t.Fatal(err)
	}
	wantEnded(t, ctx, "failed refresh", in.Ended())
	e.waitNoCalls()
}

// The line is the refresher (its 2xx says refresher=uas) and never
// refreshes: both legs end.
func TestD6SessionExpiryOnLineLeg(t *testing.T) {
	e := newEnv(t, withCfg(shortTimers))
	ctx := ctxT(t, 10*time.Second)
	out := e.dial(callerOK)
	in, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h := in.Req.GetHeader("Session-Expires"); h == nil || h.Value() != "2" {
		t.Fatalf("line INVITE Session-Expires %v, want 2", h)
	}
	if err := in.Answer(sip.NewHeader("Session-Expires", "2;refresher=uas"), sip.NewHeader("Require", "timer")); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	wantEnded(t, ctx, "line session expiry", out.Ended(), in.Ended())
	e.waitNoCalls()
}
