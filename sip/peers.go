package sip

import (
	"net/netip"

	"github.com/emiago/sipgo/sip"
)

// Peers: who sent a request (a trunk or a line, by source address) and
// which line a call is for, in one routing (the configuration in force
// when the request arrived: reload.go). The called number's meaning is
// screening's: this file only hands it the URIs.

// trunkFor is the trunk req comes from, nil when none. A registration
// without sources of its own takes requests from its registrar's and
// outbound proxy's addresses; when several registrations share a
// provider's address, the Request-URI's user names the contact one of
// them registered (upstream.go).
func (rt *routing) trunkFor(req *sip.Request) *Trunk {
	src, tp := source(req), req.Transport()
	var found *Trunk
	for i := range rt.cfg.Trunks {
		t := &rt.cfg.Trunks[i]
		if !rt.trunkSource(t, src, tp) {
			continue
		}
		if t.Register == nil || unescapeUser(req.Recipient.User) == t.Register.ContactUser {
			return t
		}
		if found == nil {
			found = t
		}
	}
	return found
}

// trunkSource reports whether a request from src over transport comes
// from t.
func (rt *routing) trunkSource(t *Trunk, src netip.AddrPort, transport string) bool {
	for _, p := range t.sources {
		if p.has(src, transport) {
			return true
		}
	}
	return len(t.sources) == 0 && t.Register != nil && rt.up != nil && rt.up.from(t.Name, src.Addr())
}

// trunkAt reports whether ip is among a trunk's sources.
func (rt *routing) trunkAt(ip netip.Addr) bool {
	for i := range rt.cfg.Trunks {
		for _, p := range rt.cfg.Trunks[i].sources {
			if p.Contains(ip) {
				return true
			}
		}
	}
	return false
}

// lineSource reports whether req comes from any line.
func (rt *routing) lineSource(req *sip.Request) bool {
	src, tp := source(req), req.Transport()
	for i := range rt.cfg.Lines {
		for _, p := range rt.cfg.Lines[i].sources {
			if p.has(src, tp) {
				return true
			}
		}
	}
	return false
}

// lineFrom finds the line a request comes from: by source address, then,
// when several lines share the address (a PBX), by the number in From.
func (rt *routing) lineFrom(req *sip.Request) *Line {
	src, tp := source(req), req.Transport()
	var cands []*Line
	for i := range rt.cfg.Lines {
		l := &rt.cfg.Lines[i]
		for _, p := range l.sources {
			if p.has(src, tp) {
				cands = append(cands, l)
				break
			}
		}
	}
	if len(cands) <= 1 {
		if len(cands) == 1 {
			return cands[0]
		}
		return nil
	}
	if f := req.From(); f != nil {
		if name, ok := rt.sc.LineCalled(callerID(f)); ok {
			for _, l := range cands {
				if l.Name == name {
					return l
				}
			}
		}
	}
	return cands[0]
}

// lineCalled finds the line a trunk's INVITE is for, by its Request-URI
// only: RFC 3261 §16.5 and §8.2.2.1, the Request-URI says where a request
// goes; To is only who the caller meant, and routing on it let an INVITE
// whose Request-URI named no line ring one.
func (rt *routing) lineCalled(req *sip.Request) *Line {
	return rt.line(rt.sc.LineCalled(req.Recipient.String()))
}

// line is the configured line called name.
func (rt *routing) line(name string, ok bool) *Line {
	if !ok {
		return nil
	}
	for i := range rt.cfg.Lines {
		if rt.cfg.Lines[i].Name == name {
			return &rt.cfg.Lines[i]
		}
	}
	return nil
}

// outboundTrunk is where line's own calls go: the registration whose
// contact rings it, else the first trunk with an outbound URI.
func (rt *routing) outboundTrunk(line *Line) *Trunk {
	for i := range rt.cfg.Trunks {
		if t := &rt.cfg.Trunks[i]; t.Register != nil && rt.regLine[t.Name] == line.Name {
			return t
		}
	}
	for i := range rt.cfg.Trunks {
		if rt.cfg.Trunks[i].Outbound != "" {
			return &rt.cfg.Trunks[i]
		}
	}
	return nil
}

// isDevice reports whether req comes from where a device's live
// registration came from (its flow): it is then the line's.
func (s *Server) isDevice(req *sip.Request) bool {
	_, ok := s.binds.fromFlow(source(req), req.Transport())
	return ok
}

// deviceFrom finds the registered device a request comes from, by its
// binding's flow (address and port, and transport), and the device's line
// and credentials in rt; ok is false when none (or rt no longer has it).
func (s *Server) deviceFrom(rt *routing, req *sip.Request) (b binding, line *Line, creds *LineAuth, ok bool) {
	b, ok = s.binds.fromFlow(source(req), req.Transport())
	if !ok {
		return binding{}, nil, nil, false
	}
	line, creds = rt.device(b.Device)
	if line == nil || line.Name != b.Line {
		return binding{}, nil, nil, false
	}
	return b, line, creds, true
}

// markReceived adds received= to the top Via when its sent-by is not the
// address the request came from (RFC 3261 §18.2.1), so that the response
// tells a device behind NAT where it was seen. With rport, sipgo writes
// both received and rport itself (RFC 3581 §4).
func markReceived(req *sip.Request) {
	v := req.Via()
	if v == nil || v.Params.Has("rport") {
		return
	}
	src := source(req).Addr()
	if a, err := netip.ParseAddr(v.Host); err == nil && a.Unmap() == src || !src.IsValid() {
		return
	}
	v.Params.Add("received", src.String())
}
