package admin

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/cleanline/cleanline/sip"
)

// The configured lines, their live calls and call records, and reload.

// Lines pages through the configured lines, by name.
func (s *Service) Lines(ctx context.Context, in ListQuery) (Page[LineInfo], error) {
	lines := s.configured()
	infos := make([]LineInfo, len(lines))
	for i, l := range lines {
		infos[i] = s.lineInfo(l)
	}
	return pageOf(infos, func(l LineInfo) string { return l.Name }, in)
}

// Line is one configured line.
func (s *Service) Line(ctx context.Context, in LineRef) (LineInfo, error) {
	lines := s.configured()
	if len(lines) == 0 {
		return LineInfo{}, mark(ErrUnknownLine, fmt.Errorf("line %q is not in the config (it names no lines)", in.Line))
	}
	if err := s.knownLine(in.Line); err != nil {
		return LineInfo{}, err
	}
	i := slices.IndexFunc(lines, func(l Line) bool { return l.Name == in.Line })
	return s.lineInfo(lines[i]), nil
}

func (s *Service) lineInfo(l Line) LineInfo {
	sc := s.screener()
	p, f := sc.Policy(l.Name), sc.Features()
	nums := append([]string{}, l.Numbers...)
	info := LineInfo{
		Name: l.Name, Numbers: nums,
		Features: Features{LineCheck: f.LineCheck, Report: f.Report},
		Policy: LinePolicy{Withheld: p.Withheld.String(), ReportThreshold: p.ReportThreshold, Cooldown: p.Cooldown.String(),
			Strict: p.Strict, StoreFailure: string(p.StoreFailure), Dial: p.Dial},
		Devices: append([]string(nil), l.Devices...),
	}
	if s.registrations != nil && len(l.Devices) > 0 {
		for _, r := range s.registrations.Registrations(l.Name) {
			info.Registered = append(info.Registered, RegisteredDevice{Device: r.Device, Contact: r.Contact, Source: r.Flow.String(),
				Transport: r.Transport, BehindNAT: r.BehindNAT, Expires: r.Expires})
		}
	}
	return info
}

// noService is why live calls cannot be shown or ended here.
const noService = "no service running: live calls are known only to a running cleanline serve"

// LiveCalls pages through the calls in progress, of in.Line when set,
// oldest first.
func (s *Service) LiveCalls(ctx context.Context, in LiveQuery) (Page[LiveCall], error) {
	if s.calls == nil {
		return Page[LiveCall]{}, unavailable(noService)
	}
	if in.Line != "" {
		if err := s.knownLine(in.Line); err != nil {
			return Page[LiveCall]{}, err
		}
	}
	var out []LiveCall
	for _, c := range s.calls.LiveCalls() {
		if in.Line != "" && c.Line != in.Line {
			continue
		}
		lc := LiveCall{ID: c.ID, Direction: c.Direction, Line: c.Line, Trunk: c.Trunk, Caller: c.Caller,
			Withheld: c.Withheld, Number: c.Number, Dialled: c.Dialled, Action: c.Action, Reasons: c.Reasons,
			State: c.State, Since: c.Since}
		if !c.Answered.IsZero() {
			at := c.Answered
			lc.Answered = &at
		}
		out = append(out, lc)
	}
	// Oldest first: the start time, to the nanosecond, then the ID.
	return pageOf(out, func(c LiveCall) string { return c.Since.UTC().Format(sortableTime) + " " + c.ID }, in.ListQuery)
}

// sortableTime sorts as text in time order.
const sortableTime = "2006-01-02T15:04:05.000000000"

// EndCall ends a live call as a hang-up does (D1: BYE on both legs). Given
// a line, the call must be that line's: not found otherwise, as if it were
// not there at all.
func (s *Service) EndCall(ctx context.Context, in CallRef) (Ack, error) {
	if s.calls == nil {
		return Ack{}, unavailable(noService)
	}
	if in.Line != "" {
		if err := s.knownLine(in.Line); err != nil {
			return Ack{}, err
		}
		if !slices.ContainsFunc(s.calls.LiveCalls(), func(c sip.LiveCall) bool { return c.ID == in.ID && c.Line == in.Line }) {
			return Ack{}, mark(ErrNotFound, fmt.Errorf("no live call %q on line %s", in.ID, in.Line))
		}
	}
	if err := s.calls.EndCall(in.ID); err != nil {
		return Ack{}, err
	}
	return Ack{Call: in.ID, Line: in.Line}, nil
}

// RecentCalls pages through call records, newest first.
func (s *Service) RecentCalls(ctx context.Context, in RecentQuery) (Page[Record], error) {
	if s.events == nil {
		return Page[Record]{}, unavailable("recent calls: this service keeps no call events")
	}
	if in.Line != "" {
		if err := s.knownLine(in.Line); err != nil {
			return Page[Record]{}, err
		}
	}
	if in.Caller != "" {
		n, err := s.number(in.Caller)
		if err != nil {
			return Page[Record]{}, err
		}
		in.Caller = n
	}
	if _, _, err := in.ListQuery.bounds(); err != nil {
		return Page[Record]{}, err
	}
	if !in.Since.IsZero() && !in.Until.IsZero() && in.Until.Before(in.Since) {
		return Page[Record]{}, mark(ErrInvalidArgument, fmt.Errorf("until %s is before since %s", in.Until.Format(time.RFC3339), in.Since.Format(time.RFC3339)))
	}
	return s.events.RecentCalls(ctx, in)
}

// Reload reloads the running service's configuration. A refusal that
// carries no code of its own is the configuration's (invalid_config).
func (s *Service) Reload(ctx context.Context, in ReloadIn) (Ack, error) {
	if s.reload == nil {
		return Ack{}, unavailable("reload: no service running here: only a running cleanline serve reloads")
	}
	err := s.reload.Reload(ctx)
	if code, _ := CodeOf(err); err != nil && code == "internal" {
		err = mark(ErrInvalidConfig, err)
	}
	return Ack{}, err
}
