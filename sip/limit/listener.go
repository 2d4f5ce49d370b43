package limit

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// Backoff bounds of the accept loop after an error: the first wait, and the
// most it doubles to.
const (
	BackoffMin = 5 * time.Millisecond
	BackoffMax = time.Second
)

// Config configures a Listener.
type Config struct {
	// Conns counts and limits the connections accepted; several listeners
	// may share one. Nil: no limit.
	Conns *Conns
	// Timeouts bound each accepted connection's reads. Leave them zero on
	// the listener under tls.NewListener, and put Deadlines above it.
	Timeouts Timeouts
	// OnRefused, when set, is called for each connection closed at once
	// because a limit was reached (RefusedPerSource, RefusedMax).
	OnRefused func(reason string)
	// OnAcceptError, when set, is called for each error Accept survived.
	OnAcceptError func(err error)
	// FailingAfter is how long Accept must keep failing before Health
	// reports it. Default 1s.
	FailingAfter time.Duration
}

// Listener wraps a net.Listener for a server that stops serving on the
// first Accept error (as sipgo's TCP transport does): its Accept returns
// only a connection, or an error once the Listener is closed (or its inner
// listener closed under it). Every other error (EMFILE, ENFILE, ENOBUFS,
// ECONNABORTED...) is recorded, and Accept waits (BackoffMin doubling to
// BackoffMax) and accepts again. A connection beyond the Conns limits is
// closed at once and never returned.
type Listener struct {
	inner net.Listener
	cfg   Config

	closeOnce sync.Once
	closed    chan struct{}

	mu           sync.Mutex
	dead         error     // why the accept loop ended, when not by Close
	lastErr      error     // the last Accept error survived
	lastErrAt    time.Time // when
	failingSince time.Time // first error of the current run of errors; zero: the last Accept succeeded
	accepted     int64
	errs         int64
}

// Listen wraps inner.
func Listen(inner net.Listener, cfg Config) *Listener {
	if cfg.FailingAfter <= 0 {
		cfg.FailingAfter = time.Second
	}
	return &Listener{inner: inner, cfg: cfg, closed: make(chan struct{})}
}

// Addr is the inner listener's address.
func (l *Listener) Addr() net.Addr { return l.inner.Addr() }

// Close stops the Listener: a blocked Accept returns net.ErrClosed.
// Connections already accepted stay open.
func (l *Listener) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		close(l.closed)
		err = l.inner.Close()
	})
	return err
}

func (l *Listener) isClosed() bool {
	select {
	case <-l.closed:
		return true
	default:
		return false
	}
}

// Accept returns the next connection within the limits.
func (l *Listener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			if l.isClosed() {
				return nil, net.ErrClosed
			}
			if errors.Is(err, net.ErrClosed) {
				// Closed under us: nothing will accept on it again.
				l.setDead(fmt.Errorf("listener closed: %w", err))
				return nil, err
			}
			backoff = min(max(2*backoff, BackoffMin), BackoffMax)
			l.failed(err)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.closed:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		backoff = 0
		l.succeeded()
		if conn := l.admit(c); conn != nil {
			return conn, nil
		}
	}
}

// admit counts c against the limits and wraps it, or closes it.
func (l *Listener) admit(c net.Conn) net.Conn {
	w := WrapConn(c, l.cfg.Timeouts)
	if l.cfg.Conns == nil {
		return w
	}
	src := sourceOf(c.RemoteAddr())
	if reason := l.cfg.Conns.take(src); reason != "" {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // RST: no TIME_WAIT kept for a refused flood
		}
		if l.cfg.OnRefused != nil {
			l.cfg.OnRefused(reason)
		}
		_ = c.Close()
		return nil
	}
	w.release = func() { l.cfg.Conns.release(src) }
	return w
}

func (l *Listener) failed(err error) {
	l.mu.Lock()
	now := time.Now()
	l.lastErr, l.lastErrAt = err, now
	if l.failingSince.IsZero() {
		l.failingSince = now
	}
	l.errs++
	l.mu.Unlock()
	if l.cfg.OnAcceptError != nil {
		l.cfg.OnAcceptError(err)
	}
}

func (l *Listener) succeeded() {
	l.mu.Lock()
	l.failingSince = time.Time{}
	l.accepted++
	l.mu.Unlock()
}

func (l *Listener) setDead(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead == nil {
		l.dead = err
	}
}

// Serve runs serve (a server's loop over this Listener, or over a listener
// stacked on it) and, should it return while the Listener is open, records
// that nothing accepts on it any more (Health reports it).
func (l *Listener) Serve(serve func() error) error {
	err := serve()
	if !l.isClosed() {
		if err == nil {
			err = errors.New("returned")
		}
		l.setDead(fmt.Errorf("accept loop ended: %w", err))
	}
	return err
}

// Stats are a Listener's counts and its last Accept error.
type Stats struct {
	Accepted     int64     // connections Accept took from the inner listener (refused ones too)
	AcceptErrors int64     // Accept errors survived
	LastError    error     // the last of them, nil if none
	LastErrorAt  time.Time // when
	Open         int       // connections counted open (by the Conns, shared or not)
}

// Stats reports the counts now.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	s := Stats{Accepted: l.accepted, AcceptErrors: l.errs, LastError: l.lastErr, LastErrorAt: l.lastErrAt}
	l.mu.Unlock()
	if l.cfg.Conns != nil {
		s.Open = l.cfg.Conns.Open()
	}
	return s
}

// Health is nil while the Listener accepts: its loop runs (Serve has not
// returned, the inner listener was not closed under it) and Accept has
// not kept failing for FailingAfter. Otherwise it says why. A Listener
// closed by Close is not unhealthy: it was meant to stop.
func (l *Listener) Health() error {
	if l.isClosed() {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead != nil {
		return l.dead
	}
	if !l.failingSince.IsZero() {
		if d := time.Since(l.failingSince); d >= l.cfg.FailingAfter {
			return fmt.Errorf("accept failing for %s: %w", d.Round(time.Millisecond), l.lastErr)
		}
	}
	return nil
}
