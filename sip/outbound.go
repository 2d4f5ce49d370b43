package sip

import (
	"context"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/media"
)

// outbound carries a call the line places. It is always a new dialog, and it
// goes only to the trunk (D4): nothing the line dials can reach a call that
// is already up. Feature codes are answered by cleanline itself (D5, report).
func (s *Server) outbound(req *sip.Request, tx sip.ServerTransaction, line *Line) {
	dialled := req.Recipient.User
	if numberKey(dialled) == "" {
		s.respondErr(req, tx, ErrUnknownLine)
		return
	}
	c := s.acceptInvite(req, tx, outbound, line, nil)
	if c == nil {
		return
	}
	c.dialled = safeUser(dialled)
	c.log = c.log.With(zap.String("dialled", c.dialled))
	if !c.attachMedia() {
		return
	}
	answer, err := c.m.answer(sideLine, req.Body())
	if err != nil {
		c.end(outcomeError, sideNone)
		code, reason := statusOf(err)
		c.refuse(code, reason)
		return
	}
	c.timer = s.sessionTimerFor(req)

	f := s.cfg.Features
	switch k := numberKey(dialled); {
	case f.LineCheck != "-" && k == numberKey(f.LineCheck):
		prompt := media.PromptLineClear
		if others := s.reg.lineCalls(line.Name, c); len(others) > 0 {
			prompt = media.PromptLineBusy
		}
		c.feature(answer, prompt)
		return
	case f.Report != "-" && k == numberKey(f.Report):
		last := s.reg.lastCaller(line.Name)
		if last == "" {
			c.end(outcomeFeature, sideNone)
			c.refuse(sip.StatusNotFound, "No Caller To Report")
			return
		}
		ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
		_, err := s.sc.Report(ctx, line.Name, last)
		cancel()
		if err != nil {
			c.log.Warn("report not recorded", zap.Error(err))
			c.end(outcomeError, sideNone)
			c.refuse(sip.StatusServiceUnavailable, "Service Unavailable")
			return
		}
		c.log.Info("line reported its last caller", zap.String("reported", last))
		c.feature(answer, media.PromptReported)
		return
	}

	if s.isProtected(c.ctx, line, dialled) {
		// D4: before the line reaches the police or its bank, no other call
		// of the line may be alive, so a fraudster holding the old call open
		// cannot be "the bank" when it answers.
		others := s.reg.lineCalls(line.Name, c)
		for _, o := range others {
			o.end(outcomeReplaced, sideNone)
		}
		c.log.Info("protected number dialled", zap.Int("calls_ended", len(others)))
	}
	trunk := s.outboundTrunk()
	if trunk == nil {
		c.log.Warn("no trunk has sip.trunks[].outbound: line's call refused")
		c.end(outcomeError, sideNone)
		c.refuse(sip.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	c.trunk = trunk
	c.log = c.log.With(zap.String("trunk", trunk.Name))
	offer, err := c.m.offer(sideTrunk)
	if err != nil {
		c.end(outcomeError, sideNone)
		c.refuse(sip.StatusNotAcceptableHere, "Not Acceptable Here")
		return
	}
	c.dial(s.trunkInvite(c, offer), answer, false)
}

// isProtected reports whether dialling number must first clear the line
// (D4): the configured list, the screening defaults (999, 112, 101, 159...),
// or a number the store marks protected (a dry-run screening says so).
func (s *Server) isProtected(ctx context.Context, line *Line, number string) bool {
	if s.protected[numberKey(number)] {
		return true
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	v := s.sc.Screen(ctx, screening.Call{Line: line.Name, From: number, DryRun: true})
	return v.Has(screening.ReasonProtectedSpoofed)
}

func (s *Server) outboundTrunk() *Trunk {
	for i := range s.cfg.Trunks {
		if s.cfg.Trunks[i].Outbound != "" {
			return &s.cfg.Trunks[i]
		}
	}
	return nil
}

// trunkInvite builds the INVITE to the trunk for a line's call: a new
// dialog, identity from the line's configuration only.
func (s *Server) trunkInvite(c *call, offer []byte) *sip.Request {
	to := *c.trunk.outURI.Clone()
	to.User = c.dialled
	out := sip.NewRequest(sip.INVITE, to)
	user := c.line.Name
	if len(c.line.Numbers) > 0 {
		user = c.line.Numbers[0]
	}
	user = safeUser(user)
	from := sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: user, Host: s.host}}
	from.Params = sip.NewParams()
	from.Params.Add("tag", sip.GenerateTagN(16))
	out.AppendHeader(&from)
	toH := sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: to.User, Host: to.Host, Port: to.Port}}
	out.AppendHeader(&toH)
	// RFC 3325 §9.1: the line's identity, for a trunk that wants it asserted.
	out.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<sip:"+user+"@"+s.host+">"))
	ct := s.contact(out.Transport())
	out.AppendHeader(&ct)
	out.AppendHeader(sip.NewHeader("Allow", allowMethods))
	s.timerOffer(out)
	out.AppendHeader(sdpType())
	out.SetBody(offer)
	s.fromListener(out)
	if tr, ok := to.UriParams.Get("transport"); ok && tr != "" {
		out.SetTransport(strings.ToUpper(tr))
	}
	return out
}

// feature answers the line's call to a feature code, plays prompt, and
// hangs up.
func (c *call) feature(answer []byte, prompt string) {
	res := sip.NewSDPResponseFromRequest(c.in.InviteRequest, answer)
	ct := c.s.contact(c.in.InviteRequest.Transport())
	res.AppendHeader(&ct)
	c.s.reg.awaitAck(c.in)
	err := c.in.WriteResponse(res)
	c.s.reg.acked(c.in)
	if err != nil {
		c.end(outcomeNoAck, sideNone)
		return
	}
	if !c.up(roleIn) {
		c.s.goCall(c.byeIn)
		return
	}
	c.mu.Lock()
	c.choice = prompt
	c.mu.Unlock()
	c.playNamed(c.ctx, sideLine, prompt)
	c.end(outcomeFeature, sideNone)
}
