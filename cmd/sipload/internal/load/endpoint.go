package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// endpoint is one sipgo UserAgent with its Server, Client and listener: one
// per process, so every call shares the socket, the transaction layer and
// its timers, as a real trunk or line would.
type endpoint struct {
	ua        *sipgo.UserAgent
	srv       *sipgo.Server
	cli       *sipgo.Client
	transport string // "udp" or "tcp"
	addr      *net.UDPAddr
	contact   sip.ContactHeader
	closer    io.Closer
	serve     func() error
	served    chan struct{} // nil until start
}

// checkTransport accepts the transports sipload supports.
func checkTransport(t string) (string, error) {
	switch t = strings.ToLower(t); t {
	case "udp", "tcp":
		return t, nil
	}
	return "", fmt.Errorf("%w: --transport %q: want udp or tcp", ErrConfig, t)
}

// resolveHostPort parses host:port into an IPv4/IPv6 address; names are
// resolved once here so the hot path never does DNS.
func resolveHostPort(flag, hp string) (*net.UDPAddr, error) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return nil, fmt.Errorf("%w: %s %q: %w", ErrConfig, flag, hp, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return nil, fmt.Errorf("%w: %s %q: bad port", ErrConfig, flag, hp)
	}
	ip := net.ParseIP(host)
	if ip == nil {
		ips, err := net.DefaultResolver.LookupIP(context.Background(), "ip4", host)
		if err != nil || len(ips) == 0 {
			return nil, fmt.Errorf("%w: %s %q: cannot resolve host", ErrConfig, flag, hp)
		}
		ip = ips[0]
	}
	return &net.UDPAddr{IP: ip, Port: p}, nil
}

// newEndpoint listens on bind and wires a UA to it; it reads nothing
// until start, so that handlers are registered before any request can look
// them up. log may be nil (quiet).
func newEndpoint(transport string, bind *net.UDPAddr, log *slog.Logger) (*endpoint, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if bind.IP.IsUnspecified() {
		return nil, fmt.Errorf("%w: bind address %s: give a concrete IP, it goes into Via, Contact and SDP", ErrConfig, bind)
	}
	ua, err := sipgo.NewUA(
		sipgo.WithUserAgent("sipload"),
		sipgo.WithUserAgentHostname(bind.IP.String()),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(log),
			// A 1xx overtaken by the final response, or a retransmitted
			// final response, lands here; nothing to do with it.
			sip.WithTransactionLayerUnhandledResponseHandler(func(*sip.Response) {})),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(log)),
	)
	if err != nil {
		return nil, err
	}
	e := &endpoint{ua: ua, transport: transport}
	switch transport {
	case "udp":
		c, err := net.ListenUDP("udp", bind)
		if err != nil {
			_ = ua.Close()
			return nil, fmt.Errorf("listen udp %s: %w", bind, err)
		}
		e.addr = c.LocalAddr().(*net.UDPAddr)
		e.closer = c
		e.serve = func() error { return e.srv.ServeUDP(c) }
	default:
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: bind.IP, Port: bind.Port})
		if err != nil {
			_ = ua.Close()
			return nil, fmt.Errorf("listen tcp %s: %w", bind, err)
		}
		a := l.Addr().(*net.TCPAddr)
		e.addr = &net.UDPAddr{IP: a.IP, Port: a.Port}
		e.closer = l
		e.serve = func() error { return e.srv.ServeTCP(l) }
	}
	e.srv, err = sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	if err != nil {
		_ = e.closer.Close()
		_ = ua.Close()
		return nil, err
	}
	opts := []sipgo.ClientOption{sipgo.WithClientLogger(log), sipgo.WithClientHostname(e.addr.IP.String())}
	if transport == "udp" {
		// Send from the listening socket, so responses and the peer's
		// in-dialog requests come back to the one port we read.
		opts = append(opts, sipgo.WithClientConnectionAddr(e.addr.String()), sipgo.WithClientPort(e.addr.Port))
	} else {
		opts = append(opts, sipgo.WithClientPort(e.addr.Port))
	}
	e.cli, err = sipgo.NewClient(ua, opts...)
	if err != nil {
		_ = e.closer.Close()
		_ = ua.Close()
		return nil, err
	}
	e.contact = sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "sipload", Host: e.addr.IP.String(), Port: e.addr.Port}}
	if transport == "tcp" {
		e.contact.Address.UriParams = sip.NewParams()
		e.contact.Address.UriParams.Add("transport", "tcp")
	}
	e.srv.OnOptions(func(req *sip.Request, tx sip.ServerTransaction) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
	return e, nil
}

// start serves requests; register handlers first.
func (e *endpoint) start() {
	e.served = make(chan struct{})
	go func() {
		defer close(e.served)
		_ = e.serve()
	}()
}

func (e *endpoint) close() {
	_ = e.closer.Close()
	if e.served != nil {
		<-e.served
	}
	_ = e.ua.Close()
}

// uri is a SIP URI for user at addr over the endpoint's transport.
func (e *endpoint) uri(user string, addr *net.UDPAddr) sip.Uri {
	u := sip.Uri{Scheme: "sip", User: user, Host: addr.IP.String(), Port: addr.Port}
	if e.transport == "tcp" {
		u.UriParams = sip.NewParams()
		u.UriParams.Add("transport", "tcp")
	}
	return u
}

// probe sends OPTIONS until the target answers with any response or ctx
// ends. Any response proves a SIP stack is listening; a 404 or 405 is fine.
func (e *endpoint) probe(ctx context.Context, target *net.UDPAddr) error {
	var last error
	for {
		slot := time.Now().Add(500 * time.Millisecond)
		attempt, cancel := context.WithDeadline(ctx, slot)
		req := sip.NewRequest(sip.OPTIONS, e.uri("", target))
		req.SetTransport(strings.ToUpper(e.transport))
		_, err := e.cli.Do(attempt, req)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
		// A refused TCP connect fails at once; wait out the attempt's slot
		// rather than spinning.
		t := time.NewTimer(time.Until(slot))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	if errors.Is(last, context.DeadlineExceeded) || errors.Is(last, context.Canceled) {
		return fmt.Errorf("%w: %s %s: no response to OPTIONS", ErrUnreachable, e.transport, target)
	}
	return fmt.Errorf("%w: %s %s: %w", ErrUnreachable, e.transport, target, last)
}
