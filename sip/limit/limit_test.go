package limit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestHeaderFramer(t *testing.T) {
	msg := "INVITE sip:a@b SIP/2.0\r\nVia: x\r\nl: 5\r\n\r\nhello"
	for _, tc := range []struct {
		name   string
		chunks []string
		want   []bool
	}{
		{"whole", []string{msg}, []bool{true}},
		{"keep-alive", []string{"\r\n\r\n", "\r\n"}, []bool{true, true}},
		{"split everywhere", []string{"INVITE sip:a@b SIP/2.0\r", "\nContent-Len", "gth:  5 \r\n\r", "\nhel", "lo"}, []bool{false, false, false, false, true}},
		{"half", []string{"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n"}, []bool{false}},
		{"no body", []string{"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n"}, []bool{true}},
		{"two in one read", []string{msg + "\r\n" + msg}, []bool{true}},
		{"one and a half", []string{msg + "OPTIONS sip:a@b SIP/2.0\r\n"}, []bool{false}},
		{"LF only", []string{"OPTIONS sip:a@b SIP/2.0\nContent-Length: 2\n\nok"}, []bool{true}},
		{"body pending", []string{"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc"}, []bool{false}},
		{"long line", []string{"X sip:a SIP/2.0\r\nSubject: " + strings.Repeat("x", 1000) + "\r\nl: 1\r\n\r\n", "y"}, []bool{false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := HeaderFramer("Content-Length", "l")()
			for i, c := range tc.chunks {
				if got := f.Feed([]byte(c)); got != tc.want[i] {
					t.Fatalf("chunk %d %q: between=%v, want %v", i, c, got, tc.want[i])
				}
			}
		})
	}
}

// server accepts on l and reads every connection until it fails; closed
// counts connections whose read failed.
type server struct {
	l      net.Listener
	closed atomic.Int64
	wg     sync.WaitGroup
}

func serve(t *testing.T, l net.Listener) *server {
	s := &server{l: l}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					if _, err := c.Read(buf); err != nil {
						s.closed.Add(1)
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		s.wg.Wait()
	})
	return s
}

func listen(t *testing.T, cfg Config) (*Listener, string) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := Listen(inner, cfg)
	t.Cleanup(func() { l.Close() })
	return l, inner.Addr().String()
}

// dialFrom connects to addr from the loopback IP src.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	c, err := tryDial(t, src, addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tryDial connects to addr from src; a connection refused by a limit may
// be reset before connect returns.
func tryDial(t *testing.T, src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c, nil
}

// closedWithin reports how long c took to be closed by its peer, or an
// error if it was not within d.
func closedWithin(c net.Conn, d time.Duration) (time.Duration, error) {
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	buf := make([]byte, 64)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, fmt.Errorf("still open after %s", d)
		}
		return time.Since(start), nil
	}
}

var sipTimeouts = Timeouts{Read: 300 * time.Millisecond, Idle: 3 * time.Second, NewFramer: HeaderFramer("Content-Length", "l")}

// The slowloris pattern: connections each holding half a message, or
// trickling one byte at a time, are closed at the read bound; a connection
// that finished its message is not (it is idle, with the longer bound).
func TestPartialMessagesClosedAtReadTimeout(t *testing.T) {
	var timeouts sync.Map
	to := sipTimeouts
	to.OnTimeout = func(kind string) {
		n, _ := timeouts.LoadOrStore(kind, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	}
	l, addr := listen(t, Config{Timeouts: to})
	serve(t, l)
	const n = 50
	conns := make([]net.Conn, n)
	firstWrite := time.Now() // the bound runs from the server's first read, later
	for i := range conns {
		conns[i] = dialFrom(t, "127.0.0.1", addr)
		if _, err := conns[i].Write([]byte("INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP x\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	complete := dialFrom(t, "127.0.0.1", addr)
	complete.Write([]byte("OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 0\r\n\r\n"))
	trickle := dialFrom(t, "127.0.0.1", addr)
	stop := make(chan struct{})
	go func() {
		for i := 0; i < 100; i++ { // bounded: 5 s at most
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := trickle.Write([]byte("X")); err != nil {
				return
			}
		}
	}()
	defer close(stop)
	for i, c := range conns {
		if _, err := closedWithin(c, 2*time.Second); err != nil {
			t.Fatalf("partial message %d: %v", i, err)
		}
		if i == 0 {
			if took := time.Since(firstWrite); took < to.Read {
				t.Fatalf("partial message closed %s after it was sent, before the %s bound", took, to.Read)
			}
		}
	}
	if _, err := closedWithin(trickle, 2*time.Second); err != nil {
		t.Fatalf("trickling connection: %v", err)
	}
	if _, err := closedWithin(complete, 500*time.Millisecond); err == nil {
		t.Fatal("a connection between messages was closed by the read bound")
	}
	if v, _ := timeouts.Load(TimeoutRead); v == nil || v.(*atomic.Int64).Load() != n+1 {
		t.Fatalf("read timeouts counted: %v, want %d", v, n+1)
	}
}

// A connection that sends nothing is closed at the idle bound; one that
// sends keep-alive CRLFs is not.
func TestIdleTimeoutAndKeepAlive(t *testing.T) {
	// A keep-alive every 100 ms against a 1 s bound: a busy machine may
	// stretch a 100 ms pause a great deal before the bound is reached.
	const idle = time.Second
	to := sipTimeouts
	to.Idle = idle
	l, addr := listen(t, Config{Timeouts: to})
	serve(t, l)
	start := time.Now()
	silent := dialFrom(t, "127.0.0.1", addr)
	alive := dialFrom(t, "127.0.0.1", addr)
	var last time.Time
	for time.Since(start) < 2*idle+idle/2 {
		last = time.Now()
		if _, err := alive.Write([]byte("\r\n\r\n")); err != nil {
			t.Fatalf("keep-alive connection closed after %s: %v", time.Since(start), err)
		}
		time.Sleep(100 * time.Millisecond) // the keep-alive pace, nothing orders on it
	}
	// silent has been closed long ago; alive is still open.
	if _, err := closedWithin(silent, 10*time.Millisecond); err != nil {
		t.Fatalf("silent connection: %v", err)
	}
	if _, err := closedWithin(alive, 100*time.Millisecond); err == nil {
		t.Fatal("keep-alive connection was closed")
	}
	if _, err := closedWithin(alive, idle+5*time.Second); err != nil || time.Since(last) < idle*8/10 {
		t.Fatalf("keep-alive connection once silent: closed %s after its last keep-alive, %v", time.Since(last), err)
	}
}

// Connections beyond the per-source and the global limits are closed at
// once; the places come back when connections close.
func TestConnectionLimits(t *testing.T) {
	var refused sync.Map
	conns := NewConns(3, 5, func(ip netip.Addr) bool { return ip == netip.MustParseAddr("127.0.0.20") })
	l, addr := listen(t, Config{Conns: conns, OnRefused: func(r string) {
		n, _ := refused.LoadOrStore(r, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
	}})
	serve(t, l)
	count := func(r string) int64 {
		if v, ok := refused.Load(r); ok {
			return v.(*atomic.Int64).Load()
		}
		return 0
	}
	var a, b []net.Conn
	for range 5 {
		c, _ := tryDial(t, "127.0.0.10", addr)
		a = append(a, c)
	}
	for range 3 {
		c, _ := tryDial(t, "127.0.0.11", addr)
		b = append(b, c)
	}
	wantClosed := func(c net.Conn, closed bool, what string) {
		t.Helper()
		if c == nil { // reset during connect
			if !closed {
				t.Fatalf("%s: refused, want accepted", what)
			}
			return
		}
		_, err := closedWithin(c, 300*time.Millisecond)
		if closed != (err == nil) {
			t.Fatalf("%s: closed=%v, want %v", what, err == nil, closed)
		}
	}
	for i, c := range a {
		wantClosed(c, i >= 3, fmt.Sprintf("127.0.0.10 #%d", i))
	}
	for i, c := range b {
		wantClosed(c, i >= 2, fmt.Sprintf("127.0.0.11 #%d", i))
	}
	if count(RefusedPerSource) != 2 || count(RefusedMax) != 1 {
		t.Fatalf("refused: per_source %d, max %d; want 2, 1", count(RefusedPerSource), count(RefusedMax))
	}
	if got := conns.OpenFrom(netip.MustParseAddr("127.0.0.10")); got != 3 {
		t.Fatalf("open from 127.0.0.10: %d, want 3", got)
	}
	a[0].Close()
	b[0].Close()
	// Refused ones were counted before the next Accept returned: wait for
	// the server side of the two closed.
	deadline := time.Now().Add(2 * time.Second)
	for conns.Open() != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("open: %d after two closed, want 3", conns.Open())
		}
		time.Sleep(5 * time.Millisecond)
	}
	wantClosed(dialFrom(t, "127.0.0.10", addr), false, "127.0.0.10 after one closed")
	wantClosed(dialFrom(t, "127.0.0.12", addr), false, "127.0.0.12 after one closed")
	c, _ := tryDial(t, "127.0.0.12", addr)
	wantClosed(c, true, "127.0.0.12 beyond max")
	for i := range 4 { // an exempt source: beyond both limits
		wantClosed(dialFrom(t, "127.0.0.20", addr), false, fmt.Sprintf("exempt 127.0.0.20 #%d", i))
	}
	if conns.Open() != 9 {
		t.Fatalf("open: %d, want 9 with the exempt ones", conns.Open())
	}
}

// fakeListener fails Accept with errs, then returns conns, then blocks
// until closed.
type fakeListener struct {
	mu     sync.Mutex
	errs   []error
	conns  []net.Conn
	calls  []time.Time
	closed chan struct{}
	once   sync.Once
}

func (f *fakeListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	f.calls = append(f.calls, time.Now())
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		f.mu.Unlock()
		return nil, err
	}
	if len(f.conns) > 0 {
		c := f.conns[0]
		f.conns = f.conns[1:]
		f.mu.Unlock()
		return c, nil
	}
	f.mu.Unlock()
	<-f.closed
	return nil, net.ErrClosed
}

func (f *fakeListener) Close() error   { f.once.Do(func() { close(f.closed) }); return nil }
func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5060} }

func acceptErr(errno syscall.Errno) error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}
}

// EMFILE, ENFILE and the like never reach the server: Accept backs off
// (5 ms doubling) and accepts again; Health reports the run of errors
// while it lasts and clears on the next connection.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c2.Close()
	f := &fakeListener{closed: make(chan struct{}), conns: []net.Conn{c1}}
	for range 6 {
		f.errs = append(f.errs, acceptErr(syscall.EMFILE))
	}
	f.errs = append(f.errs, acceptErr(syscall.ENFILE), acceptErr(syscall.ECONNABORTED))
	var errs atomic.Int64
	l := Listen(f, Config{FailingAfter: 50 * time.Millisecond, OnAcceptError: func(error) { errs.Add(1) }})
	defer l.Close()
	healthDuring := make(chan error, 1)
	go func() {
		time.Sleep(200 * time.Millisecond) // within the run of errors (~635 ms)
		healthDuring <- l.Health()
	}()
	start := time.Now()
	c, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept returned %v, want the connection after the errors", err)
	}
	c.Close()
	took := time.Since(start)
	// 5+10+20+40+80+160+320+640 ms of backoff for 8 errors.
	if took < 1200*time.Millisecond || took > 3*time.Second {
		t.Fatalf("8 errors took %s, want about 1.275 s of backoff", took)
	}
	if err := <-healthDuring; err == nil || !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("Health during EMFILE: %v, want it named", err)
	}
	if err := l.Health(); err != nil {
		t.Fatalf("Health after a connection: %v", err)
	}
	if s := l.Stats(); s.AcceptErrors != 8 || !errors.Is(s.LastError, syscall.ECONNABORTED) || errs.Load() != 8 {
		t.Fatalf("stats %+v, OnAcceptError %d; want 8 errors, last ECONNABORTED", s, errs.Load())
	}
	f.mu.Lock()
	gaps := make([]time.Duration, 0, len(f.calls))
	for i := 1; i < len(f.calls); i++ {
		gaps = append(gaps, f.calls[i].Sub(f.calls[i-1]))
	}
	f.mu.Unlock()
	if len(gaps) < 8 || gaps[0] < BackoffMin || gaps[7] < 600*time.Millisecond {
		t.Fatalf("gaps between Accepts %v: want 5 ms doubling", gaps)
	}
}

// The backoff stops at a second, and Close ends a waiting Accept at once.
func TestAcceptBackoffCappedAndClosable(t *testing.T) {
	f := &fakeListener{closed: make(chan struct{})}
	for range 1000 {
		f.errs = append(f.errs, acceptErr(syscall.EMFILE))
	}
	l := Listen(f, Config{})
	done := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		done <- err
	}()
	time.Sleep(2500 * time.Millisecond)
	f.mu.Lock()
	calls := len(f.calls)
	f.mu.Unlock()
	// 5+10+...+640 = 1275 ms for 8 calls, then one a second: 9 or 10.
	if calls < 8 || calls > 11 {
		t.Fatalf("%d Accepts in 2.5 s, want about 10", calls)
	}
	if err := l.Health(); err == nil {
		t.Fatal("Health nil after 2.5 s of EMFILE")
	}
	closedAt := time.Now()
	l.Close()
	select {
	case err := <-done:
		// Well under the second the backoff may still have to wait.
		if !errors.Is(err, net.ErrClosed) || time.Since(closedAt) > 500*time.Millisecond {
			t.Fatalf("Accept after Close: %v after %s", err, time.Since(closedAt))
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Accept still waiting after Close")
	}
	if err := l.Health(); err != nil {
		t.Fatalf("Health after Close: %v, want nil (stopped on purpose)", err)
	}
}

// A server loop that ends while the listener is open (the inner listener
// closed under it, or the server gave up) makes Health report it.
func TestServeEndedIsUnhealthy(t *testing.T) {
	f := &fakeListener{closed: make(chan struct{})}
	l := Listen(f, Config{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		l.Serve(func() error {
			_, err := l.Accept()
			return err
		})
	}()
	if err := l.Health(); err != nil {
		t.Fatalf("Health while serving: %v", err)
	}
	f.Close() // under the Listener
	<-done
	if err := l.Health(); err == nil || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Health after the inner listener closed: %v", err)
	}

	l2 := Listen(&fakeListener{closed: make(chan struct{})}, Config{})
	go l2.Close()
	l2.Serve(func() error { _, err := l2.Accept(); return err })
	if err := l2.Health(); err != nil {
		t.Fatalf("Health after Close: %v, want nil", err)
	}
}

// Read on a connection a bound closed says so: it matches net.ErrClosed
// (servers stop reading quietly) and os.ErrDeadlineExceeded.
func TestTimeoutError(t *testing.T) {
	to := Timeouts{Idle: 50 * time.Millisecond}
	l, addr := listen(t, Config{Timeouts: to})
	c := dialFrom(t, "127.0.0.1", addr)
	_ = c
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = s.Read(make([]byte, 10))
	var te *TimeoutError
	if !errors.As(err, &te) || te.Kind != TimeoutIdle || !errors.Is(err, net.ErrClosed) || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read: %v", err)
	}
	if _, err := s.Read(make([]byte, 10)); err == nil || err == io.EOF {
		t.Fatalf("Read after close: %v", err)
	}
}
