package web

import (
	"slices"
	"strings"
	"time"

	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/sip"
)

// What the line's page shows of a call, in words, built from a live call
// or from the call events the event store keeps.

// callView is one call on the page.
type callView struct {
	ID      string // a live call's ID (the End button's)
	Caller  string // who called, or whom the line called, in words
	Number  string // the caller's E.164 number (the Block and Report buttons'); empty when there is none
	Verdict string
	Why     []string
	State   string // a live call's
	Choice  string
	Outcome string
	When    string
	For     string // how long it lasted, or has lasted
	// Path and CSRF are the line page's, for the call's buttons.
	Path, CSRF string
}

// callerWords is who called, as a carer reads it.
func callerWords(number, presented string, withheld bool) string {
	switch {
	case withheld:
		return "Number withheld"
	case number != "":
		return number
	case presented != "":
		return "Unknown number (" + presented + ")"
	}
	return "No number"
}

func liveView(c admin.LiveCall, now time.Time) callView {
	v := callView{ID: c.ID, State: stateText(c.State), When: when(c.Since, now), For: duration(now.Sub(c.Since))}
	if c.Direction == "outbound" {
		v.Caller = "This line called " + orWords(c.Dialled, "a number")
		return v
	}
	v.Caller = callerWords(c.Number, c.Caller, c.Withheld)
	v.Number = blockable(c.Number, c.Reasons)
	if c.Action != "" {
		v.Verdict = verdictText(c.Action)
	}
	for _, r := range c.Reasons {
		v.Why = append(v.Why, reasonText(r))
	}
	return v
}

// blockable is the number a call's Block and Report buttons act on: none
// for a trusted contact, who must be removed from the contacts first.
func blockable(number string, reasons []string) string {
	if slices.Contains(reasons, "trusted") {
		return ""
	}
	return number
}

func orWords(s, instead string) string {
	if s == "" {
		return instead
	}
	return s
}

// event is what the page shows of a call event (sip's schema, which
// sip.DecodeEvent reads: one owner). Any event of a call may carry these;
// the call record, its last, carries them all.
type event struct {
	Time      time.Time
	Call      string
	Direction string
	From      string
	Privacy   bool
	Caller    string
	Verdict   string
	Reasons   []string
	Dialled   string
	Number    string
	Barred    string
	Choice    string
	Outcome   string
	Start     time.Time
	Duration  float64 // milliseconds
}

// decodeEvent reads one record of the event store; an event of another
// schema version is an error.
func decodeEvent(r admin.Record) (event, error) {
	ev, err := sip.DecodeEvent(r)
	if err != nil {
		return event{}, err
	}
	e := event{Time: ev.Time, Call: ev.Call, Direction: ev.Direction, From: ev.From, Privacy: ev.Privacy,
		Caller: ev.Caller, Verdict: ev.Verdict, Dialled: ev.Dialled, Number: ev.Number, Barred: string(ev.Barred),
		Choice: ev.Choice, Outcome: ev.Outcome, Start: ev.Start, Duration: float64(ev.Duration)}
	for _, r := range ev.Reasons {
		e.Reasons = append(e.Reasons, string(r))
	}
	return e, nil
}

// merge fills what e lacks from o, an older event of the same call.
func (e *event) merge(o event) {
	fill := func(dst *string, src string) {
		if *dst == "" {
			*dst = src
		}
	}
	for _, f := range [][2]*string{{&e.Direction, &o.Direction}, {&e.From, &o.From}, {&e.Caller, &o.Caller},
		{&e.Verdict, &o.Verdict}, {&e.Dialled, &o.Dialled}, {&e.Number, &o.Number}, {&e.Barred, &o.Barred},
		{&e.Choice, &o.Choice}, {&e.Outcome, &o.Outcome}} {
		fill(f[0], *f[1])
	}
	e.Privacy = e.Privacy || o.Privacy
	if len(e.Reasons) == 0 {
		e.Reasons = o.Reasons
	}
	if e.Duration == 0 {
		e.Duration = o.Duration
	}
	if o.Start.IsZero() {
		o.Start = o.Time
	}
	if e.Start.IsZero() || !o.Start.IsZero() && o.Start.Before(e.Start) {
		e.Start = o.Start
	}
}

// recentViews makes one row a call of records (newest first, a call's
// events or its record), and counts the records it could not read.
func recentViews(records []admin.Record, now time.Time) (rows []callView, unread int) {
	var order []string
	calls := map[string]*event{}
	for _, r := range records {
		e, err := decodeEvent(r)
		if err != nil {
			unread++
			continue
		}
		if c, ok := calls[e.Call]; ok {
			c.merge(e)
			continue
		}
		if e.Start.IsZero() {
			e.Start = e.Time
		}
		calls[e.Call] = &e
		order = append(order, e.Call)
	}
	for _, id := range order {
		rows = append(rows, recentView(*calls[id], now))
	}
	return rows, unread
}

func recentView(e event, now time.Time) callView {
	v := callView{When: when(e.Start, now), Choice: choiceText(e.Choice), Outcome: outcomeText(e.Outcome)}
	if e.Duration > 0 {
		v.For = duration(time.Duration(e.Duration * float64(time.Millisecond)))
	}
	if e.Direction == "outbound" {
		v.Caller = "This line called " + orWords(e.Number, orWords(e.Dialled, "a number"))
		if e.Barred != "" {
			v.Verdict = barredText
			v.Why = []string{"Its settings do not allow " + strings.ReplaceAll(e.Barred, "_", " ") + " numbers."}
		}
		return v
	}
	v.Caller = callerWords(e.Caller, e.From, e.Privacy)
	v.Number = blockable(e.Caller, e.Reasons)
	if e.Verdict != "" {
		v.Verdict = verdictText(e.Verdict)
	}
	for _, r := range e.Reasons {
		v.Why = append(v.Why, reasonText(r))
	}
	return v
}
