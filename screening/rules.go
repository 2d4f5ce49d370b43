package screening

import (
	"errors"

	"github.com/cleanline/cleanline/blocklist"
)

// state is what the rules read: the call, the number and the store's facts.
type state struct {
	call     Call
	policy   Policy
	num      Number
	numErr   error // ErrWithheld, ErrNotANumber, or nil
	facts    blocklist.Facts
	storeErr error // the lookup failed or timed out; store rules stand aside
	static   map[string]bool
	verdict  Verdict
}

func (s *state) withheld() bool { return errors.Is(s.numErr, ErrWithheld) }
func (s *state) storeOK() bool  { return s.storeErr == nil && s.num.E164 != "" }

// rule decides a call or passes it to the next rule. Rules append reasons to
// s.verdict and return true once they have set its action.
type rule struct {
	name  string
	apply func(s *state) bool
}

// rules is the order of the design (ARCHITECTURE.md, "Screening rules").
var rules = []rule{
	{"trusted", ruleTrusted},
	{"invalid", ruleInvalid},
	{"protected", ruleProtected},
	{"uk_from_international", ruleUKFromInternational},
	{"line_blocklist", ruleLineBlocked},
	{"blocklist", ruleBlocklist},
	{"cooldown", ruleCooldown},
	{"velocity", ruleVelocity},
	{"withheld", ruleWithheld},
	{"store_failure", ruleStoreFailure},
	{"strict", ruleStrict},
}

func decide(s *state, a Action, r ...Reason) bool {
	s.verdict.Action = a
	s.verdict.Reasons = append(s.verdict.Reasons, r...)
	return true
}

func ruleTrusted(s *state) bool {
	if s.storeOK() && s.facts.Trusted {
		return decide(s, Allow, ReasonTrusted)
	}
	return false
}

// ruleProtected: a number on the Do-Not-Originate list never places calls,
// so a call presenting it is spoofed by definition ("159 never calls you").
func ruleProtected(s *state) bool {
	if s.protected() {
		return decide(s, Block, ReasonProtectedSpoofed)
	}
	return false
}

func (s *state) protected() bool {
	return s.num.E164 != "" && (s.static[s.num.E164] || (s.storeOK() && s.facts.Protected))
}

func ruleInvalid(s *state) bool {
	if s.withheld() {
		return false
	}
	if s.numErr != nil {
		return decide(s, Block, ReasonInvalid)
	}
	if extra := ofcomInvalid(s.num); extra != nil || !s.num.Valid {
		// Never-originate short codes (159, 999) are invalid CLIs too; say
		// both, so that the spoofing shows in call records.
		if s.protected() {
			extra = append(extra, ReasonProtectedSpoofed)
		}
		return decide(s, Block, append([]Reason{ReasonInvalid}, extra...)...)
	}
	return false
}

func ruleUKFromInternational(s *state) bool {
	if s.call.International && s.num.CountryCode == ukCountryCode {
		return decide(s, Block, ReasonUKFromInternational)
	}
	return false
}

// ruleLineBlocked: the line's own block list (its carer's choice) blocks,
// before the shared list could only warn of the same number.
func ruleLineBlocked(s *state) bool {
	if s.storeOK() && s.facts.LineBlocked {
		return decide(s, Block, ReasonBlocklistLine)
	}
	return false
}

func ruleBlocklist(s *state) bool {
	if !s.storeOK() {
		return false
	}
	e, isRange := s.facts.Entry, false
	if e == nil && s.facts.Range != nil {
		e, isRange = s.facts.Range, true
	}
	if e == nil {
		return false
	}
	s.verdict.Entry = &EntrySummary{Number: e.Number, Range: e.Range, Status: string(e.Status),
		Reports: e.Reports, Reason: e.Reason, Source: e.Source}
	var extra []Reason
	if isRange {
		extra = append(extra, ReasonBlocklistRange)
	}
	switch {
	case e.Status == blocklist.StatusConfirmed:
		return decide(s, Block, append([]Reason{ReasonBlocklistConfirmed}, extra...)...)
	case s.policy.ReportThreshold > 0 && e.Reports >= s.policy.ReportThreshold:
		return decide(s, Block, append([]Reason{ReasonBlocklistReported, ReasonBlocklistThreshold}, extra...)...)
	case s.facts.Cooldown:
		// D3: a reported caller already warned on this line is refused now,
		// not warned again.
		return decide(s, Block, append([]Reason{ReasonBlocklistReported}, append(extra, ReasonCooldown)...)...)
	default:
		return decide(s, Warn, append([]Reason{ReasonBlocklistReported}, extra...)...)
	}
}

func ruleCooldown(s *state) bool {
	if s.storeOK() && s.facts.Cooldown {
		return decide(s, Block, ReasonCooldown)
	}
	return false
}

func ruleVelocity(s *state) bool {
	if s.storeOK() && s.policy.VelocityLines > 0 && s.facts.DistinctLines > s.policy.VelocityLines {
		return decide(s, Warn, ReasonVelocity)
	}
	return false
}

func ruleWithheld(s *state) bool {
	if s.withheld() {
		return decide(s, s.policy.Withheld, ReasonWithheld)
	}
	return false
}

func ruleStoreFailure(s *state) bool {
	if s.storeErr == nil {
		return false
	}
	switch s.policy.StoreFailure {
	case FailWarn:
		return decide(s, Warn, ReasonStoreUnavailable)
	case FailOpen:
		return decide(s, Allow, ReasonStoreUnavailable)
	}
	return decide(s, Defer, ReasonStoreUnavailable)
}

func ruleStrict(s *state) bool {
	if s.policy.Strict {
		return decide(s, Warn, ReasonStrict)
	}
	return false
}
