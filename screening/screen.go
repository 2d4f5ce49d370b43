// Package screening decides what happens to a call: allow, warn or block,
// with machine-readable reasons. It is pure logic over a blocklist.Store: it
// knows nothing of SIP or sockets. Callers pass in what the signalling layer
// extracted (caller ID, asserted identity, privacy, trunk kind, line).
package screening

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cleanline/cleanline/blocklist"
)

// Call is what the signalling layer knows about an inbound call.
type Call struct {
	Line string // the called line
	// From is the caller ID as presented (From URI, tel: URI or digits).
	From string
	// Asserted is the P-Asserted-Identity (RFC 3325) from a trusted trunk; it is
	// what gets screened when present. Empty when absent or the trunk is untrusted.
	Asserted string
	// Privacy is set for "Privacy: id" (RFC 3325 §9.3): the caller is withheld
	// from the line whatever the identity headers say.
	Privacy bool
	// International is set when the call arrived on a trunk marked international.
	International bool
	// DryRun screens without recording anything (velocity); the CLI uses it.
	DryRun bool
}

// Config is the screener's configuration.
type Config struct {
	Region string // region national numbers are read in; GB when empty
	// Protected are never-originate numbers beyond the built-in
	// DefaultProtected, for every line: a call presenting one is spoofed, and
	// dialling one first ends the line's other calls (D4).
	Protected []string
	// Features are the codes lines dial that cleanline answers itself.
	Features Features
	Default  Policy // policy of lines with none of their own
	Lines    []Line // the configured lines; a line not listed gets Default
	// CacheSize is the normaliser's cache entries; 0 means 65536, <0 none.
	CacheSize int
}

// DefaultProtected are UK numbers that never place calls: emergency (999,
// 112), police non-emergency (101), NHS (111), power cut (105), Stop Scams UK
// (159), and 119. They are protected on every line, whatever the
// configuration adds.
var DefaultProtected = []string{"999", "112", "101", "111", "105", "119", "159"}

// Screener applies the rules to calls.
type Screener struct {
	store     blocklist.Store
	local     bool // the store cannot hang: no deadline timer per call
	norm      *Normalizer
	def       Policy
	defaults  lineRules             // what a line that is not configured gets
	lines     map[string]*lineRules // by line name
	lineNames []string
	byNumber  map[string]string // lineKey of a number or name → line
	features  Features
	now       func() time.Time
}

// New builds a screener over store.
func New(store blocklist.Store, cfg Config) (*Screener, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: no store", ErrPolicy)
	}
	size := cfg.CacheSize
	switch {
	case size == 0:
		size = 1 << 16
	case size < 0:
		size = 0
	}
	norm, err := NewNormalizer(cfg.Region, size)
	if err != nil {
		return nil, err
	}
	if cfg.Default == (Policy{}) {
		cfg.Default = DefaultPolicy()
	}
	if err := cfg.Default.Validate(); err != nil {
		return nil, fmt.Errorf("screening.default_policy: %w", err)
	}
	cfg.Features.defaults()
	if err := cfg.Features.validate(); err != nil {
		return nil, err
	}
	l, ok := store.(blocklist.Local)
	sc := &Screener{store: store, local: ok && l.Local(), norm: norm, def: cfg.Default, features: cfg.Features, now: time.Now}
	sc.defaults = lineRules{policy: cfg.Default, protected: map[string]bool{}}
	if err := sc.protect(sc.defaults.protected, "built-in protected", DefaultProtected); err != nil {
		return nil, err
	}
	if err := sc.protect(sc.defaults.protected, "screening.protected", cfg.Protected); err != nil {
		return nil, err
	}
	if err := sc.addLines(cfg.Lines); err != nil {
		return nil, err
	}
	return sc, nil
}

// Normalizer is the screener's normaliser, for tools that must agree with it.
func (sc *Screener) Normalizer() *Normalizer { return sc.norm }

// Policy is the policy that applies to line.
func (sc *Screener) Policy(line string) Policy { return sc.rules(line).policy }

// Features are the feature codes in force.
func (sc *Screener) Features() Features { return sc.features }

// Screen decides a call. It always returns a verdict: when the store does not
// answer within the line's StoreDeadline, the line's StoreFailure policy
// applies (Defer by default) and the verdict says store.unavailable.
func (sc *Screener) Screen(ctx context.Context, c Call) Verdict {
	r := sc.rules(c.Line)
	s := state{call: c, policy: r.policy, static: r.protected}
	raw := c.From
	if c.Asserted != "" {
		raw = c.Asserted
	}
	s.num, s.numErr = sc.norm.Parse(raw)
	if c.Privacy {
		s.num, s.numErr = Number{}, ErrWithheld
	}
	s.verdict.Number = s.num.E164
	if c.Asserted != "" && c.From != "" && s.policy.FlagAssertedMismatch && !c.Privacy {
		if from, err := sc.norm.Parse(c.From); err != nil || from.E164 != s.num.E164 {
			s.verdict.Reasons = append(s.verdict.Reasons, ReasonAssertedMismatch)
		}
	}
	if s.num.E164 != "" {
		s.facts, s.storeErr = sc.lookup(ctx, c, s.num.E164, s.policy)
		if s.storeErr != nil {
			s.verdict.StoreError = s.storeErr.Error()
		}
	}
	for _, r := range rules {
		if r.apply(&s) {
			return s.verdict
		}
	}
	s.verdict.Action = Allow
	if s.verdict.Reasons == nil {
		s.verdict.Reasons = []Reason{}
	}
	return s.verdict
}

func (sc *Screener) lookup(ctx context.Context, c Call, number string, p Policy) (blocklist.Facts, error) {
	if !sc.local {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.StoreDeadline)
		defer cancel()
	}
	q := blocklist.Query{Caller: number, Line: c.Line, Now: sc.now()}
	if !c.DryRun && p.VelocityLines > 0 {
		q.VelocityWindow = p.VelocityWindow
	}
	// The deadline bounds the wait on a dead or slow store; an answer that
	// did arrive is used even if the goroutine was descheduled past the
	// deadline (seen under a 200-call burst on 2 cores, where discarding it
	// let a confirmed scam number through on the fail-open policy).
	return sc.store.Lookup(ctx, q)
}

// Conclude records what a verdict implies for later calls: a caller who was
// refused, or warned and not accepted, is refused on the same line for the
// line's cooldown (D3). accepted says the person heard the warning and chose
// to connect the caller: the person knows them, so a callback is warned
// again, not refused. The signalling layer calls it once the call is over,
// off the decision path.
func (sc *Screener) Conclude(ctx context.Context, c Call, v Verdict, accepted bool) error {
	p := sc.Policy(c.Line)
	if v.Number == "" || v.Action == Allow || v.Action == Defer || p.Cooldown == 0 || v.Has(ReasonCooldown) {
		return nil
	}
	if accepted && v.Action == Warn {
		return nil
	}
	return sc.store.MarkCooldown(ctx, c.Line, v.Number, p.Cooldown)
}

// Report records a report of number by line: the "press 3" choice after a
// warning and the report feature code.
func (sc *Screener) Report(ctx context.Context, line, number string) (blocklist.Entry, error) {
	n, err := sc.norm.Normalize(number)
	if err != nil {
		return blocklist.Entry{}, err
	}
	return sc.store.Report(ctx, n, "line:"+line, "reported by the line", sc.now())
}

// IsWithheld reports whether err says the caller ID was withheld.
func IsWithheld(err error) bool { return errors.Is(err, ErrWithheld) }
