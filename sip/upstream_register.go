package sip

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
	"go.uber.org/zap"
)

// One registration's life: REGISTER (RFC 3261 §10.2) with digest on a
// challenge, refresh before the binding lapses, keep-alives in between,
// backoff after a failure, un-REGISTER when it stops.

// registration is one trunk's registration at its provider.
type upstreamReg struct {
	u      *upstreams
	s      *Server
	trunk  string
	cfg    Register // validated; compared whole by reconcile
	face   *face    // what the provider is told: the face of the first hop
	log    *zap.Logger
	ctx    context.Context // ends when the registration stops
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	unreg  atomic.Bool   // un-REGISTER when stopped

	// Of run's goroutine only.
	callID  string // one Call-ID for every REGISTER (RFC 3261 §10.2)
	tag     string
	cseq    uint32
	expires time.Duration // asked for: cfg.Expires, raised by a 423
	contact sip.ContactHeader
	pongs   chan struct{} // TCP keep-alive answers (upstream_keepalive.go)

	// addrs are the registrar's and proxy's, as resolved and heard from:
	// an immutable slice, replaced whole, read without a lock on every
	// request a stranger sends (knownSource).
	addrs atomic.Pointer[[]netip.Addr]

	mu           sync.Mutex
	st           UpstreamState
	serviceRoute []string
	bound        bool   // the registrar may hold our binding: un-REGISTER it at the end
	flow         string // TCP, TLS: the remote address of the registration's connection
	hop          hop    // the first hop's server in use (upstream_dns.go)
}

// registerTimeout bounds one REGISTER transaction: Timer F (RFC 3261
// §17.1.2.2, 64*T1).
const registerTimeout = 64 * 500 * time.Millisecond

func newRegistration(u *upstreams, trunk string, cfg Register) *upstreamReg {
	s := u.s
	r := &upstreamReg{u: u, s: s, trunk: trunk, cfg: cfg, done: make(chan struct{}),
		face: s.faceAt(cfg.firstHop().Host), callID: newCallID(), tag: sip.GenerateTagN(16), expires: cfg.Expires, pongs: make(chan struct{}, 1)}
	r.ctx, r.cancel = context.WithCancel(s.life)
	r.log = s.log.With(zap.String("trunk", trunk), zap.String("registrar", cfg.Registrar))
	// The trunk's series exist from the start: a dashboard sees 0, not nothing.
	s.metrics.up.registered.WithLabelValues(trunk).Set(0)
	s.metrics.up.keepAliveFailures.WithLabelValues(trunk)
	// The Contact names our listener of the first hop's transport (RFC 3261
	// §10.2.1): the provider's INVITEs come to it, with ContactUser.
	ap := s.Addr(cfg.transport)
	uri := sip.Uri{Scheme: "sip", User: cfg.ContactUser, Host: r.face.host, Port: int(ap.Port())}
	if cfg.transport != "udp" {
		uri.UriParams = sip.NewParams()
		uri.UriParams.Add("transport", cfg.transport)
	}
	r.contact = sip.ContactHeader{Address: uri}
	aor := cfg.aor()
	r.st = UpstreamState{Trunk: trunk, Registrar: cfg.Registrar, AOR: aor.String(), Contact: uri.String(),
		State: UpstreamRegistering, Since: time.Now()}
	return r
}

// stop ends the registration; with unregister, its binding is removed
// first (Expires: 0).
func (r *upstreamReg) stop(unregister bool) {
	r.unreg.Store(unregister)
	r.cancel()
}

// run registers, refreshes and registers again until stopped; after
// (nil: nothing) is the predecessor's end, which it waits for.
func (r *upstreamReg) run(after <-chan struct{}) {
	defer r.u.wg.Done()
	defer close(r.done)
	defer r.finish()
	if after != nil {
		select {
		case <-after:
		case <-r.ctx.Done():
			return
		}
	}
	failures := 0
	for r.ctx.Err() == nil {
		granted, err := r.registerAny(r.ctx)
		if r.ctx.Err() != nil {
			return
		}
		if err != nil {
			failures++
			wait := r.backoff(failures, err)
			r.failed(err, failures, wait)
			if !sleepCtx(r.ctx, wait) {
				return
			}
			continue
		}
		failures = 0
		wait := refreshAfter(granted)
		r.registered(granted, wait)
		if err := r.hold(wait); err != nil && r.ctx.Err() == nil {
			// RFC 5626 §4.4.1: a flow whose keep-alive fails has failed;
			// the binding behind it is registered again at once.
			r.log.Warn("keep-alive to the provider failed: registering again", zap.Error(err))
			r.s.metrics.up.keepAliveFailures.WithLabelValues(r.trunk).Inc()
			r.keepAliveFailed(err)
		}
	}
}

// refreshAfter is when a binding granted for g is refreshed: at half its
// life (RFC 3261 §10.2.4 leaves when to the UA), and never later than its
// end less the longest a REGISTER may take (Timer F), so a slow answer
// still comes in time; a binding too short for both, at a quarter.
func refreshAfter(g time.Duration) time.Duration {
	d := g / 2
	if late := g - registerTimeout; late < d {
		d = max(late, g/4)
	}
	return d
}

// backoff is how long to wait after failures failed attempts in a row:
// RetryMin doubling up to RetryMax, or RetryMax at once when the
// credentials were refused (trying them faster changes nothing, and
// providers lock out accounts that keep trying); drawn from the upper half
// of that, so that many instances do not register again in step.
func (r *upstreamReg) backoff(failures int, err error) time.Duration {
	d := r.cfg.RetryMax
	var re *regError
	if !errors.As(err, &re) || !re.credentials {
		if b := r.cfg.RetryMin << min(failures-1, 30); b > 0 && b < d {
			d = b
		}
	}
	return d/2 + rand.N(d/2+1)
}

// registerAt REGISTERs once at the server in use (answering a challenge,
// and a 423 by asking for the registrar's Min-Expires) and returns the
// lifetime granted.
func (r *upstreamReg) registerAt(ctx context.Context) (time.Duration, error) {
	for range 3 {
		res, err := r.do(ctx, r.request(r.expires))
		if err != nil {
			return 0, err
		}
		if res.IsSuccess() {
			return r.accepted(res)
		}
		if res.StatusCode == statusIntervalTooBrief {
			// RFC 3261 §10.2.8: the registrar's Min-Expires is the shortest
			// it takes; ask for that (and keep asking for it).
			min, ok := headerSeconds(res, "Min-Expires")
			if !ok || min <= r.expires {
				return 0, regRefused(res, false)
			}
			r.log.Info("registrar wants a longer registration (423): asking for its Min-Expires",
				zap.Duration("asked", r.expires), zap.Duration("min_expires", min))
			r.expires = min
			continue
		}
		// RFC 3261 §21.4.4: 403, "authorization will not help": the
		// subscriber's credentials or account are refused.
		return 0, regRefused(res, res.StatusCode == sip.StatusForbidden)
	}
	return 0, &regError{status: statusIntervalTooBrief, reason: "Min-Expires kept rising"}
}

// do sends req and, on a challenge (RFC 3261 §22.2: 401 WWW-Authenticate;
// §22.3: 407 Proxy-Authenticate), sends it again once with the
// subscriber's credentials (sipgo's DoDigestAuth: CSeq up by one, a new
// branch). A second challenge means the credentials are wrong, unless it
// says stale=true.
func (r *upstreamReg) do(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	res, err := r.face.upCli.Do(ctx, req)
	if err != nil {
		return nil, unanswered(err)
	}
	for answered := 0; challenge(res.StatusCode); answered++ {
		// RFC 7616 §3.3 (RFC 2617 §3.2.1): stale=true says the answer
		// was right but its nonce had expired; the fresh nonce is
		// answered, once, rather than taken as a refusal of the
		// subscriber's credentials and backed off for retry_max.
		if answered == 2 || answered == 1 && !staleChallenge(res) {
			return nil, regRefused(r.heard(res), true)
		}
		res, err = r.face.upCli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: r.cfg.AuthUsername, Password: r.cfg.password})
		r.cseq = req.CSeq().SeqNo
		if err != nil {
			return nil, unanswered(err)
		}
	}
	return r.heard(res), nil
}

// staleChallenge reports whether res's challenge says stale=true.
func staleChallenge(res *sip.Response) bool {
	h := res.GetHeader("WWW-Authenticate")
	if res.StatusCode == sip.StatusProxyAuthRequired {
		h = res.GetHeader("Proxy-Authenticate")
	}
	if h == nil {
		return false
	}
	chal, err := digest.ParseChallenge(h.Value())
	return err == nil && chal.Stale
}

func challenge(code int) bool {
	return code == sip.StatusUnauthorized || code == sip.StatusProxyAuthRequired
}

// request is a REGISTER of our Contact for expires (0: un-REGISTER, RFC
// 3261 §10.2.2: this contact only, never "*").
func (r *upstreamReg) request(expires time.Duration) *sip.Request {
	req := sip.NewRequest(sip.REGISTER, *r.cfg.registrar.Clone())
	aor := r.cfg.aor()
	from := sip.FromHeader{Address: aor, Params: sip.NewParams()}
	from.Params.Add("tag", r.tag)
	to := sip.ToHeader{Address: aor}
	callID := sip.CallIDHeader(r.callID)
	r.cseq++ // RFC 3261 §10.2: the same Call-ID, CSeq up by one
	cseq := sip.CSeqHeader{SeqNo: r.cseq, MethodName: sip.REGISTER}
	maxFwd := sip.MaxForwardsHeader(70)
	ct := sip.ContactHeader{Address: *r.contact.Address.Clone()}
	exp := sip.ExpiresHeader(uint32(expires / time.Second))
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	req.AppendHeader(&callID)
	req.AppendHeader(&cseq)
	req.AppendHeader(&maxFwd)
	if pr := r.cfg.proxyRoute(); pr != "" {
		req.AppendHeader(sip.NewHeader("Route", pr))
	}
	req.AppendHeader(&ct)
	req.AppendHeader(&exp)
	// RFC 3327 §5: we take a Path in the answer (and show it).
	req.AppendHeader(sip.NewHeader("Supported", "path"))
	req.AppendHeader(sip.NewHeader("Allow", allowMethods))
	req.SetTransport(strings.ToUpper(r.cfg.transport))
	if d := r.dest(); d != "" {
		req.SetDestination(d)
	}
	r.s.fromListener(req)
	return req
}

// accepted reads a 2xx: the lifetime granted our contact (RFC 3261
// §10.2.4: the registrar lists every binding with its expires, or says it
// in Expires), the Service-Route (RFC 3608 §6.1) and Path (RFC 3327 §5.1).
func (r *upstreamReg) accepted(res *sip.Response) (time.Duration, error) {
	granted := time.Duration(-1)
	for _, h := range res.GetHeaders("Contact") {
		ct, ok := h.(*sip.ContactHeader)
		if !ok || !sameContact(ct.Address, r.contact.Address) {
			continue
		}
		if v, ok := ct.Params.Get("expires"); ok {
			if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32); err == nil {
				granted = time.Duration(n) * time.Second
			}
		}
	}
	if granted < 0 {
		if d, ok := headerSeconds(res, "Expires"); ok {
			granted = d
		} else {
			granted = r.expires
		}
	}
	if granted <= 0 {
		return 0, &regError{status: res.StatusCode, reason: "the registrar granted our contact no time"}
	}
	r.mu.Lock()
	r.serviceRoute = headerList(res, "Service-Route")
	r.st.ServiceRoute = r.serviceRoute
	r.st.Path = headerList(res, "Path")
	r.bound = true
	if !strings.EqualFold(res.Transport(), "udp") {
		r.flow = res.Source()
	}
	r.mu.Unlock()
	return granted, nil
}

// heard notes where res came from: the provider's requests may come from
// there too.
func (r *upstreamReg) heard(res *sip.Response) *sip.Response {
	if ap, err := netip.ParseAddrPort(res.Source()); err == nil {
		r.addAddrs(ap.Addr().Unmap())
	}
	return res
}

// resolve looks the first hop's servers up again (upstream_dns.go), and
// the registrar's host and theirs, as sipgo does to send: their addresses
// are the default sources of the provider's requests (a host name's may
// change).
func (r *upstreamReg) resolve(ctx context.Context) []hop {
	hops := r.hops(ctx)
	// With SRV records the domain's own address is not a SIP server (it is
	// often the web site): not a source of the provider's requests.
	hosts := []string{r.cfg.registrar.Host, r.cfg.firstHop().Host}
	if hops[0].srv {
		hosts = hosts[:0]
		if r.cfg.proxy.Host != "" {
			hosts = append(hosts, r.cfg.registrar.Host)
		}
	}
	for _, h := range hops {
		hosts = append(hosts, h.host)
	}
	for _, h := range hosts {
		if a, err := netip.ParseAddr(strings.Trim(h, "[]")); err == nil {
			r.addAddrs(a.Unmap())
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		addrs, err := r.s.resolver.LookupNetIP(lctx, "ip", h)
		cancel()
		if err != nil {
			r.log.Info("registrar's host not resolved", zap.String("host", h), zap.Error(err))
			continue
		}
		for _, a := range addrs {
			r.addAddrs(a.Unmap())
		}
	}
	return hops
}

func (r *upstreamReg) addAddrs(as ...netip.Addr) {
	r.mu.Lock() // one writer at a time
	defer r.mu.Unlock()
	var cur []netip.Addr
	if p := r.addrs.Load(); p != nil {
		cur = *p
	}
	next := cur
	for _, a := range as {
		if a.IsValid() && !contains(next, a) {
			next = append(next[:len(next):len(next)], a)
		}
	}
	if len(next) != len(cur) {
		r.addrs.Store(&next)
	}
}

func contains(as []netip.Addr, a netip.Addr) bool {
	for _, b := range as {
		if a == b {
			return true
		}
	}
	return false
}

func (r *upstreamReg) from(a netip.Addr) bool {
	p := r.addrs.Load()
	return p != nil && contains(*p, a.Unmap())
}

// routeSet is the route a line's call through the trunk takes: the
// outbound proxy first, then the Service-Route (RFC 3608 §6.1).
func (r *upstreamReg) routeSet() []string {
	var out []string
	if pr := r.cfg.proxyRoute(); pr != "" {
		out = append(out, pr)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(out, r.serviceRoute...)
}

// registered records a binding granted for granted, refreshed in
// refresh (metrics and log first, as failed does).
func (r *upstreamReg) registered(granted, refresh time.Duration) {
	r.s.metrics.up.registered.WithLabelValues(r.trunk).Set(1)
	r.mu.Lock()
	was := r.st.State
	r.mu.Unlock()
	if was != UpstreamRegistered {
		r.log.Info("registered at the provider", zap.Duration("expires", granted), zap.Duration("refresh_in", refresh),
			zap.Stringer("contact", &r.contact.Address))
	}
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st.State != UpstreamRegistered {
		r.st.Since = now
	}
	r.st.State, r.st.LastStatus, r.st.LastReason, r.st.Failures = UpstreamRegistered, sip.StatusOK, "OK", 0
	r.st.Expires, r.st.NextAttempt = now.Add(granted), now.Add(refresh)
}

// failed records a failed attempt, the failures-th in a row, retried in
// wait: logged first, so that a state saying failing has been said.
func (r *upstreamReg) failed(err error, failures int, wait time.Duration) {
	re := asRegError(err)
	fields := []zap.Field{zap.Int("status", re.status), zap.String("reason", re.reason), zap.Int("failures", failures), zap.Duration("retry_in", wait)}
	if re.credentials {
		// Never the password: which user, which keys to check.
		r.log.Warn("provider refused the subscriber's credentials: check this trunk's register.username, auth_username and password",
			append(fields, zap.String("username", r.cfg.Username), zap.String("auth_username", r.cfg.AuthUsername))...)
	} else {
		r.log.Warn("registration at the provider failed", fields...)
	}
	r.s.metrics.up.registered.WithLabelValues(r.trunk).Set(0)
	r.s.metrics.up.failures.WithLabelValues(r.trunk, re.label()).Inc()
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.st.State != UpstreamFailing {
		r.st.Since = now
	}
	r.st.State, r.st.LastStatus, r.st.LastReason, r.st.Failures = UpstreamFailing, re.status, re.reason, failures
	r.st.Expires, r.st.NextAttempt = time.Time{}, now.Add(wait)
}

// keepAliveFailed records a failed keep-alive: the binding is presumed lost.
func (r *upstreamReg) keepAliveFailed(err error) {
	r.mu.Lock()
	if r.st.State != UpstreamFailing {
		r.st.Since = time.Now()
	}
	r.st.State, r.st.LastStatus, r.st.LastReason = UpstreamFailing, 0, "keep-alive: "+err.Error()
	r.st.Expires, r.st.NextAttempt = time.Time{}, time.Now()
	r.mu.Unlock()
	r.s.metrics.up.registered.WithLabelValues(r.trunk).Set(0)
}

func (r *upstreamReg) snapshot() UpstreamState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	st.Server = r.hop.dest()
	st.ServiceRoute = append([]string(nil), st.ServiceRoute...)
	st.Path = append([]string(nil), st.Path...)
	return st
}

// finish un-REGISTERs when asked to and the registrar may hold our
// binding (bounded by sip.timers.bye, and by Close), and retires the
// trunk's gauge.
func (r *upstreamReg) finish() {
	r.mu.Lock()
	bound := r.bound
	r.mu.Unlock()
	if r.unreg.Load() && bound {
		ctx, cancel := context.WithTimeout(r.s.life, r.s.byeTimeout())
		res, err := r.do(ctx, r.request(0))
		cancel()
		switch {
		case err != nil:
			r.log.Info("un-REGISTER not answered", zap.Error(err))
		case !res.IsSuccess():
			r.log.Info("un-REGISTER refused", zap.Int("status", res.StatusCode), zap.String("reason", res.Reason))
		default:
			r.log.Info("un-registered at the provider")
		}
	}
	r.s.metrics.up.registered.DeleteLabelValues(r.trunk)
	r.s.metrics.up.keepAliveFailures.DeleteLabelValues(r.trunk)
}

// regError is a REGISTER refused or unanswered.
type regError struct {
	status      int // the final response; 0: none came
	reason      string
	credentials bool // refused for the credentials: 403, or a challenge answered
}

func (e *regError) Error() string {
	if e.status == 0 {
		return e.reason
	}
	return fmt.Sprintf("%d %s", e.status, e.reason)
}

// label is the failure as metrics count it: the status, or why none came.
func (e *regError) label() string {
	if e.status != 0 {
		return strconv.Itoa(e.status)
	}
	if strings.HasPrefix(e.reason, "timeout") {
		return "timeout"
	}
	return "transport"
}

func regRefused(res *sip.Response, credentials bool) *regError {
	return &regError{status: res.StatusCode, reason: res.Reason, credentials: credentials}
}

// unanswered is a REGISTER that got no final response.
func unanswered(err error) *regError {
	if errors.Is(err, sip.ErrTransactionTimeout) || errors.Is(err, context.DeadlineExceeded) {
		return &regError{reason: "timeout: no answer from the registrar"}
	}
	return &regError{reason: "transport: " + err.Error()}
}

func asRegError(err error) *regError {
	var re *regError
	if errors.As(err, &re) {
		return re
	}
	return &regError{reason: err.Error()}
}

// sameContact reports whether the registrar's listed contact is ours.
func sameContact(a, b sip.Uri) bool {
	port := func(u sip.Uri) int {
		if u.Port == 0 {
			return 5060
		}
		return u.Port
	}
	return a.User == b.User && strings.EqualFold(a.Host, b.Host) && port(a) == port(b)
}

// headerSeconds is a delta-seconds header of res (Expires, Min-Expires).
func headerSeconds(res *sip.Response, name string) (time.Duration, bool) {
	h := res.GetHeader(name)
	if h == nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	if err != nil {
		return 0, false
	}
	return time.Duration(n) * time.Second, true
}

// headerList is every value of the header name in res, split at the commas
// between name-addrs (not those inside <> or quotes), in order.
func headerList(res *sip.Response, name string) []string {
	var out []string
	for _, h := range res.GetHeaders(name) {
		v := h.Value()
		depth, quoted, start := 0, false, 0
		for i, c := range v {
			switch {
			case c == '"':
				quoted = !quoted
			case quoted:
			case c == '<':
				depth++
			case c == '>':
				depth--
			case c == ',' && depth == 0:
				if s := strings.TrimSpace(v[start:i]); s != "" {
					out = append(out, s)
				}
				start = i + 1
			}
		}
		if s := strings.TrimSpace(v[start:]); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// sleepCtx waits d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
