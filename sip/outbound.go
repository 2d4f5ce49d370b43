package sip

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/media"
)

// The outbound call: one the line places. It is always a new dialog, and it
// goes only to the trunk (D4): nothing the line dials can reach a call that
// is already up. Feature codes are answered by cleanline itself (D5,
// report); a number the line's policy bars is refused here, with a spoken
// reason, and never reaches the trunk (issue 12 §2). What the dialled
// number is, and whether the line may dial it, screening decides.

// outbound carries a call the line places; dev is the registered device
// that placed it, nil for a line known by its configured source.
func (s *Server) outbound(rt *routing, req *sip.Request, tx sip.ServerTransaction, line *Line, dev *binding) {
	dctx, cancel := context.WithTimeout(context.Background(), time.Second)
	d := rt.sc.Dialled(dctx, line.Name, req.Recipient.String())
	cancel()
	if d.Feature == screening.NoFeature && d.Number == "" && len(d.Classes) == 0 {
		s.respondErr(req, tx, fmt.Errorf("%w: %q is no number", ErrUnknownLine, req.Recipient.User))
		return
	}
	c := s.acceptInvite(rt, req, tx, outbound, line, nil)
	if c == nil {
		return
	}
	defer c.settle(true)
	if dev != nil {
		c.setDevice(dev.Device, dev.behindNAT())
	}
	// What the line dialled goes to the trunk as dialled (999 stays 999),
	// unescaped (RFC 3261 §19.1.2) and cut down to safe characters.
	c.mu.Lock()
	c.dialled, c.number = safeUser(unescapeUser(req.Recipient.User)), d.Number
	c.dialClasses, c.barred = d.Classes, d.Barred
	c.mu.Unlock()
	if !c.attachMedia() {
		return
	}
	answer, err := c.m.answer(sideLine, req.Body(), c.originOf(sideLine, req.Source()), c.inFace.media)
	if err != nil {
		c.fail(outcomeError, sideNone, err)
		return
	}
	c.timer = s.sessionTimerFor(req)

	switch d.Feature {
	case screening.FeatureLineCheck:
		prompt, result := media.PromptLineClear, "clear"
		if others := s.reg.lineCalls(line.Name, c); len(others) > 0 {
			prompt, result = media.PromptLineBusy, "busy"
		}
		c.mu.Lock()
		c.result = result
		c.mu.Unlock()
		c.feature(answer, prompt, func() { c.emit(EventLineCheck, func(ev *Event) { ev.Result = result }) })
		return
	case screening.FeatureReport:
		c.reportLast(answer)
		return
	}
	if d.Barred != "" {
		// Before D4 and the trunk: a barred number ends no other call of
		// the line (only a protected one does), and no INVITE leaves for
		// the trunk. The person hears why, then 403.
		c.log.Info("number barred on this line", zap.String("class", string(d.Barred)))
		s.metrics.barred.WithLabelValues(string(d.Barred)).Inc()
		c.emit(EventBarred, func(ev *Event) { ev.Barred = d.Barred })
		c.announce(answer, media.PromptBarred, outcomeBarred, fmt.Errorf("%w: %s", ErrBarred, d.Barred))
		return
	}
	if d.Protected {
		// D4: before the line reaches the police or its bank, no other call
		// of the line may be alive, so a fraudster holding the old call open
		// cannot be "the bank" when it answers.
		others := s.reg.lineCalls(line.Name, c)
		for _, o := range others {
			o.end(outcomeReplaced, sideNone)
		}
		c.log.Info("protected number dialled", zap.Bool("emergency", d.Emergency), zap.Int("calls_ended", len(others)))
	}
	trunk := rt.outboundTrunk(line)
	if trunk == nil {
		c.log.Warn("no trunk has sip.trunks[].outbound: line's call refused")
		c.fail(outcomeError, sideNone, ErrNoRoute)
		return
	}
	c.trunk = trunk
	c.log = c.log.With(zap.String("trunk", trunk.Name))
	b, err := s.trunkBranch(c)
	if err != nil {
		c.fail(outcomeError, sideNone, err)
		return
	}
	c.dial([]*branch{b}, answer, false)
}

// reportLast reports the line's last inbound caller (the report code).
func (c *call) reportLast(answer []byte) {
	last := c.s.reg.lastCaller(c.line.Name)
	if last == "" {
		c.fail(outcomeFeature, sideNone, ErrNoCaller)
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	_, err := c.rt.sc.Report(ctx, c.line.Name, last)
	cancel()
	if err != nil {
		c.log.Warn("report not recorded", zap.Error(err))
		c.fail(outcomeError, sideNone, fmt.Errorf("%w: report not recorded: %w", ErrOverloaded, err))
		return
	}
	c.log.Info("line reported its last caller", zap.String("reported", last))
	c.reportedEvent(last)
	c.feature(answer, media.PromptReported, nil)
}

// trunkBranch is the INVITE to the trunk for a line's call: a new dialog,
// identity from the line's configuration only. Towards a provider we
// register at, the line is the subscriber (upstream_call.go).
func (s *Server) trunkBranch(c *call) (*branch, error) {
	to := *c.trunk.outURI.Clone()
	to.User = c.dialled
	offer := func(adv netip.Addr) ([]byte, error) { return c.m.offer(sideTrunk, adv) }
	if c.trunk.Register != nil {
		out := s.upstreamInvite(c.trunk, to)
		f, err := s.sealInvite(out, offer)
		if err != nil {
			return nil, err
		}
		// Via with rport (RFC 3581), as our REGISTERs have.
		return &branch{req: out, face: f, dua: f.upDua, nat: c.trunk.NAT}, nil
	}
	user := c.line.Name
	if len(c.line.Numbers) > 0 {
		user = c.line.Numbers[0]
	}
	user = safeUser(user)
	out := s.newInvite(to, "", user)
	f, err := s.sealInvite(out, offer)
	if err != nil {
		return nil, err
	}
	// RFC 3325 §9.1: the line's identity, for a trunk that wants it asserted.
	out.AppendHeader(sip.NewHeader("P-Asserted-Identity", "<sip:"+user+"@"+f.host+">"))
	return &branch{req: out, face: f, dua: f.dua, nat: c.trunk.NAT}, nil
}

// feature answers the line's call to a feature code, says so (event, once
// answered), plays prompt, and hangs up.
func (c *call) feature(answer []byte, prompt string, event func()) {
	if up, _ := c.answerCaller(answer, nil); !up {
		return
	}
	if event != nil {
		event()
	}
	c.playNamed(c.ctx, sideLine, prompt)
	c.end(outcomeFeature, sideNone)
}
