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
		{"PutKeepsStronger", testPutKeepsStronger},
		{"Report", testReport},
		{"Protected", testProtected},
		{"TrustedPerLine", testTrusted},
		{"BlockedForOneLine", testBlockedForLine},
		{"Cooldown", testCooldown},
		{"Velocity", testVelocity},
		{"Walk", testWalk},
		{"NotFound", testNotFound},
		{"Invalid", testInvalid},
		{"ConcurrentLookups", testConcurrent},
		{"Closed", testClosed},
		{"Canceled", testCanceled},
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
