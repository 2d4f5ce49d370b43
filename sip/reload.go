package sip

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/media"
)

// Reload (issue 13): the configuration a new request is routed by is one
// immutable value, swapped whole. A call keeps the routing it started with
// (its *Line and *Trunk point into it), so a reload changes nothing of a
// live call: it ends as it would have, its hang-up is heard even when its
// trunk or line is gone from the new configuration (guard,
// inLiveDialog), and only new requests see the new trunks, lines,
// screener, prompts and timers.

// routing is what a new request is routed, screened and answered by.
// Never changed once published (Server.rt).
type routing struct {
	cfg       Config // defaulted and validated: trunks' and lines' sources parsed
	sc        *screening.Screener
	prompts   *media.Prompts
	peerHosts []netip.Addr         // trunks' outbound and lines' contact IPs: known sources too
	devices   map[string]deviceRef // sip.lines[].devices by username (registrar.go)
	regAlgs   []string             // the algorithms a REGISTER is challenged with
	up        *upstreams           // the Server's registrations (they outlive a routing)
	regLine   map[string]string    // a registration trunk's name → the line its contact rings
}

// routing is the configuration in force now.
func (s *Server) routing() *routing { return s.rt.Load() }

// timers are the timers in force now: a wait takes its length when it
// begins, so a reload changes those begun after it.
func (s *Server) timers() Timers { return s.routing().cfg.Timers }

// newRouting prepares cfg (defaulted and validated) and sc for use: the
// screener must know every line, and the prompts are read now (the
// embedded ones with sip.prompts' files over them, unless WithPrompts
// fixed the set), so that a file replaced on disk is heard after a reload.
func (s *Server) newRouting(cfg Config, sc *screening.Screener) (*routing, error) {
	if sc == nil {
		return nil, fmt.Errorf("%w: no screener", ErrConfig)
	}
	rt := &routing{cfg: cfg, sc: sc, prompts: s.prompts}
	if err := rt.checkLines(); err != nil {
		return nil, err
	}
	if rt.prompts == nil {
		var err error
		if rt.prompts, err = media.DefaultPrompts(); err != nil {
			return nil, err
		}
		for name, path := range cfg.Prompts {
			if err := rt.prompts.Override(name, path); err != nil {
				return nil, cfgErr("sip.prompts."+name, "%v", err)
			}
		}
	}
	rt.peerHosts = hostsOf(&rt.cfg)
	rt.indexDevices()
	rt.up = s.up
	rt.regLine = map[string]string{}
	for i, t := range cfg.Trunks {
		if t.Register == nil {
			continue
		}
		// The provider's calls to the registration carry the contact's user
		// in their Request-URI: it must ring a line.
		line, ok := sc.LineCalled(t.Register.ContactUser)
		if !ok {
			return nil, cfgErr(fmt.Sprintf("sip.trunks[%d].register.contact_user", i), "%q rings no line: make it one of a line's numbers, or its name", t.Register.ContactUser)
		}
		rt.regLine[t.Name] = line
	}
	return rt, nil
}

// Reload puts cfg and sc in force for every new request, at once: new
// calls, a trunk's or line's first request, the screening of the next
// caller. Calls in progress keep the configuration they started with
// until they end. cfg is checked as at start (Defaults, Validate, the
// screener's lines, the prompt files) and refused whole, with an error
// naming the key, when it is wrong or changes what only a restart can
// (the listeners, advertise, user_agent, media, limits: sockets and
// pools already made); the running configuration then stays in force.
func (s *Server) Reload(cfg Config, sc *screening.Screener) error {
	// Validate writes the parsed sources into the trunks and lines: into
	// copies, never into slices a routing in force may share.
	cfg.Trunks, cfg.Lines, cfg.Listen = slices.Clone(cfg.Trunks), slices.Clone(cfg.Lines), slices.Clone(cfg.Listen)
	for i := range cfg.Lines {
		// Validate reads the password files into the credentials: copies too.
		l := &cfg.Lines[i]
		l.Devices = slices.Clone(l.Devices)
		for j := range l.Devices {
			l.Devices[j].Algorithms = slices.Clone(l.Devices[j].Algorithms)
		}
		if l.Auth != nil {
			a := *l.Auth
			a.Algorithms = slices.Clone(a.Algorithms)
			l.Auth = &a
		}
	}
	cfg.minSEFloor = s.cfg.minSEFloor
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := needsRestart(&s.cfg, &cfg); err != nil {
		return err
	}
	rt, err := s.newRouting(cfg, sc)
	if err != nil {
		return err
	}
	s.rt.Store(rt)
	// Registrations outlive a reload, but not their line or device.
	dropped := s.binds.reconcile(rt)
	if dropped > 0 {
		if err := s.binds.save(); err != nil {
			s.log.Warn("registrations not saved", zap.String("file", s.binds.path), zap.Error(err))
		}
	}
	s.up.reconcile(rt)
	s.log.Info("sip configuration reloaded", zap.Int("trunks", len(cfg.Trunks)), zap.Int("lines", len(cfg.Lines)),
		zap.Int("calls_in_progress", s.ActiveCalls()), zap.Int("registrations_dropped", dropped))
	return nil
}

// needsRestart names the first key next changes of what the running
// server built its sockets and pools from.
func needsRestart(running, next *Config) error {
	for _, k := range []struct {
		key  string
		a, b any
	}{
		{"sip.listen", running.Listen, next.Listen},
		{"sip.advertise", running.Advertise, next.Advertise},
		{"sip.external", running.External, next.External},
		{"sip.tls", running.TLS, next.TLS},
		{"sip.user_agent", running.UserAgent, next.UserAgent},
		{"sip.media", running.Media, next.Media},
		{"sip.limits", running.Limits, next.Limits},
		{"sip.registrar.bindings_file", running.Registrar.BindingsFile, next.Registrar.BindingsFile},
	} {
		if key, was, now, ok := changed(k.key, reflect.ValueOf(k.a), reflect.ValueOf(k.b)); ok {
			return cfgErr(key, "%s → %s: only a restart applies this change; the running configuration stays in force", was, now)
		}
	}
	return nil
}

// changed finds the first key path under key where a and b (the same
// type: structs by their yaml names, slices by index, or plain values)
// differ, and both values as text.
func changed(key string, a, b reflect.Value) (path, was, now string, ok bool) {
	switch a.Kind() {
	case reflect.Struct:
		for i := range a.NumField() {
			f := a.Type().Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" {
				continue
			}
			if p, w, n, ok := changed(key+"."+name, a.Field(i), b.Field(i)); ok {
				return p, w, n, true
			}
		}
		return "", "", "", false
	case reflect.Slice:
		if a.Len() != b.Len() {
			return key, fmt.Sprintf("%d listed", a.Len()), fmt.Sprintf("%d listed", b.Len()), true
		}
		for i := range a.Len() {
			if p, w, n, ok := changed(fmt.Sprintf("%s[%d]", key, i), a.Index(i), b.Index(i)); ok {
				return p, w, n, true
			}
		}
		return "", "", "", false
	}
	if a.Interface() == b.Interface() {
		return "", "", "", false
	}
	return key, fmt.Sprintf("%q", fmt.Sprint(a.Interface())), fmt.Sprintf("%q", fmt.Sprint(b.Interface())), true
}

// inLiveDialog reports whether req belongs to a live call's dialog and
// comes from that dialog's peer: its hang-up, re-INVITE or ACK is heard
// even when a reload removed the trunk or line it came from.
func (s *Server) inLiveDialog(req *sip.Request) bool {
	to := req.To()
	if to == nil || !to.Params.Has("tag") {
		return false
	}
	e, ok := s.lookupDialog(req)
	return ok && e.from(source(req).Addr())
}

// checkLines makes sure the screener was built with the lines of the
// configuration (Config.ScreeningLines): otherwise no call could find its
// line.
func (rt *routing) checkLines() error {
	known := map[string]bool{}
	for _, n := range rt.sc.Lines() {
		known[n] = true
	}
	for i, l := range rt.cfg.Lines {
		if !known[l.Name] {
			return cfgErr(fmt.Sprintf("sip.lines[%d]", i), "line %q is unknown to the screener: build it with Config.ScreeningLines", l.Name)
		}
	}
	return nil
}
