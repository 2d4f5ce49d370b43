package sip

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// The hostile-network tests of SIP over TCP (issue 12 §3): what strangers
// may hold open is bounded, and whatever they did, a normal call over TCP
// works again within seconds of them stopping.

// tcpLimits sets sip.limits' TCP bounds for a test, with no request rate
// limit: these tests prove the connection bounds alone (a trickling
// stranger would otherwise be banned first; go test -run Flood).
func tcpLimits(read, idle time.Duration, perSource, max int) envOption {
	return withCfg(func(c *Config) {
		c.Limits = Limits{TCPReadTimeout: read, TCPIdleTimeout: idle, TCPPerSource: perSource, TCPMax: max, RatePerSource: -1}
	})
}

// dialFrom opens a TCP connection to cleanline's TCP listener from ip.
func dialFrom(t *testing.T, e *env, ip string) (net.Conn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
	return d.Dial("tcp", e.s.Addr("tcp").String())
}

// closedByPeer waits until c's peer closes it (EOF or reset), reading and
// discarding whatever arrives; it fails at the deadline.
func closedByPeer(c net.Conn, deadline time.Time) error {
	if err := c.SetReadDeadline(deadline); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, c)
	if err == nil || errors.Is(err, net.ErrClosed) {
		return nil // EOF
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("still open at the deadline")
	}
	return nil // reset: closed too
}

// optionsOver sends an OPTIONS on c and returns the status line of the
// answer, within d.
func optionsOver(c net.Conn, e *env, d time.Duration) (string, error) {
	la := c.LocalAddr().(*net.TCPAddr)
	msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\n"+
		"Via: SIP/2.0/TCP %s;branch=z9hG4bK%s\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:probe@%s>;tag=%s\r\n"+
		"To: <sip:%s>\r\n"+
		"Call-ID: %s@probe\r\n"+
		"CSeq: 1 OPTIONS\r\n"+
		"Content-Length: 0\r\n\r\n",
		e.s.Addr("tcp"), la, sip.GenerateTagN(10), la.IP, sip.GenerateTagN(8), e.s.Addr("tcp"), sip.GenerateTagN(12))
	if err := c.SetDeadline(time.Now().Add(d)); err != nil {
		return "", err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	// Skip CRLF pongs to keep-alive pings (RFC 5626 §4.4.1).
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if line = strings.TrimSpace(line); line != "" || err != nil {
			return line, err
		}
	}
}

// The slowloris pattern: strangers open connections and trickle a message
// that never ends, a byte at a time. Each is closed at the read timeout
// (counted), however steadily it trickles; then a normal TCP call works.
func TestTCPSlowlorisClosedAtReadTimeout(t *testing.T) {
	const read = time.Second
	e := newEnv(t, overTCP, tcpLimits(read, time.Minute, 0, 0))
	const n = 50
	conns := make([]net.Conn, 0, n)
	for i := range n {
		c, err := dialFrom(t, e, ipStranger)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
	start := time.Now()
	partial := "INVITE sip:" + lineNumber + "@" + e.s.Addr("tcp").String() + " SIP/2.0\r\nVia: SIP/2.0/TCP x"
	ctx, stop := context.WithCancel(context.Background())
	var trickling sync.WaitGroup
	for _, c := range conns {
		trickling.Add(1)
		go func() {
			defer trickling.Done()
			// One byte every 100 ms: always active, never done.
			for i := 0; ctx.Err() == nil; i++ {
				if _, err := c.Write([]byte{partial[i%len(partial)]}); err != nil {
					return
				}
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
			}
		}()
	}
	defer func() { stop(); trickling.Wait() }()
	deadline := start.Add(read + 5*time.Second) // the bound, and a busy box
	for i, c := range conns {
		if err := closedByPeer(c, deadline); err != nil {
			t.Fatalf("slowloris connection %d: %v", i, err)
		}
	}
	if el := time.Since(start); el < read {
		t.Fatalf("closed after %s, before the read timeout %s", el, read)
	}
	if got := value(t, e.s.metrics.tcpTimeouts.WithLabelValues("tcp", "read")); got != n {
		t.Errorf("read timeouts counted %v, want %d", got, n)
	}
	t.Logf("%d trickling connections closed within %s", n, time.Since(start).Round(time.Millisecond))
	stop()
	talkThenHangUp(t, e)
}

// A connection that sends nothing is closed at the idle timeout; one that
// sends a CRLF keep-alive (RFC 5626 §3.5.1) before it stays open and
// still answers a request.
func TestTCPIdleTimeoutAndKeepAlive(t *testing.T) {
	const idle = 1500 * time.Millisecond
	e := newEnv(t, overTCP, tcpLimits(time.Second, idle, 0, 0))
	start := time.Now() // before the dial: cleanline's clock starts at accept
	silent, err := dialFrom(t, e, ipStranger)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	alive, err := dialFrom(t, e, ipStranger)
	if err != nil {
		t.Fatal(err)
	}
	defer alive.Close()
	ctx := ctxT(t, 10*time.Second)
	go func() {
		for ctx.Err() == nil {
			if _, err := alive.Write([]byte("\r\n\r\n")); err != nil {
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(idle / 3):
			}
		}
	}()
	if err := closedByPeer(silent, start.Add(idle+5*time.Second)); err != nil {
		t.Fatalf("silent connection: %v", err)
	}
	if el := time.Since(start); el < idle {
		t.Fatalf("silent connection closed after %s, before the idle timeout", el)
	}
	// alive has now outlived the idle timeout by its keep-alives.
	status, err := optionsOver(alive, e, 5*time.Second)
	if err != nil {
		t.Fatalf("kept-alive connection: %v", err)
	}
	if !strings.HasPrefix(status, "SIP/2.0 403") {
		t.Fatalf("kept-alive stranger got %q, want 403", status)
	}
	if got := value(t, e.s.metrics.tcpTimeouts.WithLabelValues("tcp", "idle")); got != 1 {
		t.Errorf("idle timeouts counted %v, want 1", got)
	}
}

// A connection flood to the limits: one stranger gets tcp_per_source
// connections and no more; strangers from many addresses together get
// tcp_max and no more; the trunk, a configured peer, still calls over TCP
// in the middle of it. Once the flood ends, a new stranger is answered
// and a normal TCP call works within seconds.
func TestTCPConnectionFloodToLimit(t *testing.T) {
	const perSource, max = 10, 30
	e := newEnv(t, overTCP, tcpLimits(time.Second, time.Minute, perSource, max))
	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	// held reports whether c stays open: a refused connection is closed
	// (reset) by cleanline at once, an admitted one answers nothing and
	// stays open for the read to time out.
	held := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		return errors.As(err, &ne) && ne.Timeout()
	}
	open := func(ip string, n int) (kept int) {
		for range n {
			c, err := dialFrom(t, e, ip)
			if err != nil {
				continue
			}
			flood = append(flood, c)
			if held(c) {
				kept++
			}
		}
		return kept
	}
	if kept := open(ipStranger, 2*perSource); kept != perSource {
		t.Fatalf("one stranger holds %d connections, want tcp_per_source %d", kept, perSource)
	}
	total := perSource
	for i := 5; i < 12; i++ {
		total += open(fmt.Sprintf("127.0.0.%d", i), perSource)
	}
	if total != max {
		t.Fatalf("strangers hold %d connections together, want tcp_max %d", total, max)
	}
	if got := e.s.conns.Open(); got != max {
		t.Fatalf("counted %d open, want %d", got, max)
	}
	refused := value(t, e.s.metrics.tcpRefused.WithLabelValues("tcp", "per_source")) +
		value(t, e.s.metrics.tcpRefused.WithLabelValues("tcp", "max"))
	if refused == 0 {
		t.Fatal("no refusal counted")
	}
	t.Logf("flood: %d connections tried, %d held, %v refused", len(flood), total, refused)

	// The trunk is a configured peer: the flood does not lock it out.
	talkThenHangUp(t, e)

	for _, c := range flood {
		c.Close()
	}
	flood = nil
	ended := time.Now()
	// Within seconds a stranger is accepted again and answered (403: it is
	// a stranger), and the count is back to the trunk's and line's own.
	var status string
	for {
		c, err := dialFrom(t, e, ipStranger)
		if err == nil {
			status, err = optionsOver(c, e, 2*time.Second)
			c.Close()
			if err == nil {
				break
			}
		}
		if time.Since(ended) > 5*time.Second {
			t.Fatalf("no answer over TCP %s after the flood: %v", time.Since(ended), err)
		}
		time.Sleep(50 * time.Millisecond) // retry pace, nothing orders on it
	}
	if !strings.HasPrefix(status, "SIP/2.0 403") {
		t.Fatalf("stranger after the flood got %q, want 403", status)
	}
	t.Logf("answered again %s after the flood ended", time.Since(ended).Round(time.Millisecond))
	talkThenHangUp(t, e)
}

// Healthy names a TCP listener whose accept loop has ended, so that
// /healthz stops saying "ok" while SIP over TCP is dead.
func TestHealthyReportsDeadTCPListener(t *testing.T) {
	e := newEnv(t, overTCP)
	if err := e.s.Healthy(); err != nil {
		t.Fatalf("fresh server unhealthy: %v", err)
	}
	// The accept loop ends under the server, as sipgo's did on EMFILE.
	e.s.mu.Lock()
	lim := e.s.listeners["tcp"]
	e.s.mu.Unlock()
	_ = lim.Serve(func() error { return errors.New("accept: too many open files") })
	err := e.s.Healthy()
	if err == nil || !strings.Contains(err.Error(), "sip tcp listener") || !strings.Contains(err.Error(), "too many open files") {
		t.Fatalf("Healthy = %v, want the tcp listener named with its error", err)
	}
}

// Over TLS the same bounds hold above the handshake: a stranger that opens
// a connection and never finishes the handshake is closed at the read
// timeout (counted as a handshake timeout), and one that handshakes and
// then leaves a message unfinished is closed at the read timeout too.
func TestTLSHandshakeAndPartialMessageBounded(t *testing.T) {
	const read = time.Second
	certFile, keyFile, pool := selfSigned(t)
	e := newEnv(t, tcpLimits(read, time.Minute, 0, 0), withCfg(func(c *Config) {
		c.Listen = append(c.Listen, Listener{Network: "tls", Addr: ipCleanline + ":0", CertFile: certFile, KeyFile: keyFile})
	}))
	addr := e.s.Addr("tls").String()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ipStranger)}, Timeout: 2 * time.Second}
	start := time.Now() // before the dial: the handshake's bound starts at accept
	raw, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Write([]byte{0x16, 0x03, 0x01}); err != nil { // a record header, then nothing
		t.Fatal(err)
	}
	tc, err := (&tls.Dialer{NetDialer: &d, Config: &tls.Config{RootCAs: pool, ServerName: ipCleanline, MinVersion: tls.VersionTLS12}}).
		DialContext(ctxT(t, 5*time.Second), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if _, err := tc.Write([]byte("OPTIONS sip:x@" + addr + " SIP/2.0\r\nVia: ")); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]net.Conn{"unfinished handshake": raw, "unfinished message": tc} {
		if err := closedByPeer(c, start.Add(read+5*time.Second)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if el := time.Since(start); el < read {
		t.Fatalf("closed after %s, before the read timeout", el)
	}
	for kind, want := range map[string]float64{"handshake": 1, "read": 1} {
		if got := value(t, e.s.metrics.tcpTimeouts.WithLabelValues("tls", kind)); got != want {
			t.Errorf("tls %s timeouts counted %v, want %v", kind, got, want)
		}
	}
}
