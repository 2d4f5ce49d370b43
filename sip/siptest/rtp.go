package siptest

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/rtp"

	"github.com/cleanline/cleanline/sip/media"
)

// Packet is one RTP packet a phone received, with when, from where, and
// on which of its sockets (Local, or the NAT's after BehindNAT).
type Packet struct {
	At    time.Time
	From  netip.AddrPort
	Pkt   rtp.Packet
	Local netip.AddrPort
}

// RTP is a phone's media socket: it records every packet it receives and
// sends audio and RFC 4733 digits to the address the peer's SDP gave.
type RTP struct {
	conn  *net.UDPConn
	local netip.AddrPort

	mu       sync.Mutex
	remote   netip.AddrPort
	got      []Packet
	notify   chan struct{}
	ssrc     uint32
	seq      uint16
	ts       uint32
	closed   bool
	readDone chan struct{}
	nat      *net.UDPConn // BehindNAT's socket: what the phone sends from
	natDone  chan struct{}
}

func newRTP(ip netip.Addr) (*RTP, error) {
	conn, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
	if err != nil {
		return nil, err
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	r := &RTP{conn: conn, local: conn.LocalAddr().(*net.UDPAddr).AddrPort(), notify: make(chan struct{}),
		ssrc: binary.BigEndian.Uint32(b[:]), seq: binary.BigEndian.Uint16(b[4:]), readDone: make(chan struct{})}
	go r.read(conn, r.readDone)
	return r, nil
}

// BehindNAT makes the phone's media leave from a second socket on its IP,
// as through a NAT that rewrites ports: its SDP still names Local, and
// packets to either socket are recorded. It returns the new source.
func (r *RTP) BehindNAT() (netip.AddrPort, error) {
	ip := r.local.Addr().As4()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip[:]})
	if err != nil {
		return netip.AddrPort{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.nat != nil {
		conn.Close()
		return netip.AddrPort{}, errors.New("siptest: RTP closed or already behind NAT")
	}
	r.nat, r.natDone = conn, make(chan struct{})
	go r.read(conn, r.natDone)
	return conn.LocalAddr().(*net.UDPAddr).AddrPort(), nil
}

// Local is the phone's RTP address (what its SDP says).
func (r *RTP) Local() netip.AddrPort { return r.local }

// SetRemote sets where Send goes.
func (r *RTP) SetRemote(a netip.AddrPort) {
	r.mu.Lock()
	r.remote = a
	r.mu.Unlock()
}

// Remote is where Send goes.
func (r *RTP) Remote() netip.AddrPort {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.remote
}

func (r *RTP) read(conn *net.UDPConn, done chan struct{}) {
	defer close(done)
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	buf := make([]byte, 2048)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		var p rtp.Packet
		if p.Unmarshal(append([]byte(nil), buf[:n]...)) != nil {
			continue
		}
		r.mu.Lock()
		r.got = append(r.got, Packet{At: time.Now(), From: from, Pkt: p, Local: local})
		close(r.notify)
		r.notify = make(chan struct{})
		r.mu.Unlock()
	}
}

// Send sends n 20 ms G.711 packets of payload type pt filled with fill, back
// to back (no pacing: the relay does not care).
func (r *RTP) Send(n int, pt uint8, fill byte) error {
	payload := make([]byte, 160)
	for i := range payload {
		payload[i] = fill
	}
	for range n {
		r.mu.Lock()
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SSRC: r.ssrc, SequenceNumber: r.seq, Timestamp: r.ts}, Payload: payload}
		r.seq++
		r.ts += 160
		to := r.remote
		r.mu.Unlock()
		if err := r.write(&p, to); err != nil {
			return err
		}
	}
	return nil
}

// SendDTMF sends digit as RFC 4733 events with payload type pt.
func (r *RTP) SendDTMF(digit rune, pt uint8) error {
	r.mu.Lock()
	pkts, err := media.EncodeDTMF(digit, pt, r.ssrc, r.seq, r.ts, 100*time.Millisecond)
	if err == nil {
		r.seq += uint16(len(pkts))
		r.ts += 800
	}
	to := r.remote
	r.mu.Unlock()
	if err != nil {
		return err
	}
	for _, p := range pkts {
		if err := r.write(p, to); err != nil {
			return err
		}
	}
	return nil
}

func (r *RTP) write(p *rtp.Packet, to netip.AddrPort) error {
	if !to.IsValid() {
		return errors.New("siptest: no RTP remote yet")
	}
	b, err := p.Marshal()
	if err != nil {
		return err
	}
	r.mu.Lock()
	conn := r.conn
	if r.nat != nil {
		conn = r.nat
	}
	r.mu.Unlock()
	_, err = conn.WriteToUDPAddrPort(b, to)
	if err != nil && errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil // ICMP refusals from a closed relay port are the point of some tests
}

// Count is how many packets arrived.
func (r *RTP) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// Packets returns a copy of what arrived.
func (r *RTP) Packets() []Packet {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Packet(nil), r.got...)
}

// CountSince is how many packets arrived at or after t.
func (r *RTP) CountSince(t time.Time) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.got {
		if !p.At.Before(t) {
			n++
		}
	}
	return n
}

// WaitCount waits until at least n packets have arrived.
func (r *RTP) WaitCount(ctx context.Context, n int) error {
	for {
		r.mu.Lock()
		got, ch := len(r.got), r.notify
		r.mu.Unlock()
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

// Audio decodes the G.711 payloads that arrived (PCMU or PCMA by payload
// type; other payload types are skipped) to 8 kHz PCM, in arrival order.
func (r *RTP) Audio() []int16 {
	var pcm []int16
	for _, p := range r.Packets() {
		pt := p.Pkt.PayloadType
		if pt != media.PayloadTypePCMU && pt != media.PayloadTypePCMA {
			continue
		}
		pcm = media.DecodeG711(pcm, p.Pkt.Payload, pt)
	}
	return pcm
}

// Close closes the socket.
func (r *RTP) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	nat, natDone := r.nat, r.natDone
	r.mu.Unlock()
	r.conn.Close()
	<-r.readDone
	if nat != nil {
		nat.Close()
		<-natDone
	}
}
