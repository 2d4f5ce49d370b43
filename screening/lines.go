package screening

import (
	"fmt"
	"strings"
	"time"
)

// Line is one protected line as screening knows it: the numbers that ring
// it and its own policy. The signalling layer owns where the line is
// reached; screening owns what its numbers are.
type Line struct {
	// Name keys the line's trusted contacts, cooldowns and call records.
	Name string
	// Numbers ring the line, in any form a person or a trunk writes them;
	// an entry that is not a number (the user part of its contact, say) is
	// matched as a name, case-insensitively.
	Numbers []string
	// Policy is what the line changes of the default policy.
	Policy LinePolicy
	// Key is where the line is configured ("sip.lines[0]"), for errors.
	Key string
}

// LinePolicy is a line's own policy as its configuration gives it: every
// key it sets replaces the default policy's, the others keep the default.
type LinePolicy struct {
	Withheld             *Action        `yaml:"withheld"`
	ReportThreshold      *int           `yaml:"report_threshold"`
	Cooldown             *time.Duration `yaml:"cooldown"`
	VelocityLines        *int           `yaml:"velocity_lines"`
	VelocityWindow       *time.Duration `yaml:"velocity_window"`
	Strict               *bool          `yaml:"strict"`
	StoreFailure         *FailurePolicy `yaml:"store_failure"`
	StoreDeadline        *time.Duration `yaml:"store_deadline"`
	FlagAssertedMismatch *bool          `yaml:"flag_asserted_mismatch"`
	// Protected are the numbers this line's person rings for help, such as
	// their bank: dialling one first ends the line's other calls (D4), and a
	// call presenting one is spoofed. The built-in emergency and police
	// numbers and screening.protected apply to every line as well.
	Protected []string `yaml:"protected"`
	// Dial changes what the line may dial: the classes it names replace the
	// default policy's, the others keep it.
	Dial *LineDial `yaml:"dial"`
}

// Over is the policy a line gets: def with the keys the line sets.
func (o LinePolicy) Over(def Policy) Policy {
	p := def
	set(&p.Withheld, o.Withheld)
	set(&p.ReportThreshold, o.ReportThreshold)
	set(&p.Cooldown, o.Cooldown)
	set(&p.VelocityLines, o.VelocityLines)
	set(&p.VelocityWindow, o.VelocityWindow)
	set(&p.Strict, o.Strict)
	set(&p.StoreFailure, o.StoreFailure)
	set(&p.StoreDeadline, o.StoreDeadline)
	set(&p.FlagAssertedMismatch, o.FlagAssertedMismatch)
	o.Dial.over(&p.Dial)
	return p
}

func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

// Features are the codes a line dials that cleanline answers itself.
type Features struct {
	// LineCheck says whether any other call is still attached to the line
	// (D5). Default "*99"; "-" disables it.
	LineCheck string `yaml:"line_check"`
	// Report reports the line's last inbound caller. Default "*57"; "-"
	// disables it.
	Report string `yaml:"report"`
}

func (f *Features) defaults() {
	if f.LineCheck == "" {
		f.LineCheck = "*99"
	}
	if f.Report == "" {
		f.Report = "*57"
	}
}

func (f Features) validate() error {
	for _, c := range []struct{ key, v string }{{"line_check", f.LineCheck}, {"report", f.Report}} {
		if c.v != "-" && (c.v == "" || strings.Trim(c.v, "0123456789*#") != "") {
			return fmt.Errorf("%w: screening.features.%s: %q: want digits, * and #, or - to disable", ErrPolicy, c.key, c.v)
		}
	}
	if f.LineCheck != "-" && f.LineCheck == f.Report {
		return fmt.Errorf("%w: screening.features: line_check and report are both %q", ErrPolicy, f.Report)
	}
	return nil
}

// lineRules is what screening keeps of one configured line.
type lineRules struct {
	policy    Policy
	protected map[string]bool // E.164 keys: the built-ins, screening.protected and the line's own
}

// LineCalled finds the configured line a called number or name rings.
func (sc *Screener) LineCalled(raw string) (string, bool) {
	k := sc.lineKey(raw)
	if k == "" {
		return "", false
	}
	name, ok := sc.byNumber[k]
	return name, ok
}

// lineKey is how a line's numbers and a called number are compared: the
// E.164 number when it is one, else the name in lower case.
func (sc *Screener) lineKey(raw string) string {
	user, err := CallerUser(raw)
	if err != nil {
		return ""
	}
	if strings.ContainsAny(user, "0123456789") {
		if n, err := sc.norm.Parse(user); err == nil && n.E164 != "" {
			return n.E164
		}
	}
	return "name:" + strings.ToLower(strings.TrimSpace(user))
}

// rules is what applies to line; a line not configured gets the defaults.
func (sc *Screener) rules(line string) *lineRules {
	if r, ok := sc.lines[line]; ok {
		return r
	}
	return &sc.defaults
}

// Lines are the names of the configured lines, in configuration order.
func (sc *Screener) Lines() []string { return sc.lineNames }

// addLines indexes the configured lines: their policies, protected numbers
// and the numbers that ring them.
func (sc *Screener) addLines(lines []Line) error {
	sc.lines = make(map[string]*lineRules, len(lines))
	sc.byNumber = map[string]string{}
	for i, l := range lines {
		key := l.Key
		if key == "" {
			key = fmt.Sprintf("lines[%d]", i)
		}
		if l.Name == "" {
			return fmt.Errorf("%w: %s.name: empty", ErrPolicy, key)
		}
		if _, dup := sc.lines[l.Name]; dup {
			return fmt.Errorf("%w: %s.name: %q used twice", ErrPolicy, key, l.Name)
		}
		p := l.Policy.Over(sc.def)
		if err := p.Validate(); err != nil {
			return fmt.Errorf("%s.policy: %w", key, err)
		}
		r := &lineRules{policy: p, protected: sc.defaults.protected}
		if len(l.Policy.Protected) > 0 {
			r.protected = make(map[string]bool, len(sc.defaults.protected)+len(l.Policy.Protected))
			for k := range sc.defaults.protected {
				r.protected[k] = true
			}
			if err := sc.protect(r.protected, key+".policy.protected", l.Policy.Protected); err != nil {
				return err
			}
		}
		sc.lines[l.Name] = r
		sc.lineNames = append(sc.lineNames, l.Name)
		for _, n := range append([]string{l.Name}, l.Numbers...) {
			k := sc.lineKey(n)
			if k == "" {
				return fmt.Errorf("%w: %s.numbers: %q is no number or name", ErrPolicy, key, n)
			}
			if other, ok := sc.byNumber[k]; ok && other != l.Name {
				return fmt.Errorf("%w: %s.numbers: %q also rings line %q", ErrPolicy, key, n, other)
			}
			sc.byNumber[k] = l.Name
		}
	}
	return nil
}

// protect adds numbers to set by their E.164 keys. Any parseable number
// can be protected: short codes (159, 999) are never valid caller IDs,
// which is why a call "from" one is spoofed.
func (sc *Screener) protect(set map[string]bool, key string, numbers []string) error {
	for i, raw := range numbers {
		n, err := sc.norm.Parse(raw)
		if err != nil {
			return fmt.Errorf("%s[%d]: %q: %w", key, i, raw, err)
		}
		set[n.E164] = true
	}
	return nil
}
