package media

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// The accept rule of source.go, over real UDP on loopback: who may send a
// leg media. The tests are named Spray*, with the end-to-end sprayer tests
// of package sip.

// ipStranger is an off-path sender's loopback address.
const ipStranger = "127.0.0.4"

// foreignCount counts OnForeign calls per side.
type foreignCount struct{ n [2]atomic.Uint64 }

func (f *foreignCount) fn(s Side) { f.n[s].Add(1) }

// seqOf is an RTP packet's sequence number.
func seqOf(b []byte) uint16 { return binary.BigEndian.Uint16(b[2:]) }

// expectSeq waits for the next RTP packet on c and checks it is seq: the
// packets sent before it were handled (and dropped) first, since one
// socket's datagrams are read in order.
func expectSeq(t *testing.T, c *net.UDPConn, seq uint16, what string) {
	t.Helper()
	b, _, ok := recv(t, c, time.Second)
	if !ok {
		t.Fatalf("%s: nothing arrived", what)
	}
	if got := seqOf(b); got != seq {
		t.Fatalf("%s: seq %d arrived, want %d (a foreign packet was relayed)", what, got, seq)
	}
}

// TestSpraySourceSDPOnly: a leg takes RTP only from its SDP's address.
// Another port of the same host and another host are foreign: dropped,
// counted, reported, never latched, and the leg still sends (relayed audio
// and prompts) to the SDP's address.
func TestSpraySourceSDPOnly(t *testing.T) {
	var fc foreignCount
	r, trunk, line := bridgedCall(t, RelayConfig{OnForeign: fc.fn})
	sameHost, stranger := newPeer(t), newPeerOn(t, ipStranger)
	pkt := func(seq uint16) []byte { return rtpBytes(t, 0, seq, 0x5107, make([]byte, 160)) }

	send(t, stranger.rtp, r.Line().LocalAddr(), pkt(1)) // first: the old code latched it
	send(t, sameHost.rtp, r.Line().LocalAddr(), pkt(2))
	send(t, line.rtp, r.Line().LocalAddr(), pkt(3))
	expectSeq(t, trunk.rtp, 3, "line→trunk")
	send(t, stranger.rtp, r.Line().LocalAddr(), pkt(4))
	send(t, line.rtp, r.Line().LocalAddr(), pkt(5))
	expectSeq(t, trunk.rtp, 5, "line→trunk after more spray")

	// The trunk's audio and a prompt still go to the line's SDP address.
	send(t, trunk.rtp, r.Trunk().LocalAddr(), pkt(6))
	expectSeq(t, line.rtp, 6, "trunk→line")
	if err := r.Line().WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 7, SSRC: 1}, Payload: make([]byte, 160)}); err != nil {
		t.Fatal(err)
	}
	expectSeq(t, line.rtp, 7, "prompt to the line")
	for _, p := range []*peer{sameHost, stranger} {
		if b, _, ok := recv(t, p.rtp, 50*time.Millisecond); ok {
			t.Fatalf("a foreign sender received seq %d", seqOf(b))
		}
	}
	waitFor(t, "3 foreign packets", func() bool { return r.Line().Stats().Foreign == 3 })
	st := r.Line().Stats()
	if st.Foreign != 3 || st.PacketsIn != 2 || st.Latched || st.Remote != line.addr() {
		t.Fatalf("line leg %+v: want 3 foreign, 2 in, remote %s, not latched", st, line.addr())
	}
	if got := fc.n[SideLine].Load(); got != 3 || fc.n[SideTrunk].Load() != 0 {
		t.Fatalf("OnForeign: line %d trunk %d, want 3 and 0", got, fc.n[SideTrunk].Load())
	}
}

// TestSpraySourceNothingBeforeSDP: a leg whose peer has sent no SDP yet
// (a line still ringing) takes nothing from anyone, and once the SDP
// arrives, only its address.
func TestSpraySourceNothingBeforeSDP(t *testing.T) {
	r := newTestRelay(t, RelayConfig{})
	trunk, line := newPeer(t), newPeer(t)
	r.Trunk().SetRemote(trunk.addr())
	r.SetBridged(true)
	pkt := func(seq uint16) []byte { return rtpBytes(t, 0, seq, 1, make([]byte, 160)) }
	send(t, line.rtp, r.Line().LocalAddr(), pkt(1))
	send(t, line.rtcp, rtcpAddrOf(r.Line()), rtcpBytes(1))
	waitFor(t, "two packets dropped", func() bool { return r.Line().Stats().Dropped == 2 })
	if f := r.Line().Stats().Foreign; f != 0 {
		t.Fatalf("%d packets before SDP counted foreign: they are the peer's, early, not a stranger's", f)
	}
	if _, _, ok := recv(t, trunk.rtp, 50*time.Millisecond); ok {
		t.Fatal("media before SDP was relayed")
	}
	if err := r.Line().WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2}}); !errors.Is(err, ErrNoRemote) {
		t.Fatalf("WriteRTP before SDP: %v, want ErrNoRemote (nothing may have latched)", err)
	}
	r.Line().SetRemote(line.addr())
	send(t, line.rtp, r.Line().LocalAddr(), pkt(2))
	expectSeq(t, trunk.rtp, 2, "after SDP")
}

// TestSpraySourceRTCP: RTCP on the RTCP port from port+1 of the RTP
// address, or from a=rtcp (RFC 3605); with rtcp-mux (RFC 5761), RTCP on the
// RTP port from the RTP address. Anything else is foreign.
func TestSpraySourceRTCP(t *testing.T) {
	r, trunk, line := bridgedCall(t, RelayConfig{})
	stranger := newPeerOn(t, ipStranger)
	lineRTCP := rtcpAddrOf(r.Line())
	foreign := func() uint64 { return r.Line().Stats().Foreign }

	// port+1: the RTCP socket's RTCP passes; the RTP socket's and a
	// stranger's, sent before it, do not.
	send(t, line.rtp, lineRTCP, rtcpBytes(1))
	send(t, stranger.rtcp, lineRTCP, rtcpBytes(2))
	send(t, line.rtcp, lineRTCP, rtcpBytes(3))
	if b, _, ok := recv(t, trunk.rtcp, time.Second); !ok || !bytes.Equal(b, rtcpBytes(3)) {
		t.Fatalf("RTCP from port+1: got %x ok=%v, want the peer's only", b, ok)
	}
	waitFor(t, "2 foreign", func() bool { return foreign() == 2 })

	// a=rtcp names another port: only it is the peer's RTCP now.
	other := newPeer(t)
	r.Line().SetRemoteRTCP(other.rtcpAddr())
	send(t, line.rtcp, lineRTCP, rtcpBytes(4))
	send(t, other.rtcp, lineRTCP, rtcpBytes(5))
	if b, _, ok := recv(t, trunk.rtcp, time.Second); !ok || !bytes.Equal(b, rtcpBytes(5)) {
		t.Fatalf("RTCP with a=rtcp: got %x ok=%v, want the a=rtcp source's", b, ok)
	}
	waitFor(t, "3 foreign", func() bool { return foreign() == 3 })

	// Without rtcp-mux, RTCP on the RTP port is dropped, even from the peer.
	send(t, line.rtp, r.Line().LocalAddr(), rtcpBytes(6))
	waitFor(t, "muxed RTCP dropped", func() bool { return r.Line().Stats().Dropped == 4 })
	// With it, the RTP address's RTCP on the RTP port passes; a stranger's not.
	r.Line().SetRTCPMux(true)
	send(t, stranger.rtp, r.Line().LocalAddr(), rtcpBytes(7))
	send(t, line.rtp, r.Line().LocalAddr(), rtcpBytes(8))
	if b, _, ok := recv(t, trunk.rtcp, time.Second); !ok || !bytes.Equal(b, rtcpBytes(8)) {
		t.Fatalf("muxed RTCP: got %x ok=%v, want the peer's only", b, ok)
	}
	waitFor(t, "4 foreign", func() bool { return foreign() == 4 })
	if st := r.Line().Stats(); st.Foreign != 4 || st.RTCPIn != 3 {
		t.Fatalf("line leg %+v: want 4 foreign, 3 RTCP in", st)
	}
}

// TestSpraySourceNATLatchesOnceOnSignallingIP: for a peer marked as behind
// NAT, the first packet from its signalling IP latches whatever its port;
// then the leg never moves: another port of that IP and a stranger are
// foreign. The SDP's exact address stays accepted. SDP with a new address
// re-arms the latch; the same address keeps it.
func TestSpraySourceNATLatchesOnceOnSignallingIP(t *testing.T) {
	const natIP = "127.0.0.5" // the NAT's public address: signalling and media come from it
	r := newTestRelay(t, RelayConfig{})
	trunk := newPeer(t)
	r.Trunk().SetRemote(trunk.addr())
	r.SetBridged(true)
	mapped, otherPort, stranger := newPeerOn(t, natIP), newPeerOn(t, natIP), newPeerOn(t, ipStranger)
	sdpPeer := newPeerOn(t, "127.0.0.6") // the phone's own address, in its SDP
	pkt := func(seq uint16) []byte { return rtpBytes(t, 0, seq, 0x4a7, make([]byte, 160)) }

	// Nothing before the SDP, even from the signalling IP.
	send(t, mapped.rtp, r.Line().LocalAddr(), pkt(1))
	waitFor(t, "a packet before SDP dropped", func() bool { return r.Line().Stats().Dropped == 1 })
	r.Line().SetNAT(netip.MustParseAddr(natIP))
	r.Line().SetRemote(sdpPeer.addr())

	// One packet at a time: which arrives first decides the latch.
	foreign := func(n uint64) {
		t.Helper()
		waitFor(t, "foreign packets", func() bool { return r.Line().Stats().Foreign == n })
	}
	send(t, stranger.rtp, r.Line().LocalAddr(), pkt(2)) // a stranger first: not the NAT's IP
	foreign(1)
	send(t, mapped.rtp, r.Line().LocalAddr(), pkt(3)) // latches
	expectSeq(t, trunk.rtp, 3, "the NAT's first packet")
	send(t, otherPort.rtp, r.Line().LocalAddr(), pkt(4))
	foreign(2)
	send(t, mapped.rtp, r.Line().LocalAddr(), pkt(5))
	expectSeq(t, trunk.rtp, 5, "the latched source after another port of its IP")
	send(t, sdpPeer.rtp, r.Line().LocalAddr(), pkt(6)) // the SDP's exact address
	expectSeq(t, trunk.rtp, 6, "the SDP's exact address")
	if st := r.Line().Stats(); !st.Latched || st.Remote != mapped.addr() || st.Foreign != 2 {
		t.Fatalf("line leg %+v: want latched to %s, 3 foreign", st, mapped.addr())
	}
	// The leg sends to the latch.
	send(t, trunk.rtp, r.Trunk().LocalAddr(), pkt(7))
	expectSeq(t, mapped.rtp, 7, "trunk→line behind NAT")
	// RTCP latches on its own, once, whatever the RTP latch's port.
	send(t, otherPort.rtcp, rtcpAddrOf(r.Line()), rtcpBytes(1))
	if b, _, ok := recv(t, trunk.rtcp, time.Second); !ok || !bytes.Equal(b, rtcpBytes(1)) {
		t.Fatalf("the first RTCP from the NAT's IP: %x ok=%v", b, ok)
	}
	send(t, mapped.rtcp, rtcpAddrOf(r.Line()), rtcpBytes(2))
	foreign(3)
	send(t, otherPort.rtcp, rtcpAddrOf(r.Line()), rtcpBytes(3))
	if b, _, ok := recv(t, trunk.rtcp, time.Second); !ok || !bytes.Equal(b, rtcpBytes(3)) {
		t.Fatalf("the latched RTCP source: %x ok=%v", b, ok)
	}

	// A refresh with the same SDP keeps the latch.
	r.Line().SetNAT(netip.MustParseAddr(natIP))
	r.Line().SetRemote(sdpPeer.addr())
	send(t, otherPort.rtp, r.Line().LocalAddr(), pkt(8))
	send(t, mapped.rtp, r.Line().LocalAddr(), pkt(9))
	expectSeq(t, trunk.rtp, 9, "after a refresh")

	// A re-INVITE with a new address re-arms: another port may latch now,
	// and the old latch is foreign.
	moved := newPeerOn(t, "127.0.0.6")
	r.Line().SetRemote(moved.addr())
	send(t, otherPort.rtp, r.Line().LocalAddr(), pkt(10))
	expectSeq(t, trunk.rtp, 10, "re-armed: the new first packet")
	send(t, mapped.rtp, r.Line().LocalAddr(), pkt(11))
	foreign(5)
	send(t, otherPort.rtp, r.Line().LocalAddr(), pkt(12))
	expectSeq(t, trunk.rtp, 12, "re-armed: the new latch")
	if st := r.Line().Stats(); st.Remote != otherPort.addr() {
		t.Fatalf("line leg %+v: want latched to %s", st, otherPort.addr())
	}

	// Signalling from another IP drops a latch on the old one.
	r.Line().SetNAT(netip.MustParseAddr(ipStranger))
	if st := r.Line().Stats(); st.Latched || st.Remote != moved.addr() {
		t.Fatalf("after signalling from another IP: %+v, want unlatched, sending to %s", st, moved.addr())
	}
}

// TestSpraySourceNATSDPPortLatchesToo: behind a NAT that kept the port,
// the peer's first packet comes from its SDP's very address; it latches
// like any first packet from the signalling IP, so another port of that
// IP cannot move the leg afterwards.
func TestSpraySourceNATSDPPortLatchesToo(t *testing.T) {
	const natIP = "127.0.0.5"
	r := newTestRelay(t, RelayConfig{})
	trunk := newPeer(t)
	r.Trunk().SetRemote(trunk.addr())
	r.SetBridged(true)
	phone, otherPort := newPeerOn(t, natIP), newPeerOn(t, natIP)
	r.Line().SetNAT(netip.MustParseAddr(natIP))
	r.Line().SetRemote(phone.addr())
	send(t, newPeerOn(t, ipStranger).rtp, r.Line().LocalAddr(), rtpBytes(t, 0, 0, 1, nil))
	waitFor(t, "the stranger's packet dropped", func() bool { return r.Line().Stats().Foreign == 1 })
	send(t, phone.rtp, r.Line().LocalAddr(), rtpBytes(t, 0, 1, 1, nil))
	expectSeq(t, trunk.rtp, 1, "the SDP's address")
	if st := r.Line().Stats(); !st.Latched || st.Remote != phone.addr() {
		t.Fatalf("line leg %+v: want latched to %s", st, phone.addr())
	}
	send(t, otherPort.rtp, r.Line().LocalAddr(), rtpBytes(t, 0, 2, 1, nil))
	send(t, phone.rtp, r.Line().LocalAddr(), rtpBytes(t, 0, 3, 1, nil))
	expectSeq(t, trunk.rtp, 3, "after another port of the NAT's IP")
	waitFor(t, "2 foreign", func() bool { return r.Line().Stats().Foreign == 2 })
}

// TestSpraySourceReInviteMovesStrictLeg: without NAT, a re-INVITE's new
// address is the only source from then on; the old one is foreign.
func TestSpraySourceReInviteMovesStrictLeg(t *testing.T) {
	r, trunk, line := bridgedCall(t, RelayConfig{})
	pkt := func(seq uint16) []byte { return rtpBytes(t, 0, seq, 9, make([]byte, 160)) }
	send(t, line.rtp, r.Line().LocalAddr(), pkt(1))
	expectSeq(t, trunk.rtp, 1, "before the re-INVITE")
	moved := newPeer(t)
	r.Line().SetRemote(moved.addr())
	send(t, line.rtp, r.Line().LocalAddr(), pkt(2))
	send(t, moved.rtp, r.Line().LocalAddr(), pkt(3))
	expectSeq(t, trunk.rtp, 3, "after the re-INVITE")
	send(t, trunk.rtp, r.Trunk().LocalAddr(), pkt(4))
	expectSeq(t, moved.rtp, 4, "trunk→line after the re-INVITE")
	// Hold with c=0.0.0.0: nothing is sent, the source stays the peer's.
	r.Line().SetRemote(netip.MustParseAddrPort("0.0.0.0:9"))
	send(t, moved.rtcp, rtcpAddrOf(r.Line()), rtcpBytes(1))
	if b, _, ok := recv(t, trunk.rtcp, time.Second); !ok || !bytes.Equal(b, rtcpBytes(1)) {
		t.Fatal("RTCP of a held peer not taken")
	}
	waitFor(t, "1 foreign", func() bool { return r.Line().Stats().Foreign == 1 })
}

// TestSprayTelephoneEventsOnlyFromSource: a stranger's RFC 4733 "1", with
// the negotiated payload type, is never decoded; the peer's is.
func TestSprayTelephoneEventsOnlyFromSource(t *testing.T) {
	r, _, line := bridgedCall(t, RelayConfig{})
	stranger := newPeerOn(t, ipStranger)
	dc := NewDigitCollector()
	r.OnTelephoneEvent(SideLine, 96, dc.Feed)
	sendDigit := func(p *peer, d rune, ssrc uint32, ts uint32) {
		pkts, err := EncodeDTMF(d, 96, ssrc, uint16(ts/160), ts, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, pk := range pkts {
			b, _ := pk.Marshal()
			send(t, p.rtp, r.Line().LocalAddr(), b)
		}
	}
	sendDigit(stranger, '1', 0xBAD, 8000)
	sendDigit(line, '3', 0x600D, 16000)
	got, err := dc.Next(context.Background(), time.Second)
	if err != nil || got != '3' {
		t.Fatalf("digit %q, %v; want the peer's 3 and never the stranger's 1", got, err)
	}
	if got, err := dc.Next(context.Background(), 100*time.Millisecond); !errors.Is(err, ErrDigitTimeout) {
		t.Fatalf("extra digit %q (%v)", got, err)
	}
	if st := r.Line().Stats(); st.Foreign == 0 {
		t.Fatal("the stranger's events were not counted foreign")
	}
}

// TestSprayForeignLogRateLimited: one line for the first foreign packet,
// then none until the period has passed, then one with the count since.
func TestSprayForeignLogRateLimited(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	r, _, _ := bridgedCall(t, RelayConfig{Logger: zap.New(core)})
	stranger := newPeerOn(t, ipStranger)
	spray := func(n int) {
		for i := range n {
			send(t, stranger.rtp, r.Trunk().LocalAddr(), rtpBytes(t, 0, uint16(i), 0xBAD, nil))
		}
	}
	lines := func() []observer.LoggedEntry {
		return logs.FilterMessage("media from a foreign source dropped").All()
	}
	spray(1)
	waitFor(t, "the first line", func() bool { return len(lines()) == 1 })
	spray(50)
	waitFor(t, "50 more foreign packets", func() bool { return r.Trunk().Stats().Foreign == 51 })
	if n := len(lines()); n != 1 {
		t.Fatalf("%d lines within the period, want 1", n)
	}
	r.foreignLogAt.Store(0) // the period has passed
	spray(1)
	waitFor(t, "the second line", func() bool { return len(lines()) == 2 })
	for i, want := range []int64{1, 51} {
		f := lines()[i].ContextMap()
		if f["packets"] != uint64(want) || f["leg"] != "trunk" || f["source"] == "" {
			t.Fatalf("line %d: %v, want packets %d from the trunk leg", i, f, want)
		}
	}
}

// TestSprayReceiveNoAllocs: the receive path allocates nothing, for the
// peer's packets nor for a flood's (past its first log line).
func TestSprayReceiveNoAllocs(t *testing.T) {
	var fc foreignCount
	r := newTestRelay(t, RelayConfig{OnForeign: fc.fn})
	peer := netip.MustParseAddrPort("127.0.0.3:40000")
	r.Trunk().SetRemote(peer)
	pkt := rtpBytes(t, 0, 1, 1, make([]byte, 160))
	stranger := netip.MustParseAddrPort("127.0.0.4:40000")
	r.receiveRTP(r.Trunk(), pkt, stranger) // the first line is written
	for name, src := range map[string]netip.AddrPort{"accepted": peer, "foreign": stranger} {
		if a := testing.AllocsPerRun(1000, func() { r.receiveRTP(r.Trunk(), pkt, src) }); a != 0 {
			t.Errorf("%s: %.1f allocations per packet", name, a)
		}
	}
}
