package media

import (
	"errors"
	"fmt"
	"sync"
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
// Ports are reused least-recently-released first, so a port closed by a
// finished call rests as long as possible before a new call gets it: late
// or malicious media aimed at an old call must not land in a new one.
type PortPool struct {
	mu    sync.Mutex
	free  []int // FIFO: acquire from the front, release to the back
	inUse map[int]bool
	size  int
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
	p := &PortPool{inUse: make(map[int]bool)}
	for port := min; port+1 <= max; port += 2 {
		p.free = append(p.free, port)
	}
	if len(p.free) == 0 {
		return nil, fmt.Errorf("%w: %d-%d holds no RTP/RTCP port pair", ErrPortRange, min, max)
	}
	p.size = len(p.free)
	return p, nil
}

// Size is the number of RTP ports (each with its RTCP port) in the pool.
func (p *PortPool) Size() int { return p.size }

// Free is the number of ports not in use.
func (p *PortPool) Free() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}

// acquire takes the least recently released port.
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
