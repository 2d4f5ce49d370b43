package sip

import (
	"context"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/media"
	"github.com/cleanline/cleanline/sip/siptest"
)

// barredHz is the tone the tests' barred prompt is made of: every other
// prompt is 440 Hz, so what the line hears can only be the barred notice.
const barredHz = 1000

func toneAt(name string, hz float64, d time.Duration) *media.Prompt {
	pcm := make([]int16, int(d.Seconds()*8000))
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(2*math.Pi*hz*float64(i)/8000))
	}
	return media.NewPrompt(name, pcm)
}

// lineDials places a call from the line to what (a Request-URI user part,
// escaped as a phone would escape it).
func (e *env) lineDials(ctx context.Context, what string) *siptest.Outgoing {
	e.t.Helper()
	call, err := e.line.Dial(ctx, "sip:"+what+"@"+e.s.Addr("udp").String(), siptest.DialOptions{FromUser: "landline"})
	if err != nil {
		e.t.Fatal(err)
	}
	return call
}

// wantBarred checks a barred call from the line: a 183 with our SDP, the
// barred notice as real RTP from the address that SDP gave, then 403.
func wantBarred(ctx context.Context, t *testing.T, call *siptest.Outgoing) {
	t.Helper()
	if res, err := call.WaitProvisional(ctx, 183); err != nil {
		t.Fatalf("no 183 with the notice: %v (%v)", err, res)
	}
	res := wantFinal(t, call, 403)
	if res.Reason != "Number barred on this line" {
		t.Errorf("reason phrase %q", res.Reason)
	}
	// 0.6 s of prompt is 30 packets, all sent before the 403.
	if err := call.RTP.WaitCount(ctx, 28); err != nil {
		t.Fatalf("line heard %d packets of the notice: %v", call.RTP.Count(), err)
	}
	if call.Answer == nil {
		t.Fatal("183 carried no SDP")
	}
	for _, p := range call.RTP.Packets() {
		if p.From.Addr().Unmap() != call.Answer.RTP.Addr() || p.From.Port() != call.Answer.RTP.Port() {
			t.Fatalf("RTP from %s; the 183's SDP said %s", p.From, call.Answer.RTP)
		}
	}
	if ok, r := siptest.ToneDominates(call.RTP.Audio(), barredHz, []float64{440}, 10); !ok {
		t.Fatalf("the line did not hear the barred notice (%d Hz over 440 Hz: %.1f)", barredHz, r)
	}
}

// TestBarredClassesAreAnnouncedRefusedAndNeverReachTheTrunk: with the
// default policy, the line dials each barred class (issue 12 §2's numbers
// among them) while it holds another call. Each time it hears the barred
// notice as early media and gets 403; the held call stays up (only a
// protected number ends other calls, D4); the trunk gets no INVITE: the
// first it gets is the ordinary call placed afterwards. Each refusal is
// counted by class and recorded.
func TestBarredClassesAreAnnouncedRefusedAndNeverReachTheTrunk(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnv(t, withServerOpts(WithMetrics(reg)))
	e.s.prompts.Set(media.PromptBarred, toneAt(media.PromptBarred, barredHz, 600*time.Millisecond))
	ctx := ctxT(t, 60*time.Second)
	held, heldLine := e.connect()

	cases := []struct {
		what, dial string
		class      screening.DialClass
	}{
		{"09 premium rate", "09012345678", screening.DialPremiumRate},
		{"0871", "08712345678", screening.DialPremiumRate},
		{"0872, international form", "+448722345678", screening.DialPremiumRate},
		{"0873, 00 form", "00448732345678", screening.DialPremiumRate},
		{"118118", "118118", screening.DialPremiumRate},
		{"118500", "118500", screening.DialPremiumRate},
		{"09 after 141", "14109012345678", screening.DialPremiumRate},
		{"+1 212", "+12125550100", screening.DialInternational},
		{"001 212", "0012125550100", screening.DialInternational},
		{"00881 satellite", "00881612345678", screening.DialSatellite},
		{"+88216", "%2B8821612345678", screening.DialSatellite},
		{"070 personal", "07012345678", screening.DialPersonal},
		{"call divert", "%2A21%2A09012345678%23", screening.DialServiceCode},
	}
	counts := map[screening.DialClass]float64{}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			call := e.lineDials(ctx, c.dial)
			wantBarred(ctx, t, call)
			counts[c.class]++
			if got := value(t, e.s.metrics.barred.WithLabelValues(string(c.class))); got != counts[c.class] {
				t.Errorf("cleanline_dials_barred_total{class=%q} = %v, want %v", c.class, got, counts[c.class])
			}
			select {
			case <-held.Ended():
				t.Fatal("a barred number ended the line's other call")
			case <-heldLine.Ended():
				t.Fatal("a barred number ended the line's other call")
			default:
			}
		})
	}
	// The records: one per barred call, outcome barred, with the class.
	deadline := time.Now().Add(5 * time.Second)
	for e.logs.FilterMessage("call").FilterField(zap.String("outcome", outcomeBarred)).Len() < len(cases) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // poll pace, nothing orders on it
	}
	recs := e.logs.FilterMessage("call").FilterField(zap.String("outcome", outcomeBarred)).All()
	if len(recs) != len(cases) {
		t.Fatalf("%d barred call records, want %d", len(recs), len(cases))
	}
	for i, r := range recs {
		m := r.ContextMap()
		classes, _ := m["dial_classes"].([]interface{})
		if m["dir"] != "outbound" || m["barred"] != string(cases[i].class) || !slices.Contains(classes, any(string(cases[i].class))) {
			t.Errorf("record %d (%s): dir %v barred %v dial_classes %v", i, cases[i].dial, m["dir"], m["barred"], m["dial_classes"])
		}
	}
	if got := value(t, e.s.metrics.calls.WithLabelValues("outbound", outcomeBarred)); got != float64(len(cases)) {
		t.Errorf("cleanline_calls_total{outbound,barred} = %v, want %d", got, len(cases))
	}

	// Nothing reached the trunk: the first INVITE it gets is this one.
	call := e.lineDials(ctx, "02079460018")
	in, err := e.trunk.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in.Req.Recipient.User != "02079460018" {
		t.Fatalf("the trunk's first INVITE from the line was for %s", in.Req.Recipient.User)
	}
	_ = in.Reject(486, "Busy Here")
	wantFinal(t, call, 486)
	// And the held call still carries audio both ways.
	if err := held.RTP.Send(5, 8, 0x33); err != nil {
		t.Fatal(err)
	}
	if err := heldLine.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatalf("held call no longer carries audio: %v", err)
	}
}

// TestBarredNeverEmergencyProtectedOrOrdinary: with the default policy,
// 999 and 112 reach the trunk (and 999 still clears the line first, D4),
// as do a protected number in a barred class (the line's bank abroad), a
// trusted contact abroad (the person's son), an ordinary number and a
// shared-cost one; none is counted as barred.
func TestBarredNeverEmergencyProtectedOrOrdinary(t *testing.T) {
	e := newEnv(t, withCfg(func(c *Config) { c.Lines[0].Policy.Protected = []string{"+1 202 555 0199"} }))
	ctx := ctxT(t, 60*time.Second)
	if err := e.store.Trust(ctx, "home", "+14165550123"); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		what, dial string
		classes    []interface{} // the record's dial_classes
	}{
		{"999", "999", nil}, {"112", "112", nil}, {"protected, abroad", "0012025550199", []interface{}{"international"}},
		{"trusted, abroad", "+14165550123", []interface{}{"international"}},
		{"ordinary", "02079460018", nil}, {"mobile", "07700900123", nil}, {"shared cost", "08452345678", []interface{}{"shared_cost"}},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			held, heldLine := e.connect()
			call := e.lineDials(ctx, c.dial)
			in, err := e.trunk.Incoming(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if in.Req.Recipient.User != c.dial {
				t.Fatalf("trunk got %s, want %s", in.Req.Recipient.User, c.dial)
			}
			if c.dial == "999" || c.what == "protected, abroad" {
				waitEnded(ctx, t, held.Ended())
				waitEnded(ctx, t, heldLine.Ended())
			} else {
				_ = held.Bye(ctx)
				waitEnded(ctx, t, heldLine.Ended())
			}
			if err := in.Answer(); err != nil {
				t.Fatal(err)
			}
			wantFinal(t, call, 200)
			if err := call.Bye(ctx); err != nil {
				t.Fatal(err)
			}
			waitEnded(ctx, t, in.Ended())
			e.waitNoCalls()
		})
	}
	// Each call's record names the classes of what was dialled, barred or not.
	for _, c := range cases {
		recs := e.logs.FilterMessage("call").FilterField(zap.String("dialled", c.dial)).All()
		if len(recs) != 1 {
			t.Fatalf("%s: %d call records", c.dial, len(recs))
		}
		m := recs[0].ContextMap()
		got, _ := m["dial_classes"].([]interface{})
		if m["outcome"] != outcomeCompleted || m["barred"] != nil || !slices.Equal(got, c.classes) {
			t.Errorf("%s: record outcome %v, barred %v, dial_classes %v; want completed, none, %v", c.dial, m["outcome"], m["barred"], m["dial_classes"], c.classes)
		}
	}
	if got := value(t, e.s.metrics.barred.WithLabelValues(string(screening.DialInternational))); got != 0 {
		t.Errorf("cleanline_dials_barred_total{international} = %v, want 0", got)
	}
}

// TestBarredUnlessTheLineAllowsIt: a line whose policy allows
// international calls reaches the trunk with +1 (and its record names the
// class); satellite numbers stay barred, for they are a class of their own.
func TestBarredUnlessTheLineAllowsIt(t *testing.T) {
	yes := true
	e := newEnv(t, withCfg(func(c *Config) { c.Lines[0].Policy.Dial = &screening.LineDial{International: &yes} }))
	e.s.prompts.Set(media.PromptBarred, toneAt(media.PromptBarred, barredHz, 600*time.Millisecond))
	ctx := ctxT(t, 30*time.Second)
	call := e.lineDials(ctx, "+12125550100")
	in, err := e.trunk.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in.Req.Recipient.User != "+12125550100" {
		t.Fatalf("trunk got %s", in.Req.Recipient.User)
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, call, 200)
	if err := in.RTP.Send(5, 8, 0x44); err != nil {
		t.Fatal(err)
	}
	if err := call.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatalf("international call carries no audio: %v", err)
	}
	if err := call.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	waitEnded(ctx, t, in.Ended())
	e.waitNoCalls()
	rec := wantRecord(t, e, "outbound", outcomeCompleted, "line")
	m := rec.ContextMap()
	if classes, _ := m["dial_classes"].([]interface{}); m["barred"] != nil || !slices.Equal(classes, []interface{}{"international"}) {
		t.Errorf("record: barred %v, dial_classes %v; want none, [international]", m["barred"], m["dial_classes"])
	}

	sat := e.lineDials(ctx, "+881612345678")
	wantBarred(ctx, t, sat)
	if err := e.trunk.NoIncoming(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
