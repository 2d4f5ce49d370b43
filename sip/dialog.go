package sip

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// In-dialog requests. Every one is looked up by dialog ID in the registry;
// a dialog we do not have (or no longer have: D2) gets 481 (RFC 3261
// §12.2.2: "If the UAS wishes to reject the request because it does not
// wish to recreate the dialog, it MUST respond to the request with a 481").
// None is passed to the other leg: cleanline answers each itself.

// cutDialogID splits a sipgo dialog ID into its Call-ID and the rest.
func cutDialogID(id string) (callID, rest string, ok bool) {
	return strings.Cut(id, sip.TxSeperator)
}

// match finds the call and leg a request belongs to: ErrNoDialog when
// there is none (481), ErrNotPeer when the request names one of our dialogs
// but comes from elsewhere than that dialog's peer (403): a forged BYE or
// INFO from another line or trunk must not end, or press keys in, someone
// else's call.
func (s *Server) match(req *sip.Request) (regEntry, error) {
	e, ok := s.lookupDialog(req)
	if !ok {
		return regEntry{}, ErrNoDialog
	}
	if src := source(req).Addr(); !e.from(src) {
		e.c.log.Warn("in-dialog request from outside the dialog refused", zap.String("method", req.Method.String()),
			zap.Stringer("source", src), zap.Stringer("leg", e.peer()))
		return regEntry{}, ErrNotPeer
	}
	return e, nil
}

// lookupDialog finds the call and leg of an in-dialog request, by its
// dialog ID as we are UAS (the dialog we received), then as UAC.
func (s *Server) lookupDialog(req *sip.Request) (regEntry, bool) {
	if id, err := sip.DialogIDFromRequestUAS(req); err == nil {
		if e, ok := s.reg.lookup(id); ok && e.role == roleIn {
			return e, true
		}
	}
	if id, err := sip.DialogIDFromRequestUAC(req); err == nil {
		if e, ok := s.reg.lookup(id); ok && e.role == roleOut {
			return e, true
		}
	}
	return regEntry{}, false
}

// from reports whether src is where the leg's peer sends from.
func (e regEntry) from(src netip.Addr) bool { return slices.Contains(e.peers, src) }

// dialogPeers are the addresses a dialog's peer may send from: the address
// its messages came from and its Contact's host (RFC 3261 §12.2: in-dialog
// requests go to the remote target, and come from where the peer is).
func dialogPeers(from string, contact *sip.ContactHeader) []netip.Addr {
	var out []netip.Addr
	if ap, err := netip.ParseAddrPort(from); err == nil {
		out = append(out, ap.Addr().Unmap())
	}
	if contact != nil {
		if a, err := netip.ParseAddr(contact.Address.Host); err == nil && !slices.Contains(out, a.Unmap()) {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// peer is who sent a request on a matched leg.
func (e regEntry) peer() side {
	if e.role == roleIn {
		return e.c.inSide()
	}
	return e.c.outSide()
}

func (s *Server) onAck(req *sip.Request, tx sip.ServerTransaction) {
	if id, err := sip.DialogIDFromRequestUAS(req); err == nil {
		if c := s.reg.ackFor(id); c != nil {
			if c.in.ReadAck(req, tx) == nil {
				c.ackArrived()
			}
			return
		}
	}
	e, err := s.match(req)
	if err != nil || e.role != roleIn {
		return // ACK of a non-2xx is absorbed by the transaction layer
	}
	if err := e.c.in.ReadAck(req, tx); err != nil {
		e.c.log.Debug("ACK ignored", zap.Error(err))
	}
}

// onBye ends the call. D1: when the line hangs up, the relay closes before
// we even answer, and the trunk leg gets its BYE in the background.
func (s *Server) onBye(req *sip.Request, tx sip.ServerTransaction) {
	e, err := s.match(req)
	if err != nil {
		s.respondErr(req, tx, err)
		return
	}
	c := e.c
	if e.role == roleIn && s.reg.ackFor(c.in.ID) == c {
		// Our 2xx waits for its ACK, and the caller hangs up: it had our
		// answer (it ACKs a 2xx before anything else, RFC 3261 §13.2.2.4),
		// and its ACK is on another goroutine, which this one overtook.
		c.ackArrived()
	}
	c.end(outcomeCompleted, e.peer())
	if e.role == roleIn {
		err = c.in.ReadBye(req, tx)
	} else {
		c.mu.Lock()
		out := c.out
		c.mu.Unlock()
		err = out.ReadBye(req, tx)
	}
	if err != nil {
		c.log.Debug("BYE answer failed", zap.Error(err))
		s.respond(req, tx, sip.StatusOK, "OK", nil)
	}
}

// onCancel sees only CANCELs that matched no INVITE transaction (sipgo
// answers the others itself): RFC 3261 §9.2, 481.
func (s *Server) onCancel(req *sip.Request, tx sip.ServerTransaction) {
	s.respondErr(req, tx, ErrNoDialog)
}

// onOptions answers keep-alives: in-dialog ones when the dialog is ours,
// out-of-dialog ones from trunks and lines only.
func (s *Server) onOptions(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		if _, err := s.match(req); err != nil {
			s.respondErr(req, tx, err)
			return
		}
	}
	allow := allowMethods
	if to := req.To(); (to == nil || !to.Params.Has("tag")) && s.routing().registrar() {
		// RFC 3261 §11.2: the methods this server takes; outside a
		// dialog that is also the registrar's REGISTER.
		allow += ", REGISTER"
	}
	s.respond(req, tx, sip.StatusOK, "OK", nil, sip.NewHeader("Allow", allow), sip.NewHeader("Accept", "application/sdp"),
		sip.NewHeader("Supported", "timer"))
}

// onInfo takes DTMF sent as SIP INFO (application/dtmf-relay "Signal=1",
// or application/dtmf "1"): the line's digits feed the warning prompt's
// collector, whatever else is acknowledged and dropped.
func (s *Server) onInfo(req *sip.Request, tx sip.ServerTransaction) {
	e, err := s.match(req)
	if err != nil {
		s.respondErr(req, tx, err)
		return
	}
	if e.peer() == sideLine {
		if d, ok := infoDigit(req); ok {
			e.c.m.digits.Feed(d)
		}
	}
	s.respond(req, tx, sip.StatusOK, "OK", nil)
}

func infoDigit(req *sip.Request) (rune, bool) {
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = strings.ToLower(h.Value())
	}
	body := strings.TrimSpace(string(req.Body()))
	switch {
	case strings.HasPrefix(ct, "application/dtmf-relay"):
		for _, line := range strings.Split(body, "\n") {
			k, v, ok := strings.Cut(line, "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "signal") {
				v = strings.TrimSpace(v)
				if len(v) == 1 {
					return rune(v[0]), true
				}
			}
		}
	case strings.HasPrefix(ct, "application/dtmf"):
		if len(body) == 1 {
			return rune(body[0]), true
		}
	}
	return 0, false
}

// onReInvite answers hold, resume, codec changes and session refreshes at
// the relay: the peer's new address is applied, and our answer keeps our
// address and codec with the direction mirrored (RFC 3264 §8). The other
// leg never hears of it, so there is no glare between the legs.
func (s *Server) onReInvite(req *sip.Request, tx sip.ServerTransaction) {
	e, err := s.match(req)
	if err != nil {
		s.respondErr(req, tx, err)
		return
	}
	c := e.c
	if err := s.readInDialog(e, req, tx); err != nil {
		s.respondErr(req, tx, fmt.Errorf("%w: %w", ErrOutOfOrder, err))
		return
	}
	sd := e.peer()
	t, err := s.refreshTimer(req)
	if err != nil {
		s.respondErr(req, tx, err, sip.NewHeader("Min-SE", itoa(int(s.timers().MinSE/time.Second))))
		return
	}
	var body []byte
	if len(req.Body()) > 0 {
		var err error
		if body, err = c.m.answer(sd, req.Body(), c.originOf(sd, req.Source()), c.face(sd).media); err != nil {
			c.log.Info("re-INVITE refused", zap.Error(err))
			s.respondErr(req, tx, err)
			return
		}
	} else if body, _ = c.m.offer(sd, c.face(sd).media); body == nil {
		s.respondErr(req, tx, ErrNotAcceptable)
		return
	}
	c.refreshed(sd, t)
	hdrs := []sip.Header{sdpType(), sip.NewHeader("Allow", allowMethods)}
	hdrs = append(hdrs, s.refreshHeaders(e, req)...)
	ct := c.face(sd).contact(req.Transport())
	hdrs = append(hdrs, &ct)
	s.respond(req, tx, sip.StatusOK, "OK", body, hdrs...)
}

// onUpdate is onReInvite for UPDATE (RFC 3311), usually a session refresh
// without SDP.
func (s *Server) onUpdate(req *sip.Request, tx sip.ServerTransaction) {
	e, err := s.match(req)
	if err != nil {
		s.respondErr(req, tx, err)
		return
	}
	c := e.c
	if err := s.readInDialog(e, req, tx); err != nil {
		s.respondErr(req, tx, fmt.Errorf("%w: %w", ErrOutOfOrder, err))
		return
	}
	sd := e.peer()
	t, err := s.refreshTimer(req)
	if err != nil {
		s.respondErr(req, tx, err, sip.NewHeader("Min-SE", itoa(int(s.timers().MinSE/time.Second))))
		return
	}
	var body []byte
	hdrs := []sip.Header{}
	if len(req.Body()) > 0 {
		var err error
		if body, err = c.m.answer(sd, req.Body(), c.originOf(sd, req.Source()), c.face(sd).media); err != nil {
			s.respondErr(req, tx, err)
			return
		}
		hdrs = append(hdrs, sdpType())
	}
	c.refreshed(sd, t)
	hdrs = append(hdrs, s.refreshHeaders(e, req)...)
	ct := c.face(sd).contact(req.Transport())
	hdrs = append(hdrs, &ct)
	s.respond(req, tx, sip.StatusOK, "OK", body, hdrs...)
}

// readInDialog checks the CSeq of a request on the leg we answered (RFC 3261
// §12.2.2: lower than the last one is out of order, 500).
func (s *Server) readInDialog(e regEntry, req *sip.Request, tx sip.ServerTransaction) error {
	if e.role != roleIn {
		return nil
	}
	return e.c.in.ReadRequest(req, tx)
}

// refreshTimer is the timer a refresh (re-INVITE or UPDATE) from a peer
// that supports timers sets: the interval it asks for, with itself as the
// refresher, as our answer says (refreshHeaders). nil keeps the current
// timer. RFC 4028 §9: an interval below our Min-SE is refused with 422.
func (s *Server) refreshTimer(req *sip.Request) (*sessionTimer, error) {
	se, ok := sessionExpires(req)
	if !ok || !supports(req, "timer") || s.timers().SessionExpires <= 0 {
		return nil, nil
	}
	if se < s.timers().MinSE {
		return nil, fmt.Errorf("%w: %s below Min-SE %s", ErrTooSmall, se, s.timers().MinSE)
	}
	return &sessionTimer{interval: se}, nil
}

// refreshHeaders echoes the session interval in the answer to a refresh
// (RFC 4028 §9), keeping the peer the refresher.
func (s *Server) refreshHeaders(e regEntry, req *sip.Request) []sip.Header {
	se, ok := sessionExpires(req)
	if !ok || !supports(req, "timer") {
		return nil
	}
	return []sip.Header{
		sip.NewHeader("Session-Expires", itoa(int(se.Seconds()))+";refresher=uac"),
		sip.NewHeader("Require", "timer"),
	}
}

// onRefer refuses every transfer: a fraudster must not be able to move the
// line's call anywhere (RFC 3515 §2.4.2 lets us decline with 403; out of
// dialog, or for a dialog we do not have, 481).
func (s *Server) onRefer(req *sip.Request, tx sip.ServerTransaction) {
	e, err := s.match(req)
	if err == nil {
		e.c.log.Warn("REFER refused", zap.Stringer("from", e.peer()))
		err = ErrForbidden
	}
	s.respondErr(req, tx, err)
}

// onOther answers the methods cleanline does not take (RFC 3261 §8.2.1:
// 405 with the Allow header).
func (s *Server) onOther(req *sip.Request, tx sip.ServerTransaction) {
	s.respondErr(req, tx, ErrNotAllowedMethod, sip.NewHeader("Allow", allowMethods))
}

// onPrack: we never send reliable provisionals (no 100rel), so no PRACK
// can match anything of ours (RFC 3262 §3: 481).
func (s *Server) onPrack(req *sip.Request, tx sip.ServerTransaction) {
	s.respondErr(req, tx, ErrNoDialog)
}
