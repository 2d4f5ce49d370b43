package blocklist

import "time"

// What a write does to an entry that is already stored. These are the one
// definition both stores follow: FileStore calls them, and the Redis scripts
// (reportScript, mergeLua) do the same to the stored record.

// strength orders the statuses: confirmed (blocks) is stronger than
// reported (warns).
func (s Status) strength() int {
	switch s {
	case StatusConfirmed:
		return 2
	case StatusReported:
		return 1
	}
	return 0
}

// PutOption changes how Put treats entries that are already stored.
type PutOption func(*putConfig)

type putConfig struct {
	force bool // see ForceStatus
}

func putOptions(opts []PutOption) putConfig {
	var c putConfig
	for _, o := range opts {
		o(&c)
	}
	return c
}

// ForceStatus makes Put store each entry's status as given even where it is
// weaker than the stored one: a reported entry put over a confirmed one then
// downgrades it, and the number stops being blocked. Without it Put keeps
// the stronger status (see Admin.Put). For an operator who means it
// (cleanline import --force, block add --force).
func ForceStatus() PutOption { return func(c *putConfig) { c.force = true } }

// mergePut is what Put stores when e is put over old, an entry with the same
// key.
//
// FirstSeen and Reports are always old's: they are the number's history,
// which a put does not rewrite. Otherwise e replaces old, unless e's status
// is weaker than old's and force is false. Then the put counts as one more
// sighting of a number that is already judged, the way a report on a
// confirmed entry does (applyReport, without the count): the status stays,
// and so do the reason and the source, which say who judged it and why (an
// operator's "confirmed, bank impersonation, cli" must not turn into a
// confirmed entry whose source is the feed that only reported it); e fills
// them only where they are empty; LastSeen moves forward to e's when later.
// Put counts such an entry as updated.
func mergePut(old, e Entry, force bool) Entry {
	if force || old.Status.strength() <= e.Status.strength() {
		e.FirstSeen, e.Reports = old.FirstSeen, old.Reports
		return e
	}
	kept := old
	kept.Number, kept.Range = e.Number, e.Range
	seenAgain(&kept, e.Source, e.Reason, e.LastSeen)
	return kept
}

// applyReport is what a report does to an existing entry: count it, and
// see it again (seenAgain). It never changes the status.
func applyReport(e *Entry, source, reason string, at time.Time) {
	e.Reports++
	seenAgain(e, source, reason, at)
}

// seenAgain moves LastSeen forward to at, and fills Reason and Source only
// when they are empty: the first account of a number is kept.
func seenAgain(e *Entry, source, reason string, at time.Time) {
	if at.After(e.LastSeen) {
		e.LastSeen = at
	}
	if e.Reason == "" {
		e.Reason = reason
	}
	if e.Source == "" {
		e.Source = source
	}
}
