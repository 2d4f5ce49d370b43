package sip

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// The INVITE entry point for both directions and the RFC 3261 checks every
// new INVITE passes before a call exists.

// onInvite takes every INVITE: in-dialog ones are re-INVITEs; new ones are
// calls from a line (outbound) or a trunk (inbound, screened); anything else
// gets 403 and goes nowhere.
func (s *Server) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	received := time.Now() // guard has refused strangers already
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
	rt := s.routing() // one configuration for the whole call (reload.go)
	line, creds := rt.lineFrom(req), (*LineAuth)(nil)
	if line != nil {
		creds = line.Auth
	}
	var dev *binding
	if b, l, c, ok := s.deviceFrom(rt, req); ok {
		// A registered device's own call, recognised by where its
		// registration came from, and proved with its own credentials.
		line, creds, dev = l, c, &b
	}
	trunk := rt.trunkFor(req)
	if line == nil && trunk == nil {
		// A line's address, but not one line's From: not ours to place.
		s.respondErr(req, tx, ErrNotTrunk)
		return
	}
	if line != nil && creds != nil {
		// RFC 3261 §22.3: a line with credentials, or a device, proves them
		// on every call it places; its source address alone can be forged.
		if stale, err := s.auth.verify(req, creds); err != nil {
			if authFailed(err, stale) {
				s.metrics.authFailures.WithLabelValues(string(sip.INVITE)).Inc()
			}
			s.log.Info("line's INVITE not authenticated", zap.String("line", line.Name), zap.Stringer("source", src), zap.Error(err))
			s.respondErr(req, tx, err, s.auth.challenges(req.Method, creds.Algorithms, stale)...)
			return
		}
	}
	if err := s.checkInvite(req); err != nil {
		hdrs := []sip.Header{}
		if errors.Is(err, ErrBadExtension) {
			// RFC 3261 §8.2.2.3: list the unsupported extensions.
			hdrs = append(hdrs, sip.NewHeader("Unsupported", unsupported(req)))
		}
		if errors.Is(err, ErrTooSmall) {
			hdrs = append(hdrs, sip.NewHeader("Min-SE", itoa(int(s.timers().MinSE/time.Second))))
		}
		s.respondErr(req, tx, err, hdrs...)
		return
	}
	if !s.beginCall() {
		s.respondErr(req, tx, ErrShuttingDown)
		return
	}
	defer s.doneWork()
	// RFC 3261 §17.2.1: answer an INVITE with 100 within 200 ms; we do it now.
	s.respond(req, tx, sip.StatusTrying, "Trying", nil)
	if line != nil {
		s.outbound(rt, req, tx, line, dev)
		return
	}
	s.inbound(rt, req, tx, trunk, received)
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
	s.respondErr(req, tx, ErrLateOffer,
		sip.NewHeader("Warning", `399 `+s.faceFrom(req).host+` "INVITE must carry an SDP offer (late offer not supported)"`))
}

// malformedInvite refuses the RFC 4475 invalid INVITEs that sipgo's parser
// lets through: leniency here would ring the line (or route on To) for a
// request no UAS may act on.
func malformedInvite(req *sip.Request) error {
	switch strings.ToLower(req.Recipient.Scheme) {
	case "sip", "sips", "tel":
	default:
		// RFC 3261 §8.2.2.1: 416 for a Request-URI scheme we do not know.
		return fmt.Errorf("%w: %q", ErrUnsupportedScheme, req.Recipient.Scheme)
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
				return fmt.Errorf("%w: %s names a dialog of ours", ErrForbidden, name)
			}
			return ErrNoDialog
		}
	}
	if unsupported(req) != "" {
		return ErrBadExtension
	}
	if se, ok := sessionExpires(req); ok && s.timers().SessionExpires > 0 && se < s.timers().MinSE {
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
func (s *Server) acceptInvite(rt *routing, req *sip.Request, tx sip.ServerTransaction, dir direction, line *Line, trunk *Trunk) *call {
	if len(req.Body()) == 0 {
		s.refuseLateOffer(req, tx)
		return nil
	}
	f := s.faceFrom(req)
	in, err := f.dua.ReadInvite(req, tx)
	if err != nil {
		s.respondErr(req, tx, fmt.Errorf("%w: %w", ErrMalformed, err))
		return nil
	}
	return s.newCall(rt, dir, line, trunk, in, tx, f)
}
