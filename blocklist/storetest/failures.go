package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
)

func testNotFound(t *testing.T, st blocklist.Admin) {
	for _, isRange := range []bool{false, true} {
		_, err := st.Get(bg, caller, isRange)
		wantErr(t, fmt.Sprintf("Get absent (range=%v)", isRange), err, blocklist.ErrNotFound)
		wantErr(t, fmt.Sprintf("Remove absent (range=%v)", isRange), st.Remove(bg, caller, isRange), blocklist.ErrNotFound)
	}
	wantErr(t, "Unprotect absent", st.Unprotect(bg, caller), blocklist.ErrNotFound)
	wantErr(t, "Untrust absent", st.Untrust(bg, line1, caller), blocklist.ErrNotFound)
	wantErr(t, "UnblockForLine absent", st.UnblockForLine(bg, line1, caller), blocklist.ErrNotFound)
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
		wantErr(t, fmt.Sprintf("BlockForLine(%q)", n), st.BlockForLine(bg, line1, n), blocklist.ErrInvalid)
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
	wantErr(t, "BlockForLine empty line", st.BlockForLine(bg, "", caller), blocklist.ErrInvalid)
	_, err = st.BlockedForLine(bg, "a\x00b")
	wantErr(t, "BlockedForLine control line", err, blocklist.ErrInvalid)
	_, err = st.Lookup(bg, blocklist.Query{Caller: caller, Line: "bad\nline"})
	wantErr(t, "Lookup bad line", err, blocklist.ErrInvalid)
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
	// Closed is said first, even to a call with bad arguments.
	_, err = st.Lookup(bg, blocklist.Query{Caller: "anonymous", Line: line1})
	wantErr(t, "Lookup(anonymous) after Close", err, blocklist.ErrClosed)
	wantErr(t, "Trust(\"\") after Close", st.Trust(bg, "", "x"), blocklist.ErrClosed)
	wantErr(t, "BlockForLine after Close", st.BlockForLine(bg, line1, caller), blocklist.ErrClosed)
}

// testCanceled: an admin call whose ctx has already ended fails with
// ErrUnavailable wrapping the ctx's error, and writes nothing.
func testCanceled(t *testing.T, st blocklist.Admin) {
	ctx, cancel := context.WithCancel(bg)
	cancel()
	want := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, blocklist.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("%s with a canceled ctx: got %v, want ErrUnavailable wrapping context.Canceled", what, err)
		}
	}
	_, _, err := st.Put(ctx, []blocklist.Entry{{Number: caller, Status: blocklist.StatusConfirmed}})
	want("Put", err)
	_, err = st.Report(ctx, caller, "s", "r", t0)
	want("Report", err)
	_, err = st.Get(ctx, caller, false)
	want("Get", err)
	want("Walk", st.Walk(ctx, func(blocklist.Entry) error { return nil }))
	want("Protect", st.Protect(ctx, caller))
	want("Trust", st.Trust(ctx, line1, caller))
	_, err = st.Trusted(ctx, line1)
	want("Trusted", err)
	want("BlockForLine", st.BlockForLine(ctx, line1, caller))
	_, err = st.BlockedForLine(ctx, line1)
	want("BlockedForLine", err)
	if _, err := st.Get(bg, caller, false); !errors.Is(err, blocklist.ErrNotFound) {
		t.Fatalf("a write with a canceled ctx was stored: %v", err)
	}
}
