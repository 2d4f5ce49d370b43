package media

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

var loopback = netip.MustParseAddr("127.0.0.1")

// newTestPool returns a pool on a random range, so parallel test binaries
// (other packages' tests, other sessions) rarely collide; collisions are
// skipped by the relay anyway. Every pair may rest warm and is reusable at
// once, so consecutive relays of a test take over each other's sockets.
func newTestPool(t testing.TB, pairs int) *PortPool {
	t.Helper()
	p := newColdPool(t, pairs)
	p.KeepWarm(pairs, 0)
	t.Cleanup(func() { p.Close() })
	return p
}

// newColdPool is a pool that closes every pair at hang-up. Its ports lie
// in 10000-19999: below the ephemeral range (32768-60999), where peers'
// sockets land, and below the sip package's test pools (30000-54000),
// whose tests run at the same time. The range is one found free (every
// port bound on 0.0.0.0 and let go), so that another process's tests on
// the same box, on any address, rarely hold one of them.
func newColdPool(t testing.TB, pairs int) *PortPool {
	t.Helper()
	for range 50 {
		base := 10000 + rand.IntN(10000-2*pairs)&^1
		if !portsFree(base, base+2*pairs-1) {
			continue
		}
		p, err := NewPortPool(base, base+2*pairs-1)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Fatal("no free range of ports for a test pool")
	return nil
}

// portsFree reports whether every UDP port in [lo, hi] can be bound on
// all addresses now.
func portsFree(lo, hi int) bool {
	for port := lo; port <= hi; port++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		if err != nil {
			return false
		}
		c.Close()
	}
	return true
}

func newTestRelay(t testing.TB, cfg RelayConfig) *Relay {
	t.Helper()
	if cfg.Pool == nil {
		cfg.Pool = newTestPool(t, 16)
	}
	if !cfg.BindIP.IsValid() {
		cfg.BindIP = loopback
	}
	r, err := NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// peer is a phone's media endpoint on loopback: an RTP socket and, on the
// next port, an RTCP socket.
type peer struct {
	rtp, rtcp *net.UDPConn
}

func newPeer(t testing.TB) *peer { t.Helper(); return newPeerOn(t, "127.0.0.1") }

// newPeerOn is newPeer on another loopback address (Linux routes all of
// 127/8 to lo), for a stranger or a peer behind NAT.
func newPeerOn(t testing.TB, ip string) *peer {
	t.Helper()
	a4 := netip.MustParseAddr(ip).As4()
	for range 100 {
		port := 40000 + rand.IntN(20000)&^1
		a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: a4[:], Port: port})
		if err != nil {
			continue
		}
		b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: a4[:], Port: port + 1})
		if err != nil {
			a.Close()
			continue
		}
		p := &peer{rtp: a, rtcp: b}
		t.Cleanup(func() { a.Close(); b.Close() })
		return p
	}
	t.Fatal("no free port pair for a test peer")
	return nil
}

func (p *peer) addr() netip.AddrPort     { return p.rtp.LocalAddr().(*net.UDPAddr).AddrPort() }
func (p *peer) rtcpAddr() netip.AddrPort { return p.rtcp.LocalAddr().(*net.UDPAddr).AddrPort() }

func send(t testing.TB, c *net.UDPConn, to netip.AddrPort, b []byte) {
	t.Helper()
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Fatal(err)
	}
}

// recv waits up to d for one datagram; ok is false on timeout.
func recv(t testing.TB, c *net.UDPConn, d time.Duration) (b []byte, from netip.AddrPort, ok bool) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, from, false
		}
		t.Fatal(err)
	}
	return buf[:n], from, true
}

func rtpBytes(t testing.TB, pt uint8, seq uint16, ssrc uint32, payload []byte) []byte {
	t.Helper()
	p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, Timestamp: uint32(seq) * 160, SSRC: ssrc}, Payload: payload}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rtcpBytes is a minimal RTCP receiver report (RFC 3550 §6.4.2, no blocks).
func rtcpBytes(ssrc uint32) []byte {
	return []byte{0x80, 201, 0, 1, byte(ssrc >> 24), byte(ssrc >> 16), byte(ssrc >> 8), byte(ssrc)}
}

func envSet(k string) bool { return os.Getenv(k) != "" && os.Getenv(k) != "0" }

// waitFor polls cond until it holds or a second passes: for state that has
// no event to wait on (counters of packets that were deliberately dropped).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
