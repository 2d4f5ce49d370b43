package admin

import (
	"context"
	"fmt"

	"github.com/cleanline/cleanline/blocklist"
)

// The shared blocklist: what screens every line's calls.

// BlockAdd adds or updates an entry. A weaker status never replaces a
// stronger one unless Force is set: the answer then says which it kept.
func (s *Service) BlockAdd(ctx context.Context, in BlockAdd) (BlockAdded, error) {
	key, isRange, err := s.entryKey(in.Number)
	if err != nil {
		return BlockAdded{}, err
	}
	status := blocklist.StatusConfirmed
	if in.Reported {
		status = blocklist.StatusReported
	}
	var opts []blocklist.PutOption
	if in.Force {
		opts = append(opts, blocklist.ForceStatus())
	}
	now := s.now()
	added, _, err := s.store.Put(ctx, []blocklist.Entry{{Number: key, Range: isRange, Status: status,
		Reason: in.Reason, Source: in.Source, FirstSeen: now, LastSeen: now}}, opts...)
	if err != nil {
		return BlockAdded{}, err
	}
	out := BlockAdded{Number: display(key, isRange), Added: added == 1, Status: status}
	if added == 0 && !in.Force && status == blocklist.StatusReported {
		// Put keeps a stronger status: say what the entry is, not what was asked.
		en, err := s.store.Get(ctx, key, isRange)
		if err != nil {
			return out, fmt.Errorf("updated %s, but reading it back: %w", out.Number, err)
		}
		if en.Status != status {
			out.Kept = en.Status
		}
	}
	return out, nil
}

// BlockRemove deletes an entry; not found when there is none.
func (s *Service) BlockRemove(ctx context.Context, in NumberRef) (Ack, error) {
	key, isRange, err := s.entryKey(in.Number)
	if err != nil {
		return Ack{}, err
	}
	if err := s.store.Remove(ctx, key, isRange); err != nil {
		return Ack{}, err
	}
	return Ack{Number: display(key, isRange)}, nil
}

// BlockGet is one entry; not found when there is none.
func (s *Service) BlockGet(ctx context.Context, in NumberRef) (blocklist.Entry, error) {
	key, isRange, err := s.entryKey(in.Number)
	if err != nil {
		return blocklist.Entry{}, err
	}
	return s.store.Get(ctx, key, isRange)
}

// BlockList pages through the blocklist by number (a range sorts before
// the numbers it covers). Each page walks the store once.
func (s *Service) BlockList(ctx context.Context, in ListQuery) (Page[blocklist.Entry], error) {
	p, err := newPager(in, func(e blocklist.Entry) string { return display(e.Number, e.Range) })
	if err != nil {
		return Page[blocklist.Entry]{}, err
	}
	if err := s.store.Walk(ctx, func(e blocklist.Entry) error { p.add(e); return nil }); err != nil {
		return Page[blocklist.Entry]{}, err
	}
	return p.page(), nil
}

// BlockExport walks the whole blocklist.
func (s *Service) BlockExport(ctx context.Context, fn func(blocklist.Entry) error) error {
	return s.store.Walk(ctx, fn)
}

// Report adds one report against a number, creating a reported entry when
// there is none; by a line, it counts as that line's (source line:LINE).
func (s *Service) Report(ctx context.Context, in ReportIn) (blocklist.Entry, error) {
	source := in.Source
	if in.Line != "" {
		if err := s.knownLine(in.Line); err != nil {
			return blocklist.Entry{}, err
		}
		source = "line:" + in.Line
	}
	if source == "" {
		source = "cli"
	}
	reason := in.Reason
	if reason == "" {
		reason = "reported"
	}
	n, err := s.number(in.Number)
	if err != nil {
		return blocklist.Entry{}, err
	}
	return s.store.Report(ctx, n, source, reason, s.now())
}

// Import streams in.Data into the blocklist in batches. Lines it cannot
// read are rejected, one by one; the others are stored.
func (s *Service) Import(ctx context.Context, in ImportIn) (Imported, error) {
	if in.Data == nil {
		return Imported{}, mark(ErrInvalidArgument, fmt.Errorf("import: no data"))
	}
	norm := s.norm()
	opt := blocklist.ImportOptions{
		Normalize:       norm.Normalize,
		NormalizePrefix: norm.NormalizePrefix,
		Status:          blocklist.StatusConfirmed,
		Source:          in.Source,
		ForceStatus:     in.Force,
	}
	if in.Reported {
		opt.Status = blocklist.StatusReported
	}
	if opt.Source == "" {
		opt.Source = "import:" + in.Name
	}
	res, err := blocklist.Import(ctx, in.Data, s.store, opt)
	out := Imported{Added: res.Added, Updated: res.Updated, Rejected: res.Rejected, Rejects: make([]Reject, len(res.Rejects))}
	for i, r := range res.Rejects {
		out.Rejects[i] = Reject{Line: r.Line, Message: r.Err.Error()}
	}
	return out, err
}
