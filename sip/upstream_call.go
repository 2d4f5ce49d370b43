package sip

import (
	"strings"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// A line's own call through a registration trunk goes out as the
// subscriber's would: From its address of record, along the route the
// registration gave (outbound proxy, Service-Route), and a challenge of the
// provider's is answered with the subscriber's credentials, once.

// upstreamInvite builds the INVITE of a line's call through t, a
// registration, to `to` (the provider's domain, or t's outbound), for
// sealInvite.
func (s *Server) upstreamInvite(t *Trunk, to sip.Uri) *sip.Request {
	r := t.Register
	out := s.newInvite(to, "", r.Username)
	// RFC 3261 §8.1.1.3: From is the subscriber's address of record, which
	// the provider authenticates and presents. No P-Asserted-Identity:
	// cleanline is outside the provider's trust domain (RFC 3325 §2).
	out.From().Address.Host = r.registrar.Host
	// RFC 3261 §8.1.2: the outbound proxy as a pre-loaded route; RFC 3608
	// §6.1: then the registrar's Service-Route, in order.
	for _, v := range s.up.route(t) {
		out.AppendHeader(sip.NewHeader("Route", v))
	}
	// The first hop's transport (the proxy's may differ from what the
	// Request-URI says) and the server the registration is at (RFC 3263);
	// sealInvite gives our Contact on it.
	out.SetTransport(strings.ToUpper(r.transport))
	if reg := s.up.get(t.Name); reg != nil {
		if d := reg.dest(); d != "" {
			out.SetDestination(d)
		}
	}
	return out
}

// credentials are what c's INVITE answers a challenge with: the
// subscriber's, for a line's call through a registration; none otherwise.
func (c *call) credentials() sipgo.AnswerOptions {
	if c.dir != outbound || c.trunk == nil || c.trunk.Register == nil {
		return sipgo.AnswerOptions{}
	}
	return sipgo.AnswerOptions{Username: c.trunk.Register.AuthUsername, Password: c.trunk.Register.password}
}
