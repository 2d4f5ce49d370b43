package sip

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/screening"
)

// eventLog is a sink that keeps what it is given, and lets a test wait for
// a call's record.
type eventLog struct {
	mu      sync.Mutex
	evs     []Event
	changed chan struct{} // closed and replaced at every write
}

func newEventLog() *eventLog { return &eventLog{changed: make(chan struct{})} }

func (l *eventLog) WriteEvents(_ context.Context, evs []Event) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ev := range evs {
		// Through JSON and back, as a store would keep it.
		b, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		back, err := DecodeEvent(b)
		if err != nil {
			return err
		}
		l.evs = append(l.evs, back)
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return nil
}

// call waits for the record of the n-th call (in the order calls began to
// produce events) and returns its events in the order they were written.
func (l *eventLog) call(ctx context.Context, t *testing.T, n int) []Event {
	t.Helper()
	for {
		l.mu.Lock()
		var ids []string
		for _, ev := range l.evs {
			if !slices.Contains(ids, ev.Call) {
				ids = append(ids, ev.Call)
			}
		}
		var evs []Event
		done := false
		if n < len(ids) {
			for _, ev := range l.evs {
				if ev.Call == ids[n] {
					evs = append(evs, ev)
					done = done || ev.Type == EventCall
				}
			}
		}
		changed := l.changed
		l.mu.Unlock()
		if done {
			return evs
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatalf("call %d: no record; events so far: %v", n, types(evs))
		}
	}
}

func types(evs []Event) []EventType {
	out := make([]EventType, len(evs))
	for i, ev := range evs {
		out[i] = ev.Type
	}
	return out
}

// wantTypes checks a call's events are exactly want, in order, numbered
// 1, 2, ... and all of one call, line and direction.
func wantTypes(t *testing.T, evs []Event, dir string, want ...EventType) {
	t.Helper()
	if !slices.Equal(types(evs), want) {
		t.Fatalf("events %v, want %v", types(evs), want)
	}
	for i, ev := range evs {
		if ev.V != EventVersion || ev.Seq != i+1 || ev.Call != evs[0].Call || ev.Line != "home" ||
			ev.Direction != dir || ev.Time.IsZero() {
			t.Fatalf("event %d: %+v", i, ev)
		}
		if i > 0 && ev.Time.Before(evs[i-1].Time) {
			t.Fatalf("event %d (%s) at %s, before the one it follows", i, ev.Type, ev.Time)
		}
	}
}

// wantCaller checks an inbound event names the caller as presented and as
// screened, and the verdict.
func wantCaller(t *testing.T, ev Event, caller, verdict string, reasons ...screening.Reason) {
	t.Helper()
	if ev.From != "sip:"+caller+"@"+ipTrunk || ev.Caller != caller || ev.Verdict != verdict || ev.Trunk != "provider" ||
		!slices.Equal(ev.Reasons, reasons) {
		t.Fatalf("%s event: from %q caller %q verdict %q trunk %q reasons %v; want %s %s %v",
			ev.Type, ev.From, ev.Caller, ev.Verdict, ev.Trunk, ev.Reasons, caller, verdict, reasons)
	}
}

func withEventLog(l *eventLog) envOption { return withServerOpts(WithEvents("test", l, 0)) }

// A warned call the person accepts: screened, warned, choice (connect),
// connected, ended and the record, in this order; the record says it all
// and so does the call log line, written from it.
func TestEventsWarnedCallPress1(t *testing.T) {
	l := newEventLog()
	reg := prometheus.NewRegistry()
	e := newEnv(t, withEventLog(l), withServerOpts(WithMetrics(reg)))
	ctx := ctxT(t, 20*time.Second)
	out, in := e.warned()
	if err := in.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := in.RTP.SendDTMF('1', in.TelephoneEventPT()); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	_ = out.RTP.Send(5, 8, 0x11)
	if err := in.RTP.WaitCount(ctx, in.RTP.Count()+5); err != nil {
		t.Fatal("not bridged after 1")
	}
	if err := in.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	waitEnded(ctx, t, out.Ended())

	evs := l.call(ctx, t, 0)
	wantTypes(t, evs, "inbound", EventScreened, EventWarned, EventChoice, EventConnected, EventEnded, EventCall)
	for _, ev := range evs {
		wantCaller(t, ev, callerSuspect, "warn", screening.ReasonBlocklistReported)
	}
	if en := evs[0].Entry; en == nil || en.Number != callerSuspect || en.Status != "reported" || en.Reason != "courier scam" {
		t.Errorf("screened event's entry: %+v", en)
	}
	if evs[2].Choice != ChoiceConnect {
		t.Errorf("choice %q, want connect", evs[2].Choice)
	}
	rec := evs[5]
	if rec.Outcome != outcomeCompleted || rec.EndedBy != "line" || rec.Choice != ChoiceConnect ||
		rec.Start.IsZero() || rec.Duration <= 0 || rec.Setup <= 0 || rec.Talk <= 0 ||
		rec.RTP == nil || rec.RTP.LineIn < 5 || rec.RTP.TrunkIn < 5 {
		t.Errorf("record: %+v rtp %+v", rec, rec.RTP)
	}
	if ended := evs[4]; ended.Outcome != rec.Outcome || ended.Duration != rec.Duration || ended.RTP != nil {
		t.Errorf("ended %+v does not agree with the record", ended)
	}
	// The log line is the record.
	logged := e.logs.FilterMessage("call").FilterField(zap.String("call", rec.Call)).All()
	if len(logged) != 1 {
		t.Fatalf("%d call log lines for %s", len(logged), rec.Call)
	}
	m := logged[0].ContextMap()
	if m["outcome"] != rec.Outcome || m["choice"] != ChoiceConnect || m["from"] != rec.From ||
		fmt.Sprint(m["duration"]) != rec.Duration.Duration().String() {
		t.Errorf("log line %v does not say what the record says", m)
	}
	if v := value(t, e.s.metrics.choices.WithLabelValues(ChoiceConnect)); v != 1 {
		t.Errorf("warned choices connect = %v, want 1", v)
	}
	if v := value(t, e.s.metrics.prompts.WithLabelValues("warning")); v != 1 {
		t.Errorf("warning prompts played = %v, want 1", v)
	}
	if v := value(t, e.s.metrics.events[EventCall]); v != 1 {
		t.Errorf("call events = %v, want 1", v)
	}
}

// A blocked caller: screened, refused (603), ended, the record.
func TestEventsBlockedCall(t *testing.T) {
	l := newEventLog()
	e := newEnv(t, withEventLog(l))
	ctx := ctxT(t, 10*time.Second)
	wantFinal(t, e.dial(callerScam), 603)
	evs := l.call(ctx, t, 0)
	wantTypes(t, evs, "inbound", EventScreened, EventRefused, EventEnded, EventCall)
	for _, ev := range evs {
		wantCaller(t, ev, callerScam, "block", screening.ReasonBlocklistConfirmed)
	}
	if r := evs[1]; r.Status != 603 || r.Outcome != outcomeBlocked {
		t.Errorf("refused: status %d outcome %q", r.Status, r.Outcome)
	}
	if rec := evs[3]; rec.Outcome != outcomeBlocked || rec.Setup != 0 || rec.RTP == nil || rec.RTP.LineOut != 0 {
		t.Errorf("record %+v", rec)
	}
}

// The line hangs up on the warning: the choice is hang_up, the caller is
// refused, and only then the record, whose outcome is warn_refused.
func TestEventsWarnedLineHangsUp(t *testing.T) {
	l := newEventLog()
	reg := prometheus.NewRegistry()
	e := newEnv(t, withEventLog(l), withServerOpts(WithMetrics(reg)))
	ctx := ctxT(t, 10*time.Second)
	out, in := e.warned()
	if err := in.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := in.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 603)
	evs := l.call(ctx, t, 0)
	wantTypes(t, evs, "inbound", EventScreened, EventWarned, EventChoice, EventRefused, EventEnded, EventCall)
	if evs[2].Choice != ChoiceHangUp || evs[3].Status != 603 || evs[5].Outcome != outcomeWarnRefused ||
		evs[5].EndedBy != "line" || evs[5].Choice != ChoiceHangUp {
		t.Errorf("choice %q, refused %d, record outcome %q by %q choice %q",
			evs[2].Choice, evs[3].Status, evs[5].Outcome, evs[5].EndedBy, evs[5].Choice)
	}
	if err := e.waitRecord(ctx, outcomeWarnRefused); err != nil {
		t.Fatal(err)
	}
	if v := value(t, e.s.metrics.calls.WithLabelValues("inbound", outcomeWarnRefused)); v != 1 {
		t.Errorf("calls warn_refused = %v, want 1", v)
	}
}

// Press 3: the choice is report, the caller is reported (event), refused.
func TestEventsWarnedPress3Reports(t *testing.T) {
	l := newEventLog()
	e := newEnv(t, withEventLog(l))
	ctx := ctxT(t, 10*time.Second)
	out, in := e.warned()
	if err := in.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := in.RTP.SendDTMF('3', in.TelephoneEventPT()); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 603)
	evs := l.call(ctx, t, 0)
	wantTypes(t, evs, "inbound", EventScreened, EventWarned, EventChoice, EventReported, EventRefused, EventEnded, EventCall)
	if evs[2].Choice != ChoiceReport || evs[3].Reported != callerSuspect || evs[6].Outcome != outcomeWarnReported ||
		evs[6].Reported != callerSuspect {
		t.Errorf("choice %q reported %q record %+v", evs[2].Choice, evs[3].Reported, evs[6])
	}
}

// The person says nothing: the choice is timeout.
func TestEventsWarnedTimeout(t *testing.T) {
	l := newEventLog()
	e := newEnv(t, withEventLog(l), withCfg(func(c *Config) { c.Timers.WarningChoice = 200 * time.Millisecond }))
	ctx := ctxT(t, 10*time.Second)
	out, _ := e.warned()
	wantFinal(t, out, 603)
	evs := l.call(ctx, t, 0)
	wantTypes(t, evs, "inbound", EventScreened, EventWarned, EventChoice, EventRefused, EventEnded, EventCall)
	if evs[2].Choice != ChoiceTimeout || evs[5].Outcome != outcomeWarnTimeout {
		t.Errorf("choice %q outcome %q", evs[2].Choice, evs[5].Outcome)
	}
}

// The line's own calls: the line check (clear), the report code, a barred
// number; each with its own event, then ended and the record.
func TestEventsLinesOwnCalls(t *testing.T) {
	l := newEventLog()
	e := newEnv(t, withEventLog(l))
	ctx := ctxT(t, 20*time.Second)
	check := e.lineDials(ctx, "*99")
	wantFinal(t, check, 200)
	evs := l.call(ctx, t, 0)
	wantTypes(t, evs, "outbound", EventLineCheck, EventEnded, EventCall)
	if evs[0].Result != "clear" || evs[2].Result != "clear" || evs[2].Outcome != outcomeFeature || evs[0].Dialled != "*99" {
		t.Errorf("line check %+v, record %+v", evs[0], evs[2])
	}

	wantFinal(t, e.dial(callerScam), 603) // the line's last caller
	report := e.lineDials(ctx, "*57")
	wantFinal(t, report, 200)
	evs = l.call(ctx, t, 2)
	wantTypes(t, evs, "outbound", EventReported, EventEnded, EventCall)
	if evs[0].Reported != callerScam || evs[2].Reported != callerScam {
		t.Errorf("reported %q, record %q", evs[0].Reported, evs[2].Reported)
	}

	barred := e.lineDials(ctx, "09012345678")
	wantFinal(t, barred, 403)
	evs = l.call(ctx, t, 3)
	wantTypes(t, evs, "outbound", EventBarred, EventRefused, EventEnded, EventCall)
	if evs[0].Barred != screening.DialPremiumRate || evs[0].Number != "+449012345678" || evs[1].Status != 403 ||
		evs[3].Outcome != outcomeBarred || evs[3].Barred != screening.DialPremiumRate {
		t.Errorf("barred %+v, refused %+v, record %+v", evs[0], evs[1], evs[3])
	}
}

// blockingSink never returns until released: the store that hangs. It
// says when it is first entered.
type blockingSink struct {
	entered chan []EventType
	release chan struct{}
}

func (b blockingSink) WriteEvents(ctx context.Context, evs []Event) error {
	select {
	case b.entered <- types(evs):
	default:
	}
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil
}

// A sink that hangs slows no call: with a queue of 4 events, calls are
// answered and refused as quickly as ever, and what does not fit in the
// queue is dropped and counted; a sink beside it that keeps up gets every
// event.
func TestEventsFullQueueDropsNeverBlocks(t *testing.T) {
	stuck := blockingSink{entered: make(chan []EventType, 1), release: make(chan struct{})}
	l := newEventLog()
	reg := prometheus.NewRegistry()
	e := newEnv(t, withServerOpts(WithEvents("stuck", stuck, 4), WithEvents("test", l, 0), WithMetrics(reg)))
	t.Cleanup(func() { close(stuck.release) })
	ctx := ctxT(t, 10*time.Second)
	wantFinal(t, e.dial(callerScam), 603)
	var held []EventType
	select {
	case held = <-stuck.entered: // holding the first call's events
	case <-ctx.Done():
		t.Fatal("the stuck sink was never handed a batch")
	}
	for range 5 {
		start := time.Now()
		wantFinal(t, e.dial(callerScam), 603)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("a blocked call took %s with its sink stuck", d)
		}
	}
	talkThenHangUp(t, e)
	l.call(ctx, t, 6)
	// 6 × 4 events + the talked call's 4: the sink holds a batch of the
	// first call's (all 4, unless its goroutine was slow to run), the
	// queue takes 4 (the rest of the first call's, then the next).
	want := float64(28 - len(held) - 4)
	if dropped := value(t, e.s.metrics.eventsDropped.WithLabelValues("stuck", "queue_full")); dropped != want {
		t.Errorf("stuck sink: %v events dropped, want %v (it holds %v)", dropped, want, held)
	}
	if v := value(t, e.s.metrics.eventsDropped.WithLabelValues("test", "queue_full")); v != 0 {
		t.Errorf("the sink that keeps up lost %v events", v)
	}
	l.mu.Lock()
	n := len(l.evs)
	got := types(l.evs)
	l.mu.Unlock()
	if n != 28 {
		t.Errorf("the sink that keeps up got %d events, want 28: %v", n, got)
	}
}
