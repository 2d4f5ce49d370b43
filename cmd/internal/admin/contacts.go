package admin

import (
	"context"
	"fmt"

	"github.com/cleanline/cleanline/blocklist"
)

// Protected numbers (every line's), and each line's own lists: its trusted
// contacts, and the numbers blocked for it alone (its carer's blocks).

// ProtectAdd protects a number: a call presenting it is spoofed, and a line
// dialling it first ends its other calls (D4). Short codes (159, 999) are
// never valid caller IDs, so any number that parses can be protected.
func (s *Service) ProtectAdd(ctx context.Context, in NumberIn) (Ack, error) {
	n, err := s.norm().NormalizeKey(in.Number)
	if err != nil {
		return Ack{}, mark(ErrInvalidNumber, err)
	}
	return Ack{Number: n}, s.store.Protect(ctx, n)
}

// ProtectRemove unprotects a number; not found when it is not protected.
func (s *Service) ProtectRemove(ctx context.Context, in NumberRef) (Ack, error) {
	n, err := s.norm().NormalizeKey(in.Number)
	if err != nil {
		return Ack{}, mark(ErrInvalidNumber, err)
	}
	return Ack{Number: n}, s.store.Unprotect(ctx, n)
}

// ProtectList pages through the protected numbers.
func (s *Service) ProtectList(ctx context.Context, in ListQuery) (Page[string], error) {
	nums, err := s.store.Protected(ctx)
	if err != nil {
		return Page[string]{}, err
	}
	return pageOf(nums, itself, in)
}

func itself(s string) string { return s }

// lineNumber reads a line's name and a number for its lists.
func (s *Service) lineNumber(line, raw string) (string, error) {
	if err := s.knownLine(line); err != nil {
		return "", err
	}
	return s.number(raw)
}

// facts are what the store knows of number on line (one lookup, nothing
// recorded).
func (s *Service) facts(ctx context.Context, line, number string) (blocklist.Facts, error) {
	return s.store.Lookup(ctx, blocklist.Query{Caller: number, Line: line, Now: s.now()})
}

// TrustAdd makes a number a trusted contact of a line: it always rings
// through, and the line may dial it whatever its class. A number blocked
// for the line is refused: unblock it first.
func (s *Service) TrustAdd(ctx context.Context, in LineNumber) (Ack, error) {
	n, err := s.lineNumber(in.Line, in.Number)
	if err != nil {
		return Ack{}, err
	}
	f, err := s.facts(ctx, in.Line, n)
	if err != nil {
		return Ack{}, err
	}
	if f.LineBlocked {
		return Ack{}, mark(ErrConflict, fmt.Errorf("%s is blocked for line %s: unblock it first", n, in.Line))
	}
	return Ack{Number: n, Line: in.Line}, s.store.Trust(ctx, in.Line, n)
}

// TrustRemove removes a trusted contact; not found when it is not one.
func (s *Service) TrustRemove(ctx context.Context, in LineNumberRef) (Ack, error) {
	n, err := s.lineNumber(in.Line, in.Number)
	if err != nil {
		return Ack{}, err
	}
	return Ack{Number: n, Line: in.Line}, s.store.Untrust(ctx, in.Line, n)
}

// TrustList pages through a line's trusted contacts.
func (s *Service) TrustList(ctx context.Context, in LineList) (Page[string], error) {
	if err := s.knownLine(in.Line); err != nil {
		return Page[string]{}, err
	}
	nums, err := s.store.Trusted(ctx, in.Line)
	if err != nil {
		return Page[string]{}, err
	}
	return pageOf(nums, itself, in.ListQuery)
}

// LineBlockAdd blocks a number for one line alone (ARCHITECTURE.md,
// "Blocking for one line"). A trusted contact of the line is refused:
// remove it from the trusted contacts first.
func (s *Service) LineBlockAdd(ctx context.Context, in LineNumber) (Ack, error) {
	n, err := s.lineNumber(in.Line, in.Number)
	if err != nil {
		return Ack{}, err
	}
	f, err := s.facts(ctx, in.Line, n)
	if err != nil {
		return Ack{}, err
	}
	if f.Trusted {
		return Ack{}, mark(ErrConflict, fmt.Errorf("%s is a trusted contact of line %s: remove it from the trusted contacts first", n, in.Line))
	}
	return Ack{Number: n, Line: in.Line}, s.store.BlockForLine(ctx, in.Line, n)
}

// LineBlockRemove unblocks a number for a line; not found when it is not
// blocked there.
func (s *Service) LineBlockRemove(ctx context.Context, in LineNumberRef) (Ack, error) {
	n, err := s.lineNumber(in.Line, in.Number)
	if err != nil {
		return Ack{}, err
	}
	return Ack{Number: n, Line: in.Line}, s.store.UnblockForLine(ctx, in.Line, n)
}

// LineBlockList pages through the numbers blocked for a line.
func (s *Service) LineBlockList(ctx context.Context, in LineList) (Page[string], error) {
	if err := s.knownLine(in.Line); err != nil {
		return Page[string]{}, err
	}
	nums, err := s.store.BlockedForLine(ctx, in.Line)
	if err != nil {
		return Page[string]{}, err
	}
	return pageOf(nums, itself, in.ListQuery)
}
