package load

import (
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"golang.org/x/net/ipv4"
)

// G.711 at 8 kHz in 20 ms frames: 160 samples, one byte each (RFC 3551 §4.5.14).
const (
	frameSamples = 160
	frameTime    = 20 * time.Millisecond
	rtpHeaderLen = 12
)

// toneFrame is one 20 ms frame of a 400 Hz tone in PCMU; 400 Hz divides
// 8000 Hz into whole periods of 20 samples, so the frame loops seamlessly.
// PCMA would need its own table; we offer PCMU first and the peer answering
// PCMA still gets valid, if odd-sounding, audio.
var toneFrame = func() [frameSamples]byte {
	var f [frameSamples]byte
	for i := range f {
		f[i] = linearToULaw(int16(8000 * math.Sin(2*math.Pi*400*float64(i)/8000)))
	}
	return f
}()

// linearToULaw is the G.711 µ-law encoder (ITU-T G.711 Table 2a).
func linearToULaw(s int16) byte {
	const bias, clip = 0x84, 32635
	sign := byte(0)
	v := int(s)
	if v < 0 {
		v, sign = -v, 0x80
	}
	v = min(v, clip) + bias
	exp := 7
	for mask := 0x4000; v&mask == 0 && exp > 0; mask >>= 1 {
		exp--
	}
	mant := (v >> (exp + 3)) & 0x0f
	return ^(sign | byte(exp<<4) | byte(mant))
}

// rtpMux carries the RTP of every call in this process over one UDP
// socket. A socket per call meant a receive goroutine per call and a
// syscall per packet, which capped what one process could offer at about
// half of 1,000 calls' worth; here one reader drains the socket with
// recvmmsg and one pacer sends every due call's packet with sendmmsg.
//
// Received packets are given to a call by the SSRC the peer declared in its
// SDP (a=ssrc, RFC 5576: another sipload), or else by their source address
// (the peer's media address from SDP: a relay such as cleanline gives each
// call its own port and declares no SSRC).
type rtpMux struct {
	conn *net.UDPConn
	pc   *ipv4.PacketConn
	port int

	mu     sync.RWMutex // the reader holds it for reading across each batch
	bySSRC map[uint32]*stream
	byAddr map[netip.AddrPort]*stream
	ours   map[uint32]bool // SSRCs of our streams, kept unique
	// stray counts packets no call claims: from an unknown source, or
	// for a call already forgotten (after its watch window).
	stray atomic.Uint64

	// pmu is held across a send round, so once remove returns the pacer
	// sends nothing more for that stream.
	pmu     sync.Mutex
	sending []*stream
	batch   []*stream     // the streams of one sendRound's messages, in order
	skipped atomic.Uint64 // rounds not sent: the pacer was more than maxCatchUp rounds late

	stop             chan struct{}
	readDone, paceDn chan struct{}
	// batchDone gets a token (if none is pending) after each received
	// batch is counted: tests wait on it instead of sleeping.
	batchDone chan struct{}
}

// rtpBufBytes is each direction's socket buffer: a 20 ms round for 1,000
// calls arrives as one burst of 1,000 datagrams, each costing about 1 kB of
// buffer space in the kernel; the kernel caps it at net.core.[rw]mem_max.
const rtpBufBytes = 4 << 20

// rtpBatch is how many datagrams one recvmmsg may return.
const rtpBatch = 64

func newRTPMux(ip net.IP) (*rtpMux, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		return nil, err
	}
	// Best effort: a smaller buffer only risks drops, which the counts show.
	_ = c.SetReadBuffer(rtpBufBytes)
	_ = c.SetWriteBuffer(rtpBufBytes)
	m := &rtpMux{
		conn: c, pc: ipv4.NewPacketConn(c), port: c.LocalAddr().(*net.UDPAddr).Port,
		bySSRC: make(map[uint32]*stream), byAddr: make(map[netip.AddrPort]*stream), ours: make(map[uint32]bool),
		stop: make(chan struct{}), readDone: make(chan struct{}), paceDn: make(chan struct{}),
		batchDone: make(chan struct{}, 1),
	}
	go m.read()
	go m.pace()
	return m, nil
}

// close stops the pacer and the reader; streams must be released first.
func (m *rtpMux) close() {
	close(m.stop)
	<-m.paceDn
	_ = m.conn.Close()
	<-m.readDone
}

// stream is one call's audio: its packet buffer and counters. The pacer
// writes it; the mux's reader counts what arrives for it.
type stream struct {
	pt   uint8
	ssrc uint32 // ours, declared in our SDP
	to   *net.UDPAddr
	key  demuxKey // what the reader knows the peer's packets by; set by attach
	gone bool     // released; under m.mu
	hdr  rtp.Header
	buf  [rtpHeaderLen + frameSamples]byte
	bufs [][]byte // buf as WriteBatch wants it, allocated once

	sent, recv, bad atomic.Uint64
	lastRecv        atomic.Int64 // UnixNano of the last packet received
	// watchFrom: packets received at or after this UnixNano are counted as
	// late (after hang-up); 0 while the call is up.
	watchFrom atomic.Int64
	late      atomic.Uint64
	firstLate atomic.Int64

	idx int // position in the pacer's list; owned by the pacer (under pmu)
}

type demuxKey struct {
	addr    netip.AddrPort
	ssrc    uint32
	bySSRC  bool
	present bool
}

// newStream makes a stream with a fresh SSRC for payload type pt. It sends
// nothing and receives nothing until attach and start.
func (m *rtpMux) newStream(pt uint8) *stream {
	s := &stream{pt: pt, idx: -1}
	m.mu.Lock()
	for s.ssrc == 0 || m.ours[s.ssrc] {
		s.ssrc = rand.Uint32()
	}
	m.ours[s.ssrc] = true
	m.mu.Unlock()
	s.hdr = rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: uint16(rand.Uint32()),
		Timestamp: rand.Uint32(), SSRC: s.ssrc, Marker: true}
	copy(s.buf[rtpHeaderLen:], toneFrame[:])
	s.bufs = [][]byte{s.buf[:]}
	return s
}

// attach sets where the stream sends and how its peer's packets are
// recognised: by the peer's declared SSRC when it gave one, else by the
// peer's media address. Call it before the peer can send (before our 200,
// or on the first SDP answer, 183 or 200) and before start; a later call
// replaces the earlier key.
func (m *rtpMux) attach(s *stream, peer sdpMedia) {
	ap := peer.addr.AddrPort()
	k := demuxKey{addr: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ssrc: peer.ssrc, bySSRC: peer.hasSSRC, present: true}
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.gone {
		return
	}
	m.unlink(s)
	s.to, s.key = peer.addr, k
	// The newest call wins a key still held by an ended one being watched:
	// its media is the live media.
	if k.bySSRC {
		m.bySSRC[k.ssrc] = s
	} else {
		m.byAddr[k.addr] = s
	}
}

// unlink drops s from the demux maps. m.mu held.
func (m *rtpMux) unlink(s *stream) {
	k := s.key
	if !k.present {
		return
	}
	if k.bySSRC {
		if m.bySSRC[k.ssrc] == s {
			delete(m.bySSRC, k.ssrc)
		}
	} else if m.byAddr[k.addr] == s {
		delete(m.byAddr, k.addr)
	}
	s.key = demuxKey{}
}

// release stops sending and receiving for s. Once it returns, s's counters
// are final: the reader counts a batch under m.mu. Idempotent.
func (m *rtpMux) release(s *stream) {
	m.remove(s)
	m.mu.Lock()
	if !s.gone {
		s.gone = true
		m.unlink(s)
		delete(m.ours, s.ssrc)
	}
	m.mu.Unlock()
}

// start makes the pacer send s a packet every 20 ms; s must be attached.
func (m *rtpMux) start(s *stream) {
	m.pmu.Lock()
	if s.idx < 0 && s.to != nil {
		s.idx = len(m.sending)
		m.sending = append(m.sending, s)
	}
	m.pmu.Unlock()
}

// remove stops sending for s; nothing more is sent once it returns.
func (m *rtpMux) remove(s *stream) {
	m.pmu.Lock()
	if i := s.idx; i >= 0 && i < len(m.sending) && m.sending[i] == s {
		last := len(m.sending) - 1
		m.sending[i] = m.sending[last]
		m.sending[i].idx = i
		m.sending[last] = nil
		m.sending = m.sending[:last]
		s.idx = -1
	}
	m.pmu.Unlock()
}

// read drains the socket in batches and counts each packet on its call.
func (m *rtpMux) read() {
	defer close(m.readDone)
	ms := make([]ipv4.Message, rtpBatch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, 1500)}
	}
	var h rtp.Header
	for {
		n, err := m.pc.ReadBatch(ms, 0)
		if err != nil {
			select {
			case <-m.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors surface here on some kernels; keep reading
		}
		now := time.Now().UnixNano()
		m.mu.RLock()
		for i := range ms[:n] {
			m.deliver(&ms[i], &h, now)
		}
		m.mu.RUnlock()
		select {
		case m.batchDone <- struct{}{}:
		default:
		}
	}
}

// deliver counts one received datagram. m.mu held for reading.
func (m *rtpMux) deliver(msg *ipv4.Message, h *rtp.Header, now int64) {
	b := msg.Buffers[0][:msg.N]
	_, perr := h.Unmarshal(b)
	var s *stream
	if perr == nil {
		s = m.bySSRC[h.SSRC]
	}
	if s == nil {
		if ua, ok := msg.Addr.(*net.UDPAddr); ok {
			ap := ua.AddrPort()
			s = m.byAddr[netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())]
		}
	}
	if s == nil {
		m.stray.Add(1)
		return
	}
	if w := s.watchFrom.Load(); w != 0 && now >= w {
		if s.late.Add(1) == 1 {
			s.firstLate.Store(now)
		}
		return
	}
	if perr != nil || h.Version != 2 || (h.PayloadType != 0 && h.PayloadType != 8) {
		s.bad.Add(1)
		return
	}
	s.recv.Add(1)
	s.lastRecv.Store(now)
}

// maxCatchUp is how many 20 ms rounds a late pacer sends at once (100 ms of
// audio); a longer stall is skipped rather than flooded.
const maxCatchUp = 5

// pace sends one packet per started stream every 20 ms from one goroutine,
// each round in as few sendmmsg calls as the kernel allows.
func (m *rtpMux) pace() {
	defer close(m.paceDn)
	t := time.NewTicker(frameTime)
	defer t.Stop()
	var msgs []ipv4.Message
	start, rounds := time.Now(), int64(0)
	for {
		var now time.Time
		select {
		case <-m.stop:
			return
		case now = <-t.C:
		}
		// A Ticker drops ticks when the goroutine runs late (a loaded
		// machine), which would silently send fewer than 50 packets/s per
		// stream. Send every round due since the start instead, catching up
		// at most maxCatchUp rounds at once; rounds beyond that are skipped
		// and counted, so a starved sender shows in the report.
		due := int64(now.Sub(start) / frameTime)
		n := due - rounds
		if n > maxCatchUp {
			m.skipped.Add(uint64(n - maxCatchUp))
			n = maxCatchUp
		}
		rounds = due
		m.pmu.Lock()
		for range n {
			msgs = m.sendRound(msgs)
		}
		m.pmu.Unlock()
	}
}

// sendRound sends every started stream its next packet. m.pmu held; msgs
// is reused from round to round.
func (m *rtpMux) sendRound(msgs []ipv4.Message) []ipv4.Message {
	msgs, m.batch = msgs[:0], m.batch[:0]
	for _, s := range m.sending {
		if _, err := s.hdr.MarshalTo(s.buf[:rtpHeaderLen]); err != nil {
			continue
		}
		msgs = append(msgs, ipv4.Message{Buffers: s.bufs, Addr: s.to})
		m.batch = append(m.batch, s)
	}
	for i := 0; i < len(msgs); {
		n, err := m.pc.WriteBatch(msgs[i:], 0)
		if err != nil && n == 0 {
			n = 1 // this message cannot be sent (e.g. no route); go on with the rest
		} else {
			for _, s := range m.batch[i : i+n] {
				s.sent.Add(1)
			}
		}
		i += n
	}
	for _, s := range m.sending {
		// RFC 3551 §4.1: the marker goes on the first packet of a talkspurt only.
		s.hdr.Marker = false
		s.hdr.SequenceNumber++
		s.hdr.Timestamp += frameSamples
	}
	// Drop the references until next round: a released stream can go.
	clear(msgs)
	clear(m.batch)
	return msgs
}

// buildSDP is an RFC 4566 offer or answer for one audio stream. Offers list
// PCMU and PCMA; an answer lists the one payload type chosen (RFC 3264 §6.1).
// A nonzero ssrc is declared (RFC 5576 §4.1) so that a peer sharing one
// socket among its calls, as sipload does, can tell our packets apart.
func buildSDP(ip net.IP, port int, ssrc uint32, pts ...uint8) []byte {
	id := strconv.FormatUint(uint64(rand.Uint32()), 10)
	var b strings.Builder
	b.Grow(256)
	b.WriteString("v=0\r\no=sipload " + id + " 1 IN IP4 " + ip.String() + "\r\ns=sipload\r\nc=IN IP4 " + ip.String() +
		"\r\nt=0 0\r\nm=audio " + strconv.Itoa(port) + " RTP/AVP")
	for _, pt := range pts {
		b.WriteString(" " + strconv.Itoa(int(pt)))
	}
	b.WriteString("\r\n")
	for _, pt := range pts {
		switch pt {
		case 0:
			b.WriteString("a=rtpmap:0 PCMU/8000\r\n")
		case 8:
			b.WriteString("a=rtpmap:8 PCMA/8000\r\n")
		}
	}
	if ssrc != 0 {
		b.WriteString("a=ssrc:" + strconv.FormatUint(uint64(ssrc), 10) + " cname:sipload\r\n")
	}
	b.WriteString("a=ptime:20\r\na=sendrecv\r\n")
	return []byte(b.String())
}

// sdpMedia is what sipload needs of a peer's SDP.
type sdpMedia struct {
	addr    *net.UDPAddr
	pt      uint8 // the first G.711 payload type listed
	ssrc    uint32
	hasSSRC bool // the peer declared the SSRC it sends with
}

// parseSDP extracts the audio destination, the first G.711 payload type
// offered and the declared SSRC. It is a line scanner rather than a full
// parser because a load tool only needs these values and parses one SDP
// per call.
func parseSDP(body []byte) (sdpMedia, bool) {
	var (
		sessIP, mediaIP net.IP
		md              sdpMedia
	)
	port := -1
	pt := 255
	inAudio := false
	for _, line := range strings.Split(string(body), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "c=IN IP4 "):
			ip := net.ParseIP(strings.Fields(line[len("c=IN IP4 "):] + " x")[0])
			if inAudio {
				mediaIP = ip
			} else if port < 0 {
				sessIP = ip
			}
		case strings.HasPrefix(line, "m="):
			f := strings.Fields(line[2:])
			inAudio = len(f) >= 4 && f[0] == "audio" && port < 0
			if !inAudio {
				continue
			}
			p, err := strconv.Atoi(f[1])
			if err != nil || p <= 0 || p > 65535 {
				return sdpMedia{}, false
			}
			port = p
			for _, s := range f[3:] {
				if s == "0" || s == "8" {
					pt, _ = strconv.Atoi(s)
					break
				}
			}
		case inAudio && !md.hasSSRC && strings.HasPrefix(line, "a=ssrc:"):
			id := strings.Fields(line[len("a=ssrc:"):] + " x")[0]
			if v, err := strconv.ParseUint(id, 10, 32); err == nil {
				md.ssrc, md.hasSSRC = uint32(v), true
			}
		}
	}
	ip := mediaIP
	if ip == nil {
		ip = sessIP
	}
	if ip == nil || port <= 0 || pt == 255 {
		return sdpMedia{}, false
	}
	md.addr, md.pt = &net.UDPAddr{IP: ip, Port: port}, uint8(pt)
	return md, true
}
