package sip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/media"
)

// onInvite takes every INVITE: in-dialog ones are re-INVITEs; new ones are
// calls from a line (outbound) or a trunk (inbound, screened); anything else
// gets 403 and goes nowhere.
func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	received := time.Now()
	// Design flow 1: a stranger gets 403 and nothing else, whatever the
	// INVITE looks like, so it learns neither which dialogs exist (481)
	// nor how we parse (400). Every legitimate sender, in dialog or not,
	// is a configured trunk or line source.
	if src := source(req); s.trunkFor(src) == nil && !s.lineSource(src) {
		s.log.Warn("INVITE from unknown source refused", zap.Stringer("source", src),
			zap.String("to", req.Recipient.User))
		s.respondErr(req, tx, ErrNotTrunk)
		return
	}
	if to := req.To(); to != nil && to.Params.Has("tag") {
		s.onReInvite(req, tx)
		return
	}
	if req.CallID() == nil || req.From() == nil || req.To() == nil || req.CSeq() == nil || req.Contact() == nil {
		// RFC 3261 §8.1.1: To, From, CSeq, Call-ID, Max-Forwards and Via are
		// mandatory; §8.1.1.8: an INVITE MUST carry a Contact.
		s.respondErr(req, tx, ErrMalformed)
		return
	}
	if err := malformedInvite(req); err != nil {
		s.respondErr(req, tx, err)
		return
	}
	src := source(req)
	line := s.lineFrom(req, src)
	trunk := s.trunkFor(src)
	if line == nil && trunk == nil {
		// A line's address, but not one line's From: not ours to place.
		s.respondErr(req, tx, ErrNotTrunk)
		return
	}
	if err := s.checkInvite(req); err != nil {
		hdrs := []sip.Header{}
		if errors.Is(err, ErrBadExtension) {
			// RFC 3261 §8.2.2.3: list the unsupported extensions.
			hdrs = append(hdrs, sip.NewHeader("Unsupported", unsupported(req)))
		}
		if errors.Is(err, ErrTooSmall) {
			hdrs = append(hdrs, sip.NewHeader("Min-SE", itoa(int(s.cfg.Timers.MinSE/time.Second))))
		}
		s.respondErr(req, tx, err, hdrs...)
		return
	}
	if s.closing.Load() {
		s.respondErr(req, tx, ErrShuttingDown)
		return
	}
	s.calls.Add(1)
	defer s.calls.Done()
	// RFC 3261 §17.2.1: answer an INVITE with 100 within 200 ms; we do it now.
	s.respond(req, tx, sip.StatusTrying, "Trying", nil)
	if line != nil {
		s.outbound(req, tx, line)
		return
	}
	s.inbound(req, tx, trunk, received)
}

// refuseLateOffer answers an INVITE without an SDP offer. RFC 3261 §13.2.1
// allows one (the offer then comes in our 2xx, the answer in the ACK), but
// the relay does not transcode: the line is offered exactly the caller's
// codec, and the warning is played in it, before the caller is answered. A
// late offer would tell us the caller's codecs only in the ACK, after the
// line answered and heard the warning, with no way back if they do not
// match. So the refusal is explicit: 488 with a reason phrase and a Warning
// (RFC 3261 §20.43, code 399: miscellaneous) saying what to change.
func (s *Server) refuseLateOffer(req *sip.Request, tx sip.ServerTransaction) {
	s.log.Info("INVITE without SDP offer refused", zap.Stringer("source", source(req)))
	s.respondErr(req, tx, withStatus(sip.StatusNotAcceptableHere, "Late Offer Not Supported",
		fmt.Errorf("%w: INVITE without an SDP offer", ErrNotAcceptable)),
		sip.NewHeader("Warning", `399 `+s.host+` "INVITE must carry an SDP offer (late offer not supported)"`))
}

// malformedInvite refuses the RFC 4475 invalid INVITEs that sipgo's parser
// lets through: leniency here would ring the line (or route on To) for a
// request no UAS may act on.
func malformedInvite(req *sip.Request) error {
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips", "tel":
	default:
		// RFC 3261 §8.2.2.1: 416 for a Request-URI scheme we do not know.
		return withStatus(416, "Unsupported URI Scheme", ErrMalformed)
	}
	if h := req.Recipient.Headers; h != nil && h.Length() > 0 {
		return ErrMalformed // §19.1.5: no headers in a Request-URI
	}
	if req.CSeq().MethodName != req.Method {
		return ErrMalformed // §8.1.1.5: CSeq's method MUST match
	}
	if req.Contact().Address.Wildcard {
		return ErrMalformed // §10.2.2: "*" only in REGISTER
	}
	for _, name := range []string{"From", "To", "Call-ID", "CSeq", "Max-Forwards"} {
		if len(req.GetHeaders(name)) > 1 {
			return ErrMalformed // §7.3.1: single-valued; which one would we screen?
		}
	}
	for _, h := range req.GetHeaders("Date") {
		if !strings.HasSuffix(strings.TrimSpace(h.Value()), "GMT") {
			return ErrMalformed // §20.17: SIP-date is always GMT
		}
	}
	return nil
}

// checkInvite refuses what we never do for anyone.
func (s *Server) checkInvite(req *sip.Request) error {
	// RFC 3891 §3 (Replaces) and RFC 3911 §3 (Join): an INVITE naming one of
	// our dialogs would let a caller take over or join the line's call; it is
	// refused with 403. Naming a dialog we do not have is 481 (both RFCs).
	for _, name := range []string{"Replaces", "Join"} {
		if h := req.GetHeader(name); h != nil {
			callID, _, _ := strings.Cut(h.Value(), ";")
			if s.reg.hasCallID(strings.TrimSpace(callID)) {
				return withStatus(sip.StatusForbidden, "Forbidden", ErrForbidden)
			}
			return ErrNoDialog
		}
	}
	if unsupported(req) != "" {
		return ErrBadExtension
	}
	if se, ok := sessionExpires(req); ok && s.cfg.Timers.SessionExpires > 0 && se < s.cfg.Timers.MinSE {
		// RFC 4028 §8.1: "If the Session-Expires is smaller than the minimum
		// ... the proxy/UAS MUST reject the request with a 422".
		return ErrTooSmall
	}
	return nil
}

// unsupported lists the Require options we do not support. We support
// only "timer" (RFC 4028); sipgo has no 100rel (RFC 3262).
func unsupported(req *sip.Request) string {
	var out []string
	for _, h := range req.GetHeaders("Require") {
		for _, opt := range strings.Split(h.Value(), ",") {
			opt = strings.ToLower(strings.TrimSpace(opt))
			if opt != "" && opt != "timer" {
				out = append(out, opt)
			}
		}
	}
	return strings.Join(out, ", ")
}

// acceptInvite opens the call for a new INVITE in either direction, or
// answers it and returns nil when there is no call to open: no offer (late
// offer is refused) or a dialog sipgo cannot read.
func (s *Server) acceptInvite(req *sip.Request, tx sip.ServerTransaction, dir direction, line *Line, trunk *Trunk) *call {
	if len(req.Body()) == 0 {
		s.refuseLateOffer(req, tx)
		return nil
	}
	in, err := s.dua.ReadInvite(req, tx)
	if err != nil {
		s.respondErr(req, tx, withStatus(sip.StatusBadRequest, "Bad Request", err))
		return nil
	}
	return s.newCall(dir, line, trunk, in, tx)
}

// inbound carries a trunk's call to a line: screen, then refuse, ring or warn.
func (s *Server) inbound(req *sip.Request, tx sip.ServerTransaction, trunk *Trunk, received time.Time) {
	line := s.lineCalled(req)
	if line == nil {
		s.respondErr(req, tx, ErrUnknownLine)
		return
	}
	c := s.acceptInvite(req, tx, inbound, line, trunk)
	if c == nil {
		return
	}
	c.received = received
	c.scall = screening.Call{
		Line:          line.Name,
		From:          identity(req.From()),
		Privacy:       privacyID(req),
		International: trunk.International,
	}
	if trunk.TrustAssertedIdentity {
		if pai := req.GetHeader("P-Asserted-Identity"); pai != nil {
			c.scall.Asserted = assertedIdentity(pai.Value())
		}
	}
	c.timer = s.sessionTimerFor(req)

	sctx, cancel := context.WithTimeout(c.ctx, 2*time.Second)
	t0 := time.Now()
	c.verdict = s.sc.Screen(sctx, c.scall)
	cancel()
	s.metrics.screened(c.verdict, time.Since(t0))
	if c.verdict.Has(screening.ReasonStoreUnavailable) && c.verdict.Action != screening.Defer {
		c.log.Warn("store did not answer: screened by store_failure", zap.Stringer("verdict", c.verdict.Action),
			zap.String("store_error", c.verdict.StoreError))
	}
	c.screened = true
	if c.verdict.Number != "" {
		s.reg.setLastCaller(line.Name, c.verdict.Number)
	}
	c.log = c.log.WithLazy(zap.String("caller", c.verdict.Number), zap.Stringer("verdict", c.verdict.Action))
	c.log.Debug("screened", zap.Any("reasons", c.verdict.Reasons))

	if c.verdict.Action == screening.Defer {
		// No verdict in time (store_failure: retry): RFC 3261 §21.5.4, 503
		// with Retry-After, so the trunk or its dispatcher tries again
		// rather than the call ringing unscreened.
		c.log.Warn("store did not answer: call deferred", zap.Duration("deadline", s.sc.Policy(line.Name).StoreDeadline),
			zap.String("store_error", c.verdict.StoreError))
		c.end(outcomeDeferred, sideNone)
		c.refuse(sip.StatusServiceUnavailable, "Service Unavailable", sip.NewHeader("Retry-After", retryAfter))
		return
	}
	block := c.verdict.Action == screening.Block
	if block && !trunk.AnnounceBlocked {
		// Screened before any media exists: refusing takes no relay sockets,
		// and the caller's SDP is never read (603, not 488, if it is bad).
		c.end(outcomeBlocked, sideNone)
		c.refuse(statusDecline, "Decline")
		return
	}
	if !c.attachMedia() {
		return
	}
	answer, err := c.m.answer(sideTrunk, req.Body())
	if err != nil {
		c.log.Info("offer refused", zap.Error(err))
		c.end(outcomeError, sideNone)
		code, reason := statusOf(err)
		c.refuse(code, reason)
		return
	}
	if block {
		c.block(answer)
		return
	}
	c.ring(req, answer, c.verdict.Action == screening.Warn)
}

// block plays the blocked-call notice as early media, then refuses the
// call with 603 Decline (RFC 3261 §21.6.2).
func (c *call) block(answer []byte) {
	if err := c.provisional(sip.StatusSessionInProgress, "Session Progress", answer, sdpType()); err == nil {
		c.playNamed(c.ctx, sideTrunk, media.PromptBlocked)
	}
	c.end(outcomeBlocked, sideNone)
	c.refuse(statusDecline, "Decline")
}

// ring dials the line. On allow, ringing and early media go back to the
// caller and the line's answer connects; on warn, the caller hears only
// ringing and the line's answer gets the warning first.
func (c *call) ring(req *sip.Request, trunkAnswer []byte, warn bool) {
	if warn {
		_ = c.provisional(sip.StatusRinging, "Ringing", nil)
	}
	offer, err := c.m.offer(sideLine)
	if err != nil {
		c.end(outcomeError, sideNone)
		c.refuse(sip.StatusNotAcceptableHere, "Not Acceptable Here")
		return
	}
	c.dial(c.s.lineInvite(c, req, offer), trunkAnswer, warn)
}

// dial sends outReq to the other side, relays its progress to the caller
// (unless warn: then the caller hears only our 180), and on its answer
// connects the call: directly, or after the warning when warn is set.
func (c *call) dial(outReq *sip.Request, inAnswer []byte, warn bool) {
	s := c.s
	far := c.outSide()
	ringCtx, cancel := context.WithTimeout(c.ctx, s.cfg.Timers.NoAnswer)
	defer cancel()
	out, err := s.dua.WriteInvite(ringCtx, outReq)
	if err == nil && c.dir == inbound {
		s.metrics.transit.Observe(time.Since(c.received).Seconds())
	}
	if err != nil {
		c.log.Warn("INVITE not sent", zap.Stringer("to", far), zap.Error(err))
		c.end(outcomeLineFailed, sideNone)
		c.refuse(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
		return
	}
	if !c.setOut(out) {
		// Ended while dialling: the INVITE is out all the same.
		c.waitAnswer(out, func(*sip.Response) {}).abandon()
		c.refuse(sip.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	early, rang := false, warn
	p := c.waitAnswer(out, func(res *sip.Response) {
		if !res.IsProvisional() || res.StatusCode == sip.StatusTrying || warn {
			return
		}
		if len(res.Body()) > 0 && !early && c.m.applyAnswer(far, res.Body()) == nil {
			// Early media (RFC 3960): the far side's ringback or announcement
			// reaches the caller, one way, through the relay.
			early = true
			c.m.earlyMedia(far)
			_ = c.provisional(sip.StatusSessionInProgress, "Session Progress", inAnswer, sdpType())
			return
		}
		if !rang && !early {
			rang = true
			_ = c.provisional(sip.StatusRinging, "Ringing", nil)
		}
	})
	select {
	case <-p.done:
		err = p.err
	case <-ringCtx.Done():
		// No answer, the caller's CANCEL or our teardown: the caller hears
		// its final response now, not when the far side deigns to respond.
		heard := p.abandon()
		c.lineFailed(ringCtx.Err(), ringCtx)
		if heard {
			p.awaitCancel(s.byeTimeout())
		}
		return
	}
	if err != nil {
		c.lineFailed(err, ringCtx)
		return
	}
	ackCtx, ackCancel := context.WithTimeout(context.Background(), s.byeTimeout())
	err = out.Ack(ackCtx)
	ackCancel()
	if err != nil || !c.up(roleOut) {
		c.s.goCall(func() { c.byeOut(out) })
		c.end(outcomeLineFailed, sideNone)
		c.refuse(sip.StatusServiceUnavailable, "Service Unavailable")
		return
	}
	s.reg.bind(out.ID, c, roleOut)
	context.AfterFunc(out.Context(), func() { c.end(outcomeCompleted, far) })
	c.mu.Lock()
	if s.cfg.Timers.SessionExpires > 0 {
		c.outTimer = outTimer(out.InviteResponse)
	}
	c.mu.Unlock()
	if err := c.m.applyAnswer(far, out.InviteResponse.Body()); err != nil {
		c.log.Info("answer SDP refused", zap.Stringer("from", far), zap.Error(err))
		c.end(outcomeLineFailed, sideNone)
		c.refuse(sip.StatusNotAcceptableHere, "Not Acceptable Here")
		return
	}
	if warn && !c.warn() {
		return
	}
	c.connect(inAnswer)
}

// lineFailed maps the line's refusal (or silence) back to the caller.
func (c *call) lineFailed(err error, ringCtx context.Context) {
	var dr *sipgo.ErrDialogResponse
	switch {
	case errors.As(err, &dr):
		code, reason, outcome := callerStatus(dr.Res.StatusCode)
		c.log.Info("line refused", zap.Int("line_status", dr.Res.StatusCode))
		c.end(outcome, sideLine)
		c.refuse(code, reason)
	case c.in.Context().Err() != nil:
		// CANCEL from the caller: sipgo answered it and 487; the abandoned
		// INVITE CANCELs the far side (RFC 3261 §9.1). Nothing left to say.
		c.end(outcomeCallerCancelled, sideTrunk)
	case c.isEnded():
		c.refuse(sip.StatusServiceUnavailable, "Service Unavailable")
	case errors.Is(ringCtx.Err(), context.DeadlineExceeded):
		c.end(outcomeNoAnswer, sideNone)
		c.refuse(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
	default:
		c.log.Warn("line INVITE failed", zap.Error(err))
		c.end(outcomeLineFailed, sideNone)
		c.refuse(sip.StatusTemporarilyUnavailable, "Temporarily Unavailable")
	}
}

// callerStatus maps the line's final response to the caller's.
func callerStatus(code int) (int, string, string) {
	switch code {
	case sip.StatusBusyHere, 600:
		return sip.StatusBusyHere, "Busy Here", outcomeLineBusy
	case statusDecline:
		return statusDecline, "Decline", outcomeLineDeclined
	case sip.StatusRequestTimeout, sip.StatusTemporarilyUnavailable:
		return sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", outcomeNoAnswer
	}
	return sip.StatusTemporarilyUnavailable, "Temporarily Unavailable", outcomeLineFailed
}

// warn plays the warning to the line, which has answered, and waits for its
// choice: 1 connects (true), 3 reports the caller; hanging up or saying
// nothing refuses. The caller, who has heard only ringing, gets 603 unless
// connected: a warned and refused caller was never connected at all.
func (c *call) warn() bool {
	p, err := c.s.prompts.Get(media.PromptWarning)
	if err != nil {
		c.log.Error("no warning prompt", zap.Error(err))
		return true // fail open: the line has answered and hears the caller
	}
	c.m.digits.Clear()
	playCtx, stopPlay := context.WithCancel(c.ctx)
	played := make(chan struct{})
	go func() {
		defer close(played)
		c.playNamed(playCtx, sideLine, media.PromptWarning)
	}()
	wctx, cancel := context.WithTimeout(c.ctx, p.Duration()+c.s.cfg.Timers.WarningChoice)
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
	if digit != 0 {
		c.mu.Lock()
		c.choice = string(digit)
		c.mu.Unlock()
	}
	switch {
	case err == nil && digit == '1':
		return true
	case err == nil && digit == '3':
		if n := c.verdict.Number; n != "" {
			rctx, rcancel := context.WithTimeout(c.ctx, 2*time.Second)
			if _, err := c.s.sc.Report(rctx, c.line.Name, n); err != nil {
				c.log.Warn("report not recorded", zap.Error(err))
			}
			rcancel()
		}
		c.playNamed(c.ctx, sideLine, media.PromptReported)
		c.end(outcomeWarnReported, sideNone)
	case c.isEnded():
		c.mu.Lock()
		if c.outcome == outcomeCompleted && c.endedBy == sideLine {
			c.outcome = outcomeWarnRefused
		}
		c.mu.Unlock()
	default:
		c.end(outcomeWarnTimeout, sideNone)
	}
	c.refuse(statusDecline, "Decline")
	return false
}

// provisional sends a 1xx to the caller with our Contact for its transport:
// sipgo's default is the UDP one, and a caller may send in-dialog requests
// to a provisional response's Contact (RFC 3261 §12.1.2).
func (c *call) provisional(code int, reason string, body []byte, hdrs ...sip.Header) error {
	ct := c.s.contact(c.in.InviteRequest.Transport())
	return c.in.Respond(code, reason, body, append(hdrs, &ct)...)
}

// connect answers the caller with our SDP and bridges the relay. The 2xx is
// retransmitted until the caller ACKs it (RFC 3261 §13.3.1.4).
func (c *call) connect(trunkAnswer []byte) {
	c.m.bridge()
	res := sip.NewSDPResponseFromRequest(c.in.InviteRequest, trunkAnswer)
	ct := c.s.contact(c.in.InviteRequest.Transport())
	res.AppendHeader(&ct)
	c.timer.addHeaders(res)
	c.s.reg.awaitAck(c.in)
	err := c.in.WriteResponse(res)
	c.s.reg.acked(c.in)
	if err != nil {
		c.log.Info("caller did not ACK our 200", zap.Error(err))
		c.end(outcomeNoAck, sideNone)
		return
	}
	if !c.up(roleIn) {
		c.s.goCall(c.byeIn)
		return
	}
	c.watch()
}

// lineInvite builds the INVITE to the line from scratch: our own Call-ID,
// tags and CSeq; of the caller's request only the identity is copied, and
// only after it has been cut down to safe characters.
func (s *Server) lineInvite(c *call, req *sip.Request, offer []byte) *sip.Request {
	to := *c.line.contact.Clone()
	out := sip.NewRequest(sip.INVITE, to)
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
	from := sip.FromHeader{DisplayName: display, Address: sip.Uri{Scheme: "sip", User: user, Host: s.host}}
	from.Params = sip.NewParams()
	from.Params.Add("tag", sip.GenerateTagN(16))
	out.AppendHeader(&from)
	toH := sip.ToHeader{Address: sip.Uri{Scheme: to.Scheme, User: to.User, Host: to.Host, Port: to.Port}}
	out.AppendHeader(&toH)
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

const allowMethods = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE"

func sdpType() sip.Header {
	ct := sip.ContentTypeHeader("application/sdp")
	return &ct
}

// identity is the caller ID a From header presents: the user part of a SIP
// URI, or the number of a tel: URI.
func identity(f *sip.FromHeader) string {
	if f == nil {
		return ""
	}
	if f.Address.User != "" {
		return f.Address.User
	}
	return f.Address.Host
}

// assertedIdentity reads the first URI of a P-Asserted-Identity value
// (RFC 3325 §9.1): `"Name" <sip:+44...@host>` or `<tel:+44...>`.
func assertedIdentity(v string) string {
	if i := strings.IndexByte(v, '<'); i >= 0 {
		v = v[i+1:]
		if j := strings.IndexByte(v, '>'); j >= 0 {
			v = v[:j]
		}
	}
	v, _, _ = strings.Cut(v, ",")
	v = strings.TrimSpace(v)
	for _, scheme := range []string{"sips:", "sip:", "tel:"} {
		if strings.HasPrefix(strings.ToLower(v), scheme) {
			v = v[len(scheme):]
			break
		}
	}
	if u, _, ok := strings.Cut(v, "@"); ok {
		v = u
	}
	v, _, _ = strings.Cut(v, ";")
	return v
}

// privacyID reports "Privacy: id" (RFC 3325 §9.3) or "header"/"user"
// (RFC 3323 §4.2): the caller asked to be withheld.
func privacyID(req *sip.Request) bool {
	for _, h := range req.GetHeaders("Privacy") {
		for _, p := range strings.FieldsFunc(h.Value(), func(r rune) bool { return r == ';' || r == ',' || r == ' ' }) {
			switch strings.ToLower(p) {
			case "id", "header", "user":
				return true
			}
		}
	}
	return false
}

// safeUser keeps the characters a phone number or simple user part needs;
// everything else (CR, LF, quotes, angle brackets, ...) is dropped, so no
// header can be injected into the line's INVITE.
func safeUser(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= 32 {
			break
		}
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune("+*#.-_", r) {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "unknown"
	}
	return b.String()
}

// safeDisplay keeps printable characters other than quote and backslash,
// at most 40 of them.
func safeDisplay(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n >= 40 {
			break
		}
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			continue
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}
