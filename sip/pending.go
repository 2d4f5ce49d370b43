package sip

import (
	"context"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// pendingInvite is an INVITE we sent whose answer is awaited on its own
// goroutine, so that the call can give up on the far side at once (no
// answer, the caller's CANCEL, shutdown) whatever the far side does.
//
// Giving up cannot always end the INVITE: RFC 3261 §9.1, "If no
// provisional response has been received, the CANCEL request MUST NOT be
// sent; rather, the client MUST wait for the arrival of a provisional
// response before sending the request". So an abandoned INVITE is left to
// finish in the background (a straggler): sipgo's WaitAnswer, its context
// cancelled, sends CANCEL as soon as a provisional arrives; a 2xx that
// arrives after all is ACKed and hung up at once (settle). Its lifetime is
// bounded by the transaction's timers: Timer B (64*T1) for a first
// response, then the CANCEL's own transaction and 64*T1 for the 487
// (§9.1); Server.Close ends it at once.
type pendingInvite struct {
	c    *call
	out  *sipgo.DialogClientSession
	stop context.CancelCauseFunc // cancels WaitAnswer's context
	done chan struct{}           // closed when WaitAnswer returned
	err  error                   // WaitAnswer's result, set before done

	mu        sync.Mutex
	abandoned bool // the call gave up: responses are no longer relayed
	finished  bool // WaitAnswer returned
	heard     bool // a response arrived, so a CANCEL can go out now
}

// waitAnswer starts waiting for out's answer; relay sees each response
// until the call abandons the INVITE.
func (c *call) waitAnswer(out *sipgo.DialogClientSession, relay func(*sip.Response)) *pendingInvite {
	ctx, stop := context.WithCancelCause(c.s.life)
	p := &pendingInvite{c: c, out: out, stop: stop, done: make(chan struct{})}
	go p.wait(ctx, relay)
	return p
}

func (p *pendingInvite) wait(ctx context.Context, relay func(*sip.Response)) {
	opts := p.c.credentials()
	challenges := 0
	opts.OnResponse = func(res *sip.Response) error {
		if challenge(res.StatusCode) {
			// RFC 3261 §22.2: sipgo sends the INVITE again once with the
			// credentials (CSeq up by one); a second challenge refuses
			// them, unless it says stale=true (RFC 7616 §3.3: the answer
			// was right, its nonce had expired), which is answered once.
			if challenges++; opts.Password == "" || challenges > 2 || challenges == 2 && !staleChallenge(res) {
				return &sipgo.ErrDialogResponse{Res: res}
			}
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.heard = !challenge(res.StatusCode) // the INVITE sent again has heard nothing yet
		if !p.abandoned {
			relay(res)
		}
		return nil
	}
	err := p.out.WaitAnswer(ctx, opts)
	p.mu.Lock()
	p.err, p.finished = err, true
	abandoned := p.abandoned
	p.mu.Unlock()
	p.stop(nil)
	close(p.done)
	if abandoned {
		p.settle()
		p.c.s.straggling.Add(-1)
	}
}

// abandon stops relaying and lets the INVITE end in the background. It
// reports whether the far side has responded: then the CANCEL goes out at
// once and the caller may wait (bounded) for it to complete.
func (p *pendingInvite) abandon() (heard bool) {
	p.mu.Lock()
	p.abandoned = true
	finished := p.finished
	heard = p.heard
	if !finished {
		p.c.s.straggling.Add(1)
	}
	p.mu.Unlock()
	p.stop(nil)
	if finished {
		p.settle() // answered just as we gave up
	}
	return heard
}

// settle hangs up an abandoned INVITE that was answered after all: the
// 2xx is ACKed (RFC 3261 §13.2.2.4) and the dialog ended with BYE at once
// (§15: a B2BUA must not leave an answered leg up; the call it belonged to
// is gone, its relay closed).
func (p *pendingInvite) settle() {
	res := p.out.InviteResponse
	if res == nil || !res.IsSuccess() {
		return
	}
	p.c.log.Info("abandoned INVITE answered: hanging up", zap.Stringer("leg", p.c.outSide()))
	ctx, cancel := context.WithTimeout(context.Background(), p.c.s.byeTimeout())
	defer cancel()
	if err := p.out.Ack(ctx); err != nil {
		p.c.log.Info("ACK of a late answer not sent", zap.Error(err))
		return
	}
	if err := p.out.Bye(ctx); err != nil {
		p.c.log.Info("BYE not answered", zap.Stringer("leg", p.c.outSide()), zap.Error(err))
	}
}

// awaitCancel waits, at most d, for an abandoned INVITE that has been
// answered provisionally to finish its CANCEL, so that a Shutdown right
// after does not close the sockets before the CANCEL is out.
func (p *pendingInvite) awaitCancel(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
	}
}
