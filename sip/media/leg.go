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
	// (no SDP remote set and nothing latched yet).
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
	// Foreign counts the part of Dropped that came from an address other
	// than the latched one (stale or spoofed media).
	Foreign uint64
	// Remote is where this leg's RTP goes now; Latched tells whether it was
	// learnt from received packets rather than taken from SDP.
	Remote  netip.AddrPort
	Latched bool
}

// legDest is the hot-path view of a leg's destination, swapped atomically so
// the forwarding goroutines never take the leg's mutex.
type legDest struct {
	rtp, rtcp   netip.AddrPort
	mux         bool
	rtpLatched  bool
	rtcpLatched bool
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

	mu        sync.Mutex // serialises changes to dest
	sdpRemote netip.AddrPort
	sdpRTCP   netip.AddrPort
	dest      atomic.Pointer[legDest]

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
}

// Side tells which leg this is.
func (l *Leg) Side() Side { return l.side }

// Port is the local RTP port; RTCP is on Port()+1.
func (l *Leg) Port() int { return l.port }

// LocalAddr is the advertised address and RTP port, for c=/m= in SDP.
func (l *Leg) LocalAddr() netip.AddrPort { return l.local }

// SetRemote sets where the peer asked (in SDP) to receive RTP. RTCP goes to
// port+1 unless SetRemoteRTCP says otherwise (RFC 3605).
//
// Symmetric RTP (RFC 4961) still applies: once packets arrive, their real
// source wins. A changed SDP address (re-INVITE, transfer) drops the latch
// so the leg re-learns from the new stream; the same address keeps it, so
// a refreshing re-INVITE from a phone behind NAT does not break its audio.
func (l *Leg) SetRemote(addr netip.AddrPort) {
	addr = unmap(addr)
	if addr.IsValid() && (addr.Addr().IsUnspecified() || addr.Port() == 0) {
		// c=0.0.0.0 (RFC 2543 hold) or a rejected stream: nowhere to send.
		addr = netip.AddrPort{}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if addr == l.sdpRemote && addr.IsValid() {
		return
	}
	l.sdpRemote = addr
	d := *l.dest.Load()
	d.rtp, d.rtpLatched, d.rtcpLatched = addr, false, false
	d.rtcp = l.rtcpDefault(addr)
	l.dest.Store(&d)
	l.r.log.Debug("remote set", zap.Stringer("leg", l.side), zap.Stringer("remote", addr))
}

// SetRemoteRTCP sets an explicit RTCP destination from an a=rtcp attribute
// (RFC 3605 §2.1); the zero AddrPort reverts to RTP port+1.
func (l *Leg) SetRemoteRTCP(addr netip.AddrPort) {
	addr = unmap(addr)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sdpRTCP = addr
	d := *l.dest.Load()
	if !d.rtcpLatched {
		d.rtcp = l.rtcpDefault(d.rtp)
		l.dest.Store(&d)
	}
}

// SetRemoteSDP applies a parsed SDP (offer or answer) of this leg's peer:
// RTP and RTCP addresses and rtcp-mux.
func (l *Leg) SetRemoteSDP(si *SessionInfo) {
	if si.RTCPExplicit {
		l.SetRemoteRTCP(si.RTCP)
	} else {
		l.SetRemoteRTCP(netip.AddrPort{})
	}
	l.SetRTCPMux(si.RTCPMux)
	l.SetRemote(si.RTP)
}

// rtcpDefault is where RTCP goes while nothing is latched. l.mu held.
func (l *Leg) rtcpDefault(rtpAddr netip.AddrPort) netip.AddrPort {
	if l.sdpRTCP.IsValid() {
		return l.sdpRTCP
	}
	return rtcpFor(rtpAddr)
}

// SetRTCPMux turns RTCP multiplexing on the RTP port on or off (RFC 5761):
// with it, RTCP for this leg is sent to its RTP address, and RTCP arriving on
// the RTP port is recognised and relayed as RTCP.
func (l *Leg) SetRTCPMux(on bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := *l.dest.Load()
	d.mux = on
	l.dest.Store(&d)
}

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
	to := l.dest.Load().rtp
	if !to.IsValid() {
		return fmt.Errorf("%w (%s leg)", ErrNoRemote, l.side)
	}
	if _, err := l.rtpConn.WriteToUDPAddrPort(buf[:n], to); err != nil {
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
		Remote:     d.rtp,
		Latched:    d.rtpLatched,
	}
}

// acceptRTP applies symmetric-RTP latching to a packet from src on the RTP
// port; false means the packet is foreign and must be dropped.
func (l *Leg) acceptRTP(src netip.AddrPort) bool {
	d := l.dest.Load()
	if d.rtpLatched {
		return d.rtp == src
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	d2 := *l.dest.Load()
	if d2.rtpLatched { // another goroutine latched meanwhile (RTP+mux)
		return d2.rtp == src
	}
	d2.rtp, d2.rtpLatched = src, true
	if !d2.rtcpLatched && !l.sdpRTCP.IsValid() {
		d2.rtcp = rtcpFor(src)
	}
	l.dest.Store(&d2)
	l.r.log.Debug("rtp latched", zap.Stringer("leg", l.side), zap.Stringer("source", src), zap.Stringer("sdp", l.sdpRemote))
	return true
}

// acceptRTCP is acceptRTP for the RTCP port.
func (l *Leg) acceptRTCP(src netip.AddrPort) bool {
	d := l.dest.Load()
	if d.rtcpLatched {
		return d.rtcp == src
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	d2 := *l.dest.Load()
	if d2.rtcpLatched {
		return d2.rtcp == src
	}
	d2.rtcp, d2.rtcpLatched = src, true
	l.dest.Store(&d2)
	return true
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
