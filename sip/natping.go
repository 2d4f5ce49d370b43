package sip

import (
	"context"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Keep-alives towards registered devices behind NAT. A home router forgets
// an idle UDP mapping within a minute or two (RFC 4787 REQ-5 asks for no
// less than 2 minutes; many keep 30 s), and an ATA that refreshes its
// registration hourly would then be unreachable for most of the hour: the
// INVITE of the next call to the line reaches a closed port. Like a
// provider's registrar (Kamailio's nathelper), cleanline sends such a
// device an OPTIONS to its flow every sip.registrar.nat_keepalive, from
// the listener it registered to; any answer keeps the mapping. A device
// that answers none of natPingMisses in a row while others behind NAT do
// is gone (unplugged, or its NAT forgot the mapping anyway): its binding
// is dropped, so the line's calls stop ringing a phone nobody can reach.
// When none answers, the silence may be cleanline's own network: nothing
// is dropped, or every device would be unreachable until it registered
// again, up to an hour after the network came back.

// natPingMisses unanswered keep-alives in a row drop a binding.
const natPingMisses = 3

// natPingParallel bounds the keep-alives in flight at once: a provider's
// box holds thousands of devices, and a round must end well within the
// interval even when many are gone (each costs natPingTimeout).
const natPingParallel = 1024

// natPingTimeout bounds one keep-alive: over UDP, three transmissions
// (RFC 3261 §17.1.2.2: at 0, T1 and 3·T1).
const natPingTimeout = 2 * time.Second

// natPings runs until the server's life ends, reading the interval from
// the routing in force at each round (a reload changes it).
func (s *Server) natPings() {
	silent := false // the last round heard nobody
	for {
		every := s.routing().cfg.Registrar.NATKeepAlive
		wait := every
		if wait <= 0 {
			wait = 5 * time.Second // off: look again for a reload that turns it on
		}
		select {
		case <-s.life.Done():
			return
		case <-time.After(wait):
		}
		if every > 0 {
			silent = s.natPingRound(min(every, natPingTimeout), silent)
		}
	}
}

// natPingRound pings every live UDP binding behind NAT once, waits for
// them all (each within timeout), then counts the results; it reports
// whether it pinged some and heard none (wasSilent: the last one did).
func (s *Server) natPingRound(timeout time.Duration, wasSilent bool) (silent bool) {
	targets := s.binds.natUDP()
	answered := make(map[string]bool, len(targets))
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, natPingParallel)
	for k, b := range targets {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			ok := s.natPing(b, timeout)
			mu.Lock()
			answered[k] = ok
			mu.Unlock()
		}()
	}
	wg.Wait()
	if s.life.Err() != nil {
		return false
	}
	heard := 0
	for _, ok := range answered {
		if ok {
			heard++
		}
	}
	s.metrics.natPings.WithLabelValues("answered").Add(float64(heard))
	s.metrics.natPings.WithLabelValues("unanswered").Add(float64(len(answered) - heard))
	if silent = len(answered) > 0 && heard == 0; silent {
		if !wasSilent {
			s.log.Warn("no device behind NAT answered its keep-alive: their registrations are kept (is cleanline's own network cut off?)",
				zap.Int("devices", len(answered)))
		}
		return true
	}
	for k, ok := range answered {
		b := targets[k]
		if s.binds.pinged(k, b, ok) {
			s.metrics.natDropped.Inc()
			s.log.Warn("device behind NAT answered no keep-alive: its registration is dropped",
				zap.String("line", b.Line), zap.String("device", b.Device), zap.Stringer("flow", b.Flow),
				zap.Int("unanswered", natPingMisses))
		}
	}
	return false
}

// natPing sends one OPTIONS (RFC 3261 §11) to b's Contact through its flow,
// from our UDP listener, the address its NAT mapping points at. Any final
// answer, an error status too, proves the way in is open.
func (s *Server) natPing(b binding, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(s.life, timeout)
	defer cancel()
	req := sip.NewRequest(sip.OPTIONS, b.target())
	req.SetTransport("UDP")
	req.SetDestination(b.Flow.String())
	f := s.faceTo(req)
	from := sip.FromHeader{Address: f.dua.ContactHDR.Address, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(&from)
	req.AppendHeader(&sip.ToHeader{Address: b.target()})
	s.fromListener(req)
	_, err := f.cli.Do(ctx, req)
	return err == nil
}
