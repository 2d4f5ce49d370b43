// Package blocklist owns CleanLine's data: scam numbers and ranges, protected
// (never-originate) numbers, trusted contacts and numbers blocked for one
// line, cooldown marks and velocity counters. Two implementations share one interface and one test suite: Redis
// (shared, production) and an embedded single-file store (one box).
//
// Every number this package sees is already normalised to E.164 by the caller
// (see the Normalize method of screening.Normalizer, and NormalizePrefix for
// ranges); a range is an E.164 prefix such as "+4420794601".
package blocklist

import (
	"context"
	"errors"
	"time"
)

// Status says how sure we are that a number is a scam number.
type Status string

const (
	// StatusReported: one or more people reported it; screening warns.
	StatusReported Status = "reported"
	// StatusConfirmed: an operator or a trusted feed confirmed it; screening blocks.
	StatusConfirmed Status = "confirmed"
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool { return s == StatusReported || s == StatusConfirmed }

// Sentinel errors. Implementations wrap them with %w.
var (
	// ErrUnavailable: the backing store could not answer (down, timed out).
	ErrUnavailable = errors.New("blocklist: store unavailable")
	// ErrNotFound: no such entry.
	ErrNotFound = errors.New("blocklist: not found")
	// ErrInvalid: the argument is not an E.164 number or prefix, or a field is bad.
	ErrInvalid = errors.New("blocklist: invalid argument")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("blocklist: store closed")
)

// Entry is one blocked number, or one blocked range when Range is set.
type Entry struct {
	Number    string    `json:"number"`          // E.164 number, or E.164 prefix for a range
	Range     bool      `json:"range,omitempty"` // Number is a prefix matching every longer number
	Status    Status    `json:"status"`
	Reason    string    `json:"reason,omitempty"` // free text: "bank impersonation"
	Source    string    `json:"source,omitempty"` // who said so: "import:feed.csv", "line:+44...", "cli"
	Reports   int       `json:"reports"`          // how many reports it has had
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// Query asks everything one screening needs to know, in one round trip.
type Query struct {
	Caller string    // E.164 caller
	Line   string    // the line being called (its own number or name)
	Now    time.Time // the clock the store uses for velocity and cooldown
	// VelocityWindow > 0 records that Caller reached Line at Now and counts the
	// distinct lines Caller reached within the window. Zero neither records nor counts.
	VelocityWindow time.Duration
}

// Facts is what the store knows about one (caller, line) pair.
type Facts struct {
	Trusted       bool   // Caller is a trusted contact of Line
	LineBlocked   bool   // Caller is blocked for Line only (BlockForLine)
	Protected     bool   // Caller is a protected, never-originate number
	Entry         *Entry // exact blocklist entry for Caller, nil when none
	Range         *Entry // longest blocked range containing Caller, nil when none
	Cooldown      bool   // a cooldown mark for (Line, Caller) is alive
	DistinctLines int    // distinct lines Caller reached within the window, this one included
}

// Store is what the call path needs. Lookup costs at most one round trip to a
// remote store; implementations honour ctx's deadline and return an error
// wrapping ErrUnavailable when they cannot answer in time.
type Store interface {
	Lookup(ctx context.Context, q Query) (Facts, error)
	// MarkCooldown refuses Caller on Line until now+ttl (design invariant D3).
	MarkCooldown(ctx context.Context, line, caller string, ttl time.Duration) error
	// Report records one report against number, creating a reported entry when
	// there is none, and returns the entry as it now stands. Durable on return.
	Report(ctx context.Context, number, source, reason string, at time.Time) (Entry, error)
}

// Local is implemented by stores that answer from this process without
// waiting on anything remote (the embedded store): a lookup cannot hang, so
// the call path need not arm a deadline timer for it.
type Local interface {
	Local() bool
}

// Admin is what operators' tools need on top of the call path.
// Every write is durable before it returns.
type Admin interface {
	Store

	// Put adds or replaces entries (Number and Range identify an entry). It
	// keeps FirstSeen and Reports of an existing entry, and a weaker status
	// never replaces a stronger one unless opts include ForceStatus: a
	// reported entry put over a confirmed one leaves it confirmed, with its
	// reason and source (filled from the put only where empty), and only
	// moves its LastSeen forward. Entries of one call apply in order. It
	// reports how many entries were new and how many were updated, kept ones
	// included. Import batches through it.
	Put(ctx context.Context, entries []Entry, opts ...PutOption) (added, updated int, err error)
	// Remove deletes a number (or range); ErrNotFound when absent.
	Remove(ctx context.Context, number string, isRange bool) error
	// Get returns the entry for a number (or range); ErrNotFound when absent.
	Get(ctx context.Context, number string, isRange bool) (Entry, error)
	// Walk calls fn for every entry, in no particular order, without loading
	// them all at once; an error from fn stops the walk and is returned.
	Walk(ctx context.Context, fn func(Entry) error) error

	Protect(ctx context.Context, number string) error
	Unprotect(ctx context.Context, number string) error // ErrNotFound when absent
	Protected(ctx context.Context) ([]string, error)    // sorted

	Trust(ctx context.Context, line, number string) error
	Untrust(ctx context.Context, line, number string) error     // ErrNotFound when absent
	Trusted(ctx context.Context, line string) ([]string, error) // sorted

	// BlockForLine blocks number on line alone: the line's carer's choice,
	// which no other line's screening sees (the shared blocklist is Put's).
	BlockForLine(ctx context.Context, line, number string) error
	UnblockForLine(ctx context.Context, line, number string) error     // ErrNotFound when absent
	BlockedForLine(ctx context.Context, line string) ([]string, error) // sorted

	Close() error
}
