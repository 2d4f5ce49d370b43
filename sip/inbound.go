package sip

import (
	"context"
	"fmt"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/media"
)

// The inbound call: a trunk's call to a line, screened, then refused, rung
// or warned. Data flows one way: the headers are read here, screening
// decides, and the call acts on the verdict.

// inbound carries a trunk's call to a line.
func (s *Server) inbound(rt *routing, req *sip.Request, tx sip.ServerTransaction, trunk *Trunk, received time.Time) {
	line := rt.lineCalled(req)
	if line == nil {
		s.respondErr(req, tx, ErrUnknownLine)
		return
	}
	c := s.acceptInvite(rt, req, tx, inbound, line, trunk)
	if c == nil {
		return
	}
	defer c.settle(true)
	c.received = received
	c.scall = screening.Call{
		Line:          line.Name,
		From:          callerID(req.From()),
		Privacy:       privacyID(req),
		International: trunk.International,
	}
	if trunk.TrustAssertedIdentity {
		// RFC 3325 §9.1: the asserted identity, as a trusted trunk wrote it;
		// screening reads its first URI.
		if pai := req.GetHeader("P-Asserted-Identity"); pai != nil {
			c.scall.Asserted = pai.Value()
		}
	}
	c.timer = s.sessionTimerFor(req)
	c.screen()

	if c.verdict.Action == screening.Defer {
		c.log.Warn("store did not answer: call deferred", zap.Duration("deadline", rt.sc.Policy(line.Name).StoreDeadline),
			zap.String("store_error", c.verdict.StoreError))
		c.fail(outcomeDeferred, sideNone, ErrDeferred)
		return
	}
	block := c.verdict.Action == screening.Block
	if block && !trunk.AnnounceBlocked {
		// Screened before any media exists: refusing takes no relay sockets,
		// and the caller's SDP is never read (603, not 488, if it is bad).
		c.fail(outcomeBlocked, sideNone, ErrBlocked)
		return
	}
	if !c.attachMedia() {
		return
	}
	answer, err := c.m.answer(sideTrunk, req.Body(), c.originOf(sideTrunk, req.Source()), c.inFace.media)
	if err != nil {
		c.log.Info("offer refused", zap.Error(err))
		c.fail(outcomeError, sideNone, err)
		return
	}
	if block {
		// The blocked notice, then 603 Decline (RFC 3261 §21.6.2).
		c.announce(answer, media.PromptBlocked, outcomeBlocked, ErrBlocked)
		return
	}
	c.ring(req, answer, c.verdict.Action == screening.Warn)
}

// screen asks screening for the verdict on the caller.
func (c *call) screen() {
	s := c.s
	sctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	t0 := time.Now()
	v := c.rt.sc.Screen(sctx, c.scall)
	cancel()
	c.mu.Lock()
	c.verdict, c.screened = v, true
	c.mu.Unlock()
	s.metrics.screened(c.verdict, time.Since(t0))
	if c.verdict.Has(screening.ReasonStoreUnavailable) && c.verdict.Action != screening.Defer {
		c.log.Warn("store did not answer: screened by store_failure", zap.Stringer("verdict", c.verdict.Action),
			zap.String("store_error", c.verdict.StoreError))
	}
	c.emit(EventScreened, func(ev *Event) { ev.Entry = c.verdict.Entry })
	if c.verdict.Number != "" {
		s.reg.setLastCaller(c.line.Name, c.verdict.Number)
	}
	c.log = c.log.WithLazy(zap.String("caller", c.verdict.Number), zap.Stringer("verdict", c.verdict.Action))
	c.log.Debug("screened", zap.Any("reasons", c.verdict.Reasons))
}

// ring dials the line. On allow, ringing and early media go back to the
// caller and the line's answer connects; on warn, the caller hears only
// ringing and the line's answer gets the warning first.
// The line rings at its static contact and at every device registered
// for it, all at once (fork.go); with neither, the caller gets 480 (RFC
// 3261 §10: nobody is registered there).
func (c *call) ring(req *sip.Request, trunkAnswer []byte, warn bool) {
	binds := c.s.binds.line(c.line.Name)
	if c.line.Contact == "" && len(binds) == 0 {
		c.log.Info("no device of the line is registered")
		c.fail(c.farOutcome("unregistered"), sideNone, fmt.Errorf("%w: no device of the line is registered", ErrUnavailable))
		return
	}
	if warn {
		_ = c.provisional(sip.StatusRinging, "Ringing", nil)
	}
	branches, err := c.s.lineBranches(c, req, binds)
	if err != nil {
		c.fail(outcomeError, sideNone, err)
		return
	}
	c.dial(branches, trunkAnswer, warn)
}

// warn plays the warning to the line, which has answered, and waits for its
// choice: 1 connects (true), 3 reports the caller; hanging up or saying
// nothing refuses. The caller, who has heard only ringing, gets 603 unless
// connected: a warned and refused caller was never connected at all.
func (c *call) warn() bool {
	p, err := c.rt.prompts.Get(media.PromptWarning)
	if err != nil {
		c.log.Error("no warning prompt", zap.Error(err))
		return true // fail open: the line has answered and hears the caller
	}
	c.m.digits.Clear()
	c.mu.Lock()
	c.warning = true
	c.mu.Unlock()
	c.emit(EventWarned, nil)
	playCtx, stopPlay := context.WithCancel(c.ctx)
	played := make(chan struct{})
	go func() {
		defer close(played)
		c.playNamed(playCtx, sideLine, media.PromptWarning)
	}()
	wctx, cancel := context.WithTimeout(c.ctx, p.Duration()+c.s.timers().WarningChoice)
	defer cancel()
	var digit rune
	for digit != '1' && digit != '3' {
		digit, err = c.m.digits.Next(wctx, 0)
		if err != nil {
			break
		}
	}
	stopPlay()
	<-played
	var choice string
	switch {
	case err == nil && digit == '1':
		choice = ChoiceConnect
	case err == nil && digit == '3':
		choice = ChoiceReport
	case c.outcomeNow() == outcomeWarnRefused:
		choice = ChoiceHangUp // the line hung up on the warning (end)
	case !c.isEnded():
		choice = ChoiceTimeout
	}
	c.mu.Lock()
	c.warning, c.choice = false, choice
	c.mu.Unlock()
	if choice != "" {
		// (None when the caller gave up during the warning: nobody chose.)
		c.s.metrics.chose(choice)
		c.emit(EventChoice, func(ev *Event) { ev.Choice = choice })
	}
	refused := fmt.Errorf("%w: the person did not choose to connect", ErrBlocked)
	switch choice {
	case ChoiceConnect:
		return true
	case ChoiceReport:
		if n := c.verdict.Number; n != "" {
			rctx, rcancel := context.WithTimeout(c.ctx, 2*time.Second)
			if _, err := c.rt.sc.Report(rctx, c.line.Name, n); err != nil {
				c.log.Warn("report not recorded", zap.Error(err))
			} else {
				c.reportedEvent(n)
			}
			rcancel()
		}
		c.playNamed(c.ctx, sideLine, media.PromptReported)
		c.fail(outcomeWarnReported, sideNone, refused)
		return false
	case ChoiceTimeout:
		c.fail(outcomeWarnTimeout, sideNone, refused)
		return false
	}
	c.refuse(refused) // ended already: the line hung up, or the caller is gone
	return false
}

// reportedEvent records that this call reported number.
func (c *call) reportedEvent(number string) {
	c.mu.Lock()
	c.reported = number
	c.mu.Unlock()
	c.emit(EventReported, func(ev *Event) { ev.Reported = number })
}

// lineInvite builds an INVITE to the line at target from scratch: our own
// Call-ID, tags and CSeq; of the caller's request only the identity is
// copied, and only after it has been cut down to safe characters.
func (s *Server) lineInvite(c *call, req *sip.Request, target sip.Uri) *sip.Request {
	user, display := "anonymous", "Anonymous"
	if !c.scall.Privacy {
		if n := c.verdict.Number; n != "" {
			user, display = n, n
		} else if f := req.From(); f != nil {
			user, display = safeUser(f.Address.User), safeDisplay(f.DisplayName)
		}
		if c.verdict.Action == screening.Warn {
			display = "Warning " + display
		}
	}
	return s.newInvite(target, display, user)
}
