// Package storetest is the one behavioural suite every blocklist store must
// pass. A store package runs it from its tests:
//
//	storetest.Run(t, func(t *testing.T) blocklist.Admin { ... a fresh, empty store ... })
//
// open is called once per subtest and must return an empty store; Run closes
// it at the end of the subtest (Close must tolerate a second call).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
)

// Open returns a fresh, empty store for one subtest.
type Open func(t *testing.T) blocklist.Admin

// Run runs every behavioural test against stores made by open.
func Run(t *testing.T, open Open) {
	tests := []struct {
		name string
		fn   func(*testing.T, blocklist.Admin)
	}{
		{"ExactBlockGetRemove", testExact},
		{"RangeBlockGetRemove", testRange},
		{"LongestPrefix", testLongestPrefix},
		{"PutCounts", testPutCounts},
		{"PutCountsLarge", testPutCountsLarge},
		{"Report", testReport},
		{"Protected", testProtected},
		{"TrustedPerLine", testTrusted},
		{"Cooldown", testCooldown},
		{"Velocity", testVelocity},
		{"Walk", testWalk},
		{"NotFound", testNotFound},
		{"Invalid", testInvalid},
		{"ConcurrentLookups", testConcurrent},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := open(t)
			t.Cleanup(func() { _ = st.Close() })
			tc.fn(t, st)
		})
	}
}

var bg = context.Background()

// t0 is a fixed clock for everything a test passes explicitly.
var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

const (
	caller = "+442079460123"
	line1  = "home"
	line2  = "care-home-room-7"
)

func put(t *testing.T, st blocklist.Admin, es ...blocklist.Entry) (int, int) {
	t.Helper()
	a, u, err := st.Put(bg, es)
	if err != nil {
		t.Fatalf("Put: %v", err)
	}
	return a, u
}

func lookup(t *testing.T, st blocklist.Admin, q blocklist.Query) blocklist.Facts {
	t.Helper()
	if q.Now.IsZero() {
		q.Now = time.Now()
	}
	f, err := st.Lookup(bg, q)
	if err != nil {
		t.Fatalf("Lookup(%+v): %v", q, err)
	}
	return f
}

func get(t *testing.T, st blocklist.Admin, n string, isRange bool) blocklist.Entry {
	t.Helper()
	e, err := st.Get(bg, n, isRange)
	if err != nil {
		t.Fatalf("Get(%s, range=%v): %v", n, isRange, err)
	}
	return e
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

// sameEntry compares entries the way the stores keep them: times to the ms.
func sameEntry(a, b blocklist.Entry) bool {
	ms := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixMilli()
	}
	return a.Number == b.Number && a.Range == b.Range && a.Status == b.Status &&
		a.Reason == b.Reason && a.Source == b.Source && a.Reports == b.Reports &&
		ms(a.FirstSeen) == ms(b.FirstSeen) && ms(a.LastSeen) == ms(b.LastSeen)
}

func testExact(t *testing.T, st blocklist.Admin) {
	e := blocklist.Entry{Number: caller, Status: blocklist.StatusConfirmed, Reason: "bank impersonation",
		Source: "cli", Reports: 2, FirstSeen: t0, LastSeen: t0.Add(time.Hour)}
	if a, u := put(t, st, e); a != 1 || u != 0 {
		t.Fatalf("Put new: added %d updated %d, want 1 0", a, u)
	}
	if got := get(t, st, caller, false); !sameEntry(got, e) {
		t.Fatalf("Get = %+v, want %+v", got, e)
	}
	f := lookup(t, st, blocklist.Query{Caller: caller, Line: line1})
	if f.Entry == nil || !sameEntry(*f.Entry, e) || f.Range != nil {
		t.Fatalf("Lookup = %+v, want the exact entry and no range", f)
	}
	if f.Trusted || f.Protected || f.Cooldown || f.DistinctLines != 0 {
		t.Fatalf("Lookup has facts it should not: %+v", f)
	}
	// An exact entry is not a range: a longer number does not match it.
	if f := lookup(t, st, blocklist.Query{Caller: caller + "9", Line: line1}); f.Entry != nil || f.Range != nil {
		t.Fatalf("exact entry matched a longer number: %+v", f)
	}
	if _, err := st.Get(bg, caller, true); !errors.Is(err, blocklist.ErrNotFound) {
		t.Fatalf("exact entry visible as a range: %v", err)
	}
	if err := st.Remove(bg, caller, false); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line1}); f.Entry != nil {
		t.Fatalf("entry still there after Remove: %+v", f.Entry)
	}
	wantErr(t, "Get after Remove", func() error { _, err := st.Get(bg, caller, false); return err }(), blocklist.ErrNotFound)
}

func testRange(t *testing.T, st blocklist.Admin) {
	r := blocklist.Entry{Number: "+4420794601", Range: true, Status: blocklist.StatusReported, Reason: "spoofed block", Source: "feed"}
	put(t, st, r)
	got := get(t, st, r.Number, true)
	if got.Status != r.Status || got.Reason != r.Reason || !got.Range || got.FirstSeen.IsZero() || got.LastSeen.IsZero() {
		t.Fatalf("Get range = %+v (zero times must default to now)", got)
	}
	f := lookup(t, st, blocklist.Query{Caller: "+442079460123", Line: line1})
	if f.Range == nil || f.Range.Number != r.Number || !f.Range.Range || f.Entry != nil {
		t.Fatalf("Lookup inside range = %+v", f)
	}
	if f := lookup(t, st, blocklist.Query{Caller: "+442079460223", Line: line1}); f.Range != nil {
		t.Fatalf("Lookup outside range matched %+v", f.Range)
	}
	// A range equal to the whole number matches that number.
	put(t, st, blocklist.Entry{Number: "+442079460555", Range: true, Status: blocklist.StatusConfirmed})
	if f := lookup(t, st, blocklist.Query{Caller: "+442079460555", Line: line1}); f.Range == nil || f.Range.Number != "+442079460555" {
		t.Fatalf("full-length range: %+v", f.Range)
	}
	if _, err := st.Get(bg, r.Number, false); !errors.Is(err, blocklist.ErrNotFound) {
		t.Fatalf("range visible as an exact entry: %v", err)
	}
	if err := st.Remove(bg, r.Number, true); err != nil {
		t.Fatalf("Remove range: %v", err)
	}
	if f := lookup(t, st, blocklist.Query{Caller: "+442079460123", Line: line1}); f.Range != nil {
		t.Fatalf("range still matches after Remove: %+v", f.Range)
	}
}

func testLongestPrefix(t *testing.T, st blocklist.Admin) {
	put(t, st,
		blocklist.Entry{Number: "+44", Range: true, Status: blocklist.StatusReported, Reason: "country"},
		blocklist.Entry{Number: "+4420", Range: true, Status: blocklist.StatusReported, Reason: "london"},
		blocklist.Entry{Number: "+44207946", Range: true, Status: blocklist.StatusConfirmed, Reason: "drama"},
		blocklist.Entry{Number: "+442079", Range: false, Status: blocklist.StatusConfirmed}, // exact: never a prefix
		blocklist.Entry{Number: "+4420799", Range: true, Status: blocklist.StatusConfirmed, Reason: "sibling"},
		blocklist.Entry{Number: "+442079461", Range: true, Status: blocklist.StatusConfirmed, Reason: "sibling 2"},
		blocklist.Entry{Number: "+33", Range: true, Status: blocklist.StatusReported, Reason: "france"},
	)
	for _, c := range []struct{ caller, want string }{
		{"+442079460123", "+44207946"},
		{"+442079470123", "+4420"},
		{"+442079990000", "+4420799"},
		{"+442079461000", "+442079461"},
		{"+442012345678", "+4420"},
		{"+441612345678", "+44"},
		{"+33123456789", "+33"},
		{"+4420", "+4420"},
		{"+16502530000", ""},
		{"+3", ""},
	} {
		if len(c.caller) < 3 {
			continue
		}
		f := lookup(t, st, blocklist.Query{Caller: c.caller, Line: line1})
		got := ""
		if f.Range != nil {
			got = f.Range.Number
		}
		if got != c.want {
			t.Errorf("Lookup(%s).Range = %q, want %q", c.caller, got, c.want)
		}
	}
	// Exact and range facts are independent.
	put(t, st, blocklist.Entry{Number: "+442079460123", Status: blocklist.StatusReported})
	f := lookup(t, st, blocklist.Query{Caller: "+442079460123", Line: line1})
	if f.Entry == nil || f.Range == nil || f.Range.Number != "+44207946" {
		t.Fatalf("exact + range: %+v", f)
	}
}

func testPutCounts(t *testing.T, st blocklist.Admin) {
	a := blocklist.Entry{Number: "+442079460001", Status: blocklist.StatusReported, Reason: "r1", Reports: 4, FirstSeen: t0, LastSeen: t0}
	b := blocklist.Entry{Number: "+442079460002", Status: blocklist.StatusReported, FirstSeen: t0, LastSeen: t0}
	r := blocklist.Entry{Number: "+4420794600", Range: true, Status: blocklist.StatusReported, Reports: 1, FirstSeen: t0, LastSeen: t0}
	if ad, up := put(t, st, a, b, r); ad != 3 || up != 0 {
		t.Fatalf("first Put: added %d updated %d, want 3 0", ad, up)
	}
	later := t0.Add(48 * time.Hour)
	a2 := blocklist.Entry{Number: a.Number, Status: blocklist.StatusConfirmed, Reason: "r2", Source: "ops", Reports: 0, FirstSeen: later, LastSeen: later}
	r2 := blocklist.Entry{Number: r.Number, Range: true, Status: blocklist.StatusConfirmed, Reports: 9, FirstSeen: later, LastSeen: later}
	c := blocklist.Entry{Number: "+442079460003", Status: blocklist.StatusConfirmed}
	// The same number twice in one batch: the second is an update, the last wins.
	c2 := blocklist.Entry{Number: c.Number, Status: blocklist.StatusReported, Reason: "dup"}
	if ad, up := put(t, st, a2, r2, c, c2); ad != 1 || up != 3 {
		t.Fatalf("second Put: added %d updated %d, want 1 3", ad, up)
	}
	want := a2
	want.FirstSeen, want.Reports = a.FirstSeen, a.Reports
	if got := get(t, st, a.Number, false); !sameEntry(got, want) {
		t.Fatalf("updated entry = %+v, want %+v (FirstSeen and Reports kept)", got, want)
	}
	wantR := r2
	wantR.FirstSeen, wantR.Reports = r.FirstSeen, r.Reports
	if got := get(t, st, r.Number, true); !sameEntry(got, wantR) {
		t.Fatalf("updated range = %+v, want %+v", got, wantR)
	}
	if got := get(t, st, c.Number, false); got.Reason != "dup" || got.Status != blocklist.StatusReported {
		t.Fatalf("duplicate in batch: %+v, want the last one", got)
	}
	// An update alone in its batch (implementations may take another path).
	a3 := blocklist.Entry{Number: a.Number, Status: blocklist.StatusReported, Reason: "r3", FirstSeen: later, LastSeen: later}
	if ad, up := put(t, st, a3, blocklist.Entry{Number: "+442079460004", Status: blocklist.StatusReported}); ad != 1 || up != 1 {
		t.Fatalf("third Put: added %d updated %d, want 1 1", ad, up)
	}
	want = a3
	want.FirstSeen, want.Reports = a.FirstSeen, a.Reports
	if got := get(t, st, a.Number, false); !sameEntry(got, want) {
		t.Fatalf("updated entry = %+v, want %+v (FirstSeen and Reports kept)", got, want)
	}
	if ad, up := put(t, st); ad != 0 || up != 0 {
		t.Fatalf("empty Put: %d %d", ad, up)
	}
}

func testReport(t *testing.T, st blocklist.Admin) {
	e, err := st.Report(bg, caller, "line:home", "fake police", t0)
	if err != nil {
		t.Fatalf("Report: %v", err)
	}
	want := blocklist.Entry{Number: caller, Status: blocklist.StatusReported, Reason: "fake police", Source: "line:home",
		Reports: 1, FirstSeen: t0, LastSeen: t0}
	if !sameEntry(e, want) {
		t.Fatalf("first Report = %+v, want %+v", e, want)
	}
	e, err = st.Report(bg, caller, "line:other", "other reason", t0.Add(time.Minute))
	if err != nil {
		t.Fatalf("Report: %v", err)
	}
	want.Reports, want.LastSeen = 2, t0.Add(time.Minute)
	if !sameEntry(e, want) {
		t.Fatalf("second Report = %+v, want %+v", e, want)
	}
	// An earlier report does not move LastSeen back.
	if e, _ = st.Report(bg, caller, "x", "y", t0); e.Reports != 3 || !e.LastSeen.Equal(want.LastSeen) {
		t.Fatalf("out-of-order Report = %+v", e)
	}
	if got := get(t, st, caller, false); got.Reports != 3 {
		t.Fatalf("Get after reports = %+v", got)
	}
	// A report never downgrades a confirmed entry; it fills an empty reason.
	n := "+442079460999"
	put(t, st, blocklist.Entry{Number: n, Status: blocklist.StatusConfirmed, FirstSeen: t0, LastSeen: t0})
	if e, err = st.Report(bg, n, "line:home", "courier scam", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if e.Status != blocklist.StatusConfirmed || e.Reports != 1 || e.Reason != "courier scam" || !e.FirstSeen.Equal(t0) {
		t.Fatalf("Report on confirmed = %+v", e)
	}
	// Reports show up in Lookup.
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line1}); f.Entry == nil || f.Entry.Reports != 3 {
		t.Fatalf("Lookup after reports = %+v", f.Entry)
	}
	// Zero time means now.
	before := time.Now().Add(-time.Second)
	if e, err = st.Report(bg, "+442079460998", "s", "", time.Time{}); err != nil || e.FirstSeen.Before(before) {
		t.Fatalf("Report with zero time = %+v, %v", e, err)
	}
}

func testProtected(t *testing.T, st blocklist.Admin) {
	for _, n := range []string{"+443001234567", "+442079460000", "+448001111"} {
		if err := st.Protect(bg, n); err != nil {
			t.Fatalf("Protect(%s): %v", n, err)
		}
	}
	if err := st.Protect(bg, "+442079460000"); err != nil { // idempotent
		t.Fatalf("Protect again: %v", err)
	}
	got, err := st.Protected(bg)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"+442079460000", "+443001234567", "+448001111"}; !slices.Equal(got, want) {
		t.Fatalf("Protected() = %v, want %v", got, want)
	}
	if f := lookup(t, st, blocklist.Query{Caller: "+448001111", Line: line1}); !f.Protected {
		t.Fatalf("protected caller not flagged: %+v", f)
	}
	if f := lookup(t, st, blocklist.Query{Caller: "+4480011119", Line: line1}); f.Protected {
		t.Fatal("protected is exact, but a longer number was flagged")
	}
	if err := st.Unprotect(bg, "+448001111"); err != nil {
		t.Fatal(err)
	}
	if f := lookup(t, st, blocklist.Query{Caller: "+448001111", Line: line1}); f.Protected {
		t.Fatal("still protected after Unprotect")
	}
	wantErr(t, "Unprotect absent", st.Unprotect(bg, "+448001111"), blocklist.ErrNotFound)
	if got, _ := st.Protected(bg); len(got) != 2 {
		t.Fatalf("Protected() after Unprotect = %v", got)
	}
}

func testTrusted(t *testing.T, st blocklist.Admin) {
	if got, err := st.Trusted(bg, line1); err != nil || len(got) != 0 || got == nil {
		t.Fatalf("Trusted on empty store = %#v, %v; want an empty, non-nil list", got, err)
	}
	for _, n := range []string{"+447700900002", caller, "+447700900001"} {
		if err := st.Trust(bg, line1, n); err != nil {
			t.Fatalf("Trust: %v", err)
		}
	}
	if err := st.Trust(bg, line2, "+447700900009"); err != nil {
		t.Fatal(err)
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line1}); !f.Trusted {
		t.Fatal("trusted contact not trusted on its line")
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line2}); f.Trusted {
		t.Fatal("trust leaked to another line")
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller}); f.Trusted {
		t.Fatal("trust applies with no line")
	}
	got, err := st.Trusted(bg, line1)
	if want := []string{caller, "+447700900001", "+447700900002"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("Trusted(%s) = %v, %v; want %v", line1, got, err, want)
	}
	if err := st.Untrust(bg, line1, caller); err != nil {
		t.Fatal(err)
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line1}); f.Trusted {
		t.Fatal("still trusted after Untrust")
	}
	wantErr(t, "Untrust absent", st.Untrust(bg, line1, caller), blocklist.ErrNotFound)
	wantErr(t, "Untrust other line", st.Untrust(bg, line2, "+447700900001"), blocklist.ErrNotFound)
}

func testCooldown(t *testing.T, st blocklist.Admin) {
	if err := st.MarkCooldown(bg, line1, caller, time.Hour); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line1, Now: now}); !f.Cooldown {
		t.Fatal("cooldown not alive right after MarkCooldown")
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line2, Now: now}); f.Cooldown {
		t.Fatal("cooldown leaked to another line")
	}
	if f := lookup(t, st, blocklist.Query{Caller: "+442079460124", Line: line1, Now: now}); f.Cooldown {
		t.Fatal("cooldown leaked to another caller")
	}
	// Query.Now is the clock: past the deadline it is over, no waiting needed.
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line1, Now: now.Add(61 * time.Minute)}); f.Cooldown {
		t.Fatal("cooldown alive after its deadline by Query.Now")
	}
	// And it really expires on the wall clock.
	const ttl = 150 * time.Millisecond
	if err := st.MarkCooldown(bg, line2, caller, ttl); err != nil {
		t.Fatal(err)
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line2}); !f.Cooldown {
		t.Fatal("short cooldown not alive at once")
	}
	deadline := time.Now().Add(5 * time.Second)
	for lookup(t, st, blocklist.Query{Caller: caller, Line: line2}).Cooldown {
		if time.Now().After(deadline) {
			t.Fatalf("cooldown of %s still alive after 5s", ttl)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
	wantErr(t, "zero ttl", st.MarkCooldown(bg, line1, caller, 0), blocklist.ErrInvalid)
}

func testVelocity(t *testing.T, st blocklist.Admin) {
	const w = 10 * time.Second
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	steps := []struct {
		line string
		now  time.Time
		want int
	}{
		{"a", at(0), 1},
		{"b", at(time.Second), 2},
		{"c", at(2 * time.Second), 3},
		{"a", at(3 * time.Second), 3}, // same line again: still distinct lines
		// at 11.5s the window is (1.5s, 11.5s]: b (1s) fell out, c (2s) and a (3s) remain
		{"d", at(11500 * time.Millisecond), 3},
		// far later only the current line counts
		{"e", at(time.Hour), 1},
	}
	for i, s := range steps {
		f := lookup(t, st, blocklist.Query{Caller: caller, Line: s.line, Now: s.now, VelocityWindow: w})
		if f.DistinctLines != s.want {
			t.Fatalf("step %d (%s at %s): DistinctLines = %d, want %d", i, s.line, s.now.Sub(t0), f.DistinctLines, s.want)
		}
	}
	// Zero window neither records nor counts.
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: "z", Now: at(time.Hour)}); f.DistinctLines != 0 {
		t.Fatalf("zero window counted %d", f.DistinctLines)
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: "e", Now: at(time.Hour), VelocityWindow: w}); f.DistinctLines != 1 {
		t.Fatalf("zero-window lookup was recorded: %d", f.DistinctLines)
	}
	// Callers are counted separately.
	if f := lookup(t, st, blocklist.Query{Caller: "+442079460124", Line: "a", Now: at(time.Hour), VelocityWindow: w}); f.DistinctLines != 1 {
		t.Fatalf("other caller: %d", f.DistinctLines)
	}
}

// testPutCountsLarge: counts and kept fields hold across the batch and
// script sizes implementations split a large Put into.
func testPutCountsLarge(t *testing.T, st blocklist.Admin) {
	const n = 2503
	mk := func(i int, reports int, at time.Time, reason string) blocklist.Entry {
		return blocklist.Entry{Number: fmt.Sprintf("+4474%08d", i*7919%100000000), Status: blocklist.StatusReported,
			Reason: reason, Reports: reports, FirstSeen: at, LastSeen: at}
	}
	var first, again, twice []blocklist.Entry
	later := t0.Add(time.Hour)
	for i := 0; i < n; i++ {
		first = append(first, mk(i, 3, t0, "first"))
		again = append(again, mk(i, 0, later, "again"))
	}
	if ad, up := put(t, st, first...); ad != n || up != 0 {
		t.Fatalf("first Put: added %d updated %d, want %d 0", ad, up, n)
	}
	if ad, up := put(t, st, again...); ad != 0 || up != n {
		t.Fatalf("second Put: added %d updated %d, want 0 %d", ad, up, n)
	}
	for _, i := range []int{0, 999, 1000, n - 1} {
		want := again[i]
		want.FirstSeen, want.Reports = t0, 3
		if got := get(t, st, want.Number, false); !sameEntry(got, want) {
			t.Fatalf("entry %d after update = %+v, want %+v", i, got, want)
		}
	}
	// New numbers, each twice in one Put: added, then updated, last wins.
	for i := n; i < 2*n; i++ {
		twice = append(twice, mk(i, 0, t0, "one"))
	}
	for i := n; i < 2*n; i++ {
		twice = append(twice, mk(i, 0, later, "two"))
	}
	if ad, up := put(t, st, twice...); ad != n || up != n {
		t.Fatalf("Put with duplicates: added %d updated %d, want %d %d", ad, up, n, n)
	}
	for _, i := range []int{0, n - 1} {
		want := twice[n+i]
		want.FirstSeen = t0
		if got := get(t, st, want.Number, false); !sameEntry(got, want) {
			t.Fatalf("duplicated entry %d = %+v, want %+v", i, got, want)
		}
	}
}

func testWalk(t *testing.T, st blocklist.Admin) {
	const n = 2503 // more than one page in every implementation
	want := map[string]blocklist.Entry{}
	var es []blocklist.Entry
	for i := 0; i < n; i++ {
		e := blocklist.Entry{Number: fmt.Sprintf("+4474%08d", i*7919%100000000), Status: blocklist.StatusConfirmed,
			Reason: fmt.Sprintf("r%d", i), FirstSeen: t0, LastSeen: t0}
		es = append(es, e)
		want[e.Number] = e
	}
	for _, num := range []string{"+12", "+123", "+1234", "+12345"} { // shorter than most keys
		e := blocklist.Entry{Number: num, Status: blocklist.StatusReported, FirstSeen: t0, LastSeen: t0}
		es = append(es, e)
		want[e.Number] = e
	}
	for _, p := range []string{"+4420", "+4471", "+1"} {
		e := blocklist.Entry{Number: p, Range: true, Status: blocklist.StatusReported, FirstSeen: t0, LastSeen: t0}
		es = append(es, e)
		want["r"+p] = e
	}
	put(t, st, es...)
	seen := map[string]bool{}
	err := st.Walk(bg, func(e blocklist.Entry) error {
		k := e.Number
		if e.Range {
			k = "r" + k
		}
		if seen[k] {
			return fmt.Errorf("%s walked twice", k)
		}
		seen[k] = true
		if w, ok := want[k]; !ok || !sameEntry(e, w) {
			return fmt.Errorf("walked %+v, want %+v", e, w)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Walk: %v", err)
	}
	if len(seen) != len(want) {
		t.Fatalf("Walk saw %d entries, want %d", len(seen), len(want))
	}
	stop := errors.New("stop here")
	count := 0
	err = st.Walk(bg, func(blocklist.Entry) error {
		count++
		if count == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || count != 10 {
		t.Fatalf("Walk with failing fn: err %v after %d calls", err, count)
	}
}

func testNotFound(t *testing.T, st blocklist.Admin) {
	for _, isRange := range []bool{false, true} {
		_, err := st.Get(bg, caller, isRange)
		wantErr(t, fmt.Sprintf("Get absent (range=%v)", isRange), err, blocklist.ErrNotFound)
		wantErr(t, fmt.Sprintf("Remove absent (range=%v)", isRange), st.Remove(bg, caller, isRange), blocklist.ErrNotFound)
	}
	wantErr(t, "Unprotect absent", st.Unprotect(bg, caller), blocklist.ErrNotFound)
	wantErr(t, "Untrust absent", st.Untrust(bg, line1, caller), blocklist.ErrNotFound)
	f := lookup(t, st, blocklist.Query{Caller: caller, Line: line1})
	if f != (blocklist.Facts{}) {
		t.Fatalf("Lookup on empty store = %+v", f)
	}
}

func testInvalid(t *testing.T, st blocklist.Admin) {
	bad := []string{"", "442079460123", "+", "+0207946", "+44 20 7946", "+44abc", "+4420794601234567", "+4", "anonymous", "+44\x00"}
	for _, n := range bad {
		_, _, err := st.Put(bg, []blocklist.Entry{{Number: n, Status: blocklist.StatusConfirmed}})
		wantErr(t, fmt.Sprintf("Put(%q)", n), err, blocklist.ErrInvalid)
		_, err = st.Lookup(bg, blocklist.Query{Caller: n, Line: line1})
		wantErr(t, fmt.Sprintf("Lookup(%q)", n), err, blocklist.ErrInvalid)
		_, err = st.Get(bg, n, false)
		wantErr(t, fmt.Sprintf("Get(%q)", n), err, blocklist.ErrInvalid)
		_, err = st.Report(bg, n, "s", "r", t0)
		wantErr(t, fmt.Sprintf("Report(%q)", n), err, blocklist.ErrInvalid)
		wantErr(t, fmt.Sprintf("Protect(%q)", n), st.Protect(bg, n), blocklist.ErrInvalid)
		wantErr(t, fmt.Sprintf("Trust(%q)", n), st.Trust(bg, line1, n), blocklist.ErrInvalid)
		wantErr(t, fmt.Sprintf("MarkCooldown(%q)", n), st.MarkCooldown(bg, line1, n, time.Minute), blocklist.ErrInvalid)
	}
	for _, p := range []string{"", "+", "+0", "44", "+44*", "+1234567890123456"} {
		_, _, err := st.Put(bg, []blocklist.Entry{{Number: p, Range: true, Status: blocklist.StatusConfirmed}})
		wantErr(t, fmt.Sprintf("Put range %q", p), err, blocklist.ErrInvalid)
	}
	for _, e := range []blocklist.Entry{
		{Number: caller},                    // no status
		{Number: caller, Status: "blocked"}, // unknown status
		{Number: caller, Status: blocklist.StatusConfirmed, Reason: "two\nlines"},
		{Number: caller, Status: blocklist.StatusConfirmed, Reports: -1},
	} {
		_, _, err := st.Put(bg, []blocklist.Entry{{Number: "+442079460001", Status: blocklist.StatusConfirmed}, e})
		wantErr(t, fmt.Sprintf("Put(%+v)", e), err, blocklist.ErrInvalid)
	}
	// A batch with one bad entry writes nothing.
	if _, err := st.Get(bg, "+442079460001", false); !errors.Is(err, blocklist.ErrNotFound) {
		t.Fatalf("a rejected batch was partly written: %v", err)
	}
	wantErr(t, "Trust empty line", st.Trust(bg, "", caller), blocklist.ErrInvalid)
	wantErr(t, "Trust control line", st.Trust(bg, "a\x00b", caller), blocklist.ErrInvalid)
	_, err := st.Trusted(bg, "")
	wantErr(t, "Trusted empty line", err, blocklist.ErrInvalid)
	_, err = st.Lookup(bg, blocklist.Query{Caller: caller, Line: "bad\nline"})
	wantErr(t, "Lookup bad line", err, blocklist.ErrInvalid)
}

func testConcurrent(t *testing.T, st blocklist.Admin) {
	var es []blocklist.Entry
	for i := 0; i < 200; i++ {
		es = append(es, blocklist.Entry{Number: fmt.Sprintf("+44207946%04d", i), Status: blocklist.StatusConfirmed})
	}
	put(t, st, es...)
	put(t, st, blocklist.Entry{Number: "+4420794700", Range: true, Status: blocklist.StatusReported})
	const workers, each = 8, 100
	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				n := es[(w*each+i)%len(es)].Number
				f, err := st.Lookup(bg, blocklist.Query{Caller: n, Line: fmt.Sprintf("line%d", w), Now: time.Now(), VelocityWindow: time.Minute})
				if err != nil {
					errs <- err
					return
				}
				if f.Entry == nil || f.Entry.Number != n || f.DistinctLines < 1 {
					errs <- fmt.Errorf("worker %d: Lookup(%s) = %+v", w, n, f)
					return
				}
				rn := fmt.Sprintf("+44207947%04d", i)
				if f, err := st.Lookup(bg, blocklist.Query{Caller: rn, Line: "x"}); err != nil || f.Range == nil {
					errs <- fmt.Errorf("worker %d: range Lookup(%s) = %+v, %v", w, rn, f, err)
					return
				}
			}
		}()
	}
	// Writers run at the same time: reports on other numbers and cooldowns.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 50; i++ {
			if _, err := st.Report(bg, fmt.Sprintf("+44161496%04d", i), "line:x", "", time.Now()); err != nil {
				errs <- err
				return
			}
			if err := st.MarkCooldown(bg, "x", fmt.Sprintf("+44161496%04d", i), time.Minute); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func testClosed(t *testing.T, st blocklist.Admin) {
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_, err := st.Lookup(bg, blocklist.Query{Caller: caller, Line: line1})
	wantErr(t, "Lookup after Close", err, blocklist.ErrClosed)
	_, _, err = st.Put(bg, []blocklist.Entry{{Number: caller, Status: blocklist.StatusConfirmed}})
	wantErr(t, "Put after Close", err, blocklist.ErrClosed)
}
