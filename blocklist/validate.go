package blocklist

import (
	"fmt"
	"time"
	"unicode/utf8"
)

// Limits on free-text fields. They keep one entry small on disk and in Redis,
// and make a runaway import line a rejected line instead of a huge record.
const (
	maxTextLen = 512 // bytes, for Reason and Source
	maxLineLen = 128 // bytes, for a line name
)

// ValidNumber reports whether s is an E.164 number: '+', a non-zero digit,
// then up to 14 more digits.
func ValidNumber(s string) bool { return validDigits(s, 2) }

// ValidPrefix reports whether s can be a range prefix: '+' and 1 to 15
// digits, the first non-zero. A one-digit prefix ("+4") is legal but blunt.
func ValidPrefix(s string) bool { return validDigits(s, 1) }

func validDigits(s string, minDigits int) bool {
	n := len(s) - 1
	if n < minDigits || n > 15 || s[0] != '+' || s[1] == '0' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func checkNumber(what, s string) error {
	if !ValidNumber(s) {
		return fmt.Errorf("%w: %s %q is not an E.164 number", ErrInvalid, what, s)
	}
	return nil
}

func checkKey(number string, isRange bool) error {
	if isRange {
		if !ValidPrefix(number) {
			return fmt.Errorf("%w: range %q is not an E.164 prefix", ErrInvalid, number)
		}
		return nil
	}
	return checkNumber("number", number)
}

// checkLine accepts any short printable name; NUL and control characters are
// refused because the embedded store uses NUL as a key separator.
func checkLine(line string) error {
	if line == "" || len(line) > maxLineLen || !printable(line) {
		return fmt.Errorf("%w: line %q must be 1 to %d printable bytes", ErrInvalid, line, maxLineLen)
	}
	return nil
}

// checkQueryLine lets a Lookup name no line: then nothing per-line (trust,
// cooldown) can apply, since those cannot be set for an empty line.
func checkQueryLine(line string) error {
	if line == "" {
		return nil
	}
	return checkLine(line)
}

func checkText(what, s string) error {
	if len(s) > maxTextLen || !printable(s) {
		return fmt.Errorf("%w: %s must be at most %d bytes of printable UTF-8", ErrInvalid, what, maxTextLen)
	}
	return nil
}

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// ValidateEntry checks what Put would refuse, so an importer can reject one
// line instead of failing a whole batch.
func ValidateEntry(e Entry) error {
	if err := checkKey(e.Number, e.Range); err != nil {
		return err
	}
	if !e.Status.Valid() {
		return fmt.Errorf("%w: %s: status %q is neither %q nor %q", ErrInvalid, e.Number, e.Status, StatusReported, StatusConfirmed)
	}
	if e.Reports < 0 {
		return fmt.Errorf("%w: %s: negative reports", ErrInvalid, e.Number)
	}
	if err := checkText("reason", e.Reason); err != nil {
		return fmt.Errorf("%s: %w", e.Number, err)
	}
	if err := checkText("source", e.Source); err != nil {
		return fmt.Errorf("%s: %w", e.Number, err)
	}
	return nil
}

func validateEntries(entries []Entry) error {
	for i, e := range entries {
		if err := ValidateEntry(e); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
	}
	return nil
}

// Times are kept to the millisecond in both stores so that they agree.
func toMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// prepare fills the defaults Put applies to a new entry.
func prepare(e Entry, now time.Time) Entry {
	if e.FirstSeen.IsZero() {
		e.FirstSeen = now
	}
	if e.LastSeen.IsZero() {
		e.LastSeen = now
	}
	e.FirstSeen = fromMilli(toMilli(e.FirstSeen))
	e.LastSeen = fromMilli(toMilli(e.LastSeen))
	return e
}
