package load

import (
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
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

// stream is one direction of one call's audio: a socket, a preallocated
// packet buffer, and counters. The pacer writes; the receive loop reads.
type stream struct {
	conn   *net.UDPConn
	remote atomic.Pointer[net.UDPAddr] // nil: do not send
	pt     uint8
	hdr    rtp.Header
	buf    [rtpHeaderLen + frameSamples]byte

	sent, recv, bad atomic.Uint64
	lastRecv        atomic.Int64 // UnixNano of the last packet received
	// watchFrom: packets received at or after this UnixNano are counted as
	// late (after hang-up); 0 while the call is up.
	watchFrom atomic.Int64
	late      atomic.Uint64
	firstLate atomic.Int64

	idx  int // position in the pacer's list; owned by the pacer
	done chan struct{}
}

func newStream(ip net.IP, pt uint8) (*stream, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		return nil, err
	}
	s := &stream{conn: c, pt: pt, idx: -1, done: make(chan struct{})}
	s.hdr = rtp.Header{Version: 2, PayloadType: pt, SequenceNumber: uint16(rand.Uint32()),
		Timestamp: rand.Uint32(), SSRC: rand.Uint32(), Marker: true}
	copy(s.buf[rtpHeaderLen:], toneFrame[:])
	go s.readLoop()
	return s, nil
}

func (s *stream) port() int { return s.conn.LocalAddr().(*net.UDPAddr).Port }

// sendOne writes the next packet; called by the pacer only.
func (s *stream) sendOne() {
	to := s.remote.Load()
	if to == nil {
		return
	}
	if _, err := s.hdr.MarshalTo(s.buf[:rtpHeaderLen]); err != nil {
		return
	}
	if _, err := s.conn.WriteToUDP(s.buf[:], to); err == nil {
		s.sent.Add(1)
	}
	// RFC 3551 §4.1: the marker goes on the first packet of a talkspurt only.
	s.hdr.Marker = false
	s.hdr.SequenceNumber++
	s.hdr.Timestamp += frameSamples
}

func (s *stream) readLoop() {
	defer close(s.done)
	var buf [1500]byte
	var h rtp.Header
	for {
		n, _, err := s.conn.ReadFromUDP(buf[:])
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // ICMP errors surface here on some kernels; keep reading
		}
		now := time.Now().UnixNano()
		if w := s.watchFrom.Load(); w != 0 && now >= w {
			if s.late.Add(1) == 1 {
				s.firstLate.Store(now)
			}
			continue
		}
		if _, err := h.Unmarshal(buf[:n]); err != nil || h.Version != 2 || (h.PayloadType != 0 && h.PayloadType != 8) {
			s.bad.Add(1)
			continue
		}
		s.recv.Add(1)
		s.lastRecv.Store(now)
	}
}

// close stops the socket and waits for the reader.
func (s *stream) close() {
	_ = s.conn.Close()
	<-s.done
}

// pacer sends one packet per registered stream every 20 ms from a single
// goroutine: one ticker for the whole process instead of one per call, which
// at thousands of calls is the difference between one wake-up and thousands.
type pacer struct {
	mu      sync.Mutex
	streams []*stream
	stop    chan struct{}
	done    chan struct{}
	skipped atomic.Uint64 // rounds not sent: the pacer was more than maxCatchUp rounds late
}

// maxCatchUp is how many 20 ms rounds a late pacer sends at once (100 ms of
// audio); a longer stall is skipped rather than flooded.
const maxCatchUp = 5

func newPacer() *pacer {
	p := &pacer{stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

func (p *pacer) add(s *stream) {
	p.mu.Lock()
	if s.idx < 0 {
		s.idx = len(p.streams)
		p.streams = append(p.streams, s)
	}
	p.mu.Unlock()
}

func (p *pacer) remove(s *stream) {
	p.mu.Lock()
	if i := s.idx; i >= 0 && i < len(p.streams) && p.streams[i] == s {
		last := len(p.streams) - 1
		p.streams[i] = p.streams[last]
		p.streams[i].idx = i
		p.streams[last] = nil
		p.streams = p.streams[:last]
		s.idx = -1
	}
	p.mu.Unlock()
}

func (p *pacer) run() {
	defer close(p.done)
	t := time.NewTicker(frameTime)
	defer t.Stop()
	var batch []*stream
	start, rounds := time.Now(), int64(0)
	for {
		var now time.Time
		select {
		case <-p.stop:
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
			p.skipped.Add(uint64(n - maxCatchUp))
			n = maxCatchUp
		}
		rounds = due
		// Copy under the lock, send outside it, so add/remove never wait
		// behind a thousand sendto calls.
		p.mu.Lock()
		batch = append(batch[:0], p.streams...)
		p.mu.Unlock()
		for range n {
			for _, s := range batch {
				s.sendOne()
			}
		}
		clear(batch)
	}
}

func (p *pacer) close() {
	close(p.stop)
	<-p.done
}

// buildSDP is an RFC 4566 offer or answer for one audio stream. Offers list
// PCMU and PCMA; an answer lists the one payload type chosen (RFC 3264 §6.1).
func buildSDP(ip net.IP, port int, pts ...uint8) []byte {
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
	b.WriteString("a=ptime:20\r\na=sendrecv\r\n")
	return []byte(b.String())
}

// parseSDP extracts the audio destination and the first G.711 payload type
// offered. It is a line scanner rather than a full parser because a load
// tool only needs these three values and parses one SDP per call.
func parseSDP(body []byte) (addr *net.UDPAddr, pt uint8, ok bool) {
	var sessIP, mediaIP net.IP
	port := -1
	pt = 255
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
				return nil, 0, false
			}
			port = p
			for _, s := range f[3:] {
				if s == "0" || s == "8" {
					v, _ := strconv.Atoi(s)
					pt = uint8(v)
					break
				}
			}
		}
	}
	ip := mediaIP
	if ip == nil {
		ip = sessIP
	}
	if ip == nil || port <= 0 || pt == 255 {
		return nil, 0, false
	}
	return &net.UDPAddr{IP: ip, Port: port}, pt, true
}
