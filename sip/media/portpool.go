package media

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrNoPorts means every RTP port of the pool is in use (or could not
	// be bound); the B2BUA answers such a call with 503.
	ErrNoPorts = errors.New("media: no free RTP port")
	// ErrPortRange is returned by NewPortPool for an unusable range.
	ErrPortRange = errors.New("media: invalid RTP port range")
)

// PortPool hands out even RTP ports from a range; RTCP uses port+1
// (RFC 3550 §11: "RTP SHOULD use an even destination port number and the
// corresponding RTCP stream SHOULD use the next higher (odd) port number").
//
// Cold ports (no socket open) are bound least-recently-released first, so a
// port closed by a finished call rests as long as possible before a new
// call gets it: late or malicious media aimed at an old call must not land
// in a new one.
//
// With KeepWarm, a finished call's pairs are not closed but rest, bound and
// owned by no call, and a later call takes one over instead of binding a
// new one (a call has two pairs: four sockets, their syscalls and receive
// goroutines). Resting pairs are handed out oldest first, once quiet for
// the rest period; only when no cold port can be bound does a new call get
// the oldest one however briefly it rested, the port it would have bound
// next without KeepWarm. Nothing that reaches a resting pair is forwarded:
// the first packet, on either socket, closes the pair and sends its port to
// the back of the cold queue, so a peer that keeps sending after hang-up
// loses that packet and then finds the port closed, as without KeepWarm
// (D2).
type PortPool struct {
	mu    sync.Mutex
	free  []int // cold ports, FIFO: acquire from the front, release to the back
	inUse map[int]bool
	size  int

	warm    []*portPair // resting pairs, oldest release first
	maxWarm int
	rest    time.Duration
	now     func() time.Time
	closed  bool
	binds   atomic.Uint64
	strays  atomic.Uint64
}

// NewPortPool returns a pool of the even ports in [min, max]; max itself may
// be odd (it is then only used as the RTCP port of max-1).
func NewPortPool(min, max int) (*PortPool, error) {
	if min < 1024 || max > 65535 || min > max {
		return nil, fmt.Errorf("%w: %d-%d (want 1024 <= min <= max <= 65535)", ErrPortRange, min, max)
	}
	if min%2 == 1 {
		min++
	}
	p := &PortPool{inUse: make(map[int]bool), now: time.Now}
	for port := min; port+1 <= max; port += 2 {
		p.free = append(p.free, port)
	}
	if len(p.free) == 0 {
		return nil, fmt.Errorf("%w: %d-%d holds no RTP/RTCP port pair", ErrPortRange, min, max)
	}
	p.size = len(p.free)
	return p, nil
}

// KeepWarm lets up to max port pairs of finished calls keep their sockets
// for reuse once quiet for rest. Call it before the first relay; max <= 0
// closes every pair at hang-up. A warm pool must be closed with Close.
func (p *PortPool) KeepWarm(max int, rest time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.maxWarm, p.rest = max, rest
}

// Size is the number of RTP ports (each with its RTCP port) in the pool.
func (p *PortPool) Size() int { return p.size }

// Free is the number of ports no call holds (resting warm pairs included).
func (p *PortPool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free) + len(p.warm)
}

// Warm is the number of resting pairs whose sockets are open.
func (p *PortPool) Warm() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.warm)
}

// Binds counts the port pairs bound so far; Strays the packets that
// reached a resting pair (each closes it).
func (p *PortPool) Binds() uint64  { return p.binds.Load() }
func (p *PortPool) Strays() uint64 { return p.strays.Load() }

// Close closes every resting pair and waits for its receive goroutines;
// pairs still held by calls are closed when their relay releases them.
func (p *PortPool) Close() error {
	p.mu.Lock()
	p.closed = true
	warm := p.warm
	p.warm = nil
	for _, pp := range warm {
		pp.resting = false
		p.inUse[pp.port] = true // until release below
	}
	p.mu.Unlock()
	for _, pp := range warm {
		pp.close()
		p.release(pp.port)
		pp.wg.Wait()
	}
	return nil
}

// acquire takes the least recently released cold port.
func (p *PortPool) acquire() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		return 0, ErrNoPorts
	}
	port := p.free[0]
	p.free = p.free[1:]
	p.inUse[port] = true
	return port, nil
}

// release puts port at the back of the queue; unknown or double releases are
// ignored so a buggy caller cannot hand one port to two calls.
func (p *PortPool) release(port int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.releaseLocked(port)
}

func (p *PortPool) releaseLocked(port int) {
	if !p.inUse[port] {
		return
	}
	delete(p.inUse, port)
	if len(p.free) == cap(p.free) {
		// Compact instead of letting append grow the array forever as the
		// front is sliced away.
		p.free = append(make([]int, 0, p.size), p.free...)
	}
	p.free = append(p.free, port)
}

// takeWarm hands out the oldest resting pair bound to bind if it has rested
// long enough (or, with anyAge, however long it rested), else nil.
func (p *PortPool) takeWarm(bind netip.Addr, anyAge bool) *portPair {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.warm) == 0 || !anyAge && p.now().Sub(p.warm[0].released) < p.rest {
		return nil
	}
	pp := p.warm[0]
	if pp.bind != bind {
		return nil
	}
	p.warm[0] = nil // the backing array must not keep it once closed
	p.warm = p.warm[1:]
	pp.resting = false
	p.inUse[pp.port] = true
	return pp
}

// bindPair binds a cold port pair, skipping ports another process holds.
func (p *PortPool) bindPair(bind netip.Addr) (*portPair, error) {
	network := "udp4"
	if bind.Is6() {
		network = "udp6"
	}
	var lastErr error
	for range p.size {
		port, err := p.acquire()
		if err != nil {
			break
		}
		rtpConn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, uint16(port))))
		if err != nil {
			lastErr = err
			p.release(port)
			continue
		}
		rtcpConn, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(netip.AddrPortFrom(bind, uint16(port+1))))
		if err != nil {
			lastErr = err
			rtpConn.Close()
			p.release(port)
			continue
		}
		p.binds.Add(1)
		pp := &portPair{pool: p, port: port, bind: bind, rtp: rtpConn, rtcp: rtcpConn}
		pp.wg.Add(2)
		go pp.readRTP()
		go pp.readRTCP()
		return pp, nil
	}
	if lastErr != nil {
		return nil, fmt.Errorf("%w: last bind error: %w", ErrNoPorts, lastErr)
	}
	return nil, ErrNoPorts
}

// getPair is a warm pair if one has rested, else a newly bound one, else
// (every port taken or resting) the warm pair that rested longest: without
// KeepWarm that port would have been the next one bound.
func (p *PortPool) getPair(bind netip.Addr) (*portPair, error) {
	if pp := p.takeWarm(bind, false); pp != nil {
		return pp, nil
	}
	pp, err := p.bindPair(bind)
	if err != nil {
		if pp := p.takeWarm(bind, true); pp != nil {
			return pp, nil
		}
	}
	return pp, err
}

// putPair takes back a pair its leg no longer owns: it rests warm if there
// is room, else it is closed and its port rests cold.
func (p *PortPool) putPair(pp *portPair) {
	p.mu.Lock()
	if !p.inUse[pp.port] {
		p.mu.Unlock()
		return
	}
	if !p.closed && len(p.warm) < p.maxWarm {
		delete(p.inUse, pp.port)
		pp.released, pp.resting = p.now(), true
		p.warm = append(p.warm, pp)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	pp.close()
	pp.wg.Wait()
	p.release(pp.port)
}

// stray closes a resting pair that received a packet: whoever sends to it
// is still talking to a call that has ended.
func (p *PortPool) stray(pp *portPair) {
	p.mu.Lock()
	i := slices.Index(p.warm, pp)
	if !pp.resting || i < 0 {
		p.mu.Unlock()
		return // taken by a new call meanwhile, or already closed
	}
	p.warm = slices.Delete(p.warm, i, i+1)
	pp.resting = false
	p.inUse[pp.port] = true
	p.mu.Unlock()
	pp.close()
	p.release(pp.port)
	p.strays.Add(1) // last: a test that sees it sees the port back
}
