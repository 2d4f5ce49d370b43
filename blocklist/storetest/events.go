package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
)

// OpenEvents returns a fresh, empty event log for one subtest, and a
// function that closes the store it belongs to (for the embedded log, the
// log itself).
type OpenEvents func(t *testing.T) (log blocklist.EventLog, closeStore func() error)

// RunEvents runs the event log's behavioural tests against logs made by open.
func RunEvents(t *testing.T, open OpenEvents) {
	tests := []struct {
		name string
		fn   func(*testing.T, blocklist.EventLog, func() error)
	}{
		{"NewestFirstAsWritten", testEventsNewestFirst},
		{"Select", testEventsSelect},
		{"Paging", testEventsPaging},
		{"Invalid", testEventsInvalid},
		{"Closed", testEventsClosed},
		{"LineNames", testEventsLineNames},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, closeStore := open(t)
			t.Cleanup(func() { _ = l.Close(); _ = closeStore() })
			tc.fn(t, l, closeStore)
		})
	}
}

// eventsFixture is 60 records of 20 calls, a minute apart: lines home and
// room-7 alternate, three callers, one withheld; each call is screened,
// ended, recorded.
func eventsFixture() []blocklist.EventRecord {
	var recs []blocklist.EventRecord
	callers := []string{"+442079460001", "+442079460002", ""}
	for i := range 20 {
		line := []string{line1, line2}[i%2]
		caller := callers[i%3]
		call := fmt.Sprintf("c%02d", i)
		for j, typ := range []string{"screened", "ended", "call"} {
			at := t0.Add(time.Duration(i)*time.Minute + time.Duration(j)*time.Second)
			data, _ := json.Marshal(map[string]any{"v": 1, "type": typ, "call": call, "line": line, "caller": caller, "n": i*3 + j})
			recs = append(recs, blocklist.EventRecord{Time: at, Type: typ, Line: line, Caller: caller, Call: call, Data: data})
		}
	}
	return recs
}

func appendEvents(t *testing.T, l blocklist.EventLog, recs []blocklist.EventRecord) {
	t.Helper()
	// In three batches, as a writer would.
	for len(recs) > 0 {
		n := min(len(recs), 25)
		if err := l.AppendEvents(bg, recs[:n]); err != nil {
			t.Fatalf("AppendEvents: %v", err)
		}
		recs = recs[n:]
	}
}

func readEvents(t *testing.T, l blocklist.EventLog, q blocklist.EventQuery) blocklist.EventPage {
	t.Helper()
	p, err := l.Events(bg, q)
	if err != nil {
		t.Fatalf("Events(%+v): %v", q, err)
	}
	return p
}

// newestFirst is the records of recs keep selects, newest first.
func newestFirst(recs []blocklist.EventRecord, keep func(blocklist.EventRecord) bool) []blocklist.EventRecord {
	var out []blocklist.EventRecord
	for i := len(recs) - 1; i >= 0; i-- {
		if keep(recs[i]) {
			out = append(out, recs[i])
		}
	}
	return out
}

func sameRecords(t *testing.T, what string, got, want []blocklist.EventRecord) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if !g.Time.Equal(w.Time) || g.Type != w.Type || g.Line != w.Line || g.Caller != w.Caller || g.Call != w.Call ||
			string(g.Data) != string(w.Data) {
			t.Fatalf("%s: record %d is\n  %+v (%s)\nwant\n  %+v (%s)", what, i, g, g.Data, w, w.Data)
		}
	}
}

func testEventsNewestFirst(t *testing.T, l blocklist.EventLog, _ func() error) {
	if p := readEvents(t, l, blocklist.EventQuery{}); len(p.Records) != 0 || p.Next != "" {
		t.Fatalf("empty log: %+v", p)
	}
	recs := eventsFixture()
	appendEvents(t, l, recs)
	p := readEvents(t, l, blocklist.EventQuery{Limit: blocklist.MaxEventLimit})
	sameRecords(t, "everything", p.Records, newestFirst(recs, func(blocklist.EventRecord) bool { return true }))
	if p.Next != "" {
		t.Errorf("a page holding everything has Next %q", p.Next)
	}
	if p := readEvents(t, l, blocklist.EventQuery{}); len(p.Records) != blocklist.DefaultEventLimit || p.Next == "" {
		t.Errorf("default limit: %d records, next %q; want %d and a cursor", len(p.Records), p.Next, blocklist.DefaultEventLimit)
	}
}

func testEventsSelect(t *testing.T, l blocklist.EventLog, _ func() error) {
	recs := eventsFixture()
	appendEvents(t, l, recs)
	all := blocklist.MaxEventLimit
	for _, c := range []struct {
		name string
		q    blocklist.EventQuery
		keep func(blocklist.EventRecord) bool
	}{
		{"line", blocklist.EventQuery{Line: line2, Limit: all}, func(r blocklist.EventRecord) bool { return r.Line == line2 }},
		{"caller", blocklist.EventQuery{Caller: "+442079460002", Limit: all}, func(r blocklist.EventRecord) bool { return r.Caller == "+442079460002" }},
		{"call", blocklist.EventQuery{Call: "c07", Limit: all}, func(r blocklist.EventRecord) bool { return r.Call == "c07" }},
		{"records of a line", blocklist.EventQuery{Line: line1, Types: []string{"call"}, Limit: all},
			func(r blocklist.EventRecord) bool { return r.Line == line1 && r.Type == "call" }},
		{"two types", blocklist.EventQuery{Types: []string{"screened", "ended"}, Limit: all},
			func(r blocklist.EventRecord) bool { return r.Type != "call" }},
		{"time range", blocklist.EventQuery{Since: t0.Add(5 * time.Minute), Until: t0.Add(9*time.Minute + time.Second), Limit: all},
			func(r blocklist.EventRecord) bool {
				return !r.Time.Before(t0.Add(5*time.Minute)) && r.Time.Before(t0.Add(9*time.Minute+time.Second))
			}},
		{"since, a line's caller", blocklist.EventQuery{Since: t0.Add(10 * time.Minute), Line: line1, Caller: "+442079460001", Limit: all},
			func(r blocklist.EventRecord) bool {
				return !r.Time.Before(t0.Add(10*time.Minute)) && r.Line == line1 && r.Caller == "+442079460001"
			}},
		{"nobody", blocklist.EventQuery{Caller: "+442079460999", Limit: all}, func(blocklist.EventRecord) bool { return false }},
	} {
		want := newestFirst(recs, c.keep)
		if len(want) == 0 && c.name != "nobody" {
			t.Fatalf("%s: the fixture selects nothing", c.name)
		}
		sameRecords(t, c.name, readEvents(t, l, c.q).Records, want)
	}
}

// Pages of 7 go through a line's records newest first, each once.
func testEventsPaging(t *testing.T, l blocklist.EventLog, _ func() error) {
	recs := eventsFixture()
	appendEvents(t, l, recs)
	want := newestFirst(recs, func(r blocklist.EventRecord) bool { return r.Line == line1 })
	var got []blocklist.EventRecord
	q := blocklist.EventQuery{Line: line1, Limit: 7}
	for pages := 0; ; pages++ {
		if pages > len(want) {
			t.Fatal("paging does not end")
		}
		p := readEvents(t, l, q)
		if len(p.Records) > 7 {
			t.Fatalf("page of %d records, limit 7", len(p.Records))
		}
		got = append(got, p.Records...)
		if p.Next == "" {
			break
		}
		q.Cursor = p.Next
	}
	sameRecords(t, "paged", got, want)
	// A cursor keeps its place while newer records arrive.
	first := readEvents(t, l, blocklist.EventQuery{Line: line1, Limit: 7})
	newer := blocklist.EventRecord{Time: t0.Add(time.Hour), Type: "call", Line: line1, Call: "c99", Data: []byte(`{"v":1}`)}
	appendEvents(t, l, []blocklist.EventRecord{newer})
	second := readEvents(t, l, blocklist.EventQuery{Line: line1, Limit: 7, Cursor: first.Next})
	sameRecords(t, "second page after a newer record", second.Records, want[7:14])
	if top := readEvents(t, l, blocklist.EventQuery{Line: line1, Limit: 1}); len(top.Records) != 1 || top.Records[0].Call != "c99" {
		t.Fatalf("newest record %+v, want c99", top.Records)
	}
}

func testEventsInvalid(t *testing.T, l blocklist.EventLog, _ func() error) {
	good := eventsFixture()[0]
	for _, c := range []struct {
		name string
		bad  func(r *blocklist.EventRecord)
	}{
		{"no time", func(r *blocklist.EventRecord) { r.Time = time.Time{} }},
		{"no type", func(r *blocklist.EventRecord) { r.Type = "" }},
		{"type with a space", func(r *blocklist.EventRecord) { r.Type = "call ended" }},
		{"no line", func(r *blocklist.EventRecord) { r.Line = "" }},
		{"line with a newline", func(r *blocklist.EventRecord) { r.Line = "a\nb" }},
		{"caller not E.164", func(r *blocklist.EventRecord) { r.Caller = "02079460001" }},
		{"no call", func(r *blocklist.EventRecord) { r.Call = "" }},
		{"call with a space", func(r *blocklist.EventRecord) { r.Call = "a b" }},
		{"data not JSON", func(r *blocklist.EventRecord) { r.Data = []byte(`{"v":1`) }},
		{"data not an object", func(r *blocklist.EventRecord) { r.Data = []byte(`[1]`) }},
		{"data on two lines", func(r *blocklist.EventRecord) { r.Data = []byte("{\"v\":\n1}") }},
		{"call id with a quote", func(r *blocklist.EventRecord) { r.Call = `a"b` }},
		{"data too big", func(r *blocklist.EventRecord) {
			r.Data = []byte(`{"x":"` + strings.Repeat("x", blocklist.MaxEventData) + `"}`)
		}},
	} {
		r := good
		c.bad(&r)
		err := l.AppendEvents(bg, []blocklist.EventRecord{good, r})
		wantErr(t, c.name, err, blocklist.ErrInvalid)
	}
	if p := readEvents(t, l, blocklist.EventQuery{}); len(p.Records) != 0 {
		t.Fatalf("a refused batch was partly written: %d records", len(p.Records))
	}
	for _, q := range []blocklist.EventQuery{
		{Limit: -1}, {Limit: blocklist.MaxEventLimit + 1}, {Caller: "anonymous"}, {Line: "a\x00b"},
		{Types: []string{"Call"}}, {Call: "a b"}, {Cursor: "not a cursor"},
		{Since: t0, Until: t0},
	} {
		_, err := l.Events(bg, q)
		wantErr(t, fmt.Sprintf("Events(%+v)", q), err, blocklist.ErrInvalid)
	}
}

func testEventsClosed(t *testing.T, l blocklist.EventLog, closeStore func() error) {
	appendEvents(t, l, eventsFixture()[:3])
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := closeStore(); err != nil {
		t.Fatalf("closing the store: %v", err)
	}
	err := l.AppendEvents(bg, eventsFixture()[3:6])
	wantErr(t, "AppendEvents after Close", err, blocklist.ErrClosed)
	_, err = l.Events(bg, blocklist.EventQuery{})
	wantErr(t, "Events after Close", err, blocklist.ErrClosed)
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if !errors.Is(l.AppendEvents(bg, nil), blocklist.ErrClosed) {
		t.Fatal("an empty append after Close is not refused")
	}
}

// Any line name a line may have (quotes, backslashes, letters beyond
// ASCII) is kept as it was and found by.
func testEventsLineNames(t *testing.T, l blocklist.EventLog, _ func() error) {
	var recs []blocklist.EventRecord
	for i, line := range []string{`room "7"`, `a\b`, "Zoë's room", "home"} {
		data, _ := json.Marshal(map[string]any{"v": 1, "line": line})
		recs = append(recs, blocklist.EventRecord{Time: t0.Add(time.Duration(i) * time.Second), Type: "call", Line: line,
			Call: fmt.Sprintf("c.%d", i), Data: data})
	}
	appendEvents(t, l, recs)
	for _, r := range recs {
		sameRecords(t, r.Line, readEvents(t, l, blocklist.EventQuery{Line: r.Line}).Records, []blocklist.EventRecord{r})
	}
}
