package sip

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Session timers (RFC 4028). On the leg we answer, the caller refreshes
// ("refresher=uac") and we watch; on the leg we dial, the line chooses, and
// we refresh with UPDATE when it makes us the refresher, or watch otherwise.
// A session nobody refreshed ends both legs (D6).

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

// sessionTimerFor decides the timer of a leg we answer. RFC 4028 §9: a UAS
// whose caller supports timers sets the interval (never below the caller's
// Min-SE, may shorten the caller's Session-Expires) and the refresher; we
// make the caller refresh. A caller without timer support gets none.
func (s *Server) sessionTimerFor(req *sip.Request) *sessionTimer {
	if s.cfg.Timers.SessionExpires <= 0 || !supports(req, "timer") {
		return nil
	}
	interval := s.cfg.Timers.SessionExpires
	if se, ok := sessionExpires(req); ok && se < interval {
		interval = se
	}
	return &sessionTimer{interval: interval}
}

// addHeaders puts the negotiated timer in our 2xx (RFC 4028 §9: with
// refresher=uac the 2xx carries "Require: timer").
func (t *sessionTimer) addHeaders(res *sip.Response) {
	if t == nil {
		return
	}
	res.AppendHeader(sip.NewHeader("Session-Expires", itoa(int(t.interval/time.Second))+";refresher=uac"))
	res.AppendHeader(sip.NewHeader("Require", "timer"))
}

// timerOffer asks for a session timer on an INVITE we send (RFC 4028 §7.1).
func (s *Server) timerOffer(req *sip.Request) {
	if s.cfg.Timers.SessionExpires <= 0 {
		return
	}
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	req.AppendHeader(sip.NewHeader("Session-Expires", itoa(int(s.cfg.Timers.SessionExpires/time.Second))))
	req.AppendHeader(sip.NewHeader("Min-SE", itoa(int(s.cfg.Timers.MinSE/time.Second))))
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

// refreshed is called for every refresh (re-INVITE or UPDATE) a leg's peer sends.
func (c *call) refreshed(sd side) {
	select {
	case c.refresh[sd.media()] <- struct{}{}:
	default:
	}
}

// watch runs for an answered call until it ends: media inactivity on either
// leg and session timers on both, each ending the call (D6).
func (c *call) watch() {
	c.s.goCall(func() {
		inact := c.s.cfg.Timers.MediaInactivity
		var tick <-chan time.Time
		if inact > 0 {
			t := time.NewTicker(max(inact/8, 20*time.Millisecond))
			defer t.Stop()
			tick = t.C
		}
		last := [2]uint64{c.m.received(sideTrunk), c.m.received(sideLine)}
		since := [2]time.Time{time.Now(), time.Now()}

		timers := [2]*sessionTimer{}
		timers[c.inSide().media()] = c.timer
		c.mu.Lock()
		timers[c.outSide().media()] = c.outTimer
		c.mu.Unlock()
		var expire [2]<-chan time.Time
		var refreshT <-chan time.Time
		arm := func(i int) {
			t := timers[i]
			if t == nil {
				return
			}
			if t.we {
				refreshT = time.After(t.interval / 2)
			} else {
				expire[i] = time.After(t.expiry())
			}
		}
		arm(0)
		arm(1)
		for {
			select {
			case <-c.ctx.Done():
				return
			case now := <-tick:
				for _, sd := range []side{sideTrunk, sideLine} {
					i := sd.media()
					if n := c.m.received(sd); n != last[i] {
						last[i], since[i] = n, now
					} else if now.Sub(since[i]) >= inact {
						c.log.Info("media inactive", zap.Stringer("leg", sd), zap.Duration("silent", now.Sub(since[i])))
						c.end(outcomeMediaInactive, sideNone)
						return
					}
				}
			case <-c.refresh[0]:
				arm(0)
			case <-c.refresh[1]:
				arm(1)
			case <-expire[0]:
				c.log.Info("session expired", zap.Stringer("leg", sideTrunk))
				c.end(outcomeSessionExpired, sideNone)
				return
			case <-expire[1]:
				c.log.Info("session expired", zap.Stringer("leg", sideLine))
				c.end(outcomeSessionExpired, sideNone)
				return
			case <-refreshT:
				if !c.refreshOut() {
					c.end(outcomeSessionExpired, sideNone)
					return
				}
				arm(int(c.outSide().media()))
			}
		}
	})
}

// refreshOut refreshes the dialled leg's session with an UPDATE without
// SDP (RFC 4028 §7.4 allows either method; UPDATE needs no offer).
func (c *call) refreshOut() bool {
	c.mu.Lock()
	out, t := c.out, c.outTimer
	c.mu.Unlock()
	if out == nil || t == nil {
		return true
	}
	req := sip.NewRequest(sip.UPDATE, out.InviteResponse.Contact().Address)
	req.AppendHeader(sip.NewHeader("Session-Expires", itoa(int(t.interval/time.Second))+";refresher=uac"))
	req.AppendHeader(sip.NewHeader("Supported", "timer"))
	ctx, cancel := context.WithTimeout(c.ctx, c.s.byeTimeout())
	defer cancel()
	res, err := out.Do(ctx, req)
	if err != nil || res.StatusCode >= 300 {
		c.log.Info("session refresh failed", zap.Error(err))
		return false
	}
	return true
}
