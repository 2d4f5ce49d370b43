package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// The leg that dials, for both directions: the INVITE we send to the far
// side (the line for an inbound call, the trunk for a line's own), the
// far side's refusal mapped back, and the answer that connects the call.
// Which side is far comes from the call's direction, never from the code.
// Sending the INVITEs, several at once when the line has several devices,
// and taking the first answer is fork.go's.

// newInvite builds an INVITE of a new dialog to target, from user (with a
// display name): our own Call-ID, tags and CSeq, our session-timer offer.
// sealInvite completes it once its first hop is set.
func (s *Server) newInvite(target sip.Uri, display, user string) *sip.Request {
	out := sip.NewRequest(sip.INVITE, target)
	from := sip.FromHeader{DisplayName: display, Address: sip.Uri{Scheme: "sip", User: user}}
	from.Params = sip.NewParams()
	from.Params.Add("tag", sip.GenerateTagN(16))
	out.AppendHeader(&from)
	toH := sip.ToHeader{Address: sip.Uri{Scheme: target.Scheme, User: target.User, Host: target.Host, Port: target.Port}}
	out.AppendHeader(&toH)
	if tr, ok := target.UriParams.Get("transport"); ok && tr != "" {
		out.SetTransport(strings.ToUpper(tr))
	}
	out.AppendHeader(sip.NewHeader("Allow", allowMethods))
	s.timerOffer(out)
	return out
}

// sealInvite completes out, whose first hop (destination, Route,
// transport) is now set, for the face that hop is told: our host in From
// (unless set), our Contact for its transport, and offer's SDP at the
// face's media address. It returns that face, which the dialog keeps.
func (s *Server) sealInvite(out *sip.Request, offer func(adv netip.Addr) ([]byte, error)) (*face, error) {
	f := s.faceTo(out)
	body, err := offer(f.media)
	if err != nil {
		return nil, err
	}
	if from := out.From(); from.Address.Host == "" {
		from.Address.Host = f.host
	}
	ct := f.contact(out.Transport())
	out.AppendHeader(&ct)
	out.AppendHeader(sdpType())
	out.SetBody(body)
	s.fromListener(out)
	return f, nil
}

// farFailed maps the far side's refusal (or silence) back to the caller.
func (c *call) farFailed(err error, ringCtx context.Context) {
	var dr *sipgo.ErrDialogResponse
	switch {
	case errors.As(err, &dr):
		what, cerr := farStatus(dr.Res.StatusCode)
		if c.dir == outbound && challenge(dr.Res.StatusCode) {
			// The provider's challenge, unanswered or answered in vain.
			what, cerr = "auth_failed", fmt.Errorf("%w: %d %s", ErrUpstreamAuth, dr.Res.StatusCode, dr.Res.Reason)
		}
		c.log.Info("far side refused", zap.Stringer("far", c.outSide()), zap.Int("status", dr.Res.StatusCode))
		c.fail(c.farOutcome(what), c.outSide(), cerr)
	case c.in.Context().Err() != nil:
		// CANCEL from the caller: sipgo answered it and 487; the abandoned
		// INVITE CANCELs the far side (RFC 3261 §9.1). Nothing left to say.
		c.end(outcomeCallerCancelled, c.inSide())
	case c.isEnded():
		c.refuse(ErrShuttingDown)
	case errors.Is(ringCtx.Err(), context.DeadlineExceeded):
		c.fail(outcomeNoAnswer, sideNone, fmt.Errorf("%w: no answer", ErrUnavailable))
	default:
		c.log.Warn("INVITE failed", zap.Stringer("far", c.outSide()), zap.Error(err))
		c.fail(c.farOutcome("failed"), sideNone, fmt.Errorf("%w: %w", ErrUnavailable, err))
	}
}

// provisional sends a 1xx to the caller with our Contact for its transport:
// sipgo's default is the UDP one, and a caller may send in-dialog requests
// to a provisional response's Contact (RFC 3261 §12.1.2).
func (c *call) provisional(code int, reason string, body []byte, hdrs ...sip.Header) error {
	ct := c.inFace.contact(c.in.InviteRequest.Transport())
	return c.in.Respond(code, reason, body, append(hdrs, &ct)...)
}

// answerCaller sends our 2xx with SDP to the caller and waits for its ACK
// (RFC 3261 §13.3.1.4: retransmitted until then). acked: the caller has
// its answer; up: and the call is still on, the received leg is up. A
// call that ended meanwhile hangs that leg up itself.
func (c *call) answerCaller(body []byte, timer *sessionTimer) (up, acked bool) {
	res := sip.NewSDPResponseFromRequest(c.in.InviteRequest, body)
	ct := c.inFace.contact(c.in.InviteRequest.Transport())
	res.AppendHeader(&ct)
	timer.addHeaders(res)
	c.s.reg.awaitAck(c)
	err := c.in.WriteResponse(res)
	c.s.reg.acked(c)
	if err != nil && c.ackTime().IsZero() {
		c.log.Info("caller did not ACK our 200", zap.Error(err))
		c.end(outcomeNoAck, sideNone)
		return false, false
	}
	if !c.up(roleIn) {
		c.s.goCall(c.byeIn)
		return false, true
	}
	return true, true
}

// connect answers the caller with our SDP and bridges the relay.
func (c *call) connect(inAnswer []byte) {
	c.m.bridge()
	up, acked := c.answerCaller(inAnswer, c.timer)
	if acked {
		// Connected, even when a BYE overtook the ACK: the caller was.
		c.emit(EventConnected, nil)
	}
	if up {
		c.watch()
	}
}
