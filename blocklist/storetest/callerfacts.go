package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
)

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

// testBlockedForLine: a number blocked for one line is blocked there and
// nowhere else, and never touches the shared blocklist.
func testBlockedForLine(t *testing.T, st blocklist.Admin) {
	if got, err := st.BlockedForLine(bg, line1); err != nil || len(got) != 0 || got == nil {
		t.Fatalf("BlockedForLine on empty store = %#v, %v; want an empty, non-nil list", got, err)
	}
	for _, n := range []string{"+447700900002", caller, "+447700900001"} {
		if err := st.BlockForLine(bg, line1, n); err != nil {
			t.Fatalf("BlockForLine: %v", err)
		}
	}
	if err := st.BlockForLine(bg, line1, caller); err != nil { // idempotent
		t.Fatalf("BlockForLine again: %v", err)
	}
	if err := st.BlockForLine(bg, line2, "+447700900009"); err != nil {
		t.Fatal(err)
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line1}); !f.LineBlocked || f.Entry != nil || f.Trusted {
		t.Fatalf("blocked for its line: %+v; want LineBlocked only", f)
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line2}); f.LineBlocked {
		t.Fatal("a line's block leaked to another line")
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller}); f.LineBlocked {
		t.Fatal("a line's block applies with no line")
	}
	if _, err := st.Get(bg, caller, false); !errors.Is(err, blocklist.ErrNotFound) {
		t.Fatalf("a line's block wrote the shared blocklist: %v", err)
	}
	got, err := st.BlockedForLine(bg, line1)
	if want := []string{caller, "+447700900001", "+447700900002"}; err != nil || !slices.Equal(got, want) {
		t.Fatalf("BlockedForLine(%s) = %v, %v; want %v", line1, got, err, want)
	}
	if got, err := st.Trusted(bg, line1); err != nil || len(got) != 0 {
		t.Fatalf("Trusted(%s) = %v, %v after blocking: the lists are separate", line1, got, err)
	}
	if err := st.UnblockForLine(bg, line1, caller); err != nil {
		t.Fatal(err)
	}
	if f := lookup(t, st, blocklist.Query{Caller: caller, Line: line1}); f.LineBlocked {
		t.Fatal("still blocked after UnblockForLine")
	}
	wantErr(t, "UnblockForLine absent", st.UnblockForLine(bg, line1, caller), blocklist.ErrNotFound)
	wantErr(t, "UnblockForLine other line", st.UnblockForLine(bg, line2, "+447700900001"), blocklist.ErrNotFound)
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
