package admin

import (
	"context"
	"fmt"

	"github.com/cleanline/cleanline/screening"
)

// Dry runs: what serve would decide, and why, recording nothing.

// Check screens a call from in.Number to in.Line as serve would. A store
// that does not answer gives the verdict defer (its error in StoreError),
// not an error: that is what a call would get.
func (s *Service) Check(ctx context.Context, in CheckIn) (CheckResult, error) {
	line, err := s.checkLine(in.Line)
	if err != nil {
		return CheckResult{}, err
	}
	sc := s.screener()
	// A dry run: checking a number must not count as a call (velocity).
	v := sc.Screen(ctx, screening.Call{Line: line, From: in.Number, International: in.International, DryRun: true})
	out := CheckResult{Input: in.Number, Line: line, Action: v.Action.String(), Number: v.Number,
		Reasons: make([]string, len(v.Reasons)), Entry: v.Entry, StoreError: v.StoreError}
	for i, r := range v.Reasons {
		out.Reasons[i] = string(r)
	}
	if _, perr := sc.Normalizer().Parse(in.Number); perr != nil && !screening.IsWithheld(perr) {
		out.Why = perr.Error()
	} else if v.Has(screening.ReasonInvalid) {
		out.Why = fmt.Sprintf("%q is not an allocated, dialable number", in.Number)
	}
	return out, nil
}

// checkLine is the line a check is about: a configured one when named,
// else the default policy's.
func (s *Service) checkLine(line string) (string, error) {
	if line == "" {
		return DefaultLine, nil
	}
	return line, s.knownLine(line)
}

// CheckDial says what serve does when in.Line dials in.Number: allow (to
// the trunk, or a feature code cleanline answers) or bar.
func (s *Service) CheckDial(ctx context.Context, in DialIn) (DialResult, error) {
	line, err := s.checkLine(in.Line)
	if err != nil {
		return DialResult{}, err
	}
	sc := s.screener()
	d := sc.Dialled(ctx, line, in.Number)
	out := DialResult{Input: in.Number, Line: line, Action: "allow", Number: d.Number, Emergency: d.Emergency,
		Protected: d.Protected, Trusted: d.Trusted, Classes: make([]string, len(d.Classes)), Barred: string(d.Barred)}
	for i, c := range d.Classes {
		out.Classes[i] = string(c)
	}
	switch {
	case d.Feature == screening.FeatureLineCheck:
		out.Feature = "line_check"
	case d.Feature == screening.FeatureReport:
		out.Feature = "report"
	case d.Number == "" && len(d.Classes) == 0:
		out.Action = "bar"
		if _, err := sc.Normalizer().Parse(in.Number); err != nil {
			out.Why = err.Error()
		}
	}
	if d.Barred != "" {
		out.Action = "bar"
		out.Why = fmt.Sprintf("line %s may not dial %s (its policy's dial.%s is false)", line, d.Barred, d.Barred)
	}
	return out, nil
}
