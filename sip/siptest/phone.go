// Package siptest is a scriptable SIP phone for end-to-end tests of the
// B2BUA: a sipgo UserAgent on a loopback address with real RTP sockets. A
// test makes one phone play the trunk and one the line, dials, answers,
// sends audio and digits, and asserts what arrived where and when.
package siptest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/media"
)

// Phone is one SIP endpoint on a loopback IP.
type Phone struct {
	t    testing.TB
	IP   netip.Addr
	Addr netip.AddrPort // SIP over UDP
	// TCPAddr is the TCP listener of a phone made by NewPhoneTCP.
	TCPAddr netip.AddrPort

	ua  *sipgo.UserAgent
	srv *sipgo.Server
	cli *sipgo.Client
	dua *sipgo.DialogUA
	pc  net.PacketConn
	ln  net.Listener // TCP, nil for a UDP-only phone

	incoming chan *Incoming

	mu        sync.Mutex
	ignoreBye bool
	replies   map[sip.RequestMethod]int // in-dialog answers forced by SetReply
	servers   map[string]*Incoming
	clients   map[string]*Outgoing
	requests  []*sip.Request // every in-dialog request received
	reqNotify chan struct{}
	closeOnce sync.Once
	regCallID string // its registrations' Call-ID (register.go)
	regCSeq   uint32
}

// NewPhone starts a phone on ip (e.g. "127.0.0.3"); the test's cleanup
// closes it and every socket it opened.
func NewPhone(t testing.TB, ip string) *Phone { return newPhone(t, ip, false) }

// NewPhoneTCP starts a phone that places its calls over TCP and listens on
// TCP too (its Contact says so), so in-dialog requests reach it over TCP
// even on a new connection; it still listens on UDP at Addr.
func NewPhoneTCP(t testing.TB, ip string) *Phone { return newPhone(t, ip, true) }

func newPhone(t testing.TB, ip string, tcp bool) *Phone {
	t.Helper()
	p := &Phone{t: t, IP: netip.MustParseAddr(ip), incoming: make(chan *Incoming, 16),
		servers: map[string]*Incoming{}, clients: map[string]*Outgoing{}, reqNotify: make(chan struct{})}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var err error
	// Every TCP connection leaves from the phone's own IP, in-dialog ones
	// too (sipgo's dialogs dial without the client's connection address):
	// on loopback an unbound socket would leave from 127.0.0.1, which is
	// cleanline's address, not a trunk's or a line's.
	local := &net.TCPAddr{IP: net.ParseIP(ip)}
	tcpTransport := &sip.TransportTCP{DialerCreate: func(laddr net.Addr) net.Dialer {
		if a, ok := laddr.(*net.TCPAddr); ok && a != nil && a.IP != nil && !a.IP.IsUnspecified() {
			return net.Dialer{Timeout: time.Minute, LocalAddr: laddr}
		}
		return net.Dialer{Timeout: time.Minute, LocalAddr: local}
	}}
	p.ua, err = sipgo.NewUA(sipgo.WithUserAgent("siptest"), sipgo.WithUserAgentHostname(ip),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet),
			sip.WithTransportLayerTransports(sip.TransportsConfig{TCP: tcpTransport})))
	if err != nil {
		t.Fatal(err)
	}
	p.pc, err = net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatalf("siptest: listen on %s: %v (loopback aliases 127.0.0.x must be usable)", ip, err)
	}
	if uc, ok := p.pc.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(4 << 20) // load tests burst hundreds of messages
	}
	p.Addr = p.pc.LocalAddr().(*net.UDPAddr).AddrPort()
	p.srv, _ = sipgo.NewServer(p.ua, sipgo.WithServerLogger(quiet))
	contact := sip.Uri{Scheme: "sip", User: "phone", Host: ip, Port: int(p.Addr.Port())}
	if tcp {
		p.ln, err = net.Listen("tcp", ip+":0")
		if err != nil {
			p.pc.Close()
			p.ua.Close()
			t.Fatalf("siptest: listen on tcp %s: %v", ip, err)
		}
		p.TCPAddr = p.ln.Addr().(*net.TCPAddr).AddrPort()
		contact.Port = int(p.TCPAddr.Port())
		contact.UriParams = sip.NewParams()
		contact.UriParams.Add("transport", "tcp")
		// TCP connections leave from our IP (cleanline tells parties apart
		// by it) but ephemeral ports: one port would fail from the second peer on.
		p.cli, _ = sipgo.NewClient(p.ua, sipgo.WithClientHostname(ip), sipgo.WithClientLogger(quiet),
			sipgo.WithClientConnectionAddr(ip+":0"))
	} else {
		p.cli, _ = sipgo.NewClient(p.ua, sipgo.WithClientHostname(ip), sipgo.WithClientLogger(quiet),
			sipgo.WithClientConnectionAddr(p.Addr.String()))
	}
	p.dua = &sipgo.DialogUA{Client: p.cli, ContactHDR: sip.ContactHeader{Address: contact}}
	p.srv.OnInvite(p.onInvite)
	p.srv.OnAck(p.onAck)
	p.srv.OnBye(p.onBye)
	for _, m := range []sip.RequestMethod{sip.INFO, sip.UPDATE, sip.OPTIONS, sip.NOTIFY} {
		p.srv.OnRequest(m, p.onOther)
	}
	go p.srv.ServeUDP(p.pc) //nolint:errcheck
	if p.ln != nil {
		go p.srv.ServeTCP(p.ln) //nolint:errcheck
	}
	waitListening(t, p.ua, p.Addr)
	t.Cleanup(p.Close)
	return p
}

// URI is a SIP URI for user at this phone (over TCP for a TCP phone); an
// empty user gives a URI without one.
func (p *Phone) URI(user string) string {
	if user != "" {
		user += "@"
	}
	if p.ln != nil {
		return fmt.Sprintf("sip:%s%s;transport=tcp", user, p.TCPAddr)
	}
	return fmt.Sprintf("sip:%s%s", user, p.Addr)
}

// TCP reports whether the phone uses TCP.
func (p *Phone) TCP() bool { return p.ln != nil }

// IgnoreBye makes the phone drop every BYE without answering, as a
// fraudster's trunk leg that wants to keep the call open would.
func (p *Phone) IgnoreBye(on bool) {
	p.mu.Lock()
	p.ignoreBye = on
	p.mu.Unlock()
}

// SetReply forces the phone's answer to in-dialog requests of method
// (re-INVITE, UPDATE, INFO, OPTIONS): code > 0 answers with code, code < 0
// drops them unanswered, 0 restores the normal behaviour. Such requests are
// still recorded.
func (p *Phone) SetReply(method sip.RequestMethod, code int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.replies == nil {
		p.replies = map[sip.RequestMethod]int{}
	}
	p.replies[method] = code
}

// forced answers req as SetReply says; false when the phone should go on.
func (p *Phone) forced(req *sip.Request, tx sip.ServerTransaction) bool {
	p.mu.Lock()
	code := p.replies[req.Method]
	p.mu.Unlock()
	switch {
	case code > 0:
		_ = tx.Respond(sip.NewResponseFromRequest(req, code, "Forced", nil))
	case code < 0:
	default:
		return false
	}
	return true
}

// Close stops the phone and closes every socket it opened.
func (p *Phone) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		var rtps []*RTP
		for _, c := range p.servers {
			rtps = append(rtps, c.RTP)
		}
		for _, c := range p.clients {
			rtps = append(rtps, c.RTP)
		}
		p.mu.Unlock()
		for _, r := range rtps {
			r.Close()
		}
		p.pc.Close()
		if p.ln != nil {
			p.ln.Close()
		}
		p.ua.Close()
	})
}

// Requests returns the in-dialog requests the phone received, in order.
func (p *Phone) Requests() []*sip.Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*sip.Request(nil), p.requests...)
}

// WaitRequest waits for an in-dialog request of method.
func (p *Phone) WaitRequest(ctx context.Context, method sip.RequestMethod) (*sip.Request, error) {
	for {
		p.mu.Lock()
		for _, r := range p.requests {
			if r.Method == method {
				p.mu.Unlock()
				return r, nil
			}
		}
		ch := p.reqNotify
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("siptest: no %s: %w", method, ctx.Err())
		case <-ch:
		}
	}
}

// WaitRequests waits until the phone has received n in-dialog requests of method.
func (p *Phone) WaitRequests(ctx context.Context, method sip.RequestMethod, n int) error {
	for {
		p.mu.Lock()
		got := 0
		for _, r := range p.requests {
			if r.Method == method {
				got++
			}
		}
		ch := p.reqNotify
		p.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("siptest: %d of %d %s: %w", got, n, method, ctx.Err())
		case <-ch:
		}
	}
}

func (p *Phone) record(req *sip.Request) {
	p.mu.Lock()
	p.requests = append(p.requests, req)
	close(p.reqNotify)
	p.reqNotify = make(chan struct{})
	p.mu.Unlock()
}

// Incoming waits for the next call ringing this phone.
func (p *Phone) Incoming(ctx context.Context) (*Incoming, error) {
	select {
	case c := <-p.incoming:
		return c, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("siptest: no incoming call: %w", ctx.Err())
	}
}

// NoIncoming fails unless no call rings the phone for d.
func (p *Phone) NoIncoming(d time.Duration) error {
	select {
	case c := <-p.incoming:
		return fmt.Errorf("siptest: unexpected call from %s", c.Req.From().Address.String())
	case <-time.After(d):
		return nil
	}
}

func (p *Phone) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if req.To().Params.Has("tag") {
		p.record(req)
		if p.forced(req, tx) {
			return
		}
		// A re-INVITE to us: answer with our address, same as before.
		c := p.find(req)
		if c == nil {
			_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
			return
		}
		body, _ := media.BuildOffer(c.rtp().Local(), media.CodecPCMA, media.CodecPCMU, media.CodecTelephoneEvent)
		res := sip.NewSDPResponseFromRequest(req, body)
		_ = tx.Respond(res)
		return
	}
	d, err := p.dua.ReadInvite(req, tx)
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	r, err := newRTP(p.IP)
	if err != nil {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 500, "No RTP", nil))
		return
	}
	in := &Incoming{p: p, Req: req, D: d, RTP: r, done: make(chan struct{})}
	if si, err := media.ParseSDP(req.Body()); err == nil {
		in.Offer = si
		r.SetRemote(si.RTP)
	}
	p.mu.Lock()
	p.servers[d.ID] = in
	p.mu.Unlock()
	p.incoming <- in
	// Keep the transaction alive until the test answers or refuses.
	select {
	case <-in.done:
	case <-d.Context().Done():
	case <-tx.Done():
	}
}

type legOwner interface{ rtp() *RTP }

func (p *Phone) find(req *sip.Request) legOwner {
	p.mu.Lock()
	defer p.mu.Unlock()
	if id, err := sip.DialogIDFromRequestUAS(req); err == nil {
		if c, ok := p.servers[id]; ok {
			return c
		}
	}
	if id, err := sip.DialogIDFromRequestUAC(req); err == nil {
		if c, ok := p.clients[id]; ok {
			return c
		}
	}
	return nil
}

func (p *Phone) onAck(req *sip.Request, tx sip.ServerTransaction) {
	p.mu.Lock()
	id, _ := sip.DialogIDFromRequestUAS(req)
	c := p.servers[id]
	p.mu.Unlock()
	if c != nil {
		_ = c.D.ReadAck(req, tx)
	}
}

func (p *Phone) onBye(req *sip.Request, tx sip.ServerTransaction) {
	p.record(req)
	p.mu.Lock()
	ignore := p.ignoreBye
	p.mu.Unlock()
	if ignore {
		return
	}
	switch c := p.find(req).(type) {
	case *Incoming:
		_ = c.D.ReadBye(req, tx)
	case *Outgoing:
		_ = c.D.ReadBye(req, tx)
	default:
		_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
	}
}

func (p *Phone) onOther(req *sip.Request, tx sip.ServerTransaction) {
	p.record(req)
	if p.forced(req, tx) {
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
}

// Incoming is a call ringing the phone.
type Incoming struct {
	p     *Phone
	Req   *sip.Request
	D     *sipgo.DialogServerSession
	RTP   *RTP
	Offer *media.SessionInfo
	once  sync.Once
	done  chan struct{}
}

func (c *Incoming) rtp() *RTP { return c.RTP }

func (c *Incoming) finish() { c.once.Do(func() { close(c.done) }) }

// Ring sends 180 Ringing.
func (c *Incoming) Ring() error { return c.D.Respond(180, "Ringing", nil) }

// EarlyMedia sends 183 with our SDP.
func (c *Incoming) EarlyMedia() error {
	body, err := c.answerSDP()
	if err != nil {
		return err
	}
	ct := sip.ContentTypeHeader("application/sdp")
	return c.D.Respond(183, "Session Progress", body, &ct)
}

// Reject sends a final error response.
func (c *Incoming) Reject(code int, reason string) error {
	defer c.finish()
	return c.D.Respond(code, reason, nil)
}

func (c *Incoming) answerSDP() ([]byte, error) {
	if c.Offer == nil {
		return nil, errors.New("siptest: no offer to answer")
	}
	body, _, err := media.BuildAnswer(c.Offer, c.RTP.Local(), []media.Codec{media.CodecPCMA, media.CodecPCMU})
	return body, err
}

// Answer sends 200 with our SDP and waits for the ACK.
func (c *Incoming) Answer(hdrs ...sip.Header) error {
	defer c.finish()
	body, err := c.answerSDP()
	if err != nil {
		return err
	}
	res := sip.NewSDPResponseFromRequest(c.D.InviteRequest, body)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	return c.D.WriteResponse(res)
}

// TelephoneEventPT is the RFC 4733 payload type the offer carried (101 if none).
func (c *Incoming) TelephoneEventPT() uint8 {
	if c.Offer != nil && c.Offer.TelephoneEvent != nil {
		return c.Offer.TelephoneEvent.PT
	}
	return 101
}

// Bye hangs up.
func (c *Incoming) Bye(ctx context.Context) error { return c.D.Bye(ctx) }

// Ended is closed when the dialog ends (BYE either way, or refusal).
func (c *Incoming) Ended() <-chan struct{} { return c.D.Context().Done() }

// Cancelled reports whether the call ended by the caller's CANCEL (RFC
// 3261 §9.2: our transaction answered 487).
func (c *Incoming) Cancelled() bool {
	return errors.Is(context.Cause(c.D.Context()), sip.ErrTransactionCanceled)
}

// Request sends an in-dialog request and returns the final response.
func (c *Incoming) Request(ctx context.Context, method sip.RequestMethod, body []byte, ctype string) (*sip.Response, error) {
	req := sip.NewRequest(method, c.D.InviteRequest.Contact().Address)
	if ctype != "" {
		ct := sip.ContentTypeHeader(ctype)
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
	return c.D.Do(ctx, req)
}

// waitListening waits until sipgo has registered the listener, so the
// first request leaves from it (ServeUDP registers it on its goroutine).
func waitListening(t testing.TB, ua *sipgo.UserAgent, addr netip.AddrPort) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		if c, _ := ua.TransportLayer().GetConnection("udp", addr.String()); c != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("siptest: listener %s never registered", addr)
		}
		time.Sleep(time.Millisecond)
	}
}
