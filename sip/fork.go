package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// The dialling leg, several at once (RFC 3261 §16.7, as a B2BUA forks): an
// inbound call rings the line's static contact, if it has one, and every
// device registered for it, each on a dialog of its own, in parallel. The
// first 2xx wins and is the call's far side; every other branch is
// abandoned: CANCEL once it has answered provisionally (§9.1), and a 2xx
// that comes anyway is ACKed and hung up with BYE at once (§13.2.2.4,
// pendingInvite.settle). A 6xx from any branch ends the search (§16.7 step
// 5). The caller hears one 180 (or the first branch's early media), never
// one per device. A line's own call is a fork of one branch: the trunk.

// branch is one INVITE of a fork.
type branch struct {
	req  *sip.Request
	face *face           // what this branch's peer is told
	dua  *sipgo.DialogUA // the face's: natDUA for a device reached through its flow, upDua for a provider we register at
	// nat: this peer's media comes through NAT (the line's or trunk's nat,
	// or the device's registration from behind NAT).
	nat    bool
	device string // the registered device's username; "" for a static contact or the trunk
	devNAT bool   // that device registered from behind NAT

	out *sipgo.DialogClientSession
	p   *pendingInvite
}

// fork is what the branches of one dial share: which provisional
// responses reached the caller, and whether a branch has won.
type fork struct {
	c        *call
	warn     bool
	inAnswer []byte
	done     chan *branch // each branch once its INVITE transaction ended

	mu                   sync.Mutex
	decided, early, rang bool
}

// lineBranches are the INVITEs that ring c's line: its static contact, and
// each of its devices' registered contacts (a device whose registration
// came from behind NAT, or over TCP or TLS, through the address it came
// from: symmetric signalling, RFC 3581 §4 and RFC 5626's flow). A device
// registered at the static contact itself rings once. Each offers the
// line's leg at its face's address (one offer per face).
func (s *Server) lineBranches(c *call, req *sip.Request, binds []binding) ([]*branch, error) {
	offers := map[netip.Addr][]byte{}
	offer := func(adv netip.Addr) ([]byte, error) {
		if b, ok := offers[adv]; ok {
			return b, nil
		}
		b, err := c.m.offer(sideLine, adv)
		offers[adv] = b
		return b, err
	}
	var out []*branch
	static := ""
	if c.line.Contact != "" {
		static = contactKey(c.line.contact)
		r := s.lineInvite(c, req, *c.line.contact.Clone())
		f, err := s.sealInvite(r, offer)
		if err != nil {
			return nil, err
		}
		out = append(out, &branch{req: r, face: f, dua: f.dua, nat: c.line.NAT})
	}
	for _, b := range binds {
		if !b.viaFlow() && contactKey(b.uri) == static {
			continue
		}
		r := s.lineInvite(c, req, b.target())
		if b.viaFlow() {
			r.SetDestination(b.Flow.String())
		}
		f, err := s.sealInvite(r, offer)
		if err != nil {
			return nil, err
		}
		dua := f.dua
		if b.viaFlow() {
			dua = f.natDUA
		}
		nat := b.behindNAT()
		out = append(out, &branch{req: r, face: f, dua: dua, nat: c.line.NAT || nat, device: b.Device, devNAT: nat})
	}
	return out, nil
}

// dial sends every branch's INVITE to the far side, relays their progress
// to the caller (unless warn: then the caller hears only our 180), and on
// the first answer connects the call: directly, or after the warning when
// warn is set.
func (c *call) dial(branches []*branch, inAnswer []byte, warn bool) {
	s := c.s
	far := c.outSide()
	ringCtx, cancel := context.WithTimeout(c.ctx, s.timers().NoAnswer)
	defer cancel()
	f := &fork{c: c, warn: warn, inAnswer: inAnswer, done: make(chan *branch, len(branches))}
	var sent []*branch
	var sendErr error
	for _, b := range branches {
		out, err := b.dua.WriteInvite(ringCtx, b.req)
		if err != nil {
			c.log.Warn("INVITE not sent", zap.Stringer("to", far), zap.String("target", b.req.Recipient.String()), zap.Error(err))
			sendErr = err
			continue
		}
		if len(sent) == 0 && c.dir == inbound {
			s.metrics.transit.Observe(time.Since(c.received).Seconds())
		}
		b.out = out
		b.p = c.waitAnswer(out, func(res *sip.Response) { f.progress(b, res) })
		go func() {
			<-b.p.done
			f.done <- b // buffered for every branch: never blocks
		}()
		sent = append(sent, b)
	}
	if len(sent) == 0 {
		c.fail(c.farOutcome("failed"), sideNone, fmt.Errorf("%w: %w", ErrUnavailable, sendErr))
		return
	}
	c.mu.Lock()
	c.ringing = true
	c.mu.Unlock()

	w, err := f.wait(ringCtx, len(sent))
	if w == nil {
		// No answer, a 6xx, every branch refused, the caller's CANCEL or our
		// teardown: the caller hears its final response now, not when the
		// far side deigns to respond; the branches still ringing are
		// CANCELled in the background.
		heard := f.abandon(sent, nil, false)
		c.farFailed(err, ringCtx)
		if len(heard) > 0 && ringCtx.Err() != nil {
			awaitCancels(heard, s.byeTimeout())
		}
		return
	}
	f.abandon(sent, w, true)
	out := w.out
	if !c.setOut(out, w.face) {
		// Ended as it was answered: that answer is ACKed and hung up.
		w.p.abandon()
		c.refuse(ErrShuttingDown)
		return
	}
	if w.device != "" {
		c.setDevice(w.device, w.devNAT)
		if len(sent) > 1 {
			c.log.Info("answered by device", zap.String("device", w.device), zap.Int("rung", len(sent)))
		}
	}
	ackCtx, ackCancel := context.WithTimeout(context.Background(), s.byeTimeout())
	err = out.Ack(ackCtx)
	ackCancel()
	if err != nil || !c.up(roleOut) {
		c.s.goCall(func() { c.byeOut(out) })
		c.fail(c.farOutcome("failed"), sideNone, fmt.Errorf("%w: far side's 2xx not ACKed", ErrShuttingDown))
		return
	}
	s.reg.bind(out.ID, c, roleOut, answerPeers(w))
	context.AfterFunc(out.Context(), func() { c.end(outcomeCompleted, far) })
	c.mu.Lock()
	if s.timers().SessionExpires > 0 {
		c.outTimer = outTimer(out.InviteResponse)
	}
	c.mu.Unlock()
	if err := c.m.applyAnswer(far, out.InviteResponse.Body(), originFrom(w.nat, out.InviteResponse.Source())); err != nil {
		c.log.Info("answer SDP refused", zap.Stringer("from", far), zap.Error(err))
		c.fail(c.farOutcome("failed"), sideNone, err)
		return
	}
	if warn && !c.warn() {
		return
	}
	c.connect(inAnswer)
}

// answerPeers are where the answering branch's in-dialog requests may come
// from: where its 2xx came from, its Contact's host, and where we sent the
// INVITE (its Request-URI's host, or the flow of a device behind NAT).
func answerPeers(w *branch) []netip.Addr {
	res := w.out.InviteResponse
	peers := dialogPeers(res.Source(), res.Contact())
	for _, h := range []string{w.req.Recipient.Host, w.req.Destination()} {
		a, err := netip.ParseAddr(h)
		if err != nil {
			ap, perr := netip.ParseAddrPort(h)
			if perr != nil {
				continue
			}
			a = ap.Addr()
		}
		if !slices.Contains(peers, a.Unmap()) {
			peers = append(peers, a.Unmap())
		}
	}
	return peers
}

// wait returns the first branch of n to answer 2xx, or none and the error
// the caller is to be answered with: a 6xx at once, else once every branch
// has refused the best refusal (rank), or ctx's end.
func (f *fork) wait(ctx context.Context, n int) (*branch, error) {
	defer f.decide()
	var best *sip.Response
	var other error
	for ; n > 0; n-- {
		select {
		case b := <-f.done:
			var dr *sipgo.ErrDialogResponse
			switch {
			case b.p.err == nil:
				return b, nil
			case errors.As(b.p.err, &dr) && dr.Res.StatusCode >= 600:
				return nil, b.p.err // RFC 3261 §16.7 step 5: a 6xx ends the search
			case errors.As(b.p.err, &dr):
				if best == nil || rank(dr.Res.StatusCode) > rank(best.StatusCode) {
					best = dr.Res
				}
			default:
				other = b.p.err
			}
			if n > 1 {
				f.c.log.Debug("branch refused; others still ringing", zap.String("target", b.req.Recipient.String()), zap.Error(b.p.err))
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if best != nil {
		return nil, &sipgo.ErrDialogResponse{Res: best}
	}
	return nil, other
}

// rank orders refusals when every branch refused (RFC 3261 §16.7 step 6,
// simplified for a household's phones): a busy phone says most about the
// person, any other refusal means they were not reached.
func rank(code int) int {
	if code == sip.StatusBusyHere || code == 600 {
		return 2
	}
	return 1
}

// decide stops relaying the branches' provisional responses.
func (f *fork) decide() {
	f.mu.Lock()
	f.decided = true
	f.mu.Unlock()
}

// abandon gives up every branch but w: CANCEL once it has answered
// provisionally, and a 2xx that comes after all ACKed and hung up. In the
// background when a branch has won, so that its call connects at once. It
// returns the branches that had responded (their CANCEL goes out now).
func (f *fork) abandon(sent []*branch, w *branch, background bool) []*branch {
	var heard []*branch
	for _, b := range sent {
		if b == w {
			continue
		}
		if background {
			f.c.s.goCall(func() { b.p.abandon() })
			continue
		}
		if b.p.abandon() {
			heard = append(heard, b)
		}
	}
	return heard
}

// awaitCancels waits, at most d in all, for abandoned branches to finish
// their CANCEL (pendingInvite.awaitCancel).
func awaitCancels(ps []*branch, d time.Duration) {
	deadline := time.Now().Add(d)
	for _, b := range ps {
		b.p.awaitCancel(max(time.Until(deadline), 0))
	}
}

// progress relays a branch's provisional response to the caller: the
// first early media (183 with SDP, RFC 3960) takes the line's leg of the
// relay and reaches the caller one way; otherwise one 180, whichever
// branch rang first. Nothing after a branch has won, nor on a warned call
// (its caller hears only our 180).
func (f *fork) progress(b *branch, res *sip.Response) {
	if !res.IsProvisional() || res.StatusCode == sip.StatusTrying || f.warn {
		return
	}
	c, far := f.c, f.c.outSide()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.decided {
		return
	}
	if len(res.Body()) > 0 && !f.early && c.m.applyAnswer(far, res.Body(), originFrom(b.nat, res.Source())) == nil {
		f.early = true
		c.m.earlyMedia(far)
		_ = c.provisional(sip.StatusSessionInProgress, "Session Progress", f.inAnswer, sdpType())
		return
	}
	if !f.rang && !f.early {
		f.rang = true
		_ = c.provisional(sip.StatusRinging, "Ringing", nil)
	}
}
