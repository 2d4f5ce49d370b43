package screening

import (
	"encoding/json"
	"fmt"
)

// Action is what the B2BUA does with a call.
type Action int

const (
	// Allow rings the line straight away.
	Allow Action = iota
	// Warn rings the line, speaks the warning and connects only on request.
	Warn
	// Block refuses the call; the line never rings.
	Block
	// Defer means no decision could be made in time (the store did not
	// answer): the call is refused as temporarily unavailable, so the
	// caller's network retries it, on another instance or a little later.
	// The line never rings and the caller is not held against a cooldown.
	Defer
)

var actionNames = [...]string{Allow: "allow", Warn: "warn", Block: "block", Defer: "defer"}

func (a Action) String() string {
	if a < 0 || int(a) >= len(actionNames) {
		return fmt.Sprintf("action(%d)", int(a))
	}
	return actionNames[a]
}

// ParseAction reads "allow", "warn" or "block": the actions a policy may
// choose ("defer" is the store's failure, never a policy's choice).
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames[:Defer] {
		if s == n {
			return Action(i), nil
		}
	}
	return Allow, fmt.Errorf("%w: action %q: want allow, warn or block", ErrPolicy, s)
}

// MarshalText makes actions read as words in JSON and YAML.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText accepts the words MarshalText writes; Policy.Validate
// refuses "defer" where a policy names an action.
func (a *Action) UnmarshalText(b []byte) error {
	for i, n := range actionNames {
		if string(b) == n {
			*a = Action(i)
			return nil
		}
	}
	return fmt.Errorf("%w: action %q: want allow, warn or block", ErrPolicy, b)
}

// Reason is a stable, machine-readable code explaining a verdict. Codes are
// part of the public interface (logs, CLI --json, metrics): never rename one.
type Reason string

const (
	ReasonTrusted             Reason = "trusted"                   // trusted contact of the line
	ReasonWithheld            Reason = "cli.withheld"              // no caller ID presented
	ReasonInvalid             Reason = "cli.invalid"               // not a valid, dialable number
	ReasonPremiumRate         Reason = "cli.premium_rate"          // UK 09: never a valid caller ID (Ofcom)
	ReasonUKLength            Reason = "cli.uk_length"             // UK CLI not 10 or 11 digits in national form
	ReasonUKFromInternational Reason = "cli.uk_from_international" // UK CLI on an international trunk
	ReasonAssertedMismatch    Reason = "cli.asserted_mismatch"     // P-Asserted-Identity differs from From
	ReasonProtectedSpoofed    Reason = "protected.spoofed"         // a never-originate number as caller
	ReasonBlocklistConfirmed  Reason = "blocklist.confirmed"       // confirmed scam number
	ReasonBlocklistReported   Reason = "blocklist.reported"        // reported, not (yet) confirmed
	ReasonBlocklistThreshold  Reason = "blocklist.threshold"       // reports reached the line's threshold
	ReasonBlocklistRange      Reason = "blocklist.range"           // the hit was a range, not the exact number
	ReasonBlocklistLine       Reason = "blocklist.line"            // blocked for this line only, by its carer or operator
	ReasonCooldown            Reason = "cooldown"                  // warned or refused on this line recently (D3)
	ReasonVelocity            Reason = "velocity"                  // rang many distinct lines in a short window
	ReasonStrict              Reason = "policy.strict"             // strict line: only trusted contacts ring through
	ReasonStoreUnavailable    Reason = "store.unavailable"         // the store did not answer in time
)

// Verdict is the decision on one call.
type Verdict struct {
	Action  Action   `json:"action"`
	Number  string   `json:"number,omitempty"` // E.164 caller, empty when withheld or unparsable
	Reasons []Reason `json:"reasons"`
	// Entry is the blocklist entry behind a blocklist reason, for call records.
	Entry *EntrySummary `json:"entry,omitempty"`
	// StoreError says why the store gave no answer (store.unavailable).
	StoreError string `json:"store_error,omitempty"`
}

// EntrySummary is the part of a blocklist entry worth showing with a verdict.
type EntrySummary struct {
	Number  string `json:"number"`
	Range   bool   `json:"range,omitempty"`
	Status  string `json:"status"`
	Reports int    `json:"reports"`
	Reason  string `json:"reason,omitempty"`
	Source  string `json:"source,omitempty"`
}

// Has reports whether the verdict carries reason r.
func (v Verdict) Has(r Reason) bool {
	for _, x := range v.Reasons {
		if x == r {
			return true
		}
	}
	return false
}

// String is the one-line form the CLI prints: "block blocklist.confirmed".
func (v Verdict) String() string {
	b, _ := json.Marshal(v.Reasons)
	return fmt.Sprintf("%s %s %s", v.Action, v.Number, b)
}
