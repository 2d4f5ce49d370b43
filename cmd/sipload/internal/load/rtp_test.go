package load

import (
	"net"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// waitFor blocks until cond holds, re-checking each time the mux's reader
// finishes a batch, or fails the test at the deadline.
func waitFor(t *testing.T, m *rtpMux, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for !cond() {
		select {
		case <-m.batchDone:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func newTestMux(t *testing.T) *rtpMux {
	t.Helper()
	m, err := newRTPMux(net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.close)
	return m
}

func rtpPacket(t *testing.T, ssrc uint32, seq uint16, pt uint8) []byte {
	t.Helper()
	b, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: seq, SSRC: ssrc},
		Payload: make([]byte, frameSamples)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// One socket, many calls: what a relay sends from each call's own port
// counts on that call whatever SSRC it carries; a peer that declared its
// SSRC is recognised by it even from a shared address; late, bad and
// unclaimed packets land where they belong.
func TestMuxTellsCallsApart(t *testing.T) {
	m := newTestMux(t)
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: m.port}
	// Three "relay ports", one per call, all relaying the same SSRC.
	var relay [3]*net.UDPConn
	var byAddr [3]*stream
	for i := range relay {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		relay[i] = c
		byAddr[i] = m.newStream(0)
		m.attach(byAddr[i], sdpMedia{addr: c.LocalAddr().(*net.UDPAddr)})
	}
	// Two calls of a peer sharing one socket, told apart by declared SSRC.
	shared, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	bySSRC := [2]*stream{m.newStream(8), m.newStream(8)}
	for i, s := range bySSRC {
		m.attach(s, sdpMedia{addr: shared.LocalAddr().(*net.UDPAddr), ssrc: uint32(1000 + i), hasSSRC: true})
	}
	send := func(c *net.UDPConn, b []byte) {
		t.Helper()
		if _, err := c.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range relay {
		for n := range i + 1 {
			send(c, rtpPacket(t, 42, uint16(n), 0))
		}
	}
	send(relay[0], []byte("not rtp at all"))
	send(shared, rtpPacket(t, 1000, 1, 8))
	send(shared, rtpPacket(t, 1001, 1, 8))
	send(shared, rtpPacket(t, 1001, 2, 8))
	send(shared, rtpPacket(t, 7, 1, 8)) // an SSRC nobody declared
	waitFor(t, m, "every packet counted", func() bool {
		return byAddr[0].recv.Load()+byAddr[1].recv.Load()+byAddr[2].recv.Load()+bySSRC[0].recv.Load()+bySSRC[1].recv.Load() == 9 &&
			byAddr[0].bad.Load() == 1 && m.stray.Load() == 1
	})
	for i, s := range byAddr {
		if got := s.recv.Load(); got != uint64(i+1) {
			t.Errorf("call %d by address received %d, want %d", i, got, i+1)
		}
	}
	if a, b := bySSRC[0].recv.Load(), bySSRC[1].recv.Load(); a != 1 || b != 2 {
		t.Errorf("calls by SSRC received %d and %d, want 1 and 2", a, b)
	}

	// After hang-up the call is watched: its packets are late, not received.
	byAddr[1].watchFrom.Store(time.Now().UnixNano())
	send(relay[1], rtpPacket(t, 42, 9, 0))
	waitFor(t, m, "the late packet", func() bool { return byAddr[1].late.Load() == 1 })
	if byAddr[1].recv.Load() != 2 || byAddr[1].firstLate.Load() == 0 {
		t.Errorf("late packet counted as received (%d) or without its time", byAddr[1].recv.Load())
	}

	// Released, a call counts nothing more; its packets are stray.
	m.release(byAddr[2])
	m.release(byAddr[2])
	send(relay[2], rtpPacket(t, 42, 9, 0))
	waitFor(t, m, "the stray packet", func() bool { return m.stray.Load() == 2 })
	if got := byAddr[2].recv.Load(); got != 3 {
		t.Errorf("released call received %d, want still 3", got)
	}
}

// The pacer sends each started stream one packet a round to its own
// destination with its own SSRC and consecutive sequence numbers, and not
// one packet once remove has returned.
func TestMuxPacesEachStream(t *testing.T) {
	m := newTestMux(t)
	var peers [2]*net.UDPConn
	var st [2]*stream
	for i := range peers {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		peers[i] = c
		st[i] = m.newStream(uint8(8 * i))
		m.attach(st[i], sdpMedia{addr: c.LocalAddr().(*net.UDPAddr)})
		m.start(st[i])
	}
	if st[0].ssrc == st[1].ssrc {
		t.Fatalf("two streams share SSRC %d", st[0].ssrc)
	}
	read := func(i int) rtp.Packet {
		t.Helper()
		var buf [1500]byte
		if err := peers[i].SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := peers[i].Read(buf[:])
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(buf[:n]); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for i := range st {
		first := read(i)
		if first.SSRC != st[i].ssrc || first.PayloadType != uint8(8*i) || !first.Marker || len(first.Payload) != frameSamples {
			t.Errorf("stream %d first packet %v", i, first.Header)
		}
		for n := 1; n < 3; n++ {
			p := read(i)
			if p.SequenceNumber != first.SequenceNumber+uint16(n) || p.Timestamp != first.Timestamp+uint32(n*frameSamples) || p.Marker {
				t.Errorf("stream %d packet %d: %v after %v", i, n, p.Header, first.Header)
			}
		}
	}
	m.remove(st[0])
	sent := st[0].sent.Load()
	// Stream 1 keeps the clock: three more of its rounds, none for stream 0.
	for range 3 {
		read(1)
	}
	if got := st[0].sent.Load(); got != sent {
		t.Errorf("stream 0 sent %d after remove (had %d)", got, sent)
	}
	if err := peers[0].SetReadDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
	var buf [1500]byte
	sent -= 3 // read above
	for {
		n, err := peers[0].Read(buf[:])
		if err != nil {
			break
		}
		if sent == 0 {
			t.Fatalf("stream 0 got a packet (%d bytes) it never counted as sent", n)
		}
		sent--
	}
	if sent != 0 {
		t.Errorf("stream 0 counted %d packets sent that never arrived", sent)
	}
}
