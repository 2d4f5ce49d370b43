package limit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// Timeout kinds passed to Timeouts.OnTimeout.
const (
	TimeoutRead      = "read"      // a message begun was not finished within Read
	TimeoutIdle      = "idle"      // nothing was received for Idle
	TimeoutHandshake = "handshake" // a TLS handshake was not finished within Read
)

// Timeouts bound how long a connection may keep a message unfinished or
// send nothing. A zero or negative duration disables that bound.
type Timeouts struct {
	// Read: a message begun (its first byte read) must be complete within
	// it, however slowly it trickles in; so must a TLS handshake.
	Read time.Duration
	// Idle: a connection between messages that receives nothing this long
	// is closed. Every byte read (a keep-alive CRLF too) is activity.
	Idle time.Duration
	// NewFramer makes each connection's Framer, which tells the end of a
	// message. Nil: every read ends a message (then only Idle bounds it).
	NewFramer func() Framer
	// OnTimeout, when set, is called once for each connection closed by a
	// bound, with the bound's kind (TimeoutRead, TimeoutIdle, TimeoutHandshake).
	OnTimeout func(kind string)
}

func (t Timeouts) enabled() bool { return t.Read > 0 || t.Idle > 0 }

// TimeoutError is what Read returns on a connection a bound has closed.
// It matches net.ErrClosed (errors.Is), and os.ErrDeadlineExceeded: the
// connection is gone, and it went by a deadline.
type TimeoutError struct {
	Kind  string
	After time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("limit: connection closed: %s timeout (%s)", e.Kind, e.After)
}

func (e *TimeoutError) Is(target error) bool {
	return target == net.ErrClosed || target == os.ErrDeadlineExceeded
}

func (e *TimeoutError) Timeout() bool   { return true }
func (e *TimeoutError) Temporary() bool { return false }

// Conn is a net.Conn with read bounds (Timeouts) and, when a Listener
// accepted it, its place in the Conns counters, given back on Close.
// Read is meant for one reader goroutine, as a stream parser reads.
type Conn struct {
	net.Conn
	t      Timeouts
	framer Framer

	started   time.Time // first byte of the message pending; zero: between messages
	handshook bool

	closeOnce sync.Once
	closeErr  error
	release   func()
}

// WrapConn bounds c's reads by t.
func WrapConn(c net.Conn, t Timeouts) *Conn {
	w := &Conn{Conn: c, t: t}
	if t.NewFramer != nil {
		w.framer = t.NewFramer()
	}
	return w
}

// handshaker is a *tls.Conn, without importing what we need not.
type handshaker interface {
	HandshakeContext(ctx context.Context) error
}

// Read reads with the deadline of the connection's state: between
// messages now+Idle, inside one its first byte's time+Read.
func (c *Conn) Read(p []byte) (int, error) {
	if !c.t.enabled() {
		return c.Conn.Read(p)
	}
	if !c.handshook {
		c.handshook = true
		if h, ok := c.Conn.(handshaker); ok {
			if err := c.handshake(h); err != nil {
				return 0, err
			}
		}
	}
	kind, bound := TimeoutIdle, c.t.Idle
	if !c.started.IsZero() {
		kind, bound = TimeoutRead, c.t.Read
	}
	var deadline time.Time
	if bound > 0 {
		if c.started.IsZero() {
			deadline = time.Now().Add(bound)
		} else {
			deadline = c.started.Add(bound)
		}
	}
	if err := c.Conn.SetReadDeadline(deadline); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if c.framer == nil || c.framer.Feed(p[:n]) {
			c.started = time.Time{}
		} else if c.started.IsZero() {
			c.started = time.Now()
		}
	}
	if err != nil && bound > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		return n, c.expire(kind, bound)
	}
	return n, err
}

// handshake runs a TLS handshake bounded by Read (else Idle).
func (c *Conn) handshake(h handshaker) error {
	bound := c.t.Read
	if bound <= 0 {
		bound = c.t.Idle
	}
	if bound <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := h.HandshakeContext(ctx); err != nil {
		if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
			return c.expire(TimeoutHandshake, bound)
		}
		return err
	}
	return nil
}

// expire closes the connection a bound ran out on. It counts first: once
// the peer sees the close, the count is there to read.
func (c *Conn) expire(kind string, after time.Duration) error {
	if c.t.OnTimeout != nil {
		c.t.OnTimeout(kind)
	}
	_ = c.Close()
	return &TimeoutError{Kind: kind, After: after}
}

// Close closes the connection and, the first time, gives its place back.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.Conn.Close()
		if c.release != nil {
			c.release()
		}
	})
	return c.closeErr
}

// Deadlines wraps every connection l accepts in t's bounds. For TLS, put it
// around tls.NewListener (the framing is read from the plaintext), and the
// Listener that counts under it.
func Deadlines(l net.Listener, t Timeouts) net.Listener {
	if !t.enabled() {
		return l
	}
	return &deadlineListener{Listener: l, t: t}
}

type deadlineListener struct {
	net.Listener
	t Timeouts
}

func (l *deadlineListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return WrapConn(c, l.t), nil
}
