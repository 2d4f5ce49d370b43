package blocklist

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Call events are kept as opaque records: the store knows the fields a
// record is found by (time, type, line, the other party's number, call id)
// and keeps its data, a JSON object someone else defines (package sip's
// events), as it was given. The Redis store keeps them in a Redis Stream
// trimmed to about EventLogOptions.Max; the embedded store in rotating
// JSON-lines files next to its database (events_file.go).

// EventRecord is one call event as an event log keeps it.
type EventRecord struct {
	Time   time.Time       `json:"time"`             // when it happened; kept to the millisecond
	Type   string          `json:"type"`             // its kind: 1 to 32 of [a-z0-9_]
	Line   string          `json:"line"`             // the line it concerns, as in Trust
	Caller string          `json:"caller,omitempty"` // the other party's E.164 number, or ""
	Call   string          `json:"call"`             // the call's id: 1 to 64 of A-Z, a-z, 0-9, . _ : -
	Data   json.RawMessage `json:"data"`             // the event: a JSON object of at most MaxEventData bytes
}

// MaxEventData bounds one record's data.
const MaxEventData = 64 << 10

// EventQuery selects records, newest first. Empty fields select everything.
type EventQuery struct {
	Line   string
	Caller string   // E.164
	Call   string   // one call's events
	Types  []string // any of these types
	Since  time.Time
	Until  time.Time // exclusive
	// Limit is the most records one page holds: 0 means DefaultEventLimit,
	// at most MaxEventLimit.
	Limit int
	// Cursor continues after the page that returned it (EventPage.Next).
	Cursor string
}

// EventPage is one page of records, newest first.
type EventPage struct {
	Records []EventRecord `json:"records"`
	// Next, when not empty, is the Cursor of the next page: older records
	// may remain. A page may hold fewer than Limit records and still have a
	// Next: one Events call examines at most MaxEventScan records.
	Next string `json:"next,omitempty"`
}

// Paging limits.
const (
	DefaultEventLimit = 50
	MaxEventLimit     = 1000
	// MaxEventScan bounds the records one Events call reads to fill its
	// page, so that a rare caller's history costs pages, not one long wait.
	MaxEventScan = 50_000
)

// EventLog keeps call events and reads them back.
type EventLog interface {
	// AppendEvents stores records, in order, in one write where the
	// store can (one pipeline, one file write). Every record is checked
	// first: one bad record refuses the batch (ErrInvalid). Nothing of
	// recs is kept once it returns.
	AppendEvents(ctx context.Context, recs []EventRecord) error
	// Events returns a page of the records q selects, newest first.
	Events(ctx context.Context, q EventQuery) (EventPage, error)
	// Close releases what the log holds of its own (the embedded log's
	// file; not the Redis store's client).
	Close() error
}

// EventLogOptions size an event log. Zero values take the defaults.
type EventLogOptions struct {
	// Max is about how many events the Redis Stream keeps (XADD MAXLEN ~):
	// default 100,000, about 1 KB of Redis memory each.
	Max int
	// FileBytes is the size of one JSON-lines file of the embedded log
	// before the next one begins (default 16 MiB), and Files how many are
	// kept, the newest included (default 16); older ones are deleted.
	FileBytes int64
	Files     int
	// ReadOnly opens the embedded log for reading only, beside the process
	// that writes it (the CLI while serve runs): AppendEvents fails.
	ReadOnly bool
}

func (o EventLogOptions) withDefaults() EventLogOptions {
	if o.Max <= 0 {
		o.Max = 100_000
	}
	if o.FileBytes <= 0 {
		o.FileBytes = 16 << 20
	}
	if o.Files <= 0 {
		o.Files = 16
	}
	return o
}

// ValidateEventRecord checks what AppendEvents would refuse.
func ValidateEventRecord(r EventRecord) error {
	if r.Time.IsZero() {
		return fmt.Errorf("%w: event without a time", ErrInvalid)
	}
	if !eventType(r.Type) {
		return fmt.Errorf("%w: event type %q must be 1 to 32 of a-z, 0-9, _", ErrInvalid, r.Type)
	}
	if err := checkLine(r.Line); err != nil {
		return fmt.Errorf("event: %w", err)
	}
	if r.Caller != "" {
		if err := checkNumber("event caller", r.Caller); err != nil {
			return err
		}
	}
	if !callID(r.Call) {
		return fmt.Errorf("%w: event call id %q must be 1 to 64 of A-Z, a-z, 0-9, . _ : -", ErrInvalid, r.Call)
	}
	if len(r.Data) == 0 || len(r.Data) > MaxEventData || r.Data[0] != '{' || bytes.IndexByte(r.Data, '\n') >= 0 || !json.Valid(r.Data) {
		return fmt.Errorf("%w: event data must be a JSON object on one line, of at most %d bytes", ErrInvalid, MaxEventData)
	}
	return nil
}

func eventType(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func callID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// checkEventQuery refuses what no record can match, and a bad limit.
func checkEventQuery(q EventQuery) error {
	if q.Line != "" {
		if err := checkLine(q.Line); err != nil {
			return err
		}
	}
	if q.Caller != "" {
		if err := checkNumber("caller", q.Caller); err != nil {
			return err
		}
	}
	if q.Call != "" && !callID(q.Call) {
		return fmt.Errorf("%w: call id %q", ErrInvalid, q.Call)
	}
	for _, t := range q.Types {
		if !eventType(t) {
			return fmt.Errorf("%w: event type %q", ErrInvalid, t)
		}
	}
	if q.Limit < 0 || q.Limit > MaxEventLimit {
		return fmt.Errorf("%w: limit %d must be 0 to %d", ErrInvalid, q.Limit, MaxEventLimit)
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Since.Before(q.Until) {
		return fmt.Errorf("%w: since %s is not before until %s", ErrInvalid, q.Since.Format(time.RFC3339), q.Until.Format(time.RFC3339))
	}
	return nil
}

func limitOf(q EventQuery) int {
	if q.Limit == 0 {
		return DefaultEventLimit
	}
	return q.Limit
}

// matches reports whether a record with these index fields is selected
// by q (the cursor apart).
func (q *EventQuery) matches(at time.Time, typ, line, caller, call string) bool {
	if q.Line != "" && line != q.Line || q.Caller != "" && caller != q.Caller || q.Call != "" && call != q.Call {
		return false
	}
	if !q.Since.IsZero() && at.Before(q.Since) || !q.Until.IsZero() && !at.Before(q.Until) {
		return false
	}
	if len(q.Types) == 0 {
		return true
	}
	for _, t := range q.Types {
		if t == typ {
			return true
		}
	}
	return false
}

// badCursor is the error for a cursor no page of this log returned.
func badCursor(c string) error {
	return fmt.Errorf("%w: cursor %q was not returned by this event log", ErrInvalid, c)
}
