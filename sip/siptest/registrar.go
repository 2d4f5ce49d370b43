package siptest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Registrar plays a provider's registrar: a sipgo UA on a loopback IP that
// records every REGISTER, OPTIONS and INVITE it receives, with when, and
// answers each REGISTER as its Answer function says (by default 200 OK
// granting what was asked), each INVITE 486. Over TCP it answers CRLF pings as sipgo does, and counts them.
type Registrar struct {
	t       testing.TB
	IP      netip.Addr
	Addr    netip.AddrPort // UDP
	TCPAddr netip.AddrPort // NewRegistrarTCP and NewRegistrarTLS only
	tls     bool

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	pc  net.PacketConn
	ln  net.Listener

	mu       sync.Mutex
	got      []Received
	pings    int
	conns    []net.Conn
	notify   chan struct{}
	answer   func(*sip.Request) *sip.Response
	options  int // 0: 200; > 0: that status; < 0: unanswered
	closeOne sync.Once
}

// Received is a request the registrar received, and when.
type Received struct {
	Req *sip.Request
	At  time.Time
}

// NewRegistrar starts a registrar on ip over UDP; the test's cleanup stops it.
func NewRegistrar(t testing.TB, ip string) *Registrar { return newRegistrar(t, ip, "udp", nil) }

// NewRegistrarTCP starts a registrar on ip that listens on TCP too.
func NewRegistrarTCP(t testing.TB, ip string) *Registrar { return newRegistrar(t, ip, "tcp", nil) }

// NewRegistrarTLS starts a registrar on ip that listens on TLS too (at
// TCPAddr), presenting the certificate in certFile (with keyFile).
func NewRegistrarTLS(t testing.TB, ip, certFile, keyFile string) *Registrar {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return newRegistrar(t, ip, "tls", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
}

func newRegistrar(t testing.TB, ip, network string, tlsConf *tls.Config) *Registrar {
	t.Helper()
	r := &Registrar{t: t, IP: netip.MustParseAddr(ip), notify: make(chan struct{})}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var err error
	r.ua, err = sipgo.NewUA(sipgo.WithUserAgent("siptest-registrar"), sipgo.WithUserAgentHostname(ip),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)))
	if err != nil {
		t.Fatal(err)
	}
	r.srv, _ = sipgo.NewServer(r.ua, sipgo.WithServerLogger(quiet))
	if r.pc, err = net.ListenPacket("udp", ip+":0"); err != nil {
		t.Fatalf("siptest: registrar on %s: %v", ip, err)
	}
	r.Addr = r.pc.LocalAddr().(*net.UDPAddr).AddrPort()
	r.srv.OnRegister(r.on)
	r.srv.OnOptions(r.on)
	r.srv.OnInvite(r.on)    // recorded and refused: the provider is busy
	go r.srv.ServeUDP(r.pc) //nolint:errcheck
	if network != "udp" {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatalf("siptest: registrar on %s %s: %v", network, ip, err)
		}
		r.TCPAddr = ln.Addr().(*net.TCPAddr).AddrPort()
		if tlsConf != nil {
			// Counted above TLS, where the pings are plain CRLFs.
			r.tls = true
			r.ln = &countingListener{Listener: tls.NewListener(ln, tlsConf), r: r}
			go r.srv.ServeTLS(r.ln) //nolint:errcheck
		} else {
			r.ln = &countingListener{Listener: ln, r: r}
			go r.srv.ServeTCP(r.ln) //nolint:errcheck
		}
	}
	waitListening(t, r.ua, r.Addr)
	t.Cleanup(r.Close)
	return r
}

// URI is the registrar's SIP URI (over TCP or TLS for a TCP or TLS
// registrar).
func (r *Registrar) URI() string {
	if r.tls {
		return fmt.Sprintf("sip:%s;transport=tls", r.TCPAddr)
	}
	if r.ln != nil {
		return fmt.Sprintf("sip:%s;transport=tcp", r.TCPAddr)
	}
	return fmt.Sprintf("sip:%s", r.Addr)
}

// Connections is how many connections (TCP or TLS) the registrar has
// accepted, a TLS handshake that failed included.
func (r *Registrar) Connections() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// SetAnswer makes f answer every REGISTER from now on (nil: Grant what was
// asked); f returning nil leaves a REGISTER unanswered.
func (r *Registrar) SetAnswer(f func(req *sip.Request) *sip.Response) {
	r.mu.Lock()
	r.answer = f
	r.mu.Unlock()
}

// SetOptions answers OPTIONS with code (0: 200; < 0: not at all).
func (r *Registrar) SetOptions(code int) {
	r.mu.Lock()
	r.options = code
	r.mu.Unlock()
}

func (r *Registrar) on(req *sip.Request, tx sip.ServerTransaction) {
	r.mu.Lock()
	r.got = append(r.got, Received{Req: req, At: time.Now()})
	answer, options := r.answer, r.options
	r.wake()
	r.mu.Unlock()
	var res *sip.Response
	switch {
	case req.Method == sip.OPTIONS && options < 0:
	case req.Method == sip.OPTIONS && options > 0:
		res = sip.NewResponseFromRequest(req, options, "Forced", nil)
	case req.Method == sip.OPTIONS:
		res = sip.NewResponseFromRequest(req, 200, "OK", nil)
	case req.Method == sip.INVITE:
		res = sip.NewResponseFromRequest(req, sip.StatusBusyHere, "Busy Here", nil)
	case answer != nil:
		res = answer(req)
	default:
		res = Grant(req, Expires(req))
	}
	if res != nil {
		_ = tx.Respond(res)
	}
}

// wake tells waiters something arrived; r.mu is held.
func (r *Registrar) wake() {
	close(r.notify)
	r.notify = make(chan struct{})
}

// Received are the requests of method received so far, in order.
func (r *Registrar) Received(method sip.RequestMethod) []Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Received
	for _, g := range r.got {
		if g.Req.Method == method {
			out = append(out, g)
		}
	}
	return out
}

// Wait waits until n requests of method have arrived, and returns them all.
func (r *Registrar) Wait(ctx context.Context, method sip.RequestMethod, n int) ([]Received, error) {
	for {
		got := r.Received(method)
		r.mu.Lock()
		ch := r.notify
		r.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("siptest: registrar got %d of %d %s: %w", len(got), n, method, ctx.Err())
		case <-ch:
		}
	}
}

// Pings is how many CRLF keep-alive pings (RFC 5626 §4.4.1) arrived over TCP.
func (r *Registrar) Pings() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pings
}

// WaitPings waits until n pings have arrived.
func (r *Registrar) WaitPings(ctx context.Context, n int) error {
	for {
		r.mu.Lock()
		got, ch := r.pings, r.notify
		r.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("siptest: registrar got %d of %d pings: %w", got, n, ctx.Err())
		case <-ch:
		}
	}
}

// DropConnections closes every TCP connection the registrar accepted, as a
// provider's restart would.
func (r *Registrar) DropConnections() {
	r.mu.Lock()
	conns := r.conns
	r.conns = nil
	r.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Close stops the registrar.
func (r *Registrar) Close() {
	r.closeOne.Do(func() {
		r.pc.Close()
		if r.ln != nil {
			r.ln.Close()
		}
		r.DropConnections()
		r.ua.Close()
	})
}

// Expires is what req asks for: its Contact's expires, else its Expires
// header, else 3600 s (RFC 3261 §10.2.1.1).
func Expires(req *sip.Request) time.Duration {
	if ct := req.Contact(); ct != nil {
		if v, ok := ct.Params.Get("expires"); ok {
			if n, err := strconv.Atoi(v); err == nil {
				return time.Duration(n) * time.Second
			}
		}
	}
	if h := req.GetHeader("Expires"); h != nil {
		if n, err := strconv.Atoi(h.Value()); err == nil {
			return time.Duration(n) * time.Second
		}
	}
	return time.Hour
}

// Grant is a 200 to a REGISTER that lists its contact with expires (RFC
// 3261 §10.3 step 8), with hdrs (Service-Route, Path...).
func Grant(req *sip.Request, expires time.Duration, hdrs ...sip.Header) *sip.Response {
	res := sip.NewResponseFromRequest(req, 200, "OK", nil)
	if ct := req.Contact(); ct != nil && expires > 0 {
		c := sip.ContactHeader{Address: *ct.Address.Clone(), Params: sip.NewParams()}
		c.Params.Add("expires", strconv.Itoa(int(expires/time.Second)))
		res.AppendHeader(&c)
	}
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	return res
}

// Challenge is a 401 with a digest challenge of realm (RFC 3261 §22.2),
// or a 407 with Proxy-Authenticate when proxy is set (§22.3).
func Challenge(req *sip.Request, realm string, proxy bool) *sip.Response {
	return challenge(req, realm, proxy, false)
}

// StaleChallenge is a Challenge that says stale=true: the answer was right
// but its nonce had expired (RFC 7616 §3.3).
func StaleChallenge(req *sip.Request, realm string, proxy bool) *sip.Response {
	return challenge(req, realm, proxy, true)
}

func challenge(req *sip.Request, realm string, proxy, stale bool) *sip.Response {
	chal := digest.Challenge{Realm: realm, Nonce: strconv.FormatInt(time.Now().UnixNano(), 36), Algorithm: "MD5", QOP: []string{"auth"}, Stale: stale}
	if proxy {
		res := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
		res.AppendHeader(sip.NewHeader("Proxy-Authenticate", chal.String()))
		return res
	}
	res := sip.NewResponseFromRequest(req, 401, "Unauthorized", nil)
	res.AppendHeader(sip.NewHeader("WWW-Authenticate", chal.String()))
	return res
}

// Authorized reports whether req carries a digest answer (Authorization,
// or Proxy-Authorization) for user and password, and the user it names.
func Authorized(req *sip.Request, user, password string) (bool, string) {
	h := req.GetHeader("Authorization")
	if h == nil {
		h = req.GetHeader("Proxy-Authorization")
	}
	if h == nil {
		return false, ""
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		return false, ""
	}
	chal := digest.Challenge{Realm: cred.Realm, Nonce: cred.Nonce, Algorithm: cred.Algorithm, Opaque: cred.Opaque}
	if cred.QOP != "" {
		chal.QOP = []string{cred.QOP}
	}
	want, err := digest.Digest(&chal, digest.Options{Method: req.Method.String(), URI: cred.URI, Username: user,
		Password: password, Cnonce: cred.Cnonce, Count: cred.Nc})
	return err == nil && cred.Username == user && want.Response == cred.Response, cred.Username
}

// countingListener keeps the registrar's TCP connections (to drop them)
// and counts the CRLF pings read on them.
type countingListener struct {
	net.Listener
	r *Registrar
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.r.mu.Lock()
	l.r.conns = append(l.r.conns, c)
	l.r.mu.Unlock()
	return &countingConn{Conn: c, r: l.r}, nil
}

type countingConn struct {
	net.Conn
	r *Registrar
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n == 4 && string(b[:4]) == "\r\n\r\n" {
		c.r.mu.Lock()
		c.r.pings++
		c.r.wake()
		c.r.mu.Unlock()
	}
	return n, err
}
