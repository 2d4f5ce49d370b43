package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// bridgedCall is a relay with a trunk phone and a line phone attached, their
// SDP addresses set as the B2BUA would.
func bridgedCall(t *testing.T, cfg RelayConfig) (*Relay, *peer, *peer) {
	t.Helper()
	r := newTestRelay(t, cfg)
	trunk, line := newPeer(t), newPeer(t)
	r.Trunk().SetRemote(trunk.addr())
	r.Line().SetRemote(line.addr())
	r.SetBridged(true)
	return r, trunk, line
}

func TestRelayPassesRTPBothWays(t *testing.T) {
	r, trunk, line := bridgedCall(t, RelayConfig{})
	if got := r.Trunk().LocalAddr().Addr(); got != loopback {
		t.Fatalf("advertised %s, want %s", got, loopback)
	}
	for i := range 5 {
		want := rtpBytes(t, 0, uint16(i), 0x1111, bytes.Repeat([]byte{byte(i)}, 160))
		send(t, trunk.rtp, r.Trunk().LocalAddr(), want)
		got, from, ok := recv(t, line.rtp, time.Second)
		if !ok {
			t.Fatalf("packet %d trunk→line not relayed", i)
		}
		if !bytes.Equal(got, want) || from != r.Line().LocalAddr() {
			t.Fatalf("packet %d: got %d bytes from %s, want %d bytes from %s", i, len(got), from, len(want), r.Line().LocalAddr())
		}
	}
	for i := range 3 {
		want := rtpBytes(t, 8, uint16(i), 0x2222, bytes.Repeat([]byte{0xD5}, 160))
		send(t, line.rtp, r.Line().LocalAddr(), want)
		got, from, ok := recv(t, trunk.rtp, time.Second)
		if !ok || !bytes.Equal(got, want) || from != r.Trunk().LocalAddr() {
			t.Fatalf("packet %d line→trunk: ok=%v from %s", i, ok, from)
		}
	}
	r.Close() // counters are final once the receive goroutines are gone
	st := r.Stats()
	pkt := uint64(12 + 160)
	if st.Trunk.PacketsIn != 5 || st.Trunk.BytesIn != 5*pkt || st.Line.PacketsOut != 5 || st.Line.BytesOut != 5*pkt {
		t.Errorf("trunk→line counters: %+v / %+v", st.Trunk, st.Line)
	}
	if st.Line.PacketsIn != 3 || st.Trunk.PacketsOut != 3 || st.Trunk.Dropped != 0 || st.Line.Dropped != 0 {
		t.Errorf("line→trunk counters: %+v / %+v", st.Trunk, st.Line)
	}
	if st.Duration <= 0 {
		t.Errorf("duration %v", st.Duration)
	}
}

func TestRelayRTCP(t *testing.T) {
	r, trunk, line := bridgedCall(t, RelayConfig{})
	rtcpPort := func(l *Leg) netip.AddrPort { return netip.AddrPortFrom(l.LocalAddr().Addr(), l.LocalAddr().Port()+1) }

	// RFC 3550 §11: RTCP on port+1 both ways.
	send(t, trunk.rtcp, rtcpPort(r.Trunk()), rtcpBytes(1))
	got, from, ok := recv(t, line.rtcp, time.Second)
	if !ok || !bytes.Equal(got, rtcpBytes(1)) || from != rtcpPort(r.Line()) {
		t.Fatalf("RTCP trunk→line: ok=%v from %s", ok, from)
	}
	send(t, line.rtcp, rtcpPort(r.Line()), rtcpBytes(2))
	if got, _, ok := recv(t, trunk.rtcp, time.Second); !ok || !bytes.Equal(got, rtcpBytes(2)) {
		t.Fatal("RTCP line→trunk not relayed")
	}

	// RFC 5761: the line turns on rtcp-mux; its RTCP now arrives on the RTP
	// port and RTCP for it goes to its RTP address.
	r.Line().SetRTCPMux(true)
	send(t, line.rtp, r.Line().LocalAddr(), rtcpBytes(3))
	if got, _, ok := recv(t, trunk.rtcp, time.Second); !ok || !bytes.Equal(got, rtcpBytes(3)) {
		t.Fatal("muxed RTCP from the line not relayed to the trunk's RTCP port")
	}
	send(t, trunk.rtcp, rtcpPort(r.Trunk()), rtcpBytes(4))
	if got, _, ok := recv(t, line.rtp, time.Second); !ok || !bytes.Equal(got, rtcpBytes(4)) {
		t.Fatal("RTCP for a muxed line not sent to its RTP port")
	}

	// RFC 3605: an explicit a=rtcp address.
	other := newPeer(t)
	r.Trunk().SetRemoteRTCP(other.rtcpAddr())
	r.Trunk().SetRemote(other.addr()) // re-INVITE: unlatch, send to SDP
	send(t, line.rtp, r.Line().LocalAddr(), rtcpBytes(5))
	if got, _, ok := recv(t, other.rtcp, time.Second); !ok || !bytes.Equal(got, rtcpBytes(5)) {
		t.Fatal("RTCP not sent to the a=rtcp address")
	}
	r.Close()
	if st := r.Stats(); st.Line.RTCPIn != 3 || st.Trunk.RTCPIn != 2 {
		t.Errorf("RTCP counters: trunk %+v line %+v", st.Trunk, st.Line)
	}
}

func TestRelayNotBridgedDropsAndEarlyMedia(t *testing.T) {
	r, trunk, line := bridgedCall(t, RelayConfig{})
	r.SetBridged(false)
	for i := range 10 {
		send(t, trunk.rtp, r.Trunk().LocalAddr(), rtpBytes(t, 0, uint16(i), 1, make([]byte, 160)))
		send(t, line.rtp, r.Line().LocalAddr(), rtpBytes(t, 0, uint16(i), 2, make([]byte, 160)))
	}
	waitFor(t, "20 unbridged packets counted", func() bool {
		return r.Trunk().Stats().Dropped == 10 && r.Line().Stats().Dropped == 10
	})
	// Early media: the line's audio may reach the trunk, not the reverse.
	r.SetForwarding(false, true)
	send(t, trunk.rtp, r.Trunk().LocalAddr(), rtpBytes(t, 0, 100, 1, make([]byte, 160)))
	send(t, line.rtp, r.Line().LocalAddr(), rtpBytes(t, 0, 100, 2, make([]byte, 160)))
	got, _, ok := recv(t, trunk.rtp, time.Second)
	if !ok || binary.BigEndian.Uint16(got[2:]) != 100 {
		t.Fatalf("early media line→trunk: ok=%v; the 10 unbridged packets must not arrive first", ok)
	}
	if _, _, ok := recv(t, line.rtp, 200*time.Millisecond); ok {
		t.Fatal("trunk audio reached the line while not bridged")
	}
	r.Close()
	st := r.Stats()
	if st.Trunk.PacketsIn != 11 || st.Trunk.Dropped != 11 || st.Line.PacketsOut != 0 {
		t.Errorf("trunk leg %+v, line leg %+v", st.Trunk, st.Line)
	}
	if st.Line.PacketsIn != 11 || st.Line.Dropped != 10 || st.Trunk.PacketsOut != 1 {
		t.Errorf("line leg %+v, trunk leg %+v", st.Line, st.Trunk)
	}
}

// TestRelayCloseStopsMedia is the product's promise (ARCHITECTURE.md D1/D2):
// after Close, nothing a sender transmits reaches the other side.
func TestRelayCloseStopsMedia(t *testing.T) {
	pool := newTestPool(t, 8)
	r, trunk, line := bridgedCall(t, RelayConfig{Pool: pool})

	// Both sides stream continuously, numbering their packets.
	var sent [2]atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i, p := range []*peer{trunk, line} {
		to := r.Trunk().LocalAddr()
		if i == 1 {
			to = r.Line().LocalAddr()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := time.NewTicker(time.Millisecond)
			defer tk.Stop()
			for n := uint16(1); ; n++ {
				select {
				case <-stop:
					return
				case <-tk.C:
				}
				b := rtpBytes(t, 0, n, uint32(i), make([]byte, 160))
				p.rtp.WriteToUDPAddrPort(b, to) // errors after Close are expected (ICMP)
				sent[i].Store(int64(n))
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	// Media flows before the hang-up.
	if _, _, ok := recv(t, line.rtp, time.Second); !ok {
		t.Fatal("no media before Close")
	}
	if _, _, ok := recv(t, trunk.rtp, time.Second); !ok {
		t.Fatal("no media before Close")
	}
	r.Close()
	// Packet n is counted in sent just after it is written, so once Close
	// has returned, every packet numbered above lastAfter+1 was sent after
	// it.
	lastAfter := [2]int64{sent[0].Load(), sent[1].Load()}
	if err := r.Close(); err != nil { // idempotent
		t.Fatal(err)
	}

	// Watch both receiving sockets until each sender has sent 50 more
	// packets (however long a busy machine takes), then drain them: none of
	// those may arrive. (Ones sent before may still be in the receiver's
	// socket buffer.)
	deadline := time.Now().Add(10 * time.Second)
	for i, rx := range []*peer{line, trunk} {
		from := 1 - i // line receives what the trunk sent, and back
		check := func(b []byte) {
			if seq := int64(binary.BigEndian.Uint16(b[2:])); seq > lastAfter[from]+1 {
				t.Fatalf("packet %d, sent after Close returned (at %d), reached the other side", seq, lastAfter[from])
			}
		}
		for sent[from].Load() <= lastAfter[from]+50 {
			if time.Now().After(deadline) {
				t.Fatalf("sender stalled (%d → %d): the window proved nothing", lastAfter[from], sent[from].Load())
			}
			if b, _, ok := recv(t, rx.rtp, 10*time.Millisecond); ok {
				check(b)
			}
		}
		for {
			b, _, ok := recv(t, rx.rtp, 50*time.Millisecond)
			if !ok {
				break
			}
			check(b)
		}
		if _, _, ok := recv(t, rx.rtcp, time.Millisecond); ok {
			t.Fatal("RTCP after Close")
		}
	}
	if pool.Free() != pool.Size() {
		t.Fatalf("%d of %d ports back in the pool", pool.Free(), pool.Size())
	}
	if err := r.Line().WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteRTP after Close: %v, want ErrClosed", err)
	}
}

// sender sends pkt(n) from c to to every interval until stop is called.
func sender(t *testing.T, c interface {
	WriteToUDPAddrPort([]byte, netip.AddrPort) (int, error)
}, to netip.AddrPort, every time.Duration, pkt func(n uint16) []byte) (stop func()) {
	t.Helper()
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tk := time.NewTicker(every)
		defer tk.Stop()
		for n := uint16(0); ; n++ {
			select {
			case <-quit:
				return
			case <-tk.C:
				c.WriteToUDPAddrPort(pkt(n), to)
			}
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { close(quit); <-done }) }
	t.Cleanup(stop)
	return stop
}

func TestRelayTelephoneEvents(t *testing.T) {
	r, _, line := bridgedCall(t, RelayConfig{})
	dc := NewDigitCollector()
	r.OnTelephoneEvent(SideLine, 96, dc.Feed) // the PT comes from SDP, not a constant 101
	for i, d := range []rune{'1', '3'} {
		pkts, err := EncodeDTMF(d, 96, 0xABC, uint16(100*i), uint32(8000*i), 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pkts {
			b, _ := p.Marshal()
			send(t, line.rtp, r.Line().LocalAddr(), b)
		}
	}
	// A '9' whose end packets are all lost is reported when audio resumes.
	pkts, _ := EncodeDTMF('9', 96, 0xABC, 300, 24000, 60*time.Millisecond)
	for _, p := range pkts[:2] {
		b, _ := p.Marshal()
		send(t, line.rtp, r.Line().LocalAddr(), b)
	}
	send(t, line.rtp, r.Line().LocalAddr(), rtpBytes(t, 0, 302, 0xABC, make([]byte, 160)))
	ctx := context.Background()
	for _, want := range []rune{'1', '3', '9'} {
		got, err := dc.Next(ctx, time.Second)
		if err != nil || got != want {
			t.Fatalf("digit %q, %v; want %q", got, err, want)
		}
	}
	if got, err := dc.Next(ctx, 100*time.Millisecond); !errors.Is(err, ErrDigitTimeout) {
		t.Fatalf("extra digit %q (%v): the three end packets must give one digit", got, err)
	}
}

func TestRelayWriteRTP(t *testing.T) {
	r, _, line := bridgedCall(t, RelayConfig{})
	p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 0, SequenceNumber: 5, SSRC: 42}, Payload: make([]byte, 160)}
	if err := r.Line().WriteRTP(p); err != nil {
		t.Fatal(err)
	}
	b, from, ok := recv(t, line.rtp, time.Second)
	if !ok || from != r.Line().LocalAddr() {
		t.Fatal("WriteRTP packet not received from the leg's address")
	}
	var got rtp.Packet
	if err := got.Unmarshal(b); err != nil || got.SSRC != 42 || got.SequenceNumber != 5 {
		t.Fatalf("got %v, %v", got.Header, err)
	}
	r2 := newTestRelay(t, RelayConfig{})
	if err := r2.Line().WriteRTP(p); !errors.Is(err, ErrNoRemote) {
		t.Fatalf("WriteRTP without remote: %v", err)
	}
}

func TestRelayConfigAndPool(t *testing.T) {
	if _, err := NewRelay(RelayConfig{BindIP: loopback}); !errors.Is(err, ErrRelayConfig) {
		t.Fatalf("no pool: %v", err)
	}
	pool := newTestPool(t, 2)
	if _, err := NewRelay(RelayConfig{Pool: pool, BindIP: netip.MustParseAddr("0.0.0.0")}); !errors.Is(err, ErrRelayConfig) {
		t.Fatalf("wildcard bind without advertise: %v", err)
	}
	r := newTestRelay(t, RelayConfig{Pool: pool, BindIP: netip.MustParseAddr("0.0.0.0"), AdvertiseIP: netip.MustParseAddr("203.0.113.7")})
	if a := r.Trunk().LocalAddr(); a.Addr() != netip.MustParseAddr("203.0.113.7") || a.Port()%2 != 0 {
		t.Fatalf("advertised %s", a)
	}
	if _, err := NewRelay(RelayConfig{Pool: pool, BindIP: loopback}); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("exhausted pool: %v", err)
	}
	if pool.Free() != 0 {
		t.Fatalf("failed relay leaked ports: %d free", pool.Free())
	}
	r.Close()
	if pool.Free() != 2 {
		t.Fatalf("%d free after Close", pool.Free())
	}
}

func TestPortPoolReuseOrder(t *testing.T) {
	p, err := NewPortPool(30001, 30010) // odd min is rounded up
	if err != nil {
		t.Fatal(err)
	}
	if p.Size() != 4 { // 30002, 30004, 30006, 30008 (30010 has no RTCP port)
		t.Fatalf("size %d", p.Size())
	}
	a, _ := p.acquire()
	b, _ := p.acquire()
	if a != 30002 || b != 30004 {
		t.Fatalf("got %d, %d", a, b)
	}
	p.release(a)
	// a was just released: the ports that rested longer come first.
	for _, want := range []int{30006, 30008, 30002} {
		if got, _ := p.acquire(); got != want {
			t.Fatalf("acquire %d, want %d", got, want)
		}
	}
	if _, err := p.acquire(); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("empty pool: %v", err)
	}
	p.release(a)
	p.release(a) // double release must not duplicate the port
	if p.Free() != 1 {
		t.Fatalf("free %d after double release", p.Free())
	}
	for _, bad := range [][2]int{{1000, 2000}, {5000, 4000}, {60000, 70000}, {4000, 4000}} {
		if _, err := NewPortPool(bad[0], bad[1]); !errors.Is(err, ErrPortRange) {
			t.Errorf("NewPortPool(%d, %d): %v", bad[0], bad[1], err)
		}
	}
}

func TestLegSetRemoteSDP(t *testing.T) {
	r, trunk, line := bridgedCall(t, RelayConfig{})
	// A re-INVITE with c=0.0.0.0 (RFC 2543 hold): nothing is sent to the line.
	si, err := ParseSDP(crlf(`
v=0
o=- 1 2 IN IP4 0.0.0.0
s=-
c=IN IP4 0.0.0.0
t=0 0
m=audio 5004 RTP/AVP 0
`))
	if err != nil {
		t.Fatal(err)
	}
	r.Line().SetRemoteSDP(si)
	send(t, trunk.rtp, r.Trunk().LocalAddr(), rtpBytes(t, 0, 1, 1, make([]byte, 160)))
	if _, _, ok := recv(t, line.rtp, 150*time.Millisecond); ok {
		t.Fatal("audio sent to a held (c=0.0.0.0) line")
	}
	// Resume with an explicit a=rtcp and rtcp-mux.
	body := "v=0\r\no=- 1 3 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio " +
		itoa(line.addr().Port()) + " RTP/AVP 0\r\na=rtcp-mux\r\na=sendrecv\r\n"
	if si, err = ParseSDP([]byte(body)); err != nil {
		t.Fatal(err)
	}
	r.Line().SetRemoteSDP(si)
	send(t, trunk.rtp, r.Trunk().LocalAddr(), rtpBytes(t, 0, 2, 1, make([]byte, 160)))
	if _, _, ok := recv(t, line.rtp, time.Second); !ok {
		t.Fatal("audio not resumed")
	}
	send(t, trunk.rtcp, netip.AddrPortFrom(loopback, r.Trunk().LocalAddr().Port()+1), rtcpBytes(9))
	if b, _, ok := recv(t, line.rtp, time.Second); !ok || !bytes.Equal(b, rtcpBytes(9)) {
		t.Fatal("RTCP not muxed onto the line's RTP port")
	}
}

func itoa(n uint16) string { return strconv.Itoa(int(n)) }

func TestRelayPayloadTypeMap(t *testing.T) {
	r, trunk, line := bridgedCall(t, RelayConfig{})
	// Trunk negotiated telephone-event as 96, the line as 101.
	r.SetPayloadTypeMap(SideTrunk, map[uint8]uint8{96: 101})
	r.SetPayloadTypeMap(SideLine, map[uint8]uint8{101: 96})
	pkts, _ := EncodeDTMF('5', 96, 1, 1, 160, 20*time.Millisecond)
	b, _ := pkts[0].Marshal()
	send(t, trunk.rtp, r.Trunk().LocalAddr(), b)
	got, _, ok := recv(t, line.rtp, time.Second)
	var p rtp.Packet
	if !ok || p.Unmarshal(got) != nil || p.PayloadType != 101 || !p.Marker || p.SequenceNumber != 1 {
		t.Fatalf("trunk→line: ok=%v %+v", ok, p.Header)
	}
	send(t, line.rtp, r.Line().LocalAddr(), rtpBytes(t, 101, 7, 2, []byte{5, 0x80, 0, 160}))
	send(t, line.rtp, r.Line().LocalAddr(), rtpBytes(t, 8, 8, 2, make([]byte, 160)))
	for _, want := range []uint8{96, 8} { // mapped, then passed unchanged
		got, _, ok := recv(t, trunk.rtp, time.Second)
		if !ok || p.Unmarshal(got) != nil || p.PayloadType != want {
			t.Fatalf("line→trunk: ok=%v pt %d, want %d", ok, p.PayloadType, want)
		}
	}
}

// BenchmarkRelayOpenClose is the media cost of one call apart from its
// packets: NewRelay, bridging, arming the inactivity watch and Close, with
// the SDP remotes set as a call would. The test pool keeps every pair warm
// with no rest, so this is the warm path serve takes in steady state (no
// socket bound or closed per call); a cold pool would add two pairs' four
// sockets and four receive goroutines.
func BenchmarkRelayOpenClose(b *testing.B) {
	pool := newTestPool(b, 64)
	remote := netip.MustParseAddrPort("127.0.0.1:9")
	b.ReportAllocs()
	for b.Loop() {
		r, err := NewRelay(RelayConfig{Pool: pool, BindIP: loopback, Inactivity: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		r.Trunk().SetRemote(remote)
		r.Line().SetRemote(remote)
		r.SetBridged(true)
		r.ResetInactivity() // answered
		r.Close()
	}
}
