package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/zap"
)

var (
	// ErrClosed is returned when writing to a leg of a closed relay.
	ErrClosed = errors.New("media: relay closed")
	// ErrNoRemote is returned by WriteRTP before the leg has a destination
	// (no SDP remote set yet, or the peer is on hold).
	ErrNoRemote = errors.New("media: leg has no remote address")
)

// Side names one leg of a call.
type Side int

const (
	// SideTrunk faces the provider's trunk: the caller.
	SideTrunk Side = iota
	// SideLine faces the protected landline.
	SideLine
)

func (s Side) String() string {
	switch s {
	case SideTrunk:
		return "trunk"
	case SideLine:
		return "line"
	}
	return fmt.Sprintf("side(%d)", int(s))
}

func (s Side) other() Side { return 1 - s }

func (s Side) valid() bool { return s == SideTrunk || s == SideLine }

// LegStats are the counters of one leg. "In" is what the leg's peer sent to
// cleanline and was accepted; "Out" is what cleanline sent to the peer
// (relayed from the other leg or played).
type LegStats struct {
	PacketsIn  uint64
	BytesIn    uint64
	PacketsOut uint64
	BytesOut   uint64
	RTCPIn     uint64
	RTCPOut    uint64
	// Dropped counts packets received on this leg and not forwarded: not
	// bridged, malformed, from a foreign source, or no destination yet.
	Dropped uint64
	// Foreign counts the part of Dropped that came from a source the leg
	// does not accept (stale or spoofed media; see source.go).
	Foreign uint64
	// SRTPFailed counts the part of Dropped that came from the peer's
	// address and failed SRTP's authentication (forged or replayed).
	SRTPFailed uint64
	// SRTP tells whether the leg's media is encrypted now.
	SRTP bool
	// Remote is where this leg's RTP goes now; Latched tells whether it is
	// a NAT latch (SetNAT) rather than the SDP's address.
	Remote  netip.AddrPort
	Latched bool
}

type dtmfHook struct {
	pt  uint8
	dec *DTMFDecoder
	fn  func(digit rune)
}

// Leg is one side of a relay: an RTP socket and its RTCP socket (port+1).
type Leg struct {
	r        *Relay
	side     Side
	port     int
	pair     *portPair
	rtpConn  *net.UDPConn
	rtcpConn *net.UDPConn
	local    netip.AddrPort

	mu   sync.Mutex // serialises changes to dest
	dest atomic.Pointer[legDest]

	srtp atomic.Pointer[legSRTP] // nil: plain RTP (srtp.go)

	dtmf  atomic.Pointer[dtmfHook]
	ptMap atomic.Pointer[[128]uint8] // PT rewrite for RTP received here; nil: none

	// The inactivity watch. lastRx and idle are the receive path's, which
	// takes watchMu only to re-arm a leg that was reported idle; watchMu
	// guards the timer and watchOff, and is never held while calling
	// OnInactive nor together with r.mu held for writing.
	lastRx   atomic.Int64 // nanoseconds since r.epoch of the last accepted packet
	idle     atomic.Bool  // OnInactive reported this silence; the next packet ends it
	watchMu  sync.Mutex
	timer    *time.Timer // nil until ResetInactivity arms the watch
	watchOff bool        // set by Close: the timer is stopped for good

	wmu     sync.Mutex // guards the pair's wbuf for WriteRTP
	dtmfPkt rtp.Packet // reused for telephone-event decoding only

	pktIn, bytesIn, pktOut, bytesOut  atomic.Uint64
	rtcpIn, rtcpOut, dropped, foreign atomic.Uint64
	srtpFailed                        atomic.Uint64
}

// Side tells which leg this is.
func (l *Leg) Side() Side { return l.side }

// Port is the local RTP port; RTCP is on Port()+1.
func (l *Leg) Port() int { return l.port }

// LocalAddr is the advertised address and RTP port, for c=/m= in SDP.
func (l *Leg) LocalAddr() netip.AddrPort { return l.local }

// WriteRTP sends one packet to the leg's peer, e.g. from the prompt player.
// The packet is marshalled into a buffer owned by the leg and not retained.
func (l *Leg) WriteRTP(p *rtp.Packet) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	// Checked first: once closed, the pair and its buffer may serve another
	// call.
	l.r.mu.RLock()
	defer l.r.mu.RUnlock()
	if l.r.closed {
		return ErrClosed
	}
	buf := &l.pair.wbuf
	n, err := p.MarshalTo(buf[:])
	if err != nil {
		return fmt.Errorf("media: marshal RTP for %s leg: %w", l.side, err)
	}
	// Only ever to an accepted source (the SDP's address or a NAT latch):
	// a foreign packet cannot redirect a prompt.
	to := l.dest.Load().rtp
	if !to.IsValid() {
		return fmt.Errorf("%w (%s leg)", ErrNoRemote, l.side)
	}
	if err := l.write(l.rtpConn, to, buf[:n], false); err != nil {
		return fmt.Errorf("media: write RTP to %s leg %s: %w", l.side, to, err)
	}
	l.pktOut.Add(1)
	l.bytesOut.Add(uint64(n))
	return nil
}

// Stats returns a snapshot of the leg's counters.
func (l *Leg) Stats() LegStats {
	d := l.dest.Load()
	return LegStats{
		PacketsIn:  l.pktIn.Load(),
		BytesIn:    l.bytesIn.Load(),
		PacketsOut: l.pktOut.Load(),
		BytesOut:   l.bytesOut.Load(),
		RTCPIn:     l.rtcpIn.Load(),
		RTCPOut:    l.rtcpOut.Load(),
		Dropped:    l.dropped.Load(),
		Foreign:    l.foreign.Load(),
		SRTPFailed: l.srtpFailed.Load(),
		SRTP:       l.srtp.Load() != nil,
		Remote:     d.rtp,
		Latched:    d.natRTP.IsValid(),
	}
}

// touch records activity for the inactivity watch; it runs for every
// accepted packet, under r.mu held for reading.
func (l *Leg) touch() {
	if l.r.inactivity <= 0 {
		return
	}
	l.lastRx.Store(int64(time.Since(l.r.epoch)))
	// Stored before idle is read, and checkIdle sets idle before it reads
	// lastRx again: so either this packet sees the verdict and re-arms, or
	// checkIdle sees this packet and withdraws it.
	if l.idle.Load() && l.idle.CompareAndSwap(true, false) {
		l.watchMu.Lock()
		if !l.watchOff && l.timer != nil {
			l.timer.Reset(l.r.inactivity) // a new period starts with this packet
		}
		l.watchMu.Unlock()
	}
}

// resetWatch restarts the leg's clock from now, arming the watch the first
// time.
func (l *Leg) resetWatch() {
	l.watchMu.Lock()
	defer l.watchMu.Unlock()
	if l.watchOff {
		return
	}
	l.lastRx.Store(int64(time.Since(l.r.epoch)))
	l.idle.Store(false)
	if l.timer == nil {
		l.timer = time.AfterFunc(l.r.inactivity, l.checkIdle)
		return
	}
	l.timer.Reset(l.r.inactivity)
}

// stopWatch stops the leg's timer for good (Close).
func (l *Leg) stopWatch() {
	l.watchMu.Lock()
	defer l.watchMu.Unlock()
	l.watchOff = true
	if l.timer != nil {
		l.timer.Stop()
	}
}

// checkIdle runs on the leg's inactivity timer: it re-arms the timer for the
// rest of the period if a packet came meanwhile, else reports the silence
// once and leaves the timer stopped until touch or resetWatch re-arms it.
func (l *Leg) checkIdle() {
	l.watchMu.Lock()
	if l.watchOff || l.idle.Load() {
		l.watchMu.Unlock()
		return // closed, or this silence has been reported already
	}
	last := l.lastRx.Load()
	silent := time.Since(l.r.epoch) - time.Duration(last)
	if silent < l.r.inactivity {
		l.timer.Reset(l.r.inactivity - silent)
		l.watchMu.Unlock()
		return
	}
	l.idle.Store(true)
	if l.lastRx.Load() != last {
		// A packet arrived while we judged: the leg is not silent. If its
		// touch missed the verdict, re-arm here; else touch re-arms.
		if l.idle.CompareAndSwap(true, false) {
			l.timer.Reset(l.r.inactivity)
		}
		l.watchMu.Unlock()
		return
	}
	l.watchMu.Unlock()
	l.r.log.Info("media inactive", zap.Stringer("leg", l.side), zap.Duration("silent", silent))
	if l.r.onInactive != nil {
		l.r.onInactive(l.side)
	}
}

func rtcpFor(rtpAddr netip.AddrPort) netip.AddrPort {
	if !rtpAddr.IsValid() || rtpAddr.Port() == 0 || rtpAddr.Port() == 65535 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(rtpAddr.Addr(), rtpAddr.Port()+1)
}

func unmap(a netip.AddrPort) netip.AddrPort {
	if !a.IsValid() {
		return a
	}
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
