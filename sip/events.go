package sip

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"go.uber.org/zap"

	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/media"
)

// Call events: what happened in a call, as it happened, and one final call
// record. The schema is versioned (EventVersion) and documented in
// README.md ("Call events"); a field is never renamed nor changes meaning
// within a version, new fields may appear. The "call" log line is written
// from the same record, so there is one source.

// EventVersion is the schema version every event carries in "v".
const EventVersion = 1

// EventType names an event.
type EventType string

// The events of a call, in the order they can happen.
const (
	// EventScreened: an inbound caller was screened (verdict and reasons).
	EventScreened EventType = "screened"
	// EventWarned: the line answered a warned call and the warning began.
	EventWarned EventType = "warned"
	// EventChoice: the person chose after the warning (Choice).
	EventChoice EventType = "choice"
	// EventConnected: both legs are up and bridged.
	EventConnected EventType = "connected"
	// EventRefused: the side that placed the call got a final refusal (Status).
	EventRefused EventType = "refused"
	// EventReported: a caller was reported, by pressing 3 after the warning
	// or by the line dialling the report code.
	EventReported EventType = "reported"
	// EventLineCheck: the line dialled the line-check code (D5); Result
	// says what it heard.
	EventLineCheck EventType = "line_check"
	// EventBarred: the line dialled a number its policy bars (Barred).
	EventBarred EventType = "barred"
	// EventEnded: the call is over (Outcome, EndedBy, Duration).
	EventEnded EventType = "ended"
	// EventCall: the call record, always a call's last event.
	EventCall EventType = "call"
)

// eventTypes lists every type, for metrics.
var eventTypes = [...]EventType{EventScreened, EventWarned, EventChoice, EventConnected, EventRefused,
	EventReported, EventLineCheck, EventBarred, EventEnded, EventCall}

// The person's choice after the warning.
const (
	ChoiceConnect = "connect" // pressed 1
	ChoiceReport  = "report"  // pressed 3: the caller is reported and refused
	ChoiceHangUp  = "hang_up" // hung up during the warning or before choosing
	ChoiceTimeout = "timeout" // chose nothing within sip.timers.warning_choice
)

var choices = [...]string{ChoiceConnect, ChoiceReport, ChoiceHangUp, ChoiceTimeout}

// Event is one call event (schema version 1). Which fields are set depends
// on Type and the call's direction; empty ones are left out of the JSON.
// Every event of an inbound call after "screened" carries the caller.
type Event struct {
	V         int       `json:"v"`
	Type      EventType `json:"type"`
	Time      time.Time `json:"time"`
	Call      string    `json:"call"` // the call's id, as in the log lines
	Seq       int       `json:"seq"`  // 1, 2, ... within the call: with Call, the event's identity
	Line      string    `json:"line"`
	Direction string    `json:"direction"` // inbound (a trunk's call to the line), outbound (the line's own)
	Trunk     string    `json:"trunk,omitempty"`

	// Inbound: who called, as presented and as screened.
	From     string                  `json:"from,omitempty"`     // the From header's caller ID, as sent
	Asserted string                  `json:"asserted,omitempty"` // P-Asserted-Identity, from a trusted trunk
	Privacy  bool                    `json:"privacy,omitempty"`  // Privacy: id (withheld from the line)
	Caller   string                  `json:"caller,omitempty"`   // E.164 as screened; absent when withheld or no number
	Verdict  string                  `json:"verdict,omitempty"`  // allow, warn, block, defer
	Reasons  []screening.Reason      `json:"reasons,omitempty"`
	Entry    *screening.EntrySummary `json:"entry,omitempty"` // the blocklist entry behind a blocklist reason

	// Outbound: what the line dialled.
	Dialled     string                `json:"dialled,omitempty"` // as dialled
	Number      string                `json:"number,omitempty"`  // E.164, when it is a number
	DialClasses []screening.DialClass `json:"dial_classes,omitempty"`
	Barred      screening.DialClass   `json:"barred,omitempty"` // the class the line's policy bars

	Choice   string `json:"choice,omitempty"`   // choice, call: connect, report, hang_up, timeout
	Device   string `json:"device,omitempty"`   // call: the registered device on the line's leg (the one that answered, or placed the call)
	Reported string `json:"reported,omitempty"` // reported, call: the E.164 number reported
	Result   string `json:"result,omitempty"`   // line_check, call: clear, busy
	Status   int    `json:"status,omitempty"`   // refused: the SIP status sent

	// ended and call.
	Outcome  string     `json:"outcome,omitempty"`
	EndedBy  string     `json:"ended_by,omitempty"` // trunk, line, cleanline
	Start    time.Time  `json:"start,omitzero"`
	Duration Millis     `json:"duration_ms,omitempty"`
	Setup    Millis     `json:"setup_ms,omitempty"` // INVITE received → the caller answered
	Talk     Millis     `json:"talk_ms,omitempty"`  // answered → ended
	RTP      *RTPCounts `json:"rtp,omitempty"`      // call only
}

// Millis is a duration written in JSON as milliseconds, to the microsecond.
type Millis float64

func millis(d time.Duration) Millis { return Millis(math.Round(float64(d)/1e3) / 1e3) }

// Duration is m as a time.Duration.
func (m Millis) Duration() time.Duration { return time.Duration(float64(m) * 1e6) }

// RTPCounts are a call's media packets, by leg, in the call record.
type RTPCounts struct {
	TrunkIn  uint64 `json:"trunk_in"`
	TrunkOut uint64 `json:"trunk_out"`
	LineIn   uint64 `json:"line_in"`
	LineOut  uint64 `json:"line_out"`
	Dropped  uint64 `json:"dropped"`
	Foreign  uint64 `json:"foreign"` // from sources neither leg accepts
	// TrunkSRTP and LineSRTP: that leg's media was SRTP when the call ended;
	// SRTPFailed counts packets from a leg's peer that failed SRTP's
	// authentication (forged or replayed).
	TrunkSRTP  bool   `json:"trunk_srtp,omitempty"`
	LineSRTP   bool   `json:"line_srtp,omitempty"`
	SRTPFailed uint64 `json:"srtp_failed,omitempty"`
}

// ID is the event's identity: its call's id and its sequence number.
func (e *Event) ID() string { return fmt.Sprintf("%s-%d", e.Call, e.Seq) }

// DecodeEvent reads an event written by this version of the schema; an
// event of another version, or no event at all, is an error.
func DecodeEvent(data []byte) (Event, error) {
	var ev Event
	if err := json.Unmarshal(data, &ev); err != nil {
		return ev, fmt.Errorf("sip: not a call event: %w", err)
	}
	if ev.V != EventVersion {
		return ev, fmt.Errorf("sip: call event version %d, this build reads %d", ev.V, EventVersion)
	}
	if ev.Type == "" || ev.Call == "" {
		return ev, fmt.Errorf("sip: call event without type or call")
	}
	return ev, nil
}

// event builds an event of typ with what every event of c carries, and
// the next sequence number; c.mu must be held.
func (c *call) eventLocked(typ EventType) Event {
	c.seq++
	ev := Event{V: EventVersion, Type: typ, Time: time.Now(), Call: c.id, Seq: c.seq,
		Line: c.line.Name, Direction: c.dir.String()}
	if c.trunk != nil {
		ev.Trunk = c.trunk.Name
	}
	if c.screened {
		ev.From, ev.Asserted, ev.Privacy = c.scall.From, c.scall.Asserted, c.scall.Privacy
		ev.Caller, ev.Verdict, ev.Reasons = c.verdict.Number, c.verdict.Action.String(), c.verdict.Reasons
	}
	if c.dialled != "" {
		ev.Dialled, ev.Number, ev.DialClasses = c.dialled, c.number, c.dialClasses
	}
	return ev
}

// emit hands an event of typ, filled in by fill (may be nil), to the
// server's event sinks. It never blocks (eventsink.go).
func (c *call) emit(typ EventType, fill func(*Event)) {
	if len(c.s.events) == 0 {
		c.s.metrics.events[typ].Inc()
		return
	}
	c.mu.Lock()
	ev := c.eventLocked(typ)
	c.mu.Unlock()
	if fill != nil {
		fill(&ev)
	}
	c.s.emit(ev)
}

// settle writes the call's last events, "ended" then the record, once the
// call has ended and its handler will say nothing more: a refusal is the
// handler's last word (refuse), and so is its return. Until both, events
// the handler still emits (the person's choice when the line hung up on the
// warning, the caller's refusal) would follow the record.
func (c *call) settle(handlerDone bool) {
	c.mu.Lock()
	if handlerDone {
		c.handled = true
	}
	if !c.ended || !c.handled || c.recorded {
		c.mu.Unlock()
		return
	}
	c.recorded = true
	c.mu.Unlock()
	c.record()
}

// record emits "ended" and the call record, and writes the record as the
// call's one "call" log line: who called whom, what the screening said and
// why, how it ended, how long each phase took, and what media flowed.
func (c *call) record() {
	c.mu.Lock()
	var st media.RelayStats // zero for a call refused before it had media
	if c.m != nil {
		st = c.m.stats()
	}
	ended := c.eventLocked(EventEnded)
	ended.Outcome, ended.EndedBy, ended.Start = c.outcome, c.endedBy.String(), c.start
	ended.Duration = millis(c.stopped.Sub(c.start))
	if !c.answered.IsZero() {
		ended.Setup, ended.Talk = millis(c.answered.Sub(c.start)), millis(c.stopped.Sub(c.answered))
	}
	rec := ended
	c.seq++
	rec.Type, rec.Seq = EventCall, c.seq
	rec.Entry, rec.Barred, rec.Choice, rec.Device = c.verdict.Entry, c.barred, c.choice, c.device
	rec.Reported, rec.Result = c.reported, c.result
	rec.RTP = &RTPCounts{TrunkIn: st.Trunk.PacketsIn, TrunkOut: st.Trunk.PacketsOut,
		LineIn: st.Line.PacketsIn, LineOut: st.Line.PacketsOut,
		Dropped: st.Trunk.Dropped + st.Line.Dropped, Foreign: st.Trunk.Foreign + st.Line.Foreign,
		TrunkSRTP: st.Trunk.SRTP, LineSRTP: st.Line.SRTP, SRTPFailed: st.Trunk.SRTPFailed + st.Line.SRTPFailed}
	c.mu.Unlock()
	c.s.emit(ended)
	c.s.emit(rec)
	c.log.Info("call", recordFields(&rec, c.screened)...)
	c.s.metrics.calls.WithLabelValues(c.dir.String(), c.outcome).Inc()
	c.s.unrecorded.Add(-1)
}

// recordFields are the call log line's fields, from the record. (The
// call's id, direction, line, trunk, caller and verdict are the call
// logger's own fields.)
func recordFields(r *Event, screened bool) []zap.Field {
	fields := []zap.Field{
		zap.String("outcome", r.Outcome),
		zap.String("ended_by", r.EndedBy),
		zap.Time("start", r.Start),
		zap.Duration("duration", r.Duration.Duration()),
	}
	if r.Setup != 0 || r.Talk != 0 {
		fields = append(fields, zap.Duration("setup", r.Setup.Duration()), zap.Duration("talk", r.Talk.Duration()))
	}
	if screened {
		reasons := make([]string, len(r.Reasons))
		for i, x := range r.Reasons {
			reasons[i] = string(x)
		}
		fields = append(fields, zap.String("from", r.From), zap.String("asserted", r.Asserted),
			zap.Bool("privacy", r.Privacy), zap.Strings("reasons", reasons))
	}
	if r.Dialled != "" {
		fields = append(fields, zap.String("dialled", r.Dialled))
	}
	if len(r.DialClasses) > 0 {
		classes := make([]string, len(r.DialClasses))
		for i, cl := range r.DialClasses {
			classes[i] = string(cl)
		}
		fields = append(fields, zap.Strings("dial_classes", classes))
	}
	if r.Barred != "" {
		fields = append(fields, zap.String("barred", string(r.Barred)))
	}
	if r.Choice != "" {
		fields = append(fields, zap.String("choice", r.Choice))
	}
	if r.Device != "" {
		fields = append(fields, zap.String("device", r.Device))
	}
	rtp := r.RTP
	return append(fields,
		zap.Uint64("trunk_rtp_in", rtp.TrunkIn), zap.Uint64("trunk_rtp_out", rtp.TrunkOut),
		zap.Uint64("line_rtp_in", rtp.LineIn), zap.Uint64("line_rtp_out", rtp.LineOut),
		zap.Uint64("rtp_dropped", rtp.Dropped),
		zap.Uint64("rtp_foreign", rtp.Foreign), // the part from sources neither leg accepts
		zap.Bool("trunk_srtp", rtp.TrunkSRTP), zap.Bool("line_srtp", rtp.LineSRTP), zap.Uint64("srtp_failed", rtp.SRTPFailed))
}
