package media

import (
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// From whom a leg takes media (issue 12 §1). Symmetric latching alone (RFC
// 4961: the first packet's source wins) let any host that sprayed the port
// range while a call rang take over its audio and press keys in it, so a
// leg accepts media only from where its peer's signalling said:
//
//   - RTP on the RTP port from the SDP's c=/m= address and port; RTCP on
//     the RTCP port from a=rtcp (RFC 3605 §2.1) or else that port+1; with
//     rtcp-mux (RFC 5761 §4), RTCP on the RTP port from the RTP address.
//   - Nothing at all before the peer's first SDP.
//   - For a peer the operator marked as behind NAT (SetNAT), also the
//     first well-formed packet from the IP its signalling came from, from
//     any port (NAT rewrites ports; the SDP's own port included). It
//     latches, separately for RTP and RTCP, and the latch never moves:
//     later packets from other ports of that IP are foreign. The SDP's
//     exact addresses stay accepted.
//   - Only new signalling moves a leg: SDP with another address (re-INVITE,
//     UPDATE) re-arms it for the new address only; the same address keeps
//     the latch, so a NATed phone's refresh does not break its audio.
//
// Anything else is foreign: dropped before it is parsed, never latched,
// never decoded as DTMF, never activity for the inactivity watch; counted
// (LegStats.Foreign, RelayConfig.OnForeign) and logged, at most once per
// foreignLogEvery per call. The leg sends RTP, relayed or played, only to
// an accepted source: the SDP's address, or the NAT latch.

// foreignLogEvery bounds the foreign-media log lines of one call.
const foreignLogEvery = 10 * time.Second

// legDest is the hot-path view of a leg's peer: where its media goes and
// from whom it is taken. It is swapped atomically, so the receive
// goroutines never take the leg's mutex except to latch.
type legDest struct {
	// rtp and rtcp are where this leg sends (zero: nowhere), derived by
	// settle from the fields below.
	rtp, rtcp netip.AddrPort
	mux       bool // RFC 5761: RTCP shares the RTP port both ways

	// sdpRTP and sdpRTCP are the sources the peer's SDP announced; rtcpSet
	// is an explicit a=rtcp (zero: sdpRTP's port+1).
	sdpRTP, sdpRTCP, rtcpSet netip.AddrPort
	// held: the SDP says send nothing (c=0.0.0.0, port 0). It names no new
	// source, so the leg still accepts the old one's media.
	held bool

	// natIP is the peer's signalling IP when it is behind NAT (zero: not);
	// natRTP and natRTCP are the sources latched on it (zero: not yet).
	natIP           netip.Addr
	natRTP, natRTCP netip.AddrPort

	// okRTP and okRTCP are the SDP sources the receive path takes as they
	// are: zero while an unlatched NAT latch is waiting for the first
	// packet from that very IP, which must latch.
	okRTP, okRTCP netip.AddrPort
}

// acceptsRTP reports whether RTP (or muxed RTCP) from src is the peer's
// without latching. A zero AddrPort never equals a packet's source, so
// before any SDP and latch nothing is accepted.
func (d *legDest) acceptsRTP(src netip.AddrPort) bool {
	return src == d.okRTP || src == d.natRTP
}

// acceptsRTCP reports whether RTCP on the RTCP port from src is the peer's.
func (d *legDest) acceptsRTCP(src netip.AddrPort) bool {
	return src == d.okRTCP || src == d.natRTCP
}

// settle derives the accepted sources and the send addresses.
func (d *legDest) settle() {
	d.sdpRTCP = d.rtcpSet
	if !d.sdpRTCP.IsValid() {
		d.sdpRTCP = rtcpFor(d.sdpRTP)
	}
	d.okRTP, d.okRTCP = d.sdpRTP, d.sdpRTCP
	if d.natIP.IsValid() && !d.natRTP.IsValid() && d.sdpRTP.Addr() == d.natIP {
		d.okRTP = netip.AddrPort{} // the first packet from natIP latches, even from here
	}
	if d.natIP.IsValid() && !d.natRTCP.IsValid() && d.sdpRTCP.Addr() == d.natIP {
		d.okRTCP = netip.AddrPort{}
	}
	if d.held {
		d.rtp, d.rtcp = netip.AddrPort{}, netip.AddrPort{}
		return
	}
	d.rtp, d.rtcp = d.sdpRTP, d.sdpRTCP
	if d.natRTP.IsValid() {
		d.rtp = d.natRTP
		if !d.rtcpSet.IsValid() {
			d.rtcp = rtcpFor(d.natRTP) // the NAT's likely mapping until RTCP latches
		}
	}
	if d.natRTCP.IsValid() {
		d.rtcp = d.natRTCP
	}
}

// update applies a change of the peer under l.mu and publishes it.
func (l *Leg) update(change func(d *legDest)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := *l.dest.Load()
	change(&d)
	d.settle()
	l.dest.Store(&d)
}

// setRTP applies the SDP's RTP address.
func (d *legDest) setRTP(addr netip.AddrPort) {
	addr = unmap(addr)
	if !addr.IsValid() || addr.Addr().IsUnspecified() || addr.Port() == 0 {
		// c=0.0.0.0 (RFC 2543 hold) or a rejected stream: nowhere to send.
		// A held phone still sends RTCP (RFC 3264 §8.4) from where it was.
		d.held = true
		return
	}
	d.held = false
	if addr == d.sdpRTP {
		return // a refresh: the latch stays
	}
	d.sdpRTP = addr
	d.natRTP, d.natRTCP = netip.AddrPort{}, netip.AddrPort{} // re-armed for the new address only
}

// setRTCP applies an explicit a=rtcp address (zero: RTP port+1).
func (d *legDest) setRTCP(addr netip.AddrPort) {
	addr = unmap(addr)
	if addr != d.rtcpSet {
		d.rtcpSet = addr
		d.natRTCP = netip.AddrPort{}
	}
}

// SetRemote sets the peer's RTP address from its SDP: the one source of RTP
// the leg accepts (see SetNAT for a peer behind NAT), and where the leg
// sends RTP; RTCP is taken from and sent to port+1 unless SetRemoteRTCP
// says otherwise. An address other than the current one (re-INVITE,
// UPDATE) drops the old source and any NAT latch; the same address keeps
// them. c=0.0.0.0 or port 0 stops sending and keeps the old source.
func (l *Leg) SetRemote(addr netip.AddrPort) {
	l.update(func(d *legDest) { d.setRTP(addr) })
	l.r.log.Debug("remote set", zap.Stringer("leg", l.side), zap.Stringer("remote", addr))
}

// SetRemoteRTCP sets an explicit RTCP address from an a=rtcp attribute
// (RFC 3605 §2.1), the source RTCP is taken from and sent to; the zero
// AddrPort reverts to RTP port+1.
func (l *Leg) SetRemoteRTCP(addr netip.AddrPort) {
	l.update(func(d *legDest) { d.setRTCP(addr) })
}

// SetRTCPMux turns RTCP multiplexing on the RTP port on or off (RFC 5761):
// with it, RTCP for this leg is sent to its RTP address, and RTCP arriving
// on the RTP port from the RTP source is taken and relayed as RTCP.
func (l *Leg) SetRTCPMux(on bool) {
	l.update(func(d *legDest) { d.mux = on })
}

// SetRemoteSDP applies a parsed SDP (offer or answer) of this leg's peer:
// RTP and RTCP addresses and rtcp-mux, in one change.
func (l *Leg) SetRemoteSDP(si *SessionInfo) {
	var rtcp netip.AddrPort
	if si.RTCPExplicit {
		rtcp = si.RTCP
	}
	l.update(func(d *legDest) {
		d.setRTCP(rtcp)
		d.mux = si.RTCPMux
		d.setRTP(si.RTP)
	})
	l.r.log.Debug("remote set", zap.Stringer("leg", l.side), zap.Stringer("remote", si.RTP), zap.Bool("rtcp_mux", si.RTCPMux))
}

// SetNAT marks the leg's peer as behind NAT, its signalling coming from ip
// (the source of the INVITE or response that carried its SDP), or with the
// zero Addr as not behind NAT. In NAT mode the first well-formed packet
// from ip, from any port, latches (RTP and RTCP each), and the leg then
// sends there; the SDP's exact addresses stay accepted too. Signalling
// from another IP drops a latch made on the old one. Call it before
// SetRemoteSDP with that signalling's SDP.
func (l *Leg) SetNAT(ip netip.Addr) {
	ip = ip.Unmap()
	l.update(func(d *legDest) {
		if ip == d.natIP {
			return
		}
		d.natIP = ip
		if d.natRTP.Addr() != ip {
			d.natRTP = netip.AddrPort{}
		}
		if d.natRTCP.Addr() != ip {
			d.natRTCP = netip.AddrPort{}
		}
	})
}

// wellFormed is what a packet must look like to latch: RTP (RFC 3550 §5.1:
// version 2, 12-byte header), or RTCP (8 bytes) where RTCP is expected.
func wellFormed(b []byte, rtcp bool) bool {
	if len(b) < 8 || b[0]>>6 != 2 {
		return false
	}
	return rtcp || len(b) >= 12
}

// latchRTP latches the RTP source of a NATed peer: true if src, from the
// peer's signalling IP, is now the leg's latched RTP source. d is the view
// the caller already found src foreign in.
func (l *Leg) latchRTP(src netip.AddrPort, b []byte, d *legDest) bool {
	if d.natRTP.IsValid() || d.natIP != src.Addr() {
		return false // not NAT mode, not its IP, or latched already: never moves
	}
	muxed := len(b) >= 2 && b[1] >= 192 && b[1] <= 223 // RFC 5761 §4
	if !wellFormed(b, muxed) || (muxed && !d.mux) {
		return false
	}
	return l.latch(src, false)
}

// latchRTCP is latchRTP for the RTCP port.
func (l *Leg) latchRTCP(src netip.AddrPort, b []byte, d *legDest) bool {
	if d.natRTCP.IsValid() || d.natIP != src.Addr() || !wellFormed(b, true) {
		return false
	}
	return l.latch(src, true)
}

// latch is the slow path of a NAT latch, under l.mu: another packet may
// have latched meanwhile, or signalling changed the peer.
func (l *Leg) latch(src netip.AddrPort, rtcp bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := *l.dest.Load()
	if d.natIP != src.Addr() {
		return false
	}
	at := &d.natRTP
	if rtcp {
		at = &d.natRTCP
	}
	if at.IsValid() {
		return *at == src
	}
	*at = src
	d.settle()
	l.dest.Store(&d)
	l.r.log.Debug("latched behind NAT", zap.Stringer("leg", l.side), zap.Bool("rtcp", rtcp),
		zap.Stringer("source", src), zap.Stringer("sdp", d.sdpRTP))
	return true
}

// foreign drops a packet from a source the leg does not accept: counted,
// reported to OnForeign, and logged at most once per foreignLogEvery per
// call with the count since the last line. Atomics only, no allocation
// but on the rare logging path: a flood comes through here.
//
// A packet that comes before the peer's SDP is dropped too, but is no
// stranger's: the peer has our SDP and may start sending (a phone's first
// RTCP often does) before its own reaches us. It is counted as dropped
// only, so that the foreign count and its metric mean spoofed or stale
// media, and every ordinary call does not log a warning.
func (r *Relay) foreign(l *Leg, src netip.AddrPort, rtcpPort bool) {
	l.dropped.Add(1)
	if !l.dest.Load().sdpRTP.IsValid() {
		return
	}
	l.foreign.Add(1)
	if r.onForeign != nil {
		r.onForeign(l.side)
	}
	r.foreignN.Add(1)
	now := int64(time.Since(r.epoch))
	next := r.foreignLogAt.Load()
	if now < next || !r.foreignLogAt.CompareAndSwap(next, now+int64(foreignLogEvery)) {
		return
	}
	r.logForeign(l, src, rtcpPort, r.foreignN.Swap(0))
}

// logForeign writes the rate-limited line; kept out of foreign so that its
// fields are built only when it logs.
func (r *Relay) logForeign(l *Leg, src netip.AddrPort, rtcpPort bool, n uint64) {
	d := l.dest.Load()
	port, want := "rtp", d.sdpRTP
	if rtcpPort {
		port, want = "rtcp", d.sdpRTCP
	}
	fields := []zap.Field{zap.Stringer("leg", l.side), zap.String("port", port), zap.Stringer("source", src),
		zap.Stringer("sdp", want), zap.Uint64("packets", n)}
	if d.natIP.IsValid() {
		fields = append(fields, zap.Stringer("nat_ip", d.natIP))
	}
	r.log.Warn("media from a foreign source dropped", fields...)
}
