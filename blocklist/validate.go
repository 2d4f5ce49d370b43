package blocklist

import (
	"context"
	"fmt"
	"sync/atomic"
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

// gate is what both stores check before a method does any work, so that the
// checks, their order and their error texts are one thing: every method of
// FileStore and RedisStore starts with one call to enter, naming its
// arguments with the functions below.
//
// The Redis store passes no notDone: go-redis refuses a ctx that is already
// done before it sends anything, and fail wraps that in ErrUnavailable just
// as notDone would. Neither store's Lookup passes one (see FileStore.Lookup).
type gate struct {
	where  string // names the store in errors: its file, "redis 127.0.0.1:6379"
	closed atomic.Bool
}

// enter refuses a call on a closed store (ErrClosed), then with the first of
// args that fails its check, in the order given (ErrInvalid; ErrUnavailable
// for notDone).
func (g *gate) enter(args ...arg) error {
	if g.closed.Load() {
		return fmt.Errorf("%w: %s", ErrClosed, g.where)
	}
	for i := range args {
		if err := args[i].check(g.where); err != nil {
			return err
		}
	}
	return nil
}

type argKind uint8

const (
	argNotDone argKind = iota
	argNumber
	argKey
	argLine
	argQueryLine
	argText
	argTTL
	argEntries
	argEventRecords
	argEventQuery
)

// arg is one argument of a store method as gate.enter checks it; make one
// with notDone, isNumber, isKey, isLine, isQueryLine, isText, isTTL or
// areEntries.
type arg struct {
	kind    argKind
	what    string // the argument's name in errors ("caller"), or notDone's op
	s       string
	isRange bool
	ttl     time.Duration
	entries []Entry
	events  []EventRecord
	query   *EventQuery
	ctx     context.Context
}

// notDone refuses a call whose ctx has already ended, before it does any
// work; op names the call in the error, which wraps ErrUnavailable.
func notDone(ctx context.Context, op string) arg { return arg{kind: argNotDone, what: op, ctx: ctx} }

// isNumber: s is an E.164 number; what names it in the error ("caller").
func isNumber(what, s string) arg { return arg{kind: argNumber, what: what, s: s} }

// isKey: number is an E.164 number, or an E.164 prefix when isRange.
func isKey(number string, isRange bool) arg { return arg{kind: argKey, s: number, isRange: isRange} }

// isLine: a line something is set on (trust, cooldown) is 1 to maxLineLen
// printable bytes.
func isLine(line string) arg { return arg{kind: argLine, s: line} }

// isQueryLine: a Lookup's line is a valid line, or empty.
func isQueryLine(line string) arg { return arg{kind: argQueryLine, s: line} }

// isText: free text (a reason, a source) is short printable UTF-8.
func isText(what, s string) arg { return arg{kind: argText, what: what, s: s} }

// isTTL: a cooldown lasts a positive time.
func isTTL(ttl time.Duration) arg { return arg{kind: argTTL, ttl: ttl} }

// areEntries: every entry of a Put is valid (ValidateEntry); one bad entry
// refuses the whole batch.
func areEntries(entries []Entry) arg { return arg{kind: argEntries, entries: entries} }

// areEventRecords: every record of an AppendEvents is valid
// (ValidateEventRecord); one bad record refuses the batch.
func areEventRecords(recs []EventRecord) arg { return arg{kind: argEventRecords, events: recs} }

// isEventQuery: an Events query's fields and limit are valid.
func isEventQuery(q *EventQuery) arg { return arg{kind: argEventQuery, query: q} }

func (a *arg) check(where string) error {
	switch a.kind {
	case argNotDone:
		if err := a.ctx.Err(); err != nil {
			return fmt.Errorf("%w: %s %s: %w", ErrUnavailable, a.what, where, err)
		}
		return nil
	case argNumber:
		return checkNumber(a.what, a.s)
	case argKey:
		return checkKey(a.s, a.isRange)
	case argLine:
		return checkLine(a.s)
	case argQueryLine:
		return checkQueryLine(a.s)
	case argText:
		return checkText(a.what, a.s)
	case argTTL:
		if a.ttl <= 0 {
			return fmt.Errorf("%w: cooldown ttl %s must be positive", ErrInvalid, a.ttl)
		}
		return nil
	case argEntries:
		return validateEntries(a.entries)
	case argEventRecords:
		for i, r := range a.events {
			if err := ValidateEventRecord(r); err != nil {
				return fmt.Errorf("event %d: %w", i, err)
			}
		}
		return nil
	case argEventQuery:
		return checkEventQuery(*a.query)
	}
	panic(fmt.Sprintf("blocklist: unknown argument kind %d", a.kind))
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
