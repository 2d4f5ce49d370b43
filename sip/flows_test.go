package sip

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cleanline/cleanline/sip/media"
	"github.com/cleanline/cleanline/sip/siptest"
)

func TestAllowBridgesAudioBothWays(t *testing.T) {
	talkThenHangUp(t, newEnv(t))
}

func wantFinal(t *testing.T, out *siptest.Outgoing, code int) *sip.Response {
	t.Helper()
	res, err := out.WaitFinal(ctxT(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != code {
		t.Fatalf("caller got %d %s, want %d", res.StatusCode, res.Reason, code)
	}
	return res
}

func TestUnknownSourceGets403AndNothingIsForwarded(t *testing.T) {
	e := newEnv(t)
	stranger := siptest.NewPhone(t, ipStranger)
	out, err := stranger.Dial(ctxT(t, 5*time.Second), e.lineURI(), siptest.DialOptions{FromUser: callerOK})
	if err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 403)
	if err := e.line.NoIncoming(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func TestBlockGets603AndLineNeverRings(t *testing.T) {
	e := newEnv(t)
	out := e.dial(callerScam)
	wantFinal(t, out, 603)
	if err := e.line.NoIncoming(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e.waitNoCalls()
}

// A blocked caller is refused before any relay exists: with every relay
// port held by a live call, it still gets 603 (not 503), its record and
// the pool untouched, while an allowed caller gets 503 for want of ports.
func TestBlockTakesNoRelayPort(t *testing.T) {
	e := newEnv(t, withCfg(func(c *Config) { c.Media.PortMax = c.Media.PortMin + 3 })) // one call's ports
	ctx := ctxT(t, 10*time.Second)
	out, in := e.connect()
	if free := e.s.ports.Free(); free != 0 {
		t.Fatalf("%d relay ports free with the one call up, want 0", free)
	}
	wantFinal(t, e.dial(callerScam), 603)
	if err := e.waitRecord(ctx, outcomeBlocked); err != nil {
		t.Fatal(err)
	}
	rec := e.logs.FilterMessage("call").FilterField(zap.String("outcome", outcomeBlocked)).All()
	if len(rec) != 1 {
		t.Fatalf("%d blocked call records, want 1", len(rec))
	}
	f := rec[0].ContextMap()
	if f["caller"] != callerScam || f["verdict"] != "block" || len(f["reasons"].([]interface{})) == 0 ||
		f["trunk_rtp_in"] != uint64(0) || f["line_rtp_out"] != uint64(0) {
		t.Errorf("blocked call record: %v", f)
	}
	if free := e.s.ports.Free(); free != 0 {
		t.Errorf("%d relay ports free after the blocked call, want 0", free)
	}
	wantFinal(t, e.dial(callerOK), 503) // the pool really is empty
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	<-in.Ended()
	e.waitNoCalls()
	if free, size := e.s.ports.Free(), e.s.ports.Size(); free != size {
		t.Errorf("relay ports: %d of %d back in the pool", free, size)
	}
}

func TestBlockWithAnnouncementPlaysNoticeThen603(t *testing.T) {
	e := newEnv(t, withCfg(func(c *Config) { c.Trunks[0].AnnounceBlocked = true }))
	ctx := ctxT(t, 15*time.Second)
	out := e.dial(callerScam)
	if _, err := out.WaitProvisional(ctx, 183); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 603)
	if n := out.RTP.Count(); n < 15 {
		t.Fatalf("caller heard %d packets of the blocked notice, want a prompt", n)
	}
	if err := e.line.NoIncoming(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

func TestAssertedIdentityFromTrustedTrunkIsScreened(t *testing.T) {
	e := newEnv(t)
	// From looks fine; the asserted identity is the scammer's.
	out := e.dial(callerOK, sip.NewHeader("P-Asserted-Identity", "<sip:"+callerScam+"@provider.example>"))
	wantFinal(t, out, 603)
}

// The far side's refusal maps back to the caller, and the call record names
// the side that refused: the line on an inbound call, the trunk on a line's
// own call (whose record carries what was dialled once).
func TestFarRefusalMapsBackAndIsRecordedForItsSide(t *testing.T) {
	for _, tc := range []struct {
		far, caller int
		inbound     string // outcome of an inbound call; the outbound one says trunk_ for line_
	}{{486, 486, "line_busy"}, {603, 603, "line_declined"}, {480, 480, "no_answer"}, {500, 480, "line_failed"}} {
		t.Run(fmt.Sprint(tc.far), func(t *testing.T) {
			e := newEnv(t)
			ctx := ctxT(t, 10*time.Second)
			out := e.dial(callerOK)
			in, err := e.line.Incoming(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = in.Reject(tc.far, "No")
			wantFinal(t, out, tc.caller)
			e.waitNoCalls()
			wantRecord(t, e, "inbound", tc.inbound, "line")

			call, err := e.line.Dial(ctx, "sip:02079460018@"+e.s.Addr("udp").String(), siptest.DialOptions{FromUser: "landline"})
			if err != nil {
				t.Fatal(err)
			}
			tin, err := e.trunk.Incoming(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = tin.Reject(tc.far, "No")
			wantFinal(t, call, tc.caller)
			e.waitNoCalls()
			rec := wantRecord(t, e, "outbound", strings.Replace(tc.inbound, "line_", "trunk_", 1), "trunk")
			n := 0
			for _, f := range rec.Context {
				if f.Key == "dialled" {
					n++
				}
			}
			if n != 1 {
				t.Errorf("outbound record carries dialled %d times", n)
			}
		})
	}
}

// wantRecord finds the one call record of direction dir and checks how it ended.
func wantRecord(t *testing.T, e *env, dir, outcome, endedBy string) observer.LoggedEntry {
	t.Helper()
	recs := e.logs.FilterMessage("call").FilterField(zap.String("dir", dir)).All()
	if len(recs) != 1 {
		t.Fatalf("%d %s call records, want 1", len(recs), dir)
	}
	m := recs[0].ContextMap()
	if m["outcome"] != outcome || fmt.Sprint(m["ended_by"]) != endedBy {
		t.Fatalf("%s record: outcome %v ended_by %v; want %s by %s", dir, m["outcome"], m["ended_by"], outcome, endedBy)
	}
	return recs[0]
}

func TestLineNoAnswerGets480(t *testing.T) {
	e := newEnv(t, withCfg(func(c *Config) { c.Timers.NoAnswer = 500 * time.Millisecond }))
	ctx := ctxT(t, 10*time.Second)
	out := e.dial(callerOK)
	in, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = in.Ring()
	if _, err := out.WaitProvisional(ctx, 180); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 480)
	select {
	case <-in.Ended(): // CANCEL reached the line
	case <-ctx.Done():
		t.Fatal("line still ringing after no-answer")
	}
	e.waitNoCalls()
}

func TestCallerCancelEndsLineLeg(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	out := e.dial(callerOK)
	in, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = in.Ring()
	if _, err := out.WaitProvisional(ctx, 180); err != nil {
		t.Fatal(err)
	}
	out.Cancel()
	wantFinal(t, out, 487)
	select {
	case <-in.Ended():
	case <-ctx.Done():
		t.Fatal("line still ringing after the caller's CANCEL")
	}
	e.waitNoCalls()
}

func TestEarlyMediaFromLineReachesCaller(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	out := e.dial(callerOK)
	in, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.EarlyMedia(); err != nil {
		t.Fatal(err)
	}
	if _, err := out.WaitProvisional(ctx, 183); err != nil {
		t.Fatal(err)
	}
	_ = in.RTP.Send(5, 8, 0x33)
	if err := out.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatalf("caller heard %d early packets: %v", out.RTP.Count(), err)
	}
	_ = in.Reject(486, "Busy Here")
	wantFinal(t, out, 486)
}

func TestHoldAndResumeAnsweredAtRelay(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	out, in := e.connect()
	for _, dir := range []media.Direction{media.SendOnly, media.SendRecv} {
		res, err := out.ReInvite(ctx, dir)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("re-INVITE %s: %v %v", dir, res, err)
		}
		si, err := media.ParseSDP(res.Body())
		if err != nil {
			t.Fatal(err)
		}
		if want := dir.Reverse(); si.Direction != want {
			t.Fatalf("answer direction %s, want %s", si.Direction, want)
		}
	}
	// Still bridged after resume; the line heard no re-INVITE.
	_ = out.RTP.Send(5, 8, 0x44)
	if err := in.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatal(err)
	}
	for _, r := range e.line.Requests() {
		if r.Method == sip.INVITE {
			t.Fatal("re-INVITE was passed to the line")
		}
	}
	res, err := out.Request(ctx, sip.OPTIONS, nil, "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("in-dialog OPTIONS: %v %v", res, err)
	}
	res, err = out.Request(ctx, sip.UPDATE, nil, "")
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("in-dialog UPDATE: %v %v", res, err)
	}
}

// An INVITE without SDP (late offer) is refused explicitly, from the trunk
// and from the line alike: 488 "Late Offer Not Supported" with a Warning
// saying what to change; nothing rings.
func TestLateOfferRefusedExplicitly(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	for _, tc := range []struct {
		from *siptest.Phone
		uri  string
	}{{e.trunk, e.lineURI()}, {e.line, "sip:01632960000@" + e.s.Addr("udp").String()}} {
		out, err := tc.from.Dial(ctx, tc.uri, siptest.DialOptions{FromUser: callerOK, NoSDP: true})
		if err != nil {
			t.Fatal(err)
		}
		res := wantFinal(t, out, 488)
		if res.Reason != "Late Offer Not Supported" {
			t.Fatalf("reason %q", res.Reason)
		}
		if w := res.GetHeader("Warning"); w == nil || !strings.HasPrefix(w.Value(), "399 ") || !strings.Contains(w.Value(), "SDP offer") {
			t.Fatalf("Warning %v", w)
		}
	}
	if err := e.line.NoIncoming(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := e.trunk.NoIncoming(10 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	e.waitNoCalls()
}
