package sip

import (
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// Registering upstream (issue 14): a trunk with `register:` is a
// subscription at the provider, as an ATA's would be. cleanline REGISTERs
// to the provider's registrar as the subscriber (RFC 3261 §10.2), answers
// its digest challenge, refreshes the binding before it lapses, holds the
// NAT binding open between refreshes, and registers again with backoff when
// anything fails (upstream_register.go, upstream_keepalive.go). The
// provider's calls to the registered contact are trunk calls, from the
// registrar's addresses unless the trunk lists its sources (peers.go,
// trunkFor); the lines' own calls through it answer the provider's
// challenge with the same credentials (pending.go) and take the route the
// registrar gave (RFC 3608 Service-Route).
//
// A registration outlives a reload: it lives on the Server (upstreams), and
// Reload reconciles the running registrations with the trunks in force: an
// unchanged one carries on, a changed one un-REGISTERs and registers anew,
// a removed one un-REGISTERs.

// Register makes a trunk a registration at its provider.
type Register struct {
	// Registrar is the provider's registrar: a SIP URI without a user
	// (sip:provider.example;transport=udp), the REGISTER's Request-URI; its
	// host is the domain of the address of record. transport udp (the
	// default), tcp or tls (the registrar's certificate checked against
	// sip.tls.ca_file and the URI's host).
	Registrar string `yaml:"registrar"`
	// Username is the subscriber's user at the provider: the address of
	// record is sip:username@registrar's host.
	Username string `yaml:"username"`
	// Password is the subscriber's password; never logged. Password or
	// PasswordFile (a file holding it, trailing newline ignored), not both.
	Password     string `yaml:"password"`
	PasswordFile string `yaml:"password_file"`
	// AuthUsername is the digest username, when the provider's differs from
	// Username. Default Username.
	AuthUsername string `yaml:"auth_username"`
	// Expires is the registration's lifetime asked for; the registrar's
	// grant (and its Min-Expires, 423) wins. Default 1h.
	Expires time.Duration `yaml:"expires"`
	// OutboundProxy, when set, is where the REGISTERs, keep-alives and the
	// lines' calls through this trunk are sent first (RFC 3261 §8.1.2: a
	// loose route); its transport is theirs. Its address is a source of the
	// provider's requests as the registrar's is.
	OutboundProxy string `yaml:"outbound_proxy"`
	// ContactUser is the user part of the Contact registered, which the
	// provider's INVITEs to this registration carry in their Request-URI:
	// one of a line's numbers, or its name. That line takes the calls and
	// places its own through this trunk. Default Username.
	ContactUser string `yaml:"contact_user"`
	// KeepAlive is how often the path to the provider is refreshed between
	// registrations, holding a NAT binding open: CRLF on TCP (RFC 5626
	// §4.4.1), OPTIONS on UDP. A keep-alive unanswered registers again at
	// once. Default 30s; negative disables.
	KeepAlive time.Duration `yaml:"keepalive"`
	// RetryMin and RetryMax bound the wait before registering again after a
	// failure: from RetryMin, doubling each time up to RetryMax, drawn at
	// random from its upper half so that many instances do not retry in
	// step. Credentials refused (403, or a challenge answered with them)
	// wait RetryMax. Defaults 5s and 5m.
	RetryMin time.Duration `yaml:"retry_min"`
	RetryMax time.Duration `yaml:"retry_max"`

	password  string  // from Password or PasswordFile
	registrar sip.Uri // Registrar, parsed
	proxy     sip.Uri // OutboundProxy, parsed; Host "" without one
	transport string  // "udp", "tcp" or "tls": the first hop's
}

// validate checks r (the Server's own copy: see Config.Validate), fills its
// defaults and parsed forms; key names it; listen are the listeners (the
// Contact registered names the one of the first hop's transport).
func (r *Register) validate(key string, listen []Listener) error {
	var err error
	if r.transport, err = parseHop(key+".registrar", r.Registrar, &r.registrar); err != nil {
		return err
	}
	if r.registrar.User != "" {
		return cfgErr(key+".registrar", "%q: the registrar's URI has no user (the username is register.username)", r.Registrar)
	}
	r.proxy = sip.Uri{}
	if r.OutboundProxy != "" {
		if r.transport, err = parseHop(key+".outbound_proxy", r.OutboundProxy, &r.proxy); err != nil {
			return err
		}
	}
	if !slices.ContainsFunc(listen, func(l Listener) bool { return l.Network == r.transport }) {
		return cfgErr(key, "registering over %s needs a %s listener in sip.listen: the Contact registered names it", r.transport, r.transport)
	}
	if !uriUser(r.Username) {
		return cfgErr(key+".username", "%q: want the subscriber's user name (letters, digits, + - _ . ! ~ * ' ( ) & = $ ,)", r.Username)
	}
	if r.AuthUsername == "" {
		r.AuthUsername = r.Username
	} else if strings.ContainsAny(r.AuthUsername, "\"\\\r\n") {
		return cfgErr(key+".auth_username", "%q: no quotes, backslashes or line breaks", r.AuthUsername)
	}
	if r.ContactUser == "" {
		r.ContactUser = r.Username
	} else if !uriUser(r.ContactUser) {
		return cfgErr(key+".contact_user", "%q: want a line's number or name (letters, digits, + - _ .)", r.ContactUser)
	}
	switch {
	case r.Password != "" && r.PasswordFile != "":
		return cfgErr(key, "password and password_file are both set: give one")
	case r.PasswordFile != "":
		b, err := os.ReadFile(r.PasswordFile)
		if err != nil {
			return cfgErr(key+".password_file", "%v", err)
		}
		if r.password = strings.TrimRight(string(b), "\r\n"); r.password == "" {
			return cfgErr(key+".password_file", "%s is empty", r.PasswordFile)
		}
	case r.Password != "":
		r.password = r.Password
	default:
		return cfgErr(key+".password", "empty: give the subscriber's password, or password_file")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&r.Expires, time.Hour)
	def(&r.KeepAlive, 30*time.Second)
	def(&r.RetryMin, 5*time.Second)
	def(&r.RetryMax, 5*time.Minute)
	if r.Expires < time.Second || r.Expires > maxExpires {
		return cfgErr(key+".expires", "%s: want from 1s to %s", r.Expires, maxExpires)
	}
	if r.RetryMin < 0 {
		return cfgErr(key+".retry_min", "%s: want a duration > 0", r.RetryMin)
	}
	if r.RetryMax < r.RetryMin {
		return cfgErr(key+".retry_max", "%s is below retry_min %s", r.RetryMax, r.RetryMin)
	}
	return nil
}

// maxExpires is the largest Expires a REGISTER can carry (RFC 3261 §20.19:
// delta-seconds, 2^32-1).
const maxExpires = (1<<32 - 1) * time.Second

// parseHop parses a registrar's or outbound proxy's URI into u and says
// which transport reaches it.
func parseHop(key, raw string, u *sip.Uri) (string, error) {
	if err := sip.ParseUri(raw, u); err != nil || u.Host == "" || !strings.EqualFold(u.Scheme, "sip") {
		return "", cfgErr(key, "%q: want a SIP URI such as sip:provider.example or sip:192.0.2.1:5060;transport=tcp", raw)
	}
	tp := "udp"
	if v, ok := u.UriParams.Get("transport"); ok {
		tp = strings.ToLower(v)
	}
	if tp != "udp" && tp != "tcp" && tp != "tls" {
		return "", cfgErr(key, "%q: transport %s: want udp, tcp or tls", raw, tp)
	}
	return tp, nil
}

// uriUser reports whether s may be a SIP URI's user part as written (RFC
// 3261 §25.1: unreserved and user-unreserved characters; no escapes, no
// ';' nor '?', which parsers read otherwise).
func uriUser(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || strings.ContainsRune("-_.!~*'()&=+$,", r)) {
			return false
		}
	}
	return true
}

// aor is the address of record registered (RFC 3261 §10.2: To, and From
// for a UA registering itself).
func (r *Register) aor() sip.Uri {
	return sip.Uri{Scheme: "sip", User: r.Username, Host: r.registrar.Host}
}

// proxyRoute is the outbound proxy as a Route value, "" without one: a
// loose route (RFC 3261 §8.1.2, §16.12: lr).
func (r *Register) proxyRoute() string {
	if r.proxy.Host == "" {
		return ""
	}
	u := *r.proxy.Clone()
	if u.UriParams == nil {
		u.UriParams = sip.NewParams()
	}
	if !u.UriParams.Has("lr") {
		u.UriParams.Add("lr", "")
	}
	return "<" + u.String() + ">"
}

// firstHop is the host the registration's requests are sent to first.
func (r *Register) firstHop() sip.Uri {
	if r.proxy.Host != "" {
		return r.proxy
	}
	return r.registrar
}

// The states a registration shows.
const (
	// UpstreamRegistering: no answer yet since it started.
	UpstreamRegistering = "registering"
	// UpstreamRegistered: the registrar holds our binding.
	UpstreamRegistered = "registered"
	// UpstreamFailing: the last REGISTER (or keep-alive) failed; the next
	// attempt is at NextAttempt.
	UpstreamFailing = "failing"
)

// UpstreamState is a trunk's registration at its provider as an operator
// sees it.
type UpstreamState struct {
	Trunk     string
	Registrar string // the registrar's URI as configured
	AOR       string // the address of record registered
	Contact   string // the contact registered: where the provider's calls come to
	State     string // UpstreamRegistering, UpstreamRegistered, UpstreamFailing
	Since     time.Time
	// LastStatus and LastReason are the last final response to a REGISTER
	// (0 when none came: LastReason then says why), or the keep-alive's failure.
	LastStatus int
	LastReason string
	Failures   int       // attempts failed in a row
	Expires    time.Time // when the binding granted lapses; zero unless registered
	// NextAttempt is the next refresh (registered) or retry (failing).
	NextAttempt  time.Time
	ServiceRoute []string // RFC 3608: the route the lines' calls through the trunk take
	Path         []string // RFC 3327: the route the provider's requests take to us
	// Server is the provider's server in use when it was found by DNS SRV
	// (RFC 3263): target:port; "" when the URI names it.
	Server string
}

// Upstream lists the trunks' registrations, by trunk name.
func (s *Server) Upstream() []UpstreamState {
	regs := s.up.list()
	out := make([]UpstreamState, 0, len(regs))
	for _, r := range regs {
		out = append(out, r.snapshot())
	}
	slices.SortFunc(out, func(a, b UpstreamState) int { return strings.Compare(a.Trunk, b.Trunk) })
	return out
}

// upstreams are the running registrations, by trunk name; they outlive a
// reload. wg counts every registration's goroutine, replaced ones
// un-REGISTERing included.
type upstreams struct {
	s       *Server
	running atomic.Pointer[[]*upstreamReg] // regs' values, for readers on every request
	mu      sync.Mutex
	regs    map[string]*upstreamReg
	started bool // Start has run: listeners and Contacts are known
	stopped bool // Shutdown or Close: no more registrations
	wg      sync.WaitGroup
}

func newUpstreams(s *Server) *upstreams {
	return &upstreams{s: s, regs: map[string]*upstreamReg{}}
}

// start begins the registrations of rt, once the listeners are bound.
func (u *upstreams) start(rt *routing) {
	u.mu.Lock()
	u.started = true
	u.mu.Unlock()
	u.reconcile(rt)
}

// reconcile makes the running registrations rt's: one whose register:
// changed un-REGISTERs, then its successor registers (in that order, or
// the un-REGISTER could remove the new binding of the same contact: RFC
// 3261 §10.3 step 7); a removed trunk's un-REGISTERs; an unchanged one
// carries on with its binding.
func (u *upstreams) reconcile(rt *routing) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.started || u.stopped {
		return
	}
	want := map[string]Register{}
	for _, t := range rt.cfg.Trunks {
		if t.Register != nil {
			want[t.Name] = *t.Register
		}
	}
	after := map[string]<-chan struct{}{}
	for name, r := range u.regs {
		if w, ok := want[name]; ok && reflect.DeepEqual(w, r.cfg) {
			delete(want, name)
			continue
		}
		r.stop(true)
		after[name] = r.done
		delete(u.regs, name)
	}
	for name, cfg := range want {
		r := newRegistration(u, name, cfg)
		u.regs[name] = r
		u.wg.Add(1)
		go r.run(after[name])
	}
	u.publish()
}

// publish makes regs what readers see; u.mu is held.
func (u *upstreams) publish() {
	list := make([]*upstreamReg, 0, len(u.regs))
	for _, r := range u.regs {
		list = append(list, r)
	}
	u.running.Store(&list)
}

// list is the running registrations (not to be changed); none of a
// Server not made by NewServer.
func (u *upstreams) list() []*upstreamReg {
	if u == nil {
		return nil
	}
	if p := u.running.Load(); p != nil {
		return *p
	}
	return nil
}

func (u *upstreams) get(trunk string) *upstreamReg {
	for _, r := range u.list() {
		if r.trunk == trunk {
			return r
		}
	}
	return nil
}

// from reports whether a request from a comes from trunk's registrar or
// outbound proxy, as last resolved or heard from.
func (u *upstreams) from(trunk string, a netip.Addr) bool {
	r := u.get(trunk)
	return r != nil && r.from(a)
}

// known reports whether a is any registration's registrar or proxy.
func (u *upstreams) known(a netip.Addr) bool {
	for _, r := range u.list() {
		if r.from(a) {
			return true
		}
	}
	return false
}

// route is the route set of a line's call through trunk: the outbound
// proxy, then the registrar's Service-Route (RFC 3608 §6.1).
func (u *upstreams) route(t *Trunk) []string {
	if r := u.get(t.Name); r != nil && reflect.DeepEqual(r.cfg, *t.Register) {
		return r.routeSet()
	}
	if pr := t.Register.proxyRoute(); pr != "" {
		return []string{pr}
	}
	return nil
}

// shutdown un-REGISTERs every registration and waits for them (or done).
func (u *upstreams) shutdown(done <-chan struct{}) error {
	u.mu.Lock()
	u.stopped = true
	for name, r := range u.regs {
		r.stop(true)
		delete(u.regs, name)
	}
	u.publish()
	u.mu.Unlock()
	return u.wait(done)
}

// close stops every registration without un-REGISTERing.
func (u *upstreams) close() {
	u.mu.Lock()
	u.stopped = true
	for name, r := range u.regs {
		r.stop(false)
		delete(u.regs, name)
	}
	u.publish()
	u.mu.Unlock()
}

// wait waits for every registration's goroutine, or until done.
func (u *upstreams) wait(done <-chan struct{}) error {
	all := make(chan struct{})
	go func() {
		u.wg.Wait()
		close(all)
	}()
	select {
	case <-all:
		return nil
	case <-done:
		return fmt.Errorf("registrations still ending")
	}
}

// upMetrics are the registrations' metrics (part of Metrics).
type upMetrics struct {
	registered        *prometheus.GaugeVec   // 1 while the trunk's binding is held
	failures          *prometheus.CounterVec // failed REGISTERs, by trunk and status (or timeout, transport)
	keepAliveFailures *prometheus.CounterVec // keep-alives unanswered, by trunk
}

func newUpMetrics(reg prometheus.Registerer) upMetrics {
	m := upMetrics{
		registered: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "cleanline_upstream_registered",
			Help: "1 while the trunk's registration at its provider holds (sip.trunks[].register), 0 while it is failing.",
		}, []string{"trunk"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_upstream_register_failures_total",
			Help: "Registrations at a provider that failed, by trunk and status (the registrar's final response; timeout or transport when none came).",
		}, []string{"trunk", "status"}),
		keepAliveFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_upstream_keepalive_failures_total",
			Help: "Keep-alives to a provider (CRLF on TCP, OPTIONS on UDP) unanswered, each followed by a new registration, by trunk.",
		}, []string{"trunk"}),
	}
	if reg != nil {
		reg.MustRegister(m.registered, m.failures, m.keepAliveFailures)
	}
	return m
}
