package media

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// portPair is a bound RTP socket and its RTCP socket (port+1) with one
// receive goroutine each. It serves one leg at a time; between calls it
// rests in the PortPool, owned by no leg, dropping what arrives.
type portPair struct {
	pool      *PortPool
	port      int
	bind      netip.Addr
	rtp, rtcp *net.UDPConn
	wg        sync.WaitGroup

	leg atomic.Pointer[Leg] // the leg it serves; nil while resting

	// Guarded by pool.mu.
	released time.Time
	resting  bool

	// The receive loops' buffers live here, not on their goroutines'
	// stacks: a goroutine starts with a small stack, and a 1.5 kB array in
	// its first frame made each of a call's four grow (and copy) at once.
	rtpBuf, rtcpBuf [maxPacket]byte
	wbuf            [maxPacket]byte // WriteRTP's, guarded by the leg's wmu
}

func (pp *portPair) close() {
	pp.rtp.Close()
	pp.rtcp.Close()
}

// readRTP is the receive loop of the RTP socket.
func (pp *portPair) readRTP() {
	defer pp.wg.Done()
	for {
		n, src, err := pp.rtp.ReadFromUDPAddrPort(pp.rtpBuf[:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // transient (e.g. ICMP-induced); the socket is still ours
		}
		l := pp.leg.Load()
		if l == nil {
			pp.pool.stray(pp)
			continue
		}
		l.r.receiveRTP(l, pp.rtpBuf[:n], unmap(src))
	}
}

// readRTCP is the receive loop of the RTCP socket.
func (pp *portPair) readRTCP() {
	defer pp.wg.Done()
	for {
		n, src, err := pp.rtcp.ReadFromUDPAddrPort(pp.rtcpBuf[:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		l := pp.leg.Load()
		if l == nil {
			pp.pool.stray(pp)
			continue
		}
		l.r.receiveRTCP(l, pp.rtcpBuf[:n], unmap(src))
	}
}
