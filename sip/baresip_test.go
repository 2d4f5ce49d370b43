package sip

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/media"
	"github.com/cleanline/cleanline/sip/siptest"
)

// Interop with a SIP stack nobody here wrote: Debian's baresip plays the
// landline. Its audio source is a 1 kHz tone and it records what it hears,
// so audio is checked both ways by frequency, not just by packet counts.

const (
	bareToneHz  = 1000.0 // what baresip sends
	trunkToneHz = 440.0  // what the trunk sends (and the test prompts' tone)
)

// otherHz are frequencies that must carry much less power than the tone
// under test.
var otherHz = []float64{300, 440, 700, 1000, 1500, 2200}

func others(except float64) []float64 {
	var out []float64
	for _, f := range otherHz {
		if f != except {
			out = append(out, f)
		}
	}
	return out
}

// startBaresip fails (never skips) when baresip is missing, unless the
// environment opts out: the interop proof must not vanish silently from CI.
func startBaresip(t *testing.T, mods ...func(*siptest.BaresipOptions)) *siptest.Baresip {
	t.Helper()
	return startBaresipAt(t, ipLine, mods...)
}

// startBaresipAt is startBaresip on ip (the line's, or a far end's).
func startBaresipAt(t *testing.T, ip string, mods ...func(*siptest.BaresipOptions)) *siptest.Baresip {
	t.Helper()
	if _, err := exec.LookPath("baresip"); err != nil {
		if os.Getenv("CLEANLINE_SKIP_BARESIP") == "1" {
			t.Skip("CLEANLINE_SKIP_BARESIP=1")
		}
		t.Fatal(siptest.ErrNoBaresip)
	}
	o := siptest.BaresipOptions{IP: ip, MediaIP: ipCleanline, ToneHz: bareToneHz}
	for _, m := range mods {
		m(&o)
	}
	b, err := siptest.StartBaresip(t, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Registered after StartBaresip's own cleanup, so it runs first:
		// kill and reap here, then prove no baresip of ours is left.
		b.Stop()
		if out, err := exec.Command("pgrep", "-f", b.Dir).Output(); err == nil {
			t.Errorf("baresip still running after the test: pids %s", strings.TrimSpace(string(out)))
		}
		if t.Failed() {
			t.Logf("baresip output:\n%s", b.Output())
		}
	})
	return b
}

// baresipEnv is cleanline with baresip as the line's contact.
func baresipEnv(t *testing.T, opts ...envOption) (*env, *siptest.Baresip) {
	b := startBaresip(t)
	opts = append([]envOption{withCfg(func(c *Config) { c.Lines[0].Contact = b.URI() })}, opts...)
	return newEnv(t, opts...), b
}

// answeredByBaresip waits for the trunk's 200 and for baresip's side of the
// call to be up.
func answeredByBaresip(t *testing.T, ctx context.Context, out *siptest.Outgoing, b *siptest.Baresip) {
	t.Helper()
	res, err := out.WaitFinal(ctx)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("caller got %v, %v; want 200 from baresip's auto-answer", res, err)
	}
	if _, err := b.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
}

// heardTone checks that the trunk received audio that is baresip's tone.
func heardTone(t *testing.T, ctx context.Context, out *siptest.Outgoing, hz float64) {
	t.Helper()
	// 1 s of audio; the first packets may be the jitter of start-up.
	if err := out.RTP.WaitCount(ctx, 60); err != nil {
		t.Fatalf("trunk got %d RTP packets from baresip: %v", out.RTP.Count(), err)
	}
	pcm := out.RTP.Audio()
	if ok, r := siptest.ToneDominates(pcm[min(len(pcm), 800):], hz, others(hz), 20); !ok {
		t.Fatalf("trunk's audio from baresip is not a %.0f Hz tone (power ratio to other tones %.1f)", hz, r)
	}
}

func codecPT(out *siptest.Outgoing) uint8 {
	if out.Answer != nil && len(out.Answer.Codecs) > 0 {
		return out.Answer.Codecs[0].PT
	}
	return media.PayloadTypePCMA
}

func TestBaresipAnswersAndAudioFlowsBothWays(t *testing.T) {
	e, b := baresipEnv(t)
	ctx := ctxT(t, 15*time.Second)
	out := e.dial(callerOK)
	answeredByBaresip(t, ctx, out, b)

	talkWithBaresipThenHangUp(t, ctx, e, out, b, 2*time.Second)
	if !slices.ContainsFunc(b.ReceivedRequests(0), func(l string) bool { return strings.HasPrefix(l, "BYE ") }) {
		t.Errorf("baresip's SIP trace shows no BYE received: %q", b.ReceivedRequests(0))
	}
	heardByBaresip(t, b)
}

// talkWithBaresipThenHangUp has the caller (out: the trunk, or the line
// calling baresip as the far end) talk (440 Hz) for d while baresip's
// tone comes back, then hang up: baresip gets the BYE and its call
// closes, and cleanline has no call left.
func talkWithBaresipThenHangUp(t *testing.T, ctx context.Context, e *env, out *siptest.Outgoing, b *siptest.Baresip, d time.Duration) {
	t.Helper()
	sent := make(chan error, 1)
	go func() { sent <- out.RTP.SendPCM(ctx, siptest.Sine(trunkToneHz, d), codecPT(out)) }()
	heardTone(t, ctx, out, bareToneHz)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	e.waitNoCalls()
}

// heardByBaresip checks baresip's own recording of what it heard: over a
// second of the trunk's tone.
func heardByBaresip(t *testing.T, b *siptest.Baresip) {
	t.Helper()
	pcm, err := b.Recording("dec")
	if err != nil {
		t.Fatal(err)
	}
	if len(pcm) < 8000 {
		t.Fatalf("baresip recorded %d samples, want over a second", len(pcm))
	}
	if ok, r := siptest.ToneDominates(pcm, trunkToneHz, others(trunkToneHz), 20); !ok {
		t.Fatalf("baresip's recording is not the trunk's %.0f Hz tone (power ratio %.1f)", trunkToneHz, r)
	}
}

// D1 with a real phone: baresip hangs up, the trunk gets BYE, and nothing
// the trunk does afterwards reaches baresip.
func TestD1BaresipHangsUpTrunkGetsBye(t *testing.T) {
	e, b := baresipEnv(t)
	ctx := ctxT(t, 15*time.Second)
	out := e.dial(callerOK)
	answeredByBaresip(t, ctx, out, b)
	heardTone(t, ctx, out, bareToneHz)

	if r, err := b.Command(ctx, "hangup"); err != nil || !r.OK {
		t.Fatalf("baresip hangup: %+v, %v", r, err)
	}
	if _, err := e.trunk.WaitRequest(ctx, sip.BYE); err != nil {
		t.Fatalf("trunk never got BYE after baresip hung up: %v", err)
	}
	if _, err := b.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	e.waitNoCalls()

	// The trunk leg carries on as a fraudster's would: a re-INVITE and
	// more audio. cleanline refuses the first; baresip receives no SIP.
	mark := b.OutputLines()
	res, err := out.ReInvite(ctx, media.SendRecv)
	if err != nil || res.StatusCode != 481 {
		t.Fatalf("re-INVITE after the line hung up got %v, %v; want 481", res, err)
	}
	_ = out.RTP.SendPCM(ctx, siptest.Sine(trunkToneHz, 200*time.Millisecond), codecPT(out))
	// Probe baresip with OPTIONS from the trunk's own phone and wait for
	// its answer to appear in the trace: everything cleanline might still
	// have forwarded would have reached baresip before that.
	if code, err := b.Ping(ctx, ipTrunk); err != nil || code != 200 {
		t.Fatalf("OPTIONS probe to baresip: %d, %v", code, err)
	}
	got := b.ReceivedRequests(mark)
	if len(got) != 1 || !strings.HasPrefix(got[0], "OPTIONS ") {
		t.Fatalf("baresip received %q after its hangup, want only the OPTIONS probe", got)
	}
}

// The warning is played to a real phone, which presses 1 (RFC 4733 from
// baresip's sndcode) and only then is the caller answered.
func TestBaresipWarnPress1Connects(t *testing.T) {
	e, b := baresipEnv(t, withCfg(func(c *Config) { c.Timers.WarningChoice = 10 * time.Second }))
	ctx := ctxT(t, 15*time.Second)
	out := e.dial(callerSuspect)
	if _, err := out.WaitProvisional(ctx, 180); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-out.Responses():
		if !res.IsProvisional() {
			t.Fatalf("caller got %d before the line chose", res.StatusCode)
		}
	default:
	}
	// Press 1 once the warning was heard (cleanline may stop the prompt at
	// the first digit).
	if err := b.WaitRecorded(ctx, "dec", 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if n := out.RTP.Count(); n != 0 {
		t.Fatalf("caller received %d RTP packets before the line chose", n)
	}
	if r, err := b.Command(ctx, "sndcode 1"); err != nil || !r.OK {
		t.Fatalf("baresip sndcode: %+v, %v", r, err)
	}
	answeredByBaresip(t, ctx, out, b)
	heardTone(t, ctx, out, bareToneHz)
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	pcm, err := b.Recording("dec")
	if err != nil {
		t.Fatal(err)
	}
	// The test warning prompt is a 0.4 s 440 Hz tone: baresip heard it.
	if ok, r := siptest.ToneDominates(pcm, trunkToneHz, others(trunkToneHz), 5); !ok {
		t.Fatalf("baresip's recording does not hold the warning tone (ratio %.1f, %d samples)", r, len(pcm))
	}
}

// An ATA set to "SRTP mandatory" (Debian's baresip with its srtp module,
// srtp-mand) on a line marked srtp: cleanline offers it RTP/SAVP with a
// key of its own (RFC 4568), it answers with its key, and the call's audio
// crosses both ways, encrypted on the line's leg and plain on the
// trunk's, with nothing failing authentication. The same phone on a line
// not marked srtp is offered plain RTP and refuses it: the caller gets
// the phone's refusal, and no audio went to it in the clear.
func TestBaresipSRTP(t *testing.T) {
	mand := func(o *siptest.BaresipOptions) { o.MediaEnc = "srtp-mand" }
	t.Run("line marked srtp", func(t *testing.T) {
		b := startBaresip(t, mand)
		e := newEnv(t, withCfg(func(c *Config) { c.Lines[0].Contact, c.Lines[0].SRTP = b.URI(), true }))
		ctx := ctxT(t, 15*time.Second)
		out := e.dial(callerOK)
		answeredByBaresip(t, ctx, out, b)
		if out.Answer == nil || out.Answer.SRTP {
			t.Fatalf("the trunk's answer is %+v; want plain RTP on its leg", out.Answer)
		}
		talkWithBaresipThenHangUp(t, ctx, e, out, b, 2*time.Second)
		rec := e.logs.FilterMessage("call").All()
		if len(rec) != 1 {
			t.Fatalf("%d call records", len(rec))
		}
		if f := rec[0].ContextMap(); f["line_srtp"] != true || f["trunk_srtp"] != false || f["srtp_failed"] != uint64(0) {
			t.Errorf("call record: line_srtp %v trunk_srtp %v srtp_failed %v; want true, false, 0", f["line_srtp"], f["trunk_srtp"], f["srtp_failed"])
		}
		heardByBaresip(t, b)
	})
	t.Run("line not marked", func(t *testing.T) {
		b := startBaresip(t, mand)
		e := newEnv(t, withCfg(func(c *Config) { c.Lines[0].Contact = b.URI() }))
		ctx := ctxT(t, 15*time.Second)
		out := e.dial(callerOK)
		res, err := out.WaitFinal(ctx)
		if err != nil || res.StatusCode < 400 {
			t.Fatalf("caller got %v, %v; want the phone's refusal of plain RTP", res, err)
		}
		e.waitNoCalls()
	})
}
