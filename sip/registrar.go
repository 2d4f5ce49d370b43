package sip

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/sip/limit"
)

// The registrar for the lines' devices (RFC 3261 §10.3): a phone or ATA
// REGISTERs to cleanline with its own digest credentials
// (sip.lines[].devices), and an inbound call to its line then rings every
// registered contact at once (fork.go). What it answers a guesser is the
// point: any REGISTER without valid credentials gets the same 401 with a
// fresh challenge, whoever it names, so svwar learns no username; wrong
// answers are counted per source (limit.Rates, sip.limits.auth_failures),
// and a source over them is locked out for sip.limits.auth_lockout, still
// answered 401 to every answer, the right one too, so svcrack learns
// neither the password nor that it was stopped. A device's own flow (the
// address its live binding came from) is never locked out by what others
// send.

// RegistrarConfig is sip.registrar: how long registrations may last, and
// where they are kept across restarts.
type RegistrarConfig struct {
	// MinExpires: a registration asking for less is refused with 423 and
	// Min-Expires (RFC 3261 §10.3 step 7). Default 60s.
	MinExpires time.Duration `yaml:"min_expires"`
	// MaxExpires: a registration asking for more is granted this. Default 1h.
	MaxExpires time.Duration `yaml:"max_expires"`
	// DefaultExpires: granted to a registration that asks for no expiry
	// (RFC 3261 §10.2.1.1's 3600 s). Default 1h.
	DefaultExpires time.Duration `yaml:"default_expires"`
	// NATKeepAlive: how often a device registered over UDP from behind
	// NAT (its REGISTER came from elsewhere than its Contact) is sent an
	// OPTIONS through its flow, so that its router keeps the way in open
	// between registrations; 3 unanswered in a row, while other devices
	// behind NAT answer, drop its registration.
	// Default 30s; -1s: never (the devices keep their NAT open themselves).
	NATKeepAlive time.Duration `yaml:"nat_keepalive"`
	// BindingsFile keeps the registrations across restarts (a JSON file,
	// rewritten atomically at each change; no secrets in it). Empty: they
	// are lost at a restart, and each device is unreachable until it
	// refreshes (an ATA's default is often an hour). Only a restart
	// changes it.
	BindingsFile string `yaml:"bindings_file"`
}

func (r *RegistrarConfig) defaults() {
	if r.MinExpires == 0 {
		r.MinExpires = time.Minute
	}
	if r.MaxExpires == 0 {
		r.MaxExpires = time.Hour
	}
	if r.DefaultExpires == 0 {
		r.DefaultExpires = min(time.Hour, r.MaxExpires)
	}
	if r.NATKeepAlive == 0 {
		r.NATKeepAlive = 30 * time.Second
	}
}

func (r *RegistrarConfig) validate() error {
	switch {
	case r.MinExpires < time.Second:
		return cfgErr("sip.registrar.min_expires", "%s: want 1s or more", r.MinExpires)
	case r.MaxExpires < r.MinExpires:
		return cfgErr("sip.registrar.max_expires", "%s is below min_expires %s", r.MaxExpires, r.MinExpires)
	case r.DefaultExpires < r.MinExpires || r.DefaultExpires > r.MaxExpires:
		return cfgErr("sip.registrar.default_expires", "%s: want between min_expires %s and max_expires %s", r.DefaultExpires, r.MinExpires, r.MaxExpires)
	case r.NATKeepAlive > 0 && r.NATKeepAlive < 100*time.Millisecond:
		return cfgErr("sip.registrar.nat_keepalive", "%s: want 100ms or more, or -1s for none", r.NATKeepAlive)
	}
	return nil
}

// validateDevices checks a line's devices; names holds every username
// across lines (a username names one device of one line).
func (l *Line) validateDevices(key string, names map[string]bool) error {
	if l.MaxContacts < 1 {
		return cfgErr(key+".max_contacts", "%d: want 1 or more", l.MaxContacts)
	}
	for j := range l.Devices {
		d := &l.Devices[j]
		dkey := fmt.Sprintf("%s.devices[%d]", key, j)
		if err := d.validate(dkey); err != nil {
			return err
		}
		if names["device:"+d.Username] {
			return cfgErr(dkey+".username", "%q used twice: a username names one device of one line", d.Username)
		}
		names["device:"+d.Username] = true
	}
	return nil
}

// deviceRef is where a device is configured.
type deviceRef struct {
	line *Line
	auth *LineAuth
}

// indexDevices fills rt's device index and the algorithms a REGISTER is
// challenged with: every algorithm some device may use, in RFC 8760's
// order of preference. The challenge cannot depend on the username it
// names, or it would tell a guesser which usernames exist.
func (rt *routing) indexDevices() {
	rt.devices = map[string]deviceRef{}
	seen := map[string]bool{}
	for i := range rt.cfg.Lines {
		l := &rt.cfg.Lines[i]
		for j := range l.Devices {
			d := &l.Devices[j]
			rt.devices[d.Username] = deviceRef{line: l, auth: d}
			for _, a := range d.Algorithms {
				seen[a] = true
			}
		}
	}
	rt.regAlgs = nil
	for _, a := range []string{"SHA-256", "MD5"} {
		if seen[a] {
			rt.regAlgs = append(rt.regAlgs, a)
		}
	}
	if len(rt.regAlgs) == 0 {
		rt.regAlgs = []string{"SHA-256", "MD5"}
	}
}

// registrar reports whether any line has devices: only then is REGISTER
// answered by the registrar (otherwise 405, or a stranger's 403).
func (rt *routing) registrar() bool { return len(rt.devices) > 0 }

// device is the line and credentials of the device called username.
func (rt *routing) device(username string) (*Line, *LineAuth) {
	d, ok := rt.devices[username]
	if !ok {
		return nil, nil
	}
	return d.line, d.auth
}

// newAuthLockout counts wrong answers per source (sip.limits.auth_failures,
// one forgiven each auth_lockout/auth_failures) and locks a source out
// for auth_lockout beyond them.
func (s *Server) newAuthLockout() *limit.Rates {
	l := s.cfg.Limits
	return limit.NewRates(limit.RatesConfig{
		Rate: float64(l.AuthFailures) / l.AuthLockout.Seconds(), Burst: l.AuthFailures, BanFor: l.AuthLockout,
		OnBan: func(src netip.Addr, until time.Time) {
			s.metrics.authLockouts.Inc()
			s.log.Warn("source locked out: too many wrong passwords", zap.Stringer("source", src),
				zap.Int("auth_failures", l.AuthFailures), zap.Time("until", until))
		},
	})
}

// onRegister is the registrar (RFC 3261 §10.3), for any source: it is how
// a device becomes known. Refusals before authentication are answered
// statelessly (flood.go), as a stranger's 403 is.
func (s *Server) onRegister(req *sip.Request, tx sip.ServerTransaction) {
	rt := s.routing()
	src := source(req)
	markReceived(req)
	refuse := func(err error, hdrs ...sip.Header) {
		s.respondErr(req, tx, err, hdrs...)
		tx.Terminate()
	}
	if !rt.registrar() || rt.trunkFor(req) != nil {
		// No device to register, or a trunk (a binding from its address
		// would make its calls a line's): a method we do not take here.
		s.onOther(req, tx)
		return
	}
	if req.CallID() == nil || req.From() == nil || req.To() == nil || req.CSeq() == nil || req.CSeq().MethodName != sip.REGISTER {
		refuse(ErrMalformed)
		return
	}
	if u := unsupported(req); u != "" {
		// §10.3 step 2.
		refuse(ErrBadExtension, sip.NewHeader("Unsupported", u))
		return
	}
	line, dev, err := s.authenticate(rt, req, src)
	if err != nil {
		refuse(err, s.auth.challenges(sip.REGISTER, rt.regAlgs, errors.Is(err, errStale))...)
		return
	}
	// §10.3 step 4: the address-of-record (To) is the device's own, or its
	// line's (name or number).
	to := req.To().Address
	if unescapeUser(to.User) != dev.Username {
		if name, ok := rt.sc.LineCalled(to.String()); !ok || name != line.Name {
			s.log.Info("device registering another line refused", zap.String("device", dev.Username), zap.String("to", to.String()))
			s.respondErr(req, tx, ErrNotYourLine)
			return
		}
	}
	changes, err := rt.contactChanges(req)
	if err != nil {
		var hdrs []sip.Header
		if errors.Is(err, ErrIntervalTooBrief) {
			hdrs = append(hdrs, sip.NewHeader("Min-Expires", strconv.Itoa(int(rt.cfg.Registrar.MinExpires/time.Second))))
		}
		s.respondErr(req, tx, err, hdrs...)
		return
	}
	now, changed, err := s.binds.apply(registration{line: line.Name, device: dev.Username, changes: changes,
		callID: req.CallID().Value(), cseq: req.CSeq().SeqNo, flow: src, transport: strings.ToLower(req.Transport()), max: line.MaxContacts})
	if err != nil {
		s.log.Info("registration refused", zap.String("line", line.Name), zap.String("device", dev.Username), zap.Error(err))
		s.respondErr(req, tx, err)
		return
	}
	if len(changes) > 0 {
		if err := s.binds.save(); err != nil {
			// Served from memory all the same: a lost file costs one
			// refresh at the next restart, a refusal the calls now.
			s.log.Warn("registrations not saved", zap.String("file", s.binds.path), zap.Error(err))
		}
	}
	lvl := zap.DebugLevel
	if changed {
		lvl = zap.InfoLevel
	}
	s.log.Check(lvl, "registration").Write(zap.String("line", line.Name), zap.String("device", dev.Username),
		zap.Stringer("flow", src), zap.String("transport", req.Transport()), zap.Int("bindings", len(now)))
	// §10.3 step 8: the 200 lists every current binding of the line, each
	// with its remaining expiry.
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	at := s.binds.now()
	for _, b := range now {
		ct := sip.ContactHeader{Address: *b.uri.Clone(), Params: sip.NewParams()}
		ct.Params.Add("expires", strconv.Itoa(secondsLeft(b, at)))
		res.AppendHeader(&ct)
	}
	res.AppendHeader(sip.NewHeader("Date", at.UTC().Format(httpDate)))
	if err := tx.Respond(res); err != nil {
		s.log.Debug("respond failed", zap.Error(err))
	}
}

// httpDate is SIP-date (RFC 3261 §20.17): RFC 1123, always GMT.
const httpDate = "Mon, 02 Jan 2006 15:04:05 GMT"

// errStale: right credentials on an expired nonce (the challenge says
// stale=true, RFC 2617 §3.2.1, and the device answers again at once).
var errStale = errors.New("stale nonce")

// authenticate checks a REGISTER's credentials and returns the device and
// its line. Every refusal is ErrUnauthorized, answered with the same 401
// and challenges: an unknown username is checked against the decoy as a
// known one with a wrong password is, and a locked-out source gets the
// same answer even when it is right.
func (s *Server) authenticate(rt *routing, req *sip.Request, src netip.AddrPort) (*Line, *LineAuth, error) {
	own := false // src is a device's live flow: others cannot lock it out
	if _, ok := s.binds.fromFlow(src, req.Transport()); ok {
		own = true
	}
	la, stale, err := s.auth.verifyAny(req, func(username string) *LineAuth {
		_, d := rt.device(username)
		return d
	})
	switch {
	case stale:
		return nil, nil, fmt.Errorf("%w: %w: %w", ErrUnauthorized, errStale, err)
	case authFailed(err, stale):
		s.metrics.authFailures.WithLabelValues(string(sip.REGISTER)).Inc()
		if !own {
			s.authLock.Take(src.Addr())
		}
		s.log.Info("REGISTER with wrong credentials", zap.Stringer("source", src), zap.Error(err))
		return nil, nil, fmt.Errorf("%w: %w", ErrUnauthorized, err)
	case err != nil:
		return nil, nil, fmt.Errorf("%w: %w", ErrUnauthorized, err)
	case !own && s.authLock.IsBanned(src.Addr()):
		s.log.Info("REGISTER from a locked-out source refused", zap.Stringer("source", src), zap.String("device", la.Username))
		return nil, nil, fmt.Errorf("%w: %w: source locked out", ErrUnauthorized, ErrAuthRequired)
	}
	line, _ := rt.device(la.Username)
	return line, la, nil
}

// contactChanges reads a REGISTER's Contacts and their expiry (RFC 3261
// §10.3 steps 6 and 7): the contact's expires parameter, else the Expires
// header, else the default; above the maximum it is cut to it, below the
// minimum refused (423), 0 removes. "*" is only valid alone, with Expires
// 0. No Contact at all asks for the current bindings.
func (rt *routing) contactChanges(req *sip.Request) ([]contactChange, error) {
	rc := rt.cfg.Registrar
	hdrExpires := rc.DefaultExpires
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: Expires %q", ErrMalformed, h.Value())
		}
		hdrExpires = time.Duration(n) * time.Second
	}
	hdrs := req.GetHeaders("Contact")
	var out []contactChange
	for _, h := range hdrs {
		ct, ok := h.(*sip.ContactHeader)
		if !ok {
			return nil, fmt.Errorf("%w: Contact %q", ErrMalformed, h.Value())
		}
		if ct.Address.Wildcard {
			if len(hdrs) != 1 || req.GetHeader("Expires") == nil || hdrExpires != 0 {
				return nil, fmt.Errorf("%w: Contact * needs Expires: 0 and no other Contact", ErrMalformed)
			}
			out = append(out, contactChange{wildcard: true})
			continue
		}
		u := ct.Address
		if s := strings.ToLower(u.Scheme); (s != "sip" && s != "sips") || u.Host == "" {
			return nil, fmt.Errorf("%w: Contact %q is no SIP URI", ErrMalformed, h.Value())
		}
		exp := hdrExpires
		if v, ok := ct.Params.Get("expires"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%w: Contact expires %q", ErrMalformed, v)
			}
			exp = time.Duration(n) * time.Second
		}
		switch {
		case exp == 0:
		case exp < rc.MinExpires:
			return nil, fmt.Errorf("%w: %s asked, min_expires %s", ErrIntervalTooBrief, exp, rc.MinExpires)
		case exp > rc.MaxExpires:
			exp = rc.MaxExpires
		}
		out = append(out, contactChange{uri: *u.Clone(), expires: exp})
	}
	return out, nil
}
