package screening

import (
	"fmt"
	"time"
)

// FailurePolicy says what a line gets when the store cannot answer in time.
type FailurePolicy string

const (
	// FailRetry refuses the call as temporarily unavailable (verdict Defer,
	// SIP 503 with Retry-After): the caller's network retries it, on another
	// instance behind a dispatcher or a moment later. The default: a store
	// that misses its deadline is as often an overloaded cleanline as a dead
	// Redis, and a flood of calls must not turn screening off for the scam
	// call hidden in it.
	FailRetry FailurePolicy = "retry"
	// FailOpen lets calls through (reason store.unavailable): availability
	// over screening, for a provider that chooses it.
	FailOpen FailurePolicy = "open"
	// FailWarn warns on every call: a care home's choice.
	FailWarn FailurePolicy = "warn"
)

// Policy is one line's screening policy. Config files decode a line's policy
// over a copy of DefaultPolicy, so a line names only what it changes.
type Policy struct {
	// Withheld is what calls with no caller ID get.
	Withheld Action `yaml:"withheld" json:"withheld"`
	// ReportThreshold: a reported (unconfirmed) number is blocked once it has
	// this many reports; below it the call is warned. 0 never blocks on reports.
	ReportThreshold int `yaml:"report_threshold" json:"report_threshold"`
	// Cooldown is how long a caller who was warned or refused is refused on the
	// same line (design D3; the police advise waiting five minutes).
	Cooldown time.Duration `yaml:"cooldown" json:"cooldown"`
	// VelocityLines: a caller reaching more than this many distinct lines
	// within VelocityWindow is warned. 0 disables the rule.
	VelocityLines int `yaml:"velocity_lines" json:"velocity_lines"`
	// VelocityWindow is the window VelocityLines counts over.
	VelocityWindow time.Duration `yaml:"velocity_window" json:"velocity_window"`
	// Strict: only trusted contacts ring straight through; everyone else is warned.
	Strict bool `yaml:"strict" json:"strict"`
	// StoreFailure is what calls get when the store does not answer in time.
	StoreFailure FailurePolicy `yaml:"store_failure" json:"store_failure"`
	// StoreDeadline bounds the store lookup on the call path.
	StoreDeadline time.Duration `yaml:"store_deadline" json:"store_deadline"`
	// FlagAssertedMismatch records cli.asserted_mismatch when a trusted trunk's
	// P-Asserted-Identity differs from From.
	FlagAssertedMismatch bool `yaml:"flag_asserted_mismatch" json:"flag_asserted_mismatch"`
	// Dial is what the line may dial beyond ordinary numbers: premium rate,
	// international... Emergency and protected numbers always go through.
	Dial DialPolicy `yaml:"dial" json:"dial"`
}

// DefaultPolicy is what a line gets unless its configuration says otherwise.
func DefaultPolicy() Policy {
	return Policy{
		Withheld:        Warn,
		ReportThreshold: 3,
		Cooldown:        5 * time.Minute,
		VelocityLines:   5,
		VelocityWindow:  10 * time.Minute,
		StoreFailure:    FailRetry,
		// Redis answers in well under a millisecond; the deadline only
		// bounds trouble. On retry a miss costs the caller a whole attempt,
		// so it is generous next to post-dial delay (seconds), and equal to
		// the peer's in the issue 5 comparison (Kamailio's cmd_timeout).
		StoreDeadline:        150 * time.Millisecond,
		FlagAssertedMismatch: true,
		Dial:                 defaultDialPolicy(),
	}
}

// Validate names the first field that is wrong.
func (p Policy) Validate() error {
	switch {
	case p.Withheld < Allow || p.Withheld > Block:
		return fmt.Errorf("%w: withheld: want allow, warn or block", ErrPolicy)
	case p.ReportThreshold < 0:
		return fmt.Errorf("%w: report_threshold %d: want 0 or more", ErrPolicy, p.ReportThreshold)
	case p.Cooldown < 0:
		return fmt.Errorf("%w: cooldown %s: want 0 or more", ErrPolicy, p.Cooldown)
	case p.VelocityLines < 0:
		return fmt.Errorf("%w: velocity_lines %d: want 0 or more", ErrPolicy, p.VelocityLines)
	case p.VelocityLines > 0 && p.VelocityWindow <= 0:
		return fmt.Errorf("%w: velocity_window %s: want more than 0 when velocity_lines is set", ErrPolicy, p.VelocityWindow)
	case p.StoreFailure != FailRetry && p.StoreFailure != FailOpen && p.StoreFailure != FailWarn:
		return fmt.Errorf("%w: store_failure %q: want retry, open or warn", ErrPolicy, p.StoreFailure)
	case p.StoreDeadline <= 0:
		return fmt.Errorf("%w: store_deadline %s: want more than 0", ErrPolicy, p.StoreDeadline)
	}
	return nil
}
