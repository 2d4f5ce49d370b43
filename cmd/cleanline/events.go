package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/cmd/internal/admin/webhook"
	"github.com/cleanline/cleanline/sip"
)

// Call events: serve hands them (package sip) to the store's event log
// (package blocklist) and to the webhooks (package webhook). This file is
// the wiring between them.

// EventsConfig is the `events:` section: keeping call events in the store.
type EventsConfig struct {
	// Store keeps every call event and record in the store (default true):
	// a Redis Stream on Redis, JSON-lines files in a directory beside the
	// embedded store's file (cleanline.db → cleanline.events/).
	Store bool `yaml:"store"`
	// Max is about how many events the Redis Stream keeps (XADD MAXLEN ~;
	// default 100000, about 1 KB of Redis memory each).
	Max int `yaml:"max"`
	// FileMB is the size in MiB of one events file of the embedded store
	// (default 16), Files how many are kept (default 16): the oldest go.
	FileMB int `yaml:"file_mb"`
	Files  int `yaml:"files"`
	// Queue is how many events may wait for the store (default 8192);
	// when it is full new ones are dropped and counted, never waited for.
	Queue int `yaml:"queue"`
}

func (c EventsConfig) validate() error {
	for _, n := range []struct {
		key string
		v   int
	}{{"max", c.Max}, {"file_mb", c.FileMB}, {"files", c.Files}, {"queue", c.Queue}} {
		if n.v < 0 {
			return fmt.Errorf("events.%s: %d is negative", n.key, n.v)
		}
	}
	return nil
}

func (c EventsConfig) logOptions(readOnly bool) blocklist.EventLogOptions {
	return blocklist.EventLogOptions{Max: c.Max, FileBytes: int64(c.FileMB) << 20, Files: c.Files, ReadOnly: readOnly}
}

// eventSinks are serve's sinks of call events, as options of sip.NewServer,
// and what stops them; call stop once the server is closed (its Close
// hands them the last records).
// The log the store sink writes is returned as well (nil when events are
// not stored), for the admin service to read back.
func (e *env) eventSinks(reg prometheus.Registerer) (opts []sip.Option, log blocklist.EventLog, stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, f := range stops {
			f()
		}
	}
	if e.cfg.Events.Store {
		if log, err = openEventLog(e.store, e.cfg.Events.logOptions(false)); err != nil {
			return nil, nil, stop, err
		}
		stops = append(stops, func() { _ = log.Close() })
		opts = append(opts, sip.WithEvents("store", newEventStore(log), e.cfg.Events.Queue))
	}
	if len(e.cfg.Webhooks) > 0 {
		d, err := webhook.New(e.cfg.Webhooks, webhook.Options{Lines: e.cfg.lineNames(), Registerer: reg,
			Logger: e.log.Named("webhook"), UserAgent: "cleanline-webhook/1 (" + version() + ")"})
		if err != nil {
			return nil, nil, stop, fmt.Errorf("%w: %w", errConfig, err)
		}
		stops = append([]func(){func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			d.Close(ctx)
		}}, stops...)
		opts = append(opts, sip.WithEvents("webhooks", d, 0))
	}
	return opts, log, stop, nil
}

// callRecords are the call records of an event log, as the admin service
// reads them (admin.Events): the "call" events, whose data is sip's
// schema; the log's cursor travels base64url-encoded, as every cursor of
// the admin API does.
type callRecords struct{ log blocklist.EventLog }

func (r callRecords) RecentCalls(ctx context.Context, q admin.RecentQuery) (admin.Page[admin.Record], error) {
	var cursor []byte
	if q.Cursor != "" {
		var err error
		if cursor, err = base64.RawURLEncoding.DecodeString(q.Cursor); err != nil {
			return admin.Page[admin.Record]{}, fmt.Errorf("%w: cursor: not one this service gave", blocklist.ErrInvalid)
		}
	}
	page, err := r.log.Events(ctx, blocklist.EventQuery{Line: q.Line, Caller: q.Caller, Types: []string{string(sip.EventCall)},
		Since: q.Since, Until: q.Until, Limit: q.Limit, Cursor: string(cursor)})
	if err != nil {
		return admin.Page[admin.Record]{}, err
	}
	out := admin.Page[admin.Record]{Items: make([]admin.Record, len(page.Records))}
	for i, rec := range page.Records {
		out.Items[i] = admin.Record(rec.Data)
	}
	if page.Next != "" {
		out.Next = base64.RawURLEncoding.EncodeToString([]byte(page.Next))
	}
	return out, nil
}

// openEventLog is the event log of the store serve opened.
func openEventLog(st blocklist.Admin, opts blocklist.EventLogOptions) (blocklist.EventLog, error) {
	switch st := st.(type) {
	case *blocklist.FileStore:
		return st.EventLog(opts)
	case *blocklist.RedisStore:
		return st.EventLog(opts), nil
	}
	return nil, fmt.Errorf("store %T keeps no call events", st)
}

// openEventReader reads the call events a store URL's service keeps,
// without opening the store itself: the embedded store's file is the
// running service's alone, its events files are not. Close it after use.
func openEventReader(ctx context.Context, url string, cfg EventsConfig) (blocklist.EventLog, func(), error) {
	if path, ok := strings.CutPrefix(url, "file:"); ok && path != "" {
		l, err := blocklist.OpenEventFile(blocklist.EventDir(path), cfg.logOptions(true))
		if err != nil {
			return nil, nil, err
		}
		return l, func() { _ = l.Close() }, nil
	}
	st, err := openStore(ctx, url)
	if err != nil {
		return nil, nil, err
	}
	l, err := openEventLog(st, cfg.logOptions(true))
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return l, func() { _ = l.Close(); _ = st.Close() }, nil
}

// eventStore is the event log as a sink of sip's events: each event's JSON
// is the record's data, found by its time, type, line, call and the other
// party's number (the caller, or what the line dialled). Its buffers are
// reused from batch to batch (one goroutine calls it, and the log keeps
// nothing of a batch once AppendEvents returns).
type eventStore struct {
	log  blocklist.EventLog
	buf  *bytes.Buffer
	ends []int
	recs []blocklist.EventRecord
}

func newEventStore(log blocklist.EventLog) *eventStore {
	return &eventStore{log: log, buf: &bytes.Buffer{}}
}

func (s *eventStore) WriteEvents(ctx context.Context, evs []sip.Event) error {
	// One buffer for the batch's JSON, each record's data a slice of it.
	s.buf.Reset()
	enc := json.NewEncoder(s.buf)
	enc.SetEscapeHTML(false)
	s.ends = s.ends[:0]
	for i := range evs {
		if err := enc.Encode(&evs[i]); err != nil {
			return fmt.Errorf("event %s: %w", evs[i].ID(), err)
		}
		s.ends = append(s.ends, s.buf.Len())
	}
	all := s.buf.Bytes()
	s.recs = s.recs[:0]
	start := 0
	for i := range evs {
		ev := &evs[i]
		other := ev.Caller
		if ev.Direction == "outbound" {
			other = ev.Number
		}
		end := s.ends[i] - 1 // without Encode's newline
		s.recs = append(s.recs, blocklist.EventRecord{Time: ev.Time, Type: string(ev.Type), Line: ev.Line, Caller: other,
			Call: ev.Call, Data: all[start:end:end]})
		start = s.ends[i]
	}
	err := s.log.AppendEvents(ctx, s.recs)
	clear(s.recs) // the data is the buffer's, rewritten next time
	return err
}

// lineNames are the configured lines' names.
func (c Config) lineNames() []string {
	names := make([]string, len(c.SIP.Lines))
	for i, l := range c.SIP.Lines {
		names[i] = l.Name
	}
	return names
}
