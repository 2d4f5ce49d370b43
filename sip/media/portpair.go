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
// receive goroutine each. It serves one leg at a time; between calls it may
// rest in the PortPool, owned by no leg, until a call takes it or the first
// packet to arrive closes it (PortPool.stray).
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

// readRTP and readRTCP are the receive loops of the pair's two sockets.
func (pp *portPair) readRTP()  { pp.read(pp.rtp, pp.rtpBuf[:], (*Relay).receiveRTP) }
func (pp *portPair) readRTCP() { pp.read(pp.rtcp, pp.rtcpBuf[:], (*Relay).receiveRTCP) }

// read hands every datagram on conn to the leg the pair serves; one that
// arrives while the pair rests closes it (PortPool.stray).
func (pp *portPair) read(conn *net.UDPConn, buf []byte, handle func(*Relay, *Leg, []byte, netip.AddrPort)) {
	defer pp.wg.Done()
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
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
		handle(l.r, l, buf[:n], unmap(src))
	}
}
