package sip

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/sip/siptest"
)

// loadKind is what one call of the load test does.
type loadKind int

const (
	loadAllowTrunkHangup loadKind = iota // allowed, RTP both ways, trunk hangs up
	loadAllowLineHangup                  // allowed, RTP both ways, line hangs up (D1)
	loadBlocked                          // 603, never reaches the line
	loadWarnRefused                      // warned, the line hangs up during the warning
	loadWarnAccepted                     // warned, the line presses 1, then hangs up
)

// 200 calls at once through one instance: every kind of call completes, and
// afterwards nothing is left: no call, no dialog (nor a 2xx waiting for its
// ACK), every relay port back in the pool, and, once the server and phones
// are stopped, not one goroutine more than before the test.
func TestD1D3ManyConcurrentCallsLeaveNothingBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	leaks := goleak.IgnoreCurrent()
	const (
		nAllow  = 160
		nBlock  = 20
		nWarn   = 20
		nCalls  = nAllow + nBlock + nWarn
		nHolds  = nAllow + nWarn // calls that reach the line and can be held up
		rtpEach = 5
	)
	e := newEnv(t, withCfg(func(c *Config) {
		// Two port pairs per call, all at once, plus room.
		c.Media.PortMin, c.Media.PortMax = 54000, 55999
		c.Timers.WarningChoice = 10 * time.Second // held at the barrier, then decided
		c.Timers.NoAnswer = 10 * time.Second
		// The default store deadline stays: a local store's answer is
		// used even when 200 calls at once delay the screening goroutine.
	}))
	ctx := ctxT(t, 30*time.Second)
	now := time.Now()
	var suspects []blocklist.Entry
	kinds := make([]loadKind, nCalls)
	callers := make([]string, nCalls)
	for i := range nCalls {
		switch {
		case i < nAllow:
			callers[i] = fmt.Sprintf("+44207946%04d", 300+i) // distinct: no rule links them
			kinds[i] = loadAllowTrunkHangup + loadKind(i%2)
		case i < nAllow+nBlock:
			callers[i], kinds[i] = callerScam, loadBlocked
		default:
			// Distinct reported numbers: a warned caller is in cooldown afterwards (D3).
			callers[i] = fmt.Sprintf("+44207946%04d", 700+i-nAllow-nBlock)
			kinds[i] = loadWarnRefused + loadKind(i%2)
			suspects = append(suspects, blocklist.Entry{Number: callers[i], Status: blocklist.StatusReported,
				Reason: "load", Source: "test", Reports: 1, FirstSeen: now, LastSeen: now})
		}
	}
	if _, _, err := e.store.Put(ctx, suspects); err != nil {
		t.Fatal(err)
	}
	idle := goleak.IgnoreCurrent() // the running server and phones, no call yet

	// The line's side: every ringing call is handed to the goroutine of its caller.
	ringing := make(map[string]chan *siptest.Incoming, nHolds)
	for i, num := range callers {
		if kinds[i] != loadBlocked {
			ringing[num] = make(chan *siptest.Incoming, 1)
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for range nHolds {
			in, err := e.line.Incoming(ctx)
			if err != nil {
				return // the callers' goroutines report what is missing
			}
			if ch, ok := ringing[in.Req.From().Address.User]; ok {
				ch <- in
			} else {
				t.Errorf("line rang with unexpected caller %q", in.Req.From().Address.User)
				_ = in.Reject(500, "Unexpected")
			}
		}
	})

	// Calls that reach the line hold until all of them are up at once.
	var arrived sync.WaitGroup
	arrived.Add(nHolds)
	release := make(chan struct{})
	hold := func() error {
		arrived.Done()
		select {
		case <-release:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("never released: %w", ctx.Err())
		}
	}
	errs := make(chan error, nCalls)
	for i := range nCalls {
		wg.Go(func() {
			if err := loadCall(ctx, e, callers[i], kinds[i], ringing[callers[i]], rtpEach, hold); err != nil {
				errs <- fmt.Errorf("call %d (%s): %w", i, callers[i], err)
			}
		})
	}
	allUp := make(chan struct{})
	go func() { arrived.Wait(); close(allUp) }()
	select {
	case <-allUp:
		if n := e.s.ActiveCalls(); n != nHolds {
			t.Errorf("%d calls alive at the peak, want %d", n, nHolds)
		}
	case err := <-errs:
		t.Error(err)
	case <-ctx.Done():
		t.Error("not every call came up")
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	e.waitNoCalls()
	if n := e.s.reg.pendingAcks(); n != 0 {
		t.Errorf("%d dialogs still wait for an ACK", n)
	}
	if free, size := e.s.ports.Free(), e.s.ports.Size(); free != size {
		t.Errorf("relay ports: %d of %d back in the pool", free, size)
	}
	// Every per-call goroutine is gone while the server still runs (the
	// phones keep their RTP sockets for inspection until they close)...
	if err := e.waitIdle(ctx); err != nil {
		t.Fatalf("call handlers still running: %v", err)
	}
	// Warm port pairs keep their receive goroutines until the server closes.
	if err := noLeaks(ctx, idle, goleak.IgnoreAnyFunction("github.com/cleanline/cleanline/sip/siptest.(*RTP).read"),
		goleak.IgnoreAnyFunction("github.com/cleanline/cleanline/sip/media.(*portPair).readRTP"),
		goleak.IgnoreAnyFunction("github.com/cleanline/cleanline/sip/media.(*portPair).readRTCP")); err != nil {
		t.Error(err)
	}
	// ...and once everything the test started is stopped, nothing remains.
	// Stop everything the test started, then no goroutine may remain.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := e.s.Shutdown(sctx); err != nil {
		t.Error(err)
	}
	if err := e.s.Close(); err != nil {
		t.Error(err)
	}
	e.trunk.Close()
	e.line.Close()
	if err := noLeaks(ctx, leaks); err != nil {
		t.Error(err)
	}
}

// noLeaks waits until goleak finds nothing, or ctx ends. Transactions that
// saw a retransmission under load may take a few seconds (sipgo waits T2
// before re-sending an ACK) to end by themselves; that is not a leak.
func noLeaks(ctx context.Context, opts ...goleak.Option) error {
	for {
		err := goleak.Find(opts...)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond): // re-check pace, no ordering relies on it
		}
	}
}

// loadCall runs one call of the load test from both phones' sides.
func loadCall(ctx context.Context, e *env, caller string, kind loadKind, ringing <-chan *siptest.Incoming,
	rtpEach int, hold func() error) error {
	out, err := e.trunk.Dial(ctx, e.lineURI(), siptest.DialOptions{FromUser: caller})
	if err != nil {
		return err
	}
	final := func(want int) error {
		res, err := out.WaitFinal(ctx)
		if err != nil {
			return err
		}
		if res.StatusCode != want {
			return fmt.Errorf("caller got %d %s, want %d", res.StatusCode, res.Reason, want)
		}
		return nil
	}
	if kind == loadBlocked {
		return final(603)
	}
	var in *siptest.Incoming
	select {
	case in = <-ringing:
	case <-ctx.Done():
		return errors.New("line never rang")
	}
	if err := in.Answer(); err != nil {
		return fmt.Errorf("line answer: %w", err)
	}
	switch kind {
	case loadWarnRefused:
		if err := in.RTP.WaitCount(ctx, 1); err != nil {
			return fmt.Errorf("no warning at the line: %w", err)
		}
		if err := hold(); err != nil {
			return err
		}
		if err := in.Bye(ctx); err != nil {
			return fmt.Errorf("line BYE: %w", err)
		}
		return final(603)
	case loadWarnAccepted:
		// The warning is audible, so its digit collector is listening.
		if err := in.RTP.WaitCount(ctx, 1); err != nil {
			return fmt.Errorf("no warning at the line: %w", err)
		}
		if err := hold(); err != nil {
			return err
		}
		res, err := in.Request(ctx, "INFO", []byte("Signal=1\r\nDuration=100\r\n"), "application/dtmf-relay")
		if err != nil || res.StatusCode != 200 {
			return fmt.Errorf("INFO 1: %v %v", res, err)
		}
		if err := final(200); err != nil {
			return err
		}
		return hangup(ctx, out, in, false)
	}
	if err := final(200); err != nil {
		return err
	}
	if err := out.RTP.Send(rtpEach, 8, 0x11); err != nil {
		return err
	}
	if err := in.RTP.WaitCount(ctx, rtpEach); err != nil {
		return fmt.Errorf("line got %d of %d packets: %w", in.RTP.Count(), rtpEach, err)
	}
	if err := in.RTP.Send(rtpEach, 8, 0x22); err != nil {
		return err
	}
	if err := out.RTP.WaitCount(ctx, rtpEach); err != nil {
		return fmt.Errorf("caller got %d of %d packets: %w", out.RTP.Count(), rtpEach, err)
	}
	if err := hold(); err != nil {
		return err
	}
	return hangup(ctx, out, in, kind == loadAllowTrunkHangup)
}

// hangup ends a connected call from one side and waits for the other to get its BYE.
func hangup(ctx context.Context, out *siptest.Outgoing, in *siptest.Incoming, byTrunk bool) error {
	bye, other := in.Bye, out.Ended()
	if byTrunk {
		bye, other = out.Bye, in.Ended()
	}
	if err := bye(ctx); err != nil {
		return fmt.Errorf("BYE: %w", err)
	}
	select {
	case <-other:
		return nil
	case <-ctx.Done():
		return errors.New("the other leg never got BYE")
	}
}
