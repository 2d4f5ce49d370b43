package sip

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// RFC 3263 §4: a provider named by a domain without a port (what an ATA
// is given: "SIP server: provider.example") is found by the domain's SRV
// records for the transport, in their order (priority, then weight at
// random, as net.Resolver.LookupSRV gives them), and only without any by
// the domain's own address: that is often the provider's web site. When a
// server does not answer (a transaction timeout, a transport error) or
// says 503, the registration moves on to the next (§4.3), and stays with
// the one that answered. An IP, or a name with a port, is used as given.

// hop is one server a registration may send to: from an SRV record
// (target name and port), or the first hop's URI itself (srv false: sipgo
// resolves it as it does any URI).
type hop struct {
	host string
	port uint16
	srv  bool
}

// dest is what a request to h is sent to (SetDestination), "" to let
// sipgo take the URI's host and port. A TLS connection then checks the
// target's name in the certificate.
func (h hop) dest() string {
	if !h.srv {
		return ""
	}
	return net.JoinHostPort(h.host, strconv.Itoa(int(h.port)))
}

func (h hop) String() string {
	if d := h.dest(); d != "" {
		return d
	}
	return h.host
}

// srvName is the SRV owner name for a domain over transport: SIP over UDP
// or TCP, SIPS (TLS) over TCP (RFC 3263 §4.1, RFC 5630 §3.2).
func srvName(transport string) (service, proto string) {
	switch transport {
	case "tcp":
		return "sip", "tcp"
	case "tls":
		return "sips", "tcp"
	}
	return "sip", "udp"
}

// hops are the servers of the registration's first hop, in the order to
// try them.
func (r *upstreamReg) hops(ctx context.Context) []hop {
	first := r.cfg.firstHop()
	self := []hop{{host: first.Host}}
	if _, err := netip.ParseAddr(strings.Trim(first.Host, "[]")); err == nil || first.Port != 0 {
		return self
	}
	service, proto := srvName(r.cfg.transport)
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, recs, err := r.s.resolver.LookupSRV(lctx, service, proto, first.Host)
	if err != nil || len(recs) == 0 {
		// No SRV records (or no answer): the domain's own address, as
		// before RFC 3263's SRV step.
		return self
	}
	out := make([]hop, 0, len(recs))
	for _, rec := range recs {
		if t := strings.TrimSuffix(rec.Target, "."); t != "" {
			out = append(out, hop{host: t, port: rec.Port, srv: true})
		}
	}
	if len(out) == 0 {
		return self // "." alone: the service is decidedly not offered there; let the request fail as the URI says
	}
	return out
}

// failover reports whether err is a server's failure the next server may
// not share (RFC 3263 §4.3): no answer, or 503.
func failover(err error) bool {
	re := asRegError(err)
	return re != nil && (re.status == 0 || re.status == 503)
}

// startAt orders hops to begin with the one in use, so a registration
// stays with the server that last answered.
func startAt(hops []hop, cur hop) []hop {
	for i, h := range hops {
		if h == cur {
			return append(hops[i:len(hops):len(hops)], hops[:i]...)
		}
	}
	return hops
}

// registerAny registers at the first of the first hop's servers that
// answers (RFC 3263 §4.3), beginning with the one in use.
func (r *upstreamReg) registerAny(ctx context.Context) (time.Duration, error) {
	hops := startAt(r.resolve(ctx), r.currentHop())
	var err error
	for i, h := range hops {
		r.setHop(h)
		var granted time.Duration
		if granted, err = r.registerAt(ctx); err == nil || !failover(err) || ctx.Err() != nil {
			return granted, err
		}
		if i+1 < len(hops) {
			r.log.Info("provider's server failed: trying the next", zap.Stringer("server", h), zap.Stringer("next", hops[i+1]), zap.Error(err))
		}
	}
	return 0, err
}

func (r *upstreamReg) currentHop() hop {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hop
}

func (r *upstreamReg) setHop(h hop) {
	r.mu.Lock()
	r.hop = h
	r.mu.Unlock()
}

// dest is where the registration's requests (and the lines' calls through
// it) go now: its server's, or "" for the URI's own.
func (r *upstreamReg) dest() string { return r.currentHop().dest() }
