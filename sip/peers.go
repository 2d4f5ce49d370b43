package sip

import (
	"github.com/emiago/sipgo/sip"
)

// Peers: who sent a request (a trunk or a line, by source address) and
// which line a call is for, in one routing (the configuration in force
// when the request arrived: reload.go). The called number's meaning is
// screening's: this file only hands it the URIs.

// trunkFor is the trunk req comes from, nil when none.
func (rt *routing) trunkFor(req *sip.Request) *Trunk {
	src, tp := source(req), req.Transport()
	for i := range rt.cfg.Trunks {
		for _, p := range rt.cfg.Trunks[i].sources {
			if p.has(src, tp) {
				return &rt.cfg.Trunks[i]
			}
		}
	}
	return nil
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

// outboundTrunk is where the lines' own calls go: the first trunk with an
// outbound URI.
func (rt *routing) outboundTrunk() *Trunk {
	for i := range rt.cfg.Trunks {
		if rt.cfg.Trunks[i].Outbound != "" {
			return &rt.cfg.Trunks[i]
		}
	}
	return nil
}
