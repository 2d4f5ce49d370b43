package sip

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/sip/media"
)

// Session timers (RFC 4028). On the leg we answer, a caller that supports
// timers refreshes ("refresher=uac") and we watch; a caller that does not
// gets us as the refresher ("refresher=uas", RFC 4028 §9), so a dead peer
// is found even then. On the leg we dial, the line chooses, and we refresh
// when it makes us the refresher, or watch otherwise. A session nobody
// refreshed, or whose refresh failed, ends both legs (D6).

// sessionTimer is one leg's negotiated session interval.
type sessionTimer struct {
	interval time.Duration
	we       bool // we refresh this leg (else we watch the peer's refreshes)
}

// headerReader is what requests and responses share.
type headerReader interface {
	GetHeader(name string) sip.Header
	GetHeaders(name string) []sip.Header
}

// sessionExpires reads Session-Expires (or its compact form x).
func sessionExpires(m headerReader) (time.Duration, bool) {
	h := m.GetHeader("Session-Expires")
	if h == nil {
		h = m.GetHeader("x")
	}
	if h == nil {
		return 0, false
	}
	v, _, _ := strings.Cut(h.Value(), ";")
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

func refresher(m headerReader) string {
	h := m.GetHeader("Session-Expires")
	if h == nil {
		h = m.GetHeader("x")
	}
	if h == nil {
		return ""
	}
	for _, p := range strings.Split(h.Value(), ";")[1:] {
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(k, "refresher") {
			return strings.ToLower(strings.TrimSpace(v))
		}
	}
	return ""
}

func supports(m headerReader, opt string) bool {
	for _, name := range []string{"Supported", "k"} {
		for _, h := range m.GetHeaders(name) {
			for _, o := range strings.Split(h.Value(), ",") {
				if strings.EqualFold(strings.TrimSpace(o), opt) {
					return true
				}
			}
		}
	}
	return false
}

// sessionTimerFor decides the timer of a leg we answer. RFC 4028 §9: the
// UAS sets the interval (not below the request's Min-SE; it may shorten the
// caller's Session-Expires) and the refresher. A caller that supports timers
// refreshes; one that does not cannot, so we do ("refresher=uas"), and a
// refresh that fails tells us the caller is gone.
func (s *Server) sessionTimerFor(req *sip.Request) *sessionTimer {
	if s.timers().SessionExpires <= 0 {
		return nil
	}
	interval := s.timers().SessionExpires
	if se, ok := sessionExpires(req); ok && se < interval {
		interval = se
	}
	if m, ok := minSE(req); ok && m > interval {
		interval = m
	}
	return &sessionTimer{interval: interval, we: !supports(req, "timer")}
}

// minSE reads a Min-SE header (RFC 4028 §5).
func minSE(m headerReader) (time.Duration, bool) {
	h := m.GetHeader("Min-SE")
	if h == nil {
		return 0, false
	}
	v, _, _ := strings.Cut(h.Value(), ";")
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n <= 0 {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// addHeaders puts the negotiated timer in our 2xx. RFC 4028 §9: with
// refresher=uac the 2xx carries "Require: timer"; with refresher=uas toward
// a caller that lacks the extension there is nothing to require.
func (t *sessionTimer) addHeaders(res *sip.Response) {
	if t == nil {
		return
	}
	if t.we {
		res.AppendHeader(sip.NewHeader("Session-Expires", itoa(int(t.interval/time.Second))+";refresher=uas"))
		return
	}
	res.AppendHeader(sip.NewHeader("Session-Expires", itoa(int(t.interval/time.Second))+";refresher=uac"))
	res.AppendHeader(sip.NewHeader("Require", "timer"))
}

// timerOffer asks for a session timer on an INVITE we send (RFC 4028 §7.1).
func (s *Server) timerOffer(req *sip.Request) {
	if s.timers().SessionExpires <= 0 {
		return
	}
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	req.AppendHeader(sip.NewHeader("Session-Expires", itoa(int(s.timers().SessionExpires/time.Second))))
	req.AppendHeader(sip.NewHeader("Min-SE", itoa(int(s.timers().MinSE/time.Second))))
}

// outTimer reads the timer the dialled peer chose in its 2xx.
func outTimer(res *sip.Response) *sessionTimer {
	se, ok := sessionExpires(res)
	if !ok {
		return nil
	}
	return &sessionTimer{interval: se, we: refresher(res) != "uas"}
}

// expiry is when a watched session ends without a refresh. RFC 4028 §10:
// the BYE is sent "the minimum of 32 seconds and one third of the session
// interval" before the session expires.
func (t *sessionTimer) expiry() time.Duration {
	return t.interval - min(32*time.Second, t.interval/3)
}

// refreshed is called for every refresh (re-INVITE or UPDATE) a leg's peer
// sends; t is the leg's timer from then on, nil to keep the current one.
// Only the latest refresh matters, so an unread one is replaced.
func (c *call) refreshed(sd side, t *sessionTimer) {
	ch := c.refresh[sd.media()]
	for {
		select {
		case ch <- t:
			return
		default:
			select {
			case old := <-ch:
				if t == nil {
					t = old
				}
			default:
			}
		}
	}
}

// watch runs for an answered call until it ends: it starts the relay's
// media inactivity clock (the relay ends the call when a leg falls silent)
// and keeps the session timers of both legs, either ending the call (D6).
func (c *call) watch() {
	c.m.relay.ResetInactivity()
	c.s.goCall(func() {
		timers := [2]*sessionTimer{}
		timers[c.inSide().media()] = c.timer
		c.mu.Lock()
		timers[c.outSide().media()] = c.outTimer
		c.mu.Unlock()
		var expire, refresh [2]<-chan time.Time
		arm := func(i media.Side) {
			expire[i], refresh[i] = nil, nil
			switch t := timers[i]; {
			case t == nil:
			case t.we:
				// RFC 4028 §10: refresh "once half the session interval has elapsed".
				refresh[i] = time.After(t.interval / 2)
			default:
				expire[i] = time.After(t.expiry())
			}
		}
		arm(media.SideTrunk)
		arm(media.SideLine)
		for {
			var sd side
			select {
			case <-c.ctx.Done():
				return
			case t := <-c.refresh[media.SideTrunk]:
				if t != nil {
					timers[media.SideTrunk] = t
				}
				arm(media.SideTrunk)
				continue
			case t := <-c.refresh[media.SideLine]:
				if t != nil {
					timers[media.SideLine] = t
				}
				arm(media.SideLine)
				continue
			case <-expire[media.SideTrunk]:
				sd = sideTrunk
			case <-expire[media.SideLine]:
				sd = sideLine
			case <-refresh[media.SideTrunk]:
				sd = sideTrunk
			case <-refresh[media.SideLine]:
				sd = sideLine
			}
			i := sd.media()
			if t := timers[i]; t.we {
				// RFC 4028 §10: when the refresh "times out or generates a 408
				// or 481 response", the session is over; so is any other failure.
				if nt, ok := c.refreshLeg(sd, t); ok {
					timers[i] = nt
					arm(i)
					continue
				}
			}
			c.log.Info("session expired", zap.Stringer("leg", sd))
			c.end(outcomeSessionExpired, sideNone)
			return
		}
	})
}

// refreshLeg refreshes sd's session, where we are the refresher (RFC 4028
// §7.4): with UPDATE when the peer allows it (no offer needed), else with a
// re-INVITE carrying our unchanged SDP (same o= version, RFC 3264 §8). The
// refresh must succeed before the session would expire. It returns the
// leg's timer from then on.
func (c *call) refreshLeg(sd side, t *sessionTimer) (*sessionTimer, bool) {
	type dialog interface {
		Do(context.Context, *sip.Request) (*sip.Response, error)
		WriteRequest(*sip.Request) error
	}
	var (
		d      dialog
		target sip.Uri
		allow  headerReader
		tp     string
	)
	if sd == c.inSide() {
		d, allow, tp = c.in, c.in.InviteRequest, c.in.InviteRequest.Transport()
		ct := c.in.InviteRequest.Contact()
		if ct == nil {
			return nil, false
		}
		target = ct.Address
	} else {
		c.mu.Lock()
		out := c.out
		c.mu.Unlock()
		if out == nil || out.InviteResponse == nil || out.InviteResponse.Contact() == nil {
			return nil, false
		}
		d, allow, target, tp = out, out.InviteResponse, out.InviteResponse.Contact().Address, out.InviteRequest.Transport()
	}
	method := sip.INVITE
	if allows(allow, sip.UPDATE) {
		method = sip.UPDATE
	}
	req := sip.NewRequest(method, target)
	req.AppendHeader(sip.NewHeader("Session-Expires", itoa(int(t.interval/time.Second))+";refresher=uac"))
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	f := c.face(sd)
	ct := f.contact(tp)
	req.AppendHeader(&ct)
	if method == sip.INVITE {
		body, err := c.m.offer(sd, f.media)
		if err != nil {
			return nil, false
		}
		req.AppendHeader(sdpType())
		req.SetBody(body)
	}
	c.s.fromListener(req)
	ctx, cancel := context.WithTimeout(c.ctx, min(c.s.byeTimeout(), t.interval/2))
	defer cancel()
	res, err := d.Do(ctx, req)
	if err != nil || !res.IsSuccess() {
		c.log.Info("session refresh failed", zap.Stringer("leg", sd), zap.Stringer("method", method),
			zap.Stringer("response", res), zap.Error(err))
		return nil, false
	}
	if method == sip.INVITE {
		ack := sip.NewRequest(sip.ACK, target)
		c.s.fromListener(ack)
		if err := d.WriteRequest(ack); err != nil {
			c.log.Debug("refresh ACK not sent", zap.Error(err))
		}
		if len(res.Body()) > 0 {
			if err := c.m.applyAnswer(sd, res.Body(), c.originOf(sd, res.Source())); err != nil {
				c.log.Info("refresh answer refused", zap.Error(err))
				return nil, false
			}
		}
	}
	// RFC 4028 §7.2: the 2xx's Session-Expires is the interval from now on,
	// and names the refresher.
	if se, ok := sessionExpires(res); ok {
		return &sessionTimer{interval: se, we: refresher(res) != "uas"}, true
	}
	return t, true
}

// allows reports whether m's Allow header lists method.
func allows(m headerReader, method sip.RequestMethod) bool {
	for _, h := range m.GetHeaders("Allow") {
		for _, v := range strings.Split(h.Value(), ",") {
			if strings.EqualFold(strings.TrimSpace(v), string(method)) {
				return true
			}
		}
	}
	return false
}
