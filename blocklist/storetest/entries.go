package storetest

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
)

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
	c := blocklist.Entry{Number: "+442079460003", Status: blocklist.StatusReported}
	// The same number twice in one batch: the second is an update, the last
	// wins (a weaker last one is testPutKeepsStronger's).
	c2 := blocklist.Entry{Number: c.Number, Status: blocklist.StatusConfirmed, Reason: "dup"}
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
	if got := get(t, st, c.Number, false); got.Reason != "dup" || got.Status != blocklist.StatusConfirmed {
		t.Fatalf("duplicate in batch: %+v, want the last one", got)
	}
	// An update alone in its batch (implementations may take another path).
	a3 := blocklist.Entry{Number: a.Number, Status: blocklist.StatusConfirmed, Reason: "r3", FirstSeen: later, LastSeen: later}
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

// testPutKeepsStronger: a reported entry put over a confirmed one does not
// downgrade it unless the put is forced. The kept entry keeps its status,
// reason and source, fills them only where empty, moves LastSeen forward
// only, and counts as updated: on every path a store writes by (one entry,
// a range, duplicates in a batch, a batch of many).
func testPutKeepsStronger(t *testing.T, st blocklist.Admin) {
	later := t0.Add(time.Hour)
	conf := blocklist.Entry{Number: caller, Status: blocklist.StatusConfirmed, Reason: "bank impersonation",
		Source: "cli", Reports: 2, FirstSeen: t0, LastSeen: t0}
	bare := blocklist.Entry{Number: "+442079460002", Status: blocklist.StatusConfirmed, FirstSeen: t0, LastSeen: t0}
	rng := blocklist.Entry{Number: "+4420794601", Range: true, Status: blocklist.StatusConfirmed, Reason: "spoofed block",
		Source: "ops", FirstSeen: t0, LastSeen: t0}
	put(t, st, conf, bare, rng)
	reported := func(e blocklist.Entry, at time.Time) blocklist.Entry {
		return blocklist.Entry{Number: e.Number, Range: e.Range, Status: blocklist.StatusReported,
			Reason: "feed says scam", Source: "import:feed.csv", FirstSeen: at, LastSeen: at}
	}
	if a, u := put(t, st, reported(conf, later), reported(bare, later), reported(rng, later)); a != 0 || u != 3 {
		t.Fatalf("reported over confirmed: added %d updated %d, want 0 3", a, u)
	}
	want := conf
	want.LastSeen = later
	if got := get(t, st, conf.Number, false); !sameEntry(got, want) {
		t.Fatalf("confirmed entry after a reported put = %+v, want %+v (status, reason, source kept; LastSeen forward)", got, want)
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line1}); f.Entry == nil || f.Entry.Status != blocklist.StatusConfirmed {
		t.Fatalf("Lookup after a reported put = %+v, want it still confirmed", f.Entry)
	}
	wantBare := bare
	wantBare.Reason, wantBare.Source, wantBare.LastSeen = "feed says scam", "import:feed.csv", later
	if got := get(t, st, bare.Number, false); !sameEntry(got, wantBare) {
		t.Fatalf("confirmed entry without reason after a reported put = %+v, want %+v (empty fields filled)", got, wantBare)
	}
	wantRange := rng
	wantRange.LastSeen = later
	if got := get(t, st, rng.Number, true); !sameEntry(got, wantRange) {
		t.Fatalf("confirmed range after a reported put = %+v, want %+v", got, wantRange)
	}
	// An earlier sighting does not move LastSeen back.
	put(t, st, reported(conf, t0.Add(-time.Hour)))
	if got := get(t, st, conf.Number, false); !got.LastSeen.Equal(later) || got.Status != blocklist.StatusConfirmed {
		t.Fatalf("after an earlier reported put: %+v, want LastSeen %s and confirmed", got, later)
	}

	// One batch applies in order: a new number confirmed, then reported.
	dup := blocklist.Entry{Number: "+442079460003", Status: blocklist.StatusConfirmed, Reason: "first", FirstSeen: t0, LastSeen: t0}
	if a, u := put(t, st, dup, reported(dup, later)); a != 1 || u != 1 {
		t.Fatalf("confirmed then reported in one batch: added %d updated %d, want 1 1", a, u)
	}
	if got := get(t, st, dup.Number, false); got.Status != blocklist.StatusConfirmed || got.Reason != "first" || !got.LastSeen.Equal(later) {
		t.Fatalf("confirmed then reported in one batch = %+v, want confirmed, reason \"first\", LastSeen %s", got, later)
	}

	// More entries than one script call or one pipeline writes.
	const n = 1203
	var many, manyReported []blocklist.Entry
	for i := 0; i < n; i++ {
		e := blocklist.Entry{Number: fmt.Sprintf("+4474%08d", i*7919%100000000), Status: blocklist.StatusConfirmed,
			Reason: "ops", FirstSeen: t0, LastSeen: t0}
		many = append(many, e)
		manyReported = append(manyReported, reported(e, later))
	}
	put(t, st, many...)
	if a, u := put(t, st, manyReported...); a != 0 || u != n {
		t.Fatalf("%d reported over confirmed: added %d updated %d, want 0 %d", n, a, u, n)
	}
	for _, i := range []int{0, 999, 1000, n - 1} {
		if got := get(t, st, many[i].Number, false); got.Status != blocklist.StatusConfirmed || got.Reason != "ops" {
			t.Fatalf("entry %d of %d after a reported put = %+v, want it still confirmed", i, n, got)
		}
	}

	// Forced, the status is set as given and the entry is replaced, except
	// FirstSeen and Reports as always.
	force := func(es ...blocklist.Entry) (int, int) {
		t.Helper()
		a, u, err := st.Put(bg, es, blocklist.ForceStatus())
		if err != nil {
			t.Fatalf("Put(ForceStatus): %v", err)
		}
		return a, u
	}
	last := later.Add(time.Hour)
	if a, u := force(reported(conf, last), reported(rng, last), blocklist.Entry{Number: "+442079460004", Status: blocklist.StatusReported}); a != 1 || u != 2 {
		t.Fatalf("forced Put: added %d updated %d, want 1 2", a, u)
	}
	want = reported(conf, last)
	want.FirstSeen, want.Reports = conf.FirstSeen, conf.Reports
	if got := get(t, st, conf.Number, false); !sameEntry(got, want) {
		t.Fatalf("after a forced reported put = %+v, want %+v", got, want)
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line1}); f.Entry == nil || f.Entry.Status != blocklist.StatusReported {
		t.Fatalf("Lookup after a forced reported put = %+v, want it reported", f.Entry)
	}
	wantRange = reported(rng, last)
	wantRange.FirstSeen = rng.FirstSeen
	if got := get(t, st, rng.Number, true); !sameEntry(got, wantRange) {
		t.Fatalf("range after a forced reported put = %+v, want %+v", got, wantRange)
	}
	if a, u := force(dup, reported(dup, last)); a != 0 || u != 2 {
		t.Fatalf("forced confirmed then reported in one batch: added %d updated %d, want 0 2", a, u)
	}
	if got := get(t, st, dup.Number, false); got.Status != blocklist.StatusReported {
		t.Fatalf("forced confirmed then reported in one batch = %+v, want reported", got)
	}
	if a, u := force(manyReported...); a != 0 || u != n {
		t.Fatalf("%d forced: added %d updated %d, want 0 %d", n, a, u, n)
	}
	for _, i := range []int{0, 1000, n - 1} {
		if got := get(t, st, many[i].Number, false); got.Status != blocklist.StatusReported || got.Reason != "feed says scam" {
			t.Fatalf("entry %d of %d after a forced put = %+v, want it reported", i, n, got)
		}
	}
}
