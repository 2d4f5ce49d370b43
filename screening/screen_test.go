package screening

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/blocklist/redistest"
)

// Valid fictional callers from Ofcom's drama range 020 7946 0xxx.
const (
	caller   = "+442079460123"
	caller2  = "+442079460124"
	bankLine = "+442079460999"
)

func openStore(t testing.TB) *blocklist.FileStore {
	t.Helper()
	st, err := blocklist.OpenFile(filepath.Join(t.TempDir(), "screening.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newScreener(t testing.TB, st blocklist.Store, cfg Config) *Screener {
	t.Helper()
	sc, err := New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func put(t testing.TB, st blocklist.Admin, e blocklist.Entry) {
	t.Helper()
	if e.FirstSeen.IsZero() {
		e.FirstSeen, e.LastSeen = time.Now(), time.Now()
	}
	if _, _, err := st.Put(context.Background(), []blocklist.Entry{e}); err != nil {
		t.Fatal(err)
	}
}

func want(t *testing.T, v Verdict, a Action, reasons ...Reason) {
	t.Helper()
	if reasons == nil {
		reasons = []Reason{}
	}
	if v.Action != a || !reflect.DeepEqual(v.Reasons, reasons) {
		t.Fatalf("verdict %s %v, want %s %v", v.Action, v.Reasons, a, reasons)
	}
}

// TestRules has a hit and a miss for every rule.
func TestRules(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	sc := newScreener(t, st, Config{})
	put(t, st, blocklist.Entry{Number: "+442079460200", Status: blocklist.StatusConfirmed, Reason: "bank impersonation"})
	put(t, st, blocklist.Entry{Number: "+442079460201", Status: blocklist.StatusReported, Reports: 1})
	put(t, st, blocklist.Entry{Number: "+442079460202", Status: blocklist.StatusReported, Reports: 3})
	put(t, st, blocklist.Entry{Number: "+4420794603", Range: true, Status: blocklist.StatusConfirmed})
	if err := st.Protect(ctx, bankLine); err != nil {
		t.Fatal(err)
	}
	if err := st.Trust(ctx, "home", "+442079460111"); err != nil {
		t.Fatal(err)
	}
	put(t, st, blocklist.Entry{Number: "+442079460203", Status: blocklist.StatusReported, Reports: 1})
	for _, n := range []string{"+442079460112", "+442079460203"} {
		if err := st.BlockForLine(ctx, "home", n); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name    string
		call    Call
		action  Action
		reasons []Reason
	}{
		{"unknown caller is allowed", Call{Line: "home", From: caller}, Allow, nil},
		{"trusted contact", Call{Line: "home", From: "020 7946 0111"}, Allow, []Reason{ReasonTrusted}},
		{"trusted on another line only", Call{Line: "other", From: "020 7946 0111"}, Allow, nil},
		{"too short", Call{Line: "home", From: "12"}, Block, []Reason{ReasonInvalid, ReasonUKLength}},
		{"reserved drama range", Call{Line: "home", From: "07700900124"}, Block, []Reason{ReasonInvalid}},
		{"not a number", Call{Line: "home", From: "sip:bob@example.com"}, Block, []Reason{ReasonInvalid}},
		{"premium rate", Call{Line: "home", From: "0909 879 0000"}, Block, []Reason{ReasonInvalid, ReasonPremiumRate}},
		{"159 never calls you", Call{Line: "home", From: "159"}, Block, []Reason{ReasonInvalid, ReasonUKLength, ReasonProtectedSpoofed}},
		{"protected bank line", Call{Line: "home", From: "sip:+442079460999@trunk;user=phone"}, Block, []Reason{ReasonProtectedSpoofed}},
		{"UK CLI on an international trunk", Call{Line: "home", From: caller, International: true}, Block, []Reason{ReasonUKFromInternational}},
		{"foreign CLI on an international trunk", Call{Line: "home", From: "+16502530000", International: true}, Allow, nil},
		{"confirmed", Call{Line: "home", From: "+442079460200"}, Block, []Reason{ReasonBlocklistConfirmed}},
		{"reported once", Call{Line: "home", From: "+442079460201"}, Warn, []Reason{ReasonBlocklistReported}},
		{"reported to threshold", Call{Line: "home", From: "+442079460202"}, Block, []Reason{ReasonBlocklistReported, ReasonBlocklistThreshold}},
		{"range", Call{Line: "home", From: "+442079460345"}, Block, []Reason{ReasonBlocklistConfirmed, ReasonBlocklistRange}},
		{"blocked for this line", Call{Line: "home", From: "020 7946 0112"}, Block, []Reason{ReasonBlocklistLine}},
		{"blocked for another line only", Call{Line: "other", From: "020 7946 0112"}, Allow, nil},
		{"blocked for this line, reported for all", Call{Line: "home", From: "+442079460203"}, Block, []Reason{ReasonBlocklistLine}},
		{"withheld by Privacy: id", Call{Line: "home", From: caller, Privacy: true}, Warn, []Reason{ReasonWithheld}},
		{"anonymous", Call{Line: "home", From: "sip:anonymous@anonymous.invalid"}, Warn, []Reason{ReasonWithheld}},
		{"asserted differs from From", Call{Line: "home", From: caller2, Asserted: caller}, Allow, []Reason{ReasonAssertedMismatch}},
		{"asserted identity is what is screened", Call{Line: "home", From: caller, Asserted: "+442079460200"}, Block, []Reason{ReasonAssertedMismatch, ReasonBlocklistConfirmed}},
		{"asserted equals From", Call{Line: "home", From: "020 7946 0123", Asserted: "sip:+442079460123@t"}, Allow, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.call.DryRun = true
			want(t, sc.Screen(ctx, c.call), c.action, c.reasons...)
		})
	}
}

func TestWithheldAndStrictPolicies(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	block := DefaultPolicy()
	block.Withheld = Block
	strict := DefaultPolicy()
	strict.Strict = true
	sc := newScreener(t, st, Config{Lines: linesOf(map[string]Policy{"care-home": block, "strict": strict})})
	if err := st.Trust(ctx, "strict", caller2); err != nil {
		t.Fatal(err)
	}
	want(t, sc.Screen(ctx, Call{Line: "care-home", From: "anonymous"}), Block, ReasonWithheld)
	want(t, sc.Screen(ctx, Call{Line: "home", From: "anonymous"}), Warn, ReasonWithheld)
	want(t, sc.Screen(ctx, Call{Line: "strict", From: caller}), Warn, ReasonStrict)
	want(t, sc.Screen(ctx, Call{Line: "strict", From: caller2}), Allow, ReasonTrusted)
}

// TestRuleOrder pins the order of ARCHITECTURE.md: each pair of rules that
// could both fire is decided by the earlier one.
func TestRuleOrder(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	sc := newScreener(t, st, Config{})
	put(t, st, blocklist.Entry{Number: caller, Status: blocklist.StatusConfirmed})
	if err := st.MarkCooldown(ctx, "home", caller, time.Minute); err != nil {
		t.Fatal(err)
	}
	// blocklist before cooldown
	want(t, sc.Screen(ctx, Call{Line: "home", From: caller, DryRun: true}), Block, ReasonBlocklistConfirmed)
	// trusted before blocklist
	if err := st.Trust(ctx, "home", caller); err != nil {
		t.Fatal(err)
	}
	want(t, sc.Screen(ctx, Call{Line: "home", From: caller, DryRun: true}), Allow, ReasonTrusted)
	// trusted before the line's own block list, which comes before the shared one
	if err := st.BlockForLine(ctx, "home", caller); err != nil {
		t.Fatal(err)
	}
	want(t, sc.Screen(ctx, Call{Line: "home", From: caller, DryRun: true}), Allow, ReasonTrusted)
	if err := st.BlockForLine(ctx, "x", caller); err != nil {
		t.Fatal(err)
	}
	want(t, sc.Screen(ctx, Call{Line: "x", From: caller, DryRun: true}), Block, ReasonBlocklistLine)
	// invalid before protected, protected before blocklist
	if err := st.Protect(ctx, caller2); err != nil {
		t.Fatal(err)
	}
	put(t, st, blocklist.Entry{Number: caller2, Status: blocklist.StatusReported, Reports: 1})
	want(t, sc.Screen(ctx, Call{Line: "x", From: caller2, DryRun: true}), Block, ReasonProtectedSpoofed)
	// the order itself
	var names []string
	for _, r := range rules {
		names = append(names, r.name)
	}
	wantOrder := []string{"trusted", "invalid", "protected", "uk_from_international", "line_blocklist", "blocklist", "cooldown", "velocity", "withheld", "store_failure", "strict"}
	if !reflect.DeepEqual(names, wantOrder) {
		t.Fatalf("rule order %v, want %v", names, wantOrder)
	}
}

// TestCooldown is design invariant D3 at the decision level.
func TestCooldown(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	sc := newScreener(t, st, Config{})
	put(t, st, blocklist.Entry{Number: caller, Status: blocklist.StatusReported, Reports: 1})
	call := Call{Line: "home", From: caller}
	v := sc.Screen(ctx, call)
	want(t, v, Warn, ReasonBlocklistReported)
	// the person accepted the warned caller: the callback is warned again
	if err := sc.Conclude(ctx, call, v, true); err != nil {
		t.Fatal(err)
	}
	want(t, sc.Screen(ctx, call), Warn, ReasonBlocklistReported)
	if err := sc.Conclude(ctx, call, v, false); err != nil {
		t.Fatal(err)
	}
	// warned once on this line: refused, not warned again
	want(t, sc.Screen(ctx, call), Block, ReasonBlocklistReported, ReasonCooldown)
	// the reported entry is removed: only the cooldown refuses the call now
	if err := st.Remove(ctx, caller, false); err != nil {
		t.Fatal(err)
	}
	want(t, sc.Screen(ctx, call), Block, ReasonCooldown)
	want(t, sc.Screen(ctx, Call{Line: "other", From: caller}), Allow)
	// an allowed call leaves no cooldown
	allowed := Call{Line: "home", From: caller2}
	if err := sc.Conclude(ctx, allowed, sc.Screen(ctx, allowed), false); err != nil {
		t.Fatal(err)
	}
	want(t, sc.Screen(ctx, allowed), Allow)
}

func TestVelocity(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	p := DefaultPolicy()
	p.VelocityLines = 3
	sc := newScreener(t, st, Config{Default: p})
	for i, line := range []string{"a", "b", "c", "a"} {
		want(t, sc.Screen(ctx, Call{Line: line, From: caller}), Allow)
		_ = i
	}
	want(t, sc.Screen(ctx, Call{Line: "d", From: caller}), Warn, ReasonVelocity)
	// a dry run neither counts nor is counted against another caller
	want(t, sc.Screen(ctx, Call{Line: "e", From: caller2, DryRun: true}), Allow)
}

// TestStoreDown: a dead Redis costs at most the deadline, and the line's
// failure policy applies; static rules still hold.
func TestStoreDown(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	opts, err := blocklist.ParseRedisURL("redis://" + srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	st, err := blocklist.NewRedis(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	warnLine, openLine := DefaultPolicy(), DefaultPolicy()
	warnLine.StoreFailure = FailWarn
	openLine.StoreFailure = FailOpen
	sc := newScreener(t, st, Config{Lines: linesOf(map[string]Policy{"care-home": warnLine, "provider": openLine})})
	put(t, st, blocklist.Entry{Number: caller, Status: blocklist.StatusConfirmed})
	want(t, sc.Screen(ctx, Call{Line: "home", From: caller}), Block, ReasonBlocklistConfirmed)

	srv.Stop()
	deadline := DefaultPolicy().StoreDeadline
	for _, c := range []struct {
		call    Call
		action  Action
		reasons []Reason
	}{
		{Call{Line: "home", From: caller}, Defer, []Reason{ReasonStoreUnavailable}},
		{Call{Line: "provider", From: caller}, Allow, []Reason{ReasonStoreUnavailable}},
		{Call{Line: "care-home", From: caller}, Warn, []Reason{ReasonStoreUnavailable}},
		{Call{Line: "home", From: "159"}, Block, []Reason{ReasonInvalid, ReasonUKLength, ReasonProtectedSpoofed}},
		{Call{Line: "home", From: "anonymous"}, Warn, []Reason{ReasonWithheld}},
	} {
		start := time.Now()
		v := sc.Screen(ctx, c.call)
		took := time.Since(start)
		want(t, v, c.action, c.reasons...)
		// Generous bound: the point is "about the deadline", not "Redis' 5 s timeouts".
		if took > deadline+250*time.Millisecond {
			t.Errorf("Screen with Redis down took %s, deadline %s", took, deadline)
		}
	}
}

func TestReport(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	sc := newScreener(t, st, Config{})
	for i := 1; i <= 3; i++ {
		e, err := sc.Report(ctx, "home", "020 7946 0123")
		if err != nil {
			t.Fatal(err)
		}
		if e.Reports != i || e.Status != blocklist.StatusReported || e.Source == "" {
			t.Fatalf("after %d reports: %+v", i, e)
		}
	}
	want(t, sc.Screen(ctx, Call{Line: "home", From: caller, DryRun: true}), Block, ReasonBlocklistReported, ReasonBlocklistThreshold)
	if _, err := sc.Report(ctx, "home", "12"); err == nil {
		t.Fatal("reporting an invalid number succeeded")
	}
}

func TestConfigErrors(t *testing.T) {
	st := openStore(t)
	bad := DefaultPolicy()
	bad.StoreFailure = "maybe"
	if _, err := New(st, Config{Lines: linesOf(map[string]Policy{"x": bad})}); err == nil {
		t.Fatal("bad store_failure accepted")
	}
	if _, err := New(st, Config{Region: "ZZ"}); err == nil {
		t.Fatal("unknown region accepted")
	}
	if _, err := New(st, Config{Protected: []string{"abc"}}); err == nil {
		t.Fatal("unparsable protected number accepted")
	}
	if _, err := New(nil, Config{}); err == nil {
		t.Fatal("nil store accepted")
	}
}

// linesOf configures lines whose policies set every key.
func linesOf(m map[string]Policy) []Line {
	var out []Line
	for name, p := range m {
		out = append(out, Line{Name: name, Policy: LinePolicy{
			Withheld: &p.Withheld, ReportThreshold: &p.ReportThreshold, Cooldown: &p.Cooldown,
			VelocityLines: &p.VelocityLines, VelocityWindow: &p.VelocityWindow, Strict: &p.Strict,
			StoreFailure: &p.StoreFailure, StoreDeadline: &p.StoreDeadline, FlagAssertedMismatch: &p.FlagAssertedMismatch,
		}})
	}
	return out
}
