package sip

import (
	"math"
	"testing"
	"time"

	"github.com/cleanline/cleanline/sip/siptest"
)

// warned rings the line with a suspect caller and answers it; the caller
// must have heard only 180.
func (e *env) warned() (*siptest.Outgoing, *siptest.Incoming) {
	e.t.Helper()
	ctx := ctxT(e.t, 10*time.Second)
	out := e.dial(callerSuspect)
	if _, err := out.WaitProvisional(ctx, 180); err != nil {
		e.t.Fatal(err)
	}
	in, err := e.line.Incoming(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := in.Answer(); err != nil {
		e.t.Fatal(err)
	}
	return out, in
}

func rms(pcm []int16) float64 {
	var sum float64
	for _, s := range pcm {
		sum += float64(s) * float64(s)
	}
	return math.Sqrt(sum / float64(max(len(pcm), 1)))
}

func TestWarnPress1ConnectsAfterWarningAudio(t *testing.T) {
	e := newEnv(t, realPrompts)
	ctx := ctxT(t, 15*time.Second)
	out, in := e.warned()
	// The warning arrives as real audio before anything else happens.
	if err := in.RTP.WaitCount(ctx, 50); err != nil {
		t.Fatalf("line heard %d warning packets: %v", in.RTP.Count(), err)
	}
	if r := rms(in.RTP.Audio()); r < 300 {
		t.Fatalf("warning decodes to near silence (rms %.0f)", r)
	}
	// The caller has not been answered and hears nothing of the line.
	select {
	case res := <-out.Responses():
		if !res.IsProvisional() {
			t.Fatalf("caller got %d before the line chose", res.StatusCode)
		}
	default:
	}
	_ = in.RTP.Send(5, 8, 0x55)
	if err := in.RTP.SendDTMF('1', in.TelephoneEventPT()); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	// (The tail of the digit's RFC 4733 end packets may follow the bridge;
	// no audio may.)
	if n := len(out.RTP.Audio()); n != 0 {
		t.Fatalf("caller received %d audio samples before being connected", n)
	}
	before := in.RTP.Count()
	_ = out.RTP.Send(5, 8, 0x66)
	if err := in.RTP.WaitCount(ctx, before+5); err != nil {
		t.Fatal("not bridged after 1")
	}
}

func TestWarnPress3ReportsAndRefuses(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 20*time.Second)
	out, in := e.warned()
	if err := in.RTP.WaitCount(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := in.Request(ctx, "INFO", []byte("Signal=3\r\nDuration=160\r\n"), "application/dtmf-relay"); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 603)
	select {
	case <-in.Ended():
	case <-ctx.Done():
		t.Fatal("line not hung up after reporting")
	}
	en, err := e.store.Get(ctx, callerSuspect, false)
	if err != nil || en.Reports != 2 {
		t.Fatalf("report not recorded: %+v %v", en, err)
	}
	if out.RTP.Count() != 0 {
		t.Fatal("caller heard something")
	}
}

func TestWarnLineHangsUpRefusesCaller(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	out, in := e.warned()
	if err := in.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := in.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 603)
	e.waitNoCalls()
}

func TestWarnTimeoutRefusesCaller(t *testing.T) {
	e := newEnv(t, withCfg(func(c *Config) { c.Timers.WarningChoice = 200 * time.Millisecond }))
	ctx := ctxT(t, 10*time.Second)
	out, in := e.warned()
	wantFinal(t, out, 603)
	select {
	case <-in.Ended():
	case <-ctx.Done():
		t.Fatal("line not hung up after the choice timed out")
	}
}

// D3 and the person's choice: a warned caller the person accepted (pressed
// 1) who calls back inside the cooldown is warned again, not refused; a
// warned caller the person did not accept is refused.
func TestD3AcceptedCallerIsWarnedAgainRefusedOneIsNot(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 20*time.Second)
	answerWarning := func(digit rune) {
		t.Helper()
		out, in := e.warned()
		if err := in.RTP.WaitCount(ctx, 5); err != nil {
			t.Fatal(err)
		}
		if digit == 0 {
			_ = in.Bye(ctx)
			wantFinal(t, out, 603)
		} else {
			if err := in.RTP.SendDTMF(digit, in.TelephoneEventPT()); err != nil {
				t.Fatal(err)
			}
			wantFinal(t, out, 200)
			if err := out.Bye(ctx); err != nil {
				t.Fatal(err)
			}
			waitEnded(ctx, t, in.Ended())
		}
		e.waitNoCalls()
		if err := e.waitIdle(ctx); err != nil { // the call's cooldown decision (Conclude) is made
			t.Fatal(err)
		}
	}
	answerWarning('1')
	answerWarning('1') // warned again, rung again, accepted again
	answerWarning(0)   // this time the person hangs up on the warning
	again := e.dial(callerSuspect)
	wantFinal(t, again, 603)
	if err := e.line.NoIncoming(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
