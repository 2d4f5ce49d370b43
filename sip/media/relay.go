package media

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// maxPacket bounds one datagram; larger ones are truncated by the kernel
// and dropped as malformed. 1500 covers any G.711/G.722/Opus audio packet.
const maxPacket = 1500

// ErrRelayConfig is wrapped by NewRelay for an unusable configuration.
var ErrRelayConfig = errors.New("media: invalid relay config")

// RelayConfig configures one call's relay.
type RelayConfig struct {
	// Pool supplies the RTP/RTCP port pairs, one per leg. Required.
	Pool *PortPool
	// BindIP is the local address the sockets bind to, e.g. 127.0.0.1 or
	// 0.0.0.0. Required.
	BindIP netip.Addr
	// AdvertiseIP is the address put in SDP (the public address when the box
	// is behind NAT). Defaults to BindIP, which must then be specific.
	AdvertiseIP netip.Addr
	// Inactivity is how long a leg may receive nothing from its peer before
	// OnInactive is called for it; zero disables the watch. Activity is any
	// packet the leg accepts, RTP or RTCP (on either port, or muxed), bridged
	// or not: RTCP counts because a held call still sends it (RFC 3264
	// §8.4). Malformed packets and packets from a foreign source do not
	// count, so a spoofed stream cannot keep a dead call alive.
	//
	// The watch is armed by ResetInactivity, not by NewRelay: until the
	// first ResetInactivity nothing is timed and OnInactive is never
	// called. Call it when the call is answered, since a line that is still
	// ringing sends no media; calling it again restarts both clocks.
	Inactivity time.Duration
	// OnInactive is called once per silent period of a leg, from a timer
	// goroutine: when the leg has been silent for Inactivity, and not again
	// for that leg until a packet arrives on it (which starts the next
	// period's clock) or ResetInactivity restarts the clocks. Each leg has
	// its own periods, so two silent legs give two calls. It may call
	// Relay.Close. Close stops the watch: no timer is left pending and no
	// new verdict is reached once it returns; only a call already decided
	// when Close began may still be running (it may be the one calling
	// Close), so OnInactive must tolerate a relay that is closed.
	OnInactive func(side Side)
	// OnForeign, if set, is called for every packet a leg drops because it
	// came from a source the leg does not accept (source.go), on the
	// receive goroutine: a flood calls it for each packet, so it must be
	// cheap (an atomic add), never block and never allocate.
	OnForeign func(side Side)
	// Logger is optional.
	Logger *zap.Logger
}

// RelayStats are a call's media counters, for call records and metrics.
type RelayStats struct {
	Trunk, Line LegStats
	// Duration is the time from NewRelay to Close (or to now).
	Duration time.Duration
}

// Relay anchors the media of one call: two legs, each on a port pair (RTP
// and RTCP sockets) it holds for the call, and forwarding between them
// under the B2BUA's control.
type Relay struct {
	legs       [2]*Leg
	fwd        [2]atomic.Bool // fwd[s]: packets received on leg s go to the other leg
	pool       *PortPool
	log        *zap.Logger
	inactivity time.Duration
	onInactive func(Side)
	onForeign  func(Side)
	epoch      time.Time

	// Foreign media's log line (source.go): packets since the last line,
	// and when (since epoch) the next line may be written.
	foreignN     atomic.Uint64
	foreignLogAt atomic.Int64

	// mu is held for reading around every send and for writing by Close: once
	// Close returns, no goroutine is between "not closed" and a send, which
	// is what makes "nothing after Close" a guarantee and not a likelihood.
	mu       sync.RWMutex
	closed   bool
	closedAt time.Time

	closeOnce sync.Once
}

// NewRelay takes a port pair for each leg from the pool (a warm pair that has
// rested, else a newly bound one; see PortPool) and starts relaying, not
// bridged: packets are counted (and carry DTMF) but go nowhere
// until SetBridged or SetForwarding says so. The inactivity watch waits for
// ResetInactivity.
func NewRelay(cfg RelayConfig) (*Relay, error) {
	if cfg.Pool == nil {
		return nil, fmt.Errorf("%w: no port pool", ErrRelayConfig)
	}
	if !cfg.BindIP.IsValid() {
		return nil, fmt.Errorf("%w: no bind address", ErrRelayConfig)
	}
	adv := cfg.AdvertiseIP
	if !adv.IsValid() {
		if cfg.BindIP.IsUnspecified() {
			return nil, fmt.Errorf("%w: bind address %s needs an advertise address", ErrRelayConfig, cfg.BindIP)
		}
		adv = cfg.BindIP
	}
	if cfg.Inactivity < 0 {
		return nil, fmt.Errorf("%w: negative inactivity %s", ErrRelayConfig, cfg.Inactivity)
	}
	r := &Relay{
		pool:       cfg.Pool,
		log:        cfg.Logger,
		inactivity: cfg.Inactivity,
		onInactive: cfg.OnInactive,
		onForeign:  cfg.OnForeign,
		epoch:      time.Now(),
	}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	for _, side := range []Side{SideTrunk, SideLine} {
		l, err := r.newLeg(side, cfg.BindIP.Unmap(), adv.Unmap())
		if err != nil {
			r.Close()
			return nil, err
		}
		r.legs[side] = l
	}
	for _, l := range r.legs {
		l.pair.leg.Store(l) // from here on its packets are this call's
	}
	return r, nil
}

// newLeg takes a port pair from the pool, warm or newly bound.
func (r *Relay) newLeg(side Side, bind, adv netip.Addr) (*Leg, error) {
	pp, err := r.pool.getPair(bind)
	if err != nil {
		return nil, err
	}
	l := &Leg{
		r: r, side: side, port: pp.port, pair: pp,
		rtpConn: pp.rtp, rtcpConn: pp.rtcp,
		local: netip.AddrPortFrom(adv, uint16(pp.port)),
	}
	l.dest.Store(&legDest{})
	return l, nil
}

// Trunk is the leg facing the caller's trunk.
func (r *Relay) Trunk() *Leg { return r.legs[SideTrunk] }

// Line is the leg facing the landline.
func (r *Relay) Line() *Leg { return r.legs[SideLine] }

// Leg returns the leg of side s (nil for an unknown side).
func (r *Relay) Leg(s Side) *Leg {
	if !s.valid() {
		return nil
	}
	return r.legs[s]
}

// SetBridged forwards RTP and RTCP both ways (true) or neither way (false).
func (r *Relay) SetBridged(on bool) { r.SetForwarding(on, on) }

// SetForwarding sets each direction separately; early media before answer
// is SetForwarding(false, true): the line's ringback/announcement reaches the
// trunk, but nothing from an unanswered caller reaches the line.
func (r *Relay) SetForwarding(trunkToLine, lineToTrunk bool) {
	r.fwd[SideTrunk].Store(trunkToLine)
	r.fwd[SideLine].Store(lineToTrunk)
}

// OnTelephoneEvent reports RFC 4733 digits received on side, sent with
// payload type pt (from that leg's negotiated SDP: never assume 101). Each
// digit is reported once. fn runs on the leg's receive goroutine: it must
// not block and must not call Close (hand the digit to a DigitCollector).
// A nil fn stops reporting.
func (r *Relay) OnTelephoneEvent(side Side, pt uint8, fn func(digit rune)) {
	if !side.valid() {
		return
	}
	if fn == nil {
		r.legs[side].dtmf.Store(nil)
		return
	}
	r.legs[side].dtmf.Store(&dtmfHook{pt: pt & 0x7F, dec: NewDTMFDecoder(), fn: fn})
}

// ResetInactivity arms the inactivity watch on its first call and restarts
// both legs' clocks from now on every call: call it when the call is
// answered, since a line that is still ringing sends no RTP and the watch
// should only judge an answered call. It also re-arms a leg whose
// OnInactive already fired. A no-op without RelayConfig.Inactivity and
// after Close.
func (r *Relay) ResetInactivity() {
	if r.inactivity <= 0 {
		return
	}
	for _, l := range r.legs {
		l.resetWatch()
	}
}

// SetPayloadTypeMap rewrites the payload type of RTP received on side from
// before it is forwarded: the two legs negotiate separately, so the same
// format can carry different dynamic numbers on each (the trunk offered
// telephone-event as 96, the line answered cleanline's 101). Keys and
// values are 0-127; unmapped types pass unchanged; nil or empty clears.
func (r *Relay) SetPayloadTypeMap(from Side, m map[uint8]uint8) {
	if !from.valid() {
		return
	}
	if len(m) == 0 {
		r.legs[from].ptMap.Store(nil)
		return
	}
	var t [128]uint8
	for i := range t {
		t[i] = uint8(i)
	}
	for in, out := range m {
		t[in&0x7F] = out & 0x7F
	}
	r.legs[from].ptMap.Store(&t)
}

// Stats returns both legs' counters.
func (r *Relay) Stats() RelayStats {
	r.mu.RLock()
	end := r.closedAt
	r.mu.RUnlock()
	if end.IsZero() {
		end = time.Now()
	}
	return RelayStats{Trunk: r.legs[SideTrunk].Stats(), Line: r.legs[SideLine].Stats(), Duration: end.Sub(r.epoch)}
}

// Close stops the call's media: it detaches both legs from their port pairs
// and hands the pairs back to the pool, which closes them or, with
// KeepWarm, lets them rest bound and owned by no call until a later call
// takes them or the first stray packet closes them (see PortPool). After
// Close returns, not one more packet is sent to either peer, nothing
// received is handled as this call's (ARCHITECTURE.md D1/D2), and the inactivity
// watch is stopped. Idempotent; safe to call from OnInactive.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		// Every packet is handled under r.mu held for reading, so taking it
		// for writing waits out the one in hand, if any.
		r.mu.Lock()
		r.closed = true
		r.closedAt = time.Now()
		for _, l := range r.legs {
			if l != nil {
				l.pair.leg.Store(nil)
			}
		}
		r.mu.Unlock()
		for _, l := range r.legs {
			if l != nil {
				l.stopWatch()
			}
		}
		for _, l := range r.legs {
			if l != nil {
				r.pool.putPair(l.pair)
			}
		}
		if r.legs[SideLine] != nil {
			st := r.Stats()
			r.log.Debug("relay closed",
				zap.Int("trunk_port", r.legs[SideTrunk].port), zap.Int("line_port", r.legs[SideLine].port),
				zap.Uint64("trunk_in", st.Trunk.PacketsIn), zap.Uint64("line_in", st.Line.PacketsIn))
		}
	})
	return nil
}

// receiveRTP handles one datagram that reached leg l's RTP port from src.
func (r *Relay) receiveRTP(l *Leg, b []byte, src netip.AddrPort) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return // the pair was detached after this packet was read
	}
	// The source first: of a packet from anyone but the leg's peer nothing
	// is parsed, decoded or counted as activity (source.go).
	d := l.dest.Load()
	if !d.acceptsRTP(src) && !l.latchRTP(src, b, d) {
		r.foreign(l, src, false)
		return
	}
	n := len(b)
	// RFC 3550 §5.1: version 2, fixed header 12 bytes. Anything else is
	// not RTP/RTCP and is never relayed.
	if n < 8 || b[0]>>6 != 2 {
		l.dropped.Add(1)
		return
	}
	// RFC 5761 §4: with rtcp-mux, second-byte values 192-223 are RTCP.
	if b[1] >= 192 && b[1] <= 223 {
		if !d.mux {
			l.dropped.Add(1)
			return
		}
		r.passRTCP(l, b)
		return
	}
	if n < 12 {
		l.dropped.Add(1)
		return
	}
	b, ok := l.open(b, false)
	if !ok {
		l.dropped.Add(1)
		return
	}
	l.pktIn.Add(1)
	l.bytesIn.Add(uint64(len(b)))
	l.touch()
	// RFC 4733 digits only from the accepted source, checked above: a
	// sprayed telephone-event never reaches the decoder.
	if h := l.dtmf.Load(); h != nil {
		if b[1]&0x7F == h.pt {
			if l.dtmfPkt.Unmarshal(b) == nil {
				if d, ok := h.dec.Decode(&l.dtmfPkt); ok {
					h.fn(d)
				}
			}
		} else if d, ok := h.dec.Flush(); ok {
			// Audio resumed after an event whose end packets were all
			// lost (RFC 4733 §2.5.2.2): the key was pressed, report it.
			h.fn(d)
		}
	}
	r.forward(l, b, false)
}

// receiveRTCP handles one datagram that reached leg l's RTCP port.
func (r *Relay) receiveRTCP(l *Leg, b []byte, src netip.AddrPort) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return
	}
	d := l.dest.Load()
	if !d.acceptsRTCP(src) && !l.latchRTCP(src, b, d) {
		r.foreign(l, src, true)
		return
	}
	if len(b) < 8 || b[0]>>6 != 2 {
		l.dropped.Add(1)
		return
	}
	r.passRTCP(l, b)
}

// passRTCP relays RTCP from l's peer, received on its RTCP port or muxed
// on its RTP port.
func (r *Relay) passRTCP(l *Leg, b []byte) {
	b, ok := l.open(b, true)
	if !ok {
		l.dropped.Add(1)
		return
	}
	l.rtcpIn.Add(1)
	l.touch()
	r.forward(l, b, true)
}

// forward sends a packet received on leg from to the other leg, if that
// direction is open. r.mu is held for reading.
func (r *Relay) forward(from *Leg, b []byte, rtcp bool) {
	if !r.fwd[from.side].Load() {
		from.dropped.Add(1)
		return
	}
	to := r.legs[from.side.other()]
	d := to.dest.Load()
	conn, addr := to.rtpConn, d.rtp
	if rtcp && !d.mux {
		conn, addr = to.rtcpConn, d.rtcp
	}
	if !addr.IsValid() {
		from.dropped.Add(1)
		return
	}
	if !rtcp {
		if m := from.ptMap.Load(); m != nil {
			b[1] = b[1]&0x80 | m[b[1]&0x7F] // keep the marker bit
		}
	}
	if err := to.write(conn, addr, b, rtcp); err != nil {
		from.dropped.Add(1)
		return
	}
	if rtcp {
		to.rtcpOut.Add(1)
		return
	}
	to.pktOut.Add(1)
	to.bytesOut.Add(uint64(len(b)))
}
