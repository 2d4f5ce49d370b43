// Package sip is CleanLine's back-to-back user agent on sipgo: it screens
// every call a trunk sends to a line, rings, warns or refuses it, anchors the
// media of both legs in a relay (package sip/media), and tears both legs
// down the instant either side ends the call (ARCHITECTURE.md, D1–D6).
//
// Every call has two dialogs that cleanline owns: the leg whose INVITE we
// received (a sipgo DialogServerSession) and the leg we dialled (a
// DialogClientSession). Nothing is forwarded between them but what we copy
// on purpose: caller identity, and our own SDP.
package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/limit"
	"github.com/cleanline/cleanline/sip/media"
)

// Server is the B2BUA: one sipgo UserAgent with its Server and Client, the
// call registry, and the media port pool.
type Server struct {
	cfg      Config                  // as started: what only a restart changes (listeners, media, limits) is read here
	rt       atomic.Pointer[routing] // trunks, lines, screener, prompts, timers: what Reload replaces (reload.go)
	log      *zap.Logger
	ua       *sipgo.UserAgent
	srv      *sipgo.Server
	local    *face      // what every peer is told, or the LAN's when there is an external face (face.go)
	external *face      // what peers outside sip.external.local_nets are told; nil: none
	up       *upstreams // the trunks' registrations at their providers (upstream.go)
	reg      *registry
	auth     *authenticator // digest challenges of lines with credentials
	ports    *media.PortPool
	prompts  *media.Prompts
	player   *media.Player // paces every prompt from a few goroutines, not one timer each
	metrics  *Metrics
	promReg  prometheus.Registerer // where metrics were registered; nil: nowhere
	events   []*eventQueue         // call events' sinks (WithEvents)
	bindIP   netip.Addr
	resolver *net.Resolver // host names: the providers' (upstream_dns.go), and sipgo's

	// The registrar (registrar.go, bindings.go): the devices'
	// registrations, which outlive a reload; the lockout of guessers (wrong
	// REGISTER answers per source); the dialog UA for devices reached
	// through their flow (in-dialog requests go where they answered from).
	binds    *bindings
	authLock *limit.Rates

	conns     *limit.Conns               // TCP and TLS connections, against sip.limits
	rates     *limit.Rates               // strangers' requests per second, and their bans
	kept      *retained                  // answered transactions sipgo keeps for its timers, capped
	listeners map[string]*limit.Listener // "tcp", "tls" → its accept loop; set by Start

	mu      sync.Mutex
	closers []func() error
	addrs   map[string]netip.AddrPort // network → bound address
	laddr   sip.Addr                  // the UDP listener: requests we originate leave from it
	started bool
	closing atomic.Bool
	calls   sync.WaitGroup // running call goroutines (handlers, BYEs)
	busy    atomic.Int64   // the same count, readable: tests wait for 0
	// workMu orders a handler's "not closing, so count me" against
	// Shutdown's "closing, so wait": a WaitGroup must not be added to from
	// zero while it is waited on.
	workMu    sync.Mutex
	closeOnce sync.Once

	// life ends at Close; abandoned INVITEs (pendingInvite) live within it,
	// and straggling counts them. Shutdown does not wait for them.
	life       context.Context
	endLife    context.CancelCauseFunc
	mwiSlots   chan struct{} // voicemail indications being passed on (mwi.go)
	mwiSubs    *mwiSubs      // the lines' phones' subscriptions to them (mwisub.go)
	straggling atomic.Int64

	unrecorded atomic.Int64 // calls begun whose record is not written yet
}

// udpReadBuffer is the receive buffer asked for on UDP SIP listeners.
const udpReadBuffer = 4 << 20

// Option customises a Server.
type Option func(*Server)

// WithMetrics registers the server's metrics (Metrics) on reg.
func WithMetrics(reg prometheus.Registerer) Option { return func(s *Server) { s.promReg = reg } }

// WithPrompts replaces the prompt set (default: media.DefaultPrompts with
// the configured overrides, read again at each reload); p is kept across
// reloads.
func WithPrompts(p *media.Prompts) Option { return func(s *Server) { s.prompts = p } }

// WithResolver makes s look host names up (the providers' SRV and address
// records) with r instead of the system's resolver.
func WithResolver(r *net.Resolver) Option { return func(s *Server) { s.resolver = r } }

// NewServer builds the B2BUA. cfg must have been through Defaults and
// Validate (NewServer calls both again, they are idempotent).
func NewServer(cfg Config, sc *screening.Screener, log *zap.Logger, opts ...Option) (*Server, error) {
	if sc == nil {
		return nil, fmt.Errorf("%w: no screener", ErrConfig)
	}
	if log == nil {
		log = zap.NewNop()
	}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: log, reg: newRegistry(), addrs: map[string]netip.AddrPort{}, auth: newAuthenticator(),
		listeners: map[string]*limit.Listener{}}
	s.conns = limit.NewConns(cfg.Limits.TCPPerSource, cfg.Limits.TCPMax, s.knownSource)
	s.rates = limit.NewRates(limit.RatesConfig{Rate: cfg.Limits.RatePerSource, Burst: cfg.Limits.BurstPerSource,
		BanFor: cfg.Limits.BanFor, Exempt: s.knownSource, OnBan: s.onBan})
	s.kept = &retained{max: cfg.Limits.RetainedTransactions}
	s.binds = newBindings(cfg.Registrar.BindingsFile, log.Named("registrar"))
	s.life, s.endLife = context.WithCancelCause(context.Background())
	s.mwiSlots = make(chan struct{}, mwiInFlight)
	s.mwiSubs = newMWISubs()
	s.up = newUpstreams(s)
	s.resolver = net.DefaultResolver
	for _, o := range opts {
		o(s)
	}
	s.metrics = NewMetrics(s.promReg)
	s.authLock = s.newAuthLockout()
	rt, err := s.newRouting(cfg, sc)
	if err != nil {
		return nil, err
	}
	s.rt.Store(rt)
	if err := s.binds.load(rt); err != nil {
		return nil, err
	}
	if s.ports, err = media.NewPortPool(cfg.Media.PortMin, cfg.Media.PortMax); err != nil {
		return nil, cfgErr("sip.media", "%v", err)
	}
	s.metrics.registerServer(s.promReg, s)
	s.ports.KeepWarm(cfg.Media.WarmPorts, cfg.Media.PortRest)
	s.bindIP = netip.MustParseAddr(cfg.Media.Bind)
	host := cfg.Advertise
	if host == "" {
		host = netip.MustParseAddrPort(cfg.Listen[0].Addr).Addr().String()
	}
	advIP := s.bindIP
	switch {
	case cfg.Media.Advertise != "":
		advIP = netip.MustParseAddr(cfg.Media.Advertise)
	case s.bindIP.IsUnspecified():
		a, err := netip.ParseAddr(host)
		if err != nil {
			return nil, cfgErr("sip.media.advertise", "empty while media.bind is %s and sip.advertise %q is not an IP", s.bindIP, host)
		}
		advIP = a
	}

	slogger := newSlogLogger(log)
	tlsConf, err := cfg.TLS.config()
	if err != nil {
		return nil, err
	}
	s.ua, err = sipgo.NewUA(
		sipgo.WithUserAgenTLSConfig(tlsConf),
		sipgo.WithUserAgentDNSResolver(s.resolver),
		sipgo.WithUserAgent(cfg.UserAgent),
		sipgo.WithUserAgentHostname(host),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(slogger)),
		// Strangers over their rate are banned and dropped before parsing (flood.go).
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(slogger), sip.WithTransportLayerReadFilter(s.readFilter)),
	)
	if err != nil {
		return nil, err
	}
	if s.srv, err = sipgo.NewServer(s.ua, sipgo.WithServerLogger(slogger)); err != nil {
		s.ua.Close()
		return nil, err
	}
	if s.local, err = newFace(s.ua, "local", host, advIP, sipgo.WithClientLogger(slogger)); err != nil {
		s.ua.Close()
		return nil, err
	}
	if x := cfg.External; x.Advertise != "" {
		if s.external, err = newFace(s.ua, "external", x.Advertise, x.media, sipgo.WithClientLogger(slogger)); err != nil {
			s.local.close()
			s.ua.Close()
			return nil, err
		}
	}
	s.srv.OnInvite(s.guard(s.onInvite))
	s.srv.OnAck(s.guard(s.onAck))
	s.srv.OnBye(s.guard(s.onBye))
	s.srv.OnCancel(s.guard(s.onCancel))
	s.srv.OnOptions(s.guard(s.onOptions))
	s.srv.OnInfo(s.guard(s.onInfo))
	s.srv.OnUpdate(s.guard(s.onUpdate))
	s.srv.OnRefer(s.guard(s.onRefer))
	s.srv.OnPrack(s.guard(s.onPrack))
	s.srv.OnRegister(s.guard(s.onRegister))
	s.srv.OnNotify(s.guard(s.onNotify))
	s.srv.OnSubscribe(s.guard(s.onSubscribe))
	// MESSAGE, PUBLISH...: 405 to trunks and lines
	// (RFC 3261 §8.2.1), 403 to strangers like everything else.
	s.srv.OnNoRoute(s.guard(s.onOther))
	// Last, so that no error return above leaks its goroutines. One shared
	// pacer: p99 jitter 1.3 ms at 500 prompts against 1.7 ms for a timer
	// per prompt, and 25-30% less CPU at 1,000 (sip/media BenchmarkPlayer).
	s.player = media.NewPlayer(media.PlayerConfig{Logger: log.Named("player")})
	s.startEvents()
	return s, nil
}

// Start binds every listener and serves in the background, then begins
// the trunks' registrations. It returns once the sockets are bound, so a
// caller can dial in straight away.
func (s *Server) Start() error {
	if err := s.listen(); err != nil {
		return err
	}
	s.up.start(s.routing())
	go s.natPings()
	return nil
}

func (s *Server) listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("sip: server already started")
	}
	s.started = true
	var port int
	var serve []func() // started once dua is set: handlers read it
	for i, l := range s.cfg.Listen {
		key := fmt.Sprintf("sip.listen[%d]", i)
		switch l.Network {
		case "udp":
			pc, err := net.ListenPacket("udp", l.Addr)
			if err != nil {
				return cfgErr(key, "%v", err)
			}
			s.closers = append(s.closers, pc.Close)
			if uc, ok := pc.(*net.UDPConn); ok {
				// A trunk's burst of INVITEs (and their retransmissions) must
				// not overflow the kernel's default ~200 KB queue while
				// sipgo's reader catches up: a dropped ACK costs a caller
				// seconds of retransmissions. Capped by net.core.rmem_max.
				_ = uc.SetReadBuffer(udpReadBuffer)
			}
			ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
			s.addrs["udp"], port = ap, int(ap.Port())
			s.laddr = sip.Addr{IP: net.IP(ap.Addr().AsSlice()), Port: int(ap.Port())}
			serve = append(serve, func() {
				go s.srv.ServeUDP(pc) //nolint:errcheck // ends when pc is closed
				s.waitListening(ap)
			})
		case "tcp", "tls":
			tcpLn, err := net.Listen("tcp", l.Addr)
			if err != nil {
				return cfgErr(key, "%v", err)
			}
			ap := tcpLn.Addr().(*net.TCPAddr).AddrPort()
			// sipgo stops serving on the first Accept error (EMFILE
			// included): lim never returns one, and counts, refuses and
			// bounds connections (sip.limits). Over TLS the bounds go
			// above the handshake, where the messages are.
			network := l.Network
			var cert tls.Certificate
			if network == "tls" {
				if cert, err = tls.LoadX509KeyPair(l.CertFile, l.KeyFile); err != nil {
					tcpLn.Close()
					return cfgErr(key, "%v", err)
				}
			}
			lim, timeouts := s.limitListener(tcpLn, network)
			s.listeners[network] = lim
			s.closers = append(s.closers, lim.Close)
			if network == "tls" {
				ln := limit.Deadlines(tls.NewListener(lim, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}), timeouts)
				serve = append(serve, func() { go lim.Serve(func() error { return s.srv.ServeTLS(ln) }) }) //nolint:errcheck
			} else {
				serve = append(serve, func() { go lim.Serve(func() error { return s.srv.ServeTCP(lim) }) }) //nolint:errcheck
			}
			s.addrs[l.Network] = ap
			if port == 0 {
				port = int(ap.Port())
			}
		}
	}
	for _, f := range s.faces() {
		f.listen(port, s.addrs)
	}
	for _, f := range serve {
		f()
	}
	fields := []zap.Field{zap.Any("listeners", s.addrs), zap.String("advertise", s.local.host), zap.Stringer("media", s.local.media),
		zap.Int("trunks", len(s.routing().cfg.Trunks)), zap.Int("lines", len(s.routing().cfg.Lines))}
	if s.external != nil {
		fields = append(fields, zap.String("external", s.external.host), zap.Stringer("external_media", s.external.media))
	}
	s.log.Info("sip listening", fields...)
	return nil
}

// limitListener wraps a TCP listener of network ("tcp", "tls") in
// sip.limits: the returned Listener counts and refuses connections and
// survives Accept errors; the Timeouts bound each connection's messages
// (set on the Listener for tcp, returned for the caller to put above TLS).
func (s *Server) limitListener(ln net.Listener, network string) (*limit.Listener, limit.Timeouts) {
	lc := s.cfg.Limits
	timeouts := limit.Timeouts{
		Read: lc.TCPReadTimeout, Idle: lc.TCPIdleTimeout,
		NewFramer: limit.HeaderFramer("Content-Length", "l"), // RFC 3261 §7.5, §18.3
		OnTimeout: func(kind string) { s.metrics.tcpTimeouts.WithLabelValues(network, kind).Inc() },
	}
	var lastLog atomic.Int64
	cfg := limit.Config{
		Conns:     s.conns,
		OnRefused: func(reason string) { s.metrics.tcpRefused.WithLabelValues(network, reason).Inc() },
		OnAcceptError: func(err error) {
			s.metrics.tcpAcceptErrors.WithLabelValues(network).Inc()
			// At most one line in 10 s: EMFILE may last.
			if now := time.Now().UnixNano(); now-lastLog.Load() > int64(10*time.Second) {
				lastLog.Store(now)
				s.log.Warn("sip accept failed; retrying", zap.String("network", network), zap.Error(err))
			}
		},
	}
	if network == "tcp" {
		cfg.Timeouts = timeouts
	}
	return limit.Listen(ln, cfg), timeouts
}

// knownSource reports whether ip is a configured trunk's or line's (a
// source, or the host of a trunk's outbound URI or a line's contact, whose
// responses we wait for): its TCP and TLS connections are exempt from
// sip.limits' counts and it is never rate limited nor banned, so that a
// flood from strangers, or forged from its address, cannot lock out the
// peers we serve. So is the address a registered device's REGISTER came from.
func (s *Server) knownSource(ip netip.Addr) bool {
	ip = ip.Unmap()
	rt := s.routing()
	for i := range rt.cfg.Trunks {
		t := &rt.cfg.Trunks[i]
		for _, p := range t.sources {
			if p.Contains(ip) {
				return true
			}
		}
	}
	for i := range rt.cfg.Lines {
		l := &rt.cfg.Lines[i]
		for _, p := range l.sources {
			if p.Contains(ip) {
				return true
			}
		}
	}
	return slices.Contains(rt.peerHosts, ip) || s.binds.hasIP(ip) || s.up.known(ip)
}

// hostsOf are the IP hosts of the trunks' outbound URIs and the lines'
// contacts (a host name is not known until it is resolved, and is not
// among them: list its address in sources).
func hostsOf(cfg *Config) []netip.Addr {
	var uris []sip.Uri
	for _, t := range cfg.Trunks {
		uris = append(uris, t.outURI)
		if t.Register != nil {
			uris = append(uris, t.Register.proxy)
		}
	}
	for _, l := range cfg.Lines {
		uris = append(uris, l.contact)
	}
	var out []netip.Addr
	for _, u := range uris {
		if a, err := netip.ParseAddr(u.Host); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// Healthy is nil while every TCP and TLS listener accepts connections;
// otherwise it names each that does not, and why (its accept loop ended,
// or Accept has kept failing: descriptors exhausted). For /healthz.
func (s *Server) Healthy() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for _, network := range []string{"tcp", "tls"} {
		if l := s.listeners[network]; l != nil {
			if e := l.Health(); e != nil {
				err = errors.Join(err, fmt.Errorf("sip %s listener %s: %w", network, s.addrs[network], e))
			}
		}
	}
	return err
}

// waitListening waits (briefly) until sipgo has registered a UDP listener,
// which it does on ServeUDP's goroutine; requests we originate before that
// would leave from an ephemeral socket.
func (s *Server) waitListening(ap netip.AddrPort) {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if c, _ := s.ua.TransportLayer().GetConnection("udp", ap.String()); c != nil {
			return
		}
	}
	s.log.Warn("UDP listener not registered in time", zap.Stringer("addr", ap))
}

// Addr is the address the listener of network ("udp", "tcp", "tls") is
// bound to, once started.
func (s *Server) Addr(network string) netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addrs[network]
}

// stragglers is the number of abandoned INVITEs still running (for tests
// and leak checks).
func (s *Server) stragglers() int { return int(s.straggling.Load()) }

// ActiveCalls is the number of calls alive now.
func (s *Server) ActiveCalls() int { return s.reg.count() }

// Shutdown stops taking calls (new INVITEs get 503) and ends every call with
// BYE on both legs, then waits for them to finish. When ctx ends first it
// returns ctx's error: whatever is left is abandoned (the relays are already
// closed, so no media flows). An INVITE to a far side that has not sent
// even a provisional cannot be CANCELled yet (RFC 3261 §9.1): its caller is
// answered at once and the INVITE left to finish in the background
// (pendingInvite); Shutdown does not wait for it, Close ends it. Close
// releases the sockets.
func (s *Server) Shutdown(ctx context.Context) error {
	s.workMu.Lock()
	s.closing.Store(true)
	s.workMu.Unlock()
	for _, c := range s.reg.all() {
		c.end(outcomeShutdown, sideNone)
	}
	// The registrations un-REGISTER meanwhile (RFC 3261 §10.2.2).
	unregistered := make(chan error, 1)
	go func() { unregistered <- s.up.shutdown(ctx.Done()) }()
	done := make(chan struct{})
	go func() {
		s.calls.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("sip: shutdown: %d calls still finishing: %w", s.reg.count(), ctx.Err())
	}
	if err := <-unregistered; err != nil {
		return fmt.Errorf("sip: shutdown: %w: %w", err, ctx.Err())
	}
	return nil
}

// Close ends every call at once (no waiting for BYE answers), abandons
// the INVITEs still waiting for a first response, closes the listeners and
// the UserAgent.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.closing.Store(true)
		s.up.close()
		for _, c := range s.reg.all() {
			c.end(outcomeShutdown, sideNone)
		}
		// Makes WaitAnswer return without waiting for a provisional to
		// CANCEL; closing the UserAgent ends the transactions of the rest.
		s.endLife(sipgo.WaitAnswerForceCancelErr)
		s.mu.Lock()
		closers := s.closers
		s.mu.Unlock()
		for _, f := range closers {
			err = errors.Join(err, f())
		}
		err = errors.Join(err, s.ua.Close())
		wctx, cancel := context.WithTimeout(context.Background(), s.byeTimeout())
		_ = s.up.wait(wctx.Done()) // their transactions ended with the UserAgent
		cancel()
		s.player.Close()
		err = errors.Join(err, s.ports.Close())
		s.stopEvents() // the ended calls' records are queued: written before Close returns
	})
	return err
}

// guard runs a handler so that no input can take the process down: a panic
// is logged and answered with 500 (the handler's bug is ours, not the
// peer's, and one call must not end every call). Before any handler, a
// stranger (no trunk's, no line's address) gets 403 for every method, in
// dialog or not, so that it learns neither which methods we take (405),
// which dialogs exist (481) nor how we parse (400): design flow 1. The
// stranger's 403 is stateless; what a handler answers is retained for
// RFC 3261's timers within sip.limits.retained_transactions (flood.go).
// A live call's peer stays known for its dialog after a reload removed
// its trunk or line, so that its hang-up is heard. When a line has
// devices, a REGISTER reaches the registrar from anywhere: it is how a
// device becomes known, and a request from where a device registered is
// then the line's.
func (s *Server) guard(h sipgo.RequestHandler) sipgo.RequestHandler {
	return func(req *sip.Request, stx sip.ServerTransaction) {
		if rt := s.routing(); !(req.Method == sip.REGISTER && rt.registrar()) && rt.trunkFor(req) == nil && !rt.lineSource(req) && !s.isDevice(req) && !s.inLiveDialog(req) {
			src := source(req)
			if req.IsInvite() {
				s.log.Warn("INVITE from unknown source refused", zap.Stringer("source", src),
					zap.String("to", req.Recipient.User))
			}
			s.answerStateless(req, stx, ErrNotTrunk)
			return
		}
		tx := &answered{ServerTransaction: stx}
		defer s.retain(req, tx)
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("handler panic", zap.Any("panic", r), zap.String("method", req.Method.String()), zap.Stack("stack"))
				if tx != nil && !req.IsAck() {
					_ = tx.Respond(sip.NewResponseFromRequest(req, sip.StatusInternalServerError, "Server Internal Error", nil))
				}
			}
		}()
		h(req, tx)
	}
}

// respondErr answers req with the status err maps to.
func (s *Server) respondErr(req *sip.Request, tx sip.ServerTransaction, err error, hdrs ...sip.Header) {
	code, reason := statusOf(err)
	s.metrics.refused.WithLabelValues(req.Method.String(), strconv.Itoa(code)).Inc()
	res := sip.NewResponseFromRequest(req, code, reason, nil)
	for _, h := range append(headersOf(err), hdrs...) {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		s.log.Debug("respond failed", zap.Error(err))
	}
}

func (s *Server) respond(req *sip.Request, tx sip.ServerTransaction, code int, reason string, body []byte, hdrs ...sip.Header) {
	res := sip.NewResponseFromRequest(req, code, reason, body)
	for _, h := range hdrs {
		res.AppendHeader(h)
	}
	if err := tx.Respond(res); err != nil {
		s.log.Debug("respond failed", zap.Error(err))
	}
}

// fromListener makes a request we originate leave from our UDP listener, so
// peers (and their firewalls) see our signalling port, not an ephemeral one.
func (s *Server) fromListener(req *sip.Request) {
	if s.laddr.IP != nil && (req.Transport() == "" || strings.EqualFold(req.Transport(), "udp")) {
		req.Laddr = s.laddr
	}
}

// faces are the local face and the external one, if any.
func (s *Server) faces() []*face {
	if s.external == nil {
		return []*face{s.local}
	}
	return []*face{s.local, s.external}
}

func itoa(i int) string { return strconv.Itoa(i) }

// goCall runs fn as part of the server's call work (Shutdown waits for
// it). It is called from call work already counted.
func (s *Server) goCall(fn func()) {
	s.addWork()
	go func() {
		defer s.doneWork()
		fn()
	}()
}

// beginCall counts a new call's handler, unless the server is shutting
// down; the caller then runs doneWork when it returns.
func (s *Server) beginCall() bool {
	s.workMu.Lock()
	defer s.workMu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.addWork()
	return true
}

func (s *Server) addWork() {
	s.calls.Add(1)
	s.busy.Add(1)
}

func (s *Server) doneWork() {
	s.busy.Add(-1)
	s.calls.Done()
}

// byeTimeout bounds one BYE to a peer.
func (s *Server) byeTimeout() time.Duration { return s.timers().Bye }
