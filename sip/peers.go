package sip

import (
	"fmt"

	"github.com/emiago/sipgo/sip"
)

// Peers: who sent a request (a trunk or a line, by source address) and
// which line a call is for. The called number's meaning is screening's:
// this file only hands it the URIs.

// trunkFor is the trunk req comes from, nil when none.
func (s *Server) trunkFor(req *sip.Request) *Trunk {
	src, tp := source(req), req.Transport()
	for i := range s.cfg.Trunks {
		for _, p := range s.cfg.Trunks[i].sources {
			if p.has(src, tp) {
				return &s.cfg.Trunks[i]
			}
		}
	}
	return nil
}

// lineSource reports whether req comes from any line.
func (s *Server) lineSource(req *sip.Request) bool {
	src, tp := source(req), req.Transport()
	for i := range s.cfg.Lines {
		for _, p := range s.cfg.Lines[i].sources {
			if p.has(src, tp) {
				return true
			}
		}
	}
	return false
}

// lineFrom finds the line a request comes from: by source address, then,
// when several lines share the address (a PBX), by the number in From.
func (s *Server) lineFrom(req *sip.Request) *Line {
	src, tp := source(req), req.Transport()
	var cands []*Line
	for i := range s.cfg.Lines {
		l := &s.cfg.Lines[i]
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
		if name, ok := s.sc.LineCalled(callerID(f)); ok {
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
func (s *Server) lineCalled(req *sip.Request) *Line {
	return s.line(s.sc.LineCalled(req.Recipient.String()))
}

// line is the configured line called name.
func (s *Server) line(name string, ok bool) *Line {
	if !ok {
		return nil
	}
	for i := range s.cfg.Lines {
		if s.cfg.Lines[i].Name == name {
			return &s.cfg.Lines[i]
		}
	}
	return nil
}

// checkLines makes sure the screener was built with the lines we serve
// (Config.ScreeningLines): otherwise no call could find its line.
func (s *Server) checkLines() error {
	known := map[string]bool{}
	for _, n := range s.sc.Lines() {
		known[n] = true
	}
	for i, l := range s.cfg.Lines {
		if !known[l.Name] {
			return cfgErr(fmt.Sprintf("sip.lines[%d]", i), "line %q is unknown to the screener: build it with Config.ScreeningLines", l.Name)
		}
	}
	return nil
}
