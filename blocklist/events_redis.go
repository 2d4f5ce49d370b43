package blocklist

import (
	"context"
	"strconv"
	"strings"
	"time"
)

// The Redis event log is one stream, P:{events}: every instance sharing
// the Redis appends to it (XADD ... MAXLEN ~ Max, so Redis trims whole
// nodes of old entries cheaply), and its entry IDs, Redis's clock in ms,
// order it and page it (the records' own times may differ a little). Each entry's fields are the record's:
//
//	time    Unix ms     type  line  caller  call  data (the JSON)
//
// In a Cluster the stream is one key, on one node.

// RedisEventLog is the Redis store's event log (RedisStore.EventLog).
type RedisEventLog struct {
	s   *RedisStore
	key string
	max int64
}

var _ EventLog = (*RedisEventLog)(nil)

// EventLog returns the store's event log, sharing its client.
func (s *RedisStore) EventLog(opts EventLogOptions) *RedisEventLog {
	opts = opts.withDefaults()
	return &RedisEventLog{s: s, key: s.p + ":{events}", max: int64(opts.Max)}
}

// AppendEvents adds the records in one pipeline of XADDs.
func (l *RedisEventLog) AppendEvents(ctx context.Context, recs []EventRecord) error {
	if err := l.s.enter(areEventRecords(recs)); err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	pipe := l.s.rdb.Pipeline()
	for i := range recs {
		r := &recs[i]
		// The data as []byte: written as it is, not copied into a string.
		pipe.Do(ctx, "xadd", l.key, "maxlen", "~", l.max, "*", "time", toMilli(r.Time), "type", r.Type,
			"line", r.Line, "caller", r.Caller, "call", r.Call, "data", []byte(r.Data))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return l.s.fail("append events", err)
	}
	return nil
}

// clockSlack is how far out of order records may be appended: a writer's
// queue delays them, several instances' clocks differ. Reading newest
// first, a record older than a query's Since by more than this ends it.
const clockSlack = 5 * time.Minute

// Events pages through the stream newest first (XREVRANGE), in chunks,
// keeping the records q selects.
func (l *RedisEventLog) Events(ctx context.Context, q EventQuery) (EventPage, error) {
	if err := l.s.enter(isEventQuery(&q)); err != nil {
		return EventPage{}, err
	}
	limit := limitOf(q)
	start := "+"
	if q.Cursor != "" {
		if !streamID(q.Cursor) {
			return EventPage{}, badCursor(q.Cursor)
		}
		start = "(" + q.Cursor // exclusive (Redis 6.2)
	}
	chunk := int64(min(max(4*limit, 100), 1000))
	var page EventPage
	for scanned := 0; scanned < MaxEventScan; {
		msgs, err := l.s.rdb.XRevRangeN(ctx, l.key, start, "-", chunk).Result()
		if err != nil {
			return EventPage{}, l.s.fail("read events", err)
		}
		for _, m := range msgs {
			scanned++
			r, ok := streamRecord(m.Values)
			if ok && !q.Since.IsZero() && r.Time.Before(q.Since.Add(-clockSlack)) {
				return page, nil // appended in order, give or take clockSlack: the rest is older
			}
			if ok && q.matches(r.Time, r.Type, r.Line, r.Caller, r.Call) {
				page.Records = append(page.Records, r)
				if len(page.Records) == limit {
					page.Next = m.ID
					return page, nil
				}
			}
		}
		if int64(len(msgs)) < chunk {
			return page, nil // the oldest selected entry was read
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
	page.Next = start[1:] // scanned enough for one call: the caller pages on
	return page, nil
}

// Close does nothing: the client is the store's.
func (l *RedisEventLog) Close() error { return nil }

// streamRecord reads an entry's fields; an entry someone else wrote
// there, without them, is skipped.
func streamRecord(v map[string]any) (EventRecord, bool) {
	str := func(k string) string { s, _ := v[k].(string); return s }
	ms, err := strconv.ParseInt(str("time"), 10, 64)
	data := str("data")
	if err != nil || data == "" || str("type") == "" {
		return EventRecord{}, false
	}
	return EventRecord{Time: fromMilli(ms), Type: str("type"), Line: str("line"), Caller: str("caller"),
		Call: str("call"), Data: []byte(data)}, true
}

// streamID reports whether s is a stream entry ID: ms-seq.
func streamID(s string) bool {
	ms, seq, ok := strings.Cut(s, "-")
	if !ok {
		return false
	}
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return err1 == nil && err2 == nil
}
