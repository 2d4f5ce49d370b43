package admin

import (
	"context"
	"time"
)

// The trunks' registrations at their providers (sip.trunks[].register), as
// the running service holds them: read-only.

// Upstream lists the trunks' registrations, by trunk name.
func (s *Service) Upstream(ctx context.Context, in ListQuery) (Page[UpstreamInfo], error) {
	if s.upstream == nil {
		return Page[UpstreamInfo]{}, unavailable("no service running: registrations are known only to a running cleanline serve")
	}
	regs := s.upstream.Upstream()
	out := make([]UpstreamInfo, len(regs))
	for i, r := range regs {
		out[i] = UpstreamInfo{Trunk: r.Trunk, Registrar: r.Registrar, AOR: r.AOR, Contact: r.Contact, State: r.State,
			Since: r.Since, LastStatus: r.LastStatus, LastReason: r.LastReason, Failures: r.Failures,
			Expires: timeOrNil(r.Expires), NextAttempt: timeOrNil(r.NextAttempt), ServiceRoute: r.ServiceRoute, Path: r.Path,
			Server: r.Server}
	}
	return pageOf(out, func(u UpstreamInfo) string { return u.Trunk }, in)
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
