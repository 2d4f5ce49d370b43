package media

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// cpuTime is the process's user+system CPU time: "per core" figures divide
// by it rather than by wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRelay measures packets relayed trunk→line with 1 and 1,000
// bridged calls. One loopback socket sends to every call's trunk port
// round-robin (each relay's trunk SDP names it) and one sink receives from every
// line port; a window of packets in flight keeps socket buffers from
// overflowing. pkts/cpu-s counts all CPU of the process, the load
// generator and sink included, so the relay alone does better.
func BenchmarkRelay(b *testing.B) {
	for _, calls := range []int{1, 1000} {
		b.Run(fmt.Sprintf("calls=%d", calls), func(b *testing.B) {
			pool := newTestPool(b, 2*calls+64)
			src, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer src.Close()
			sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer sink.Close()
			sink.SetReadBuffer(4 << 20)
			sinkAddr := sink.LocalAddr().(*net.UDPAddr).AddrPort()

			targets := make([]netip.AddrPort, calls)
			for i := range calls {
				r, err := NewRelay(RelayConfig{Pool: pool, BindIP: loopback})
				if err != nil {
					b.Fatal(err)
				}
				defer r.Close()
				r.Line().SetRemote(sinkAddr)
				r.Trunk().SetRemote(src.LocalAddr().(*net.UDPAddr).AddrPort()) // its SDP: the one source it accepts
				r.SetBridged(true)
				targets[i] = r.Trunk().LocalAddr()
			}
			pkt := rtpBytes(b, 0, 1, 1, make([]byte, 160))

			const window = 128
			tokens := make(chan struct{}, window)
			for range window {
				tokens <- struct{}{}
			}
			received := make(chan int, 1)
			go func() {
				buf := make([]byte, 2048)
				n := 0
				for {
					if _, _, err := sink.ReadFromUDPAddrPort(buf); err != nil {
						received <- n
						return
					}
					n++
					select {
					case tokens <- struct{}{}:
					default:
					}
				}
			}()

			lost := 0
			stall := time.NewTimer(time.Hour)
			b.ResetTimer()
			cpu0, t0 := cpuTime(), time.Now()
			for i := range b.N {
				select {
				case <-tokens:
				default:
					stall.Reset(20 * time.Millisecond)
					select {
					case <-tokens:
					case <-stall.C: // a packet was dropped: release its slot
						lost++
					}
				}
				src.WriteToUDPAddrPort(pkt, targets[i%calls])
			}
			// Wait for the tail of the window.
			for range window - lost {
				select {
				case <-tokens:
				case <-time.After(100 * time.Millisecond):
				}
			}
			wall, cpu := time.Since(t0), cpuTime()-cpu0
			b.StopTimer()
			sink.Close()
			got := <-received
			b.ReportMetric(float64(got)/wall.Seconds(), "pkts/s")
			b.ReportMetric(float64(got)/cpu.Seconds(), "pkts/cpu-s")
			b.ReportMetric(float64(b.N-got)/float64(b.N)*100, "%lost")
		})
	}
}

// BenchmarkRelayReceive is the receive path of one RTP packet without the
// sockets: the source check, counters, the DTMF hook and the forwarding
// decision (not bridged, so nothing is sent), for a packet from the leg's
// accepted source and for one from a foreign source. It isolates what the
// source check costs per packet from the system calls around it.
func BenchmarkRelayReceive(b *testing.B) {
	r, err := NewRelay(RelayConfig{Pool: newTestPool(b, 4), BindIP: loopback})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	peer := netip.MustParseAddrPort("127.0.0.3:40000")
	r.Trunk().SetRemote(peer)
	pkt := rtpBytes(b, 0, 1, 1, make([]byte, 160))
	for _, c := range []struct {
		name string
		src  netip.AddrPort
	}{{"accepted", peer}, {"foreign", netip.MustParseAddrPort("127.0.0.4:40000")}} {
		b.Run(c.name, func(b *testing.B) {
			r.receiveRTP(r.Trunk(), pkt, peer) // the accepted source has sent first
			b.ReportAllocs()
			for range b.N {
				r.receiveRTP(r.Trunk(), pkt, c.src)
			}
		})
	}
}

// udpWriter is a prompt's destination as in a call: its own socket,
// packets marshalled into a reused buffer and sent to a sink nobody reads
// (the kernel drops them there, after the full send path). It records each
// send time for the jitter figures.
type udpWriter struct {
	conn *net.UDPConn
	to   netip.AddrPort
	buf  [256]byte
	at   []time.Time
}

func (w *udpWriter) WriteRTP(p *rtp.Packet) error {
	n, err := p.MarshalTo(w.buf[:])
	if err != nil {
		return err
	}
	w.at = append(w.at, time.Now())
	_, err = w.conn.WriteToUDPAddrPort(w.buf[:n], w.to)
	return err
}

// BenchmarkPlayer plays a 2 s prompt on 500 and 1,000 concurrent streams on
// the shared Player, as serve uses it: with one pacing goroutine per CPU
// (shards=GOMAXPROCS, serve's setting) and with a single one (shards=1).
// Reported: CPU cores busy while playing, CPU per packet, and inter-packet
// jitter |interval − 20 ms| p50 and p99 across all streams. One op is one
// full round. shards=1/streams=1 is the floor: how punctually this machine
// serves a lone prompt at all, the figure to compare the others with.
func BenchmarkPlayer(b *testing.B) {
	prompt := NewPrompt("bench", sine(2*time.Second, 8000))
	frames := (len(prompt.Samples) + 159) / 160
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	sinkAddr := sink.LocalAddr().(*net.UDPAddr).AddrPort()

	for _, mode := range []struct {
		name    string
		shards  int // 0: GOMAXPROCS
		streams []int
	}{
		{"shards=GOMAXPROCS", 0, []int{500, 1000}},
		{"shards=1", 1, []int{1, 500, 1000}},
	} {
		for _, streams := range mode.streams {
			b.Run(fmt.Sprintf("%s/streams=%d", mode.name, streams), func(b *testing.B) {
				ws := make([]*udpWriter, streams)
				for i := range ws {
					c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
					if err != nil {
						b.Fatal(err)
					}
					defer c.Close()
					ws[i] = &udpWriter{conn: c, to: sinkAddr, at: make([]time.Time, 0, frames)}
				}
				pl := NewPlayer(PlayerConfig{Shards: mode.shards})
				defer pl.Close()
				var jitter []time.Duration
				var cpu, wall time.Duration
				b.ResetTimer()
				for range b.N {
					for _, w := range ws {
						w.at = w.at[:0]
					}
					var wg sync.WaitGroup
					cpu0, t0 := cpuTime(), time.Now()
					for _, w := range ws {
						wg.Add(1)
						go func() {
							defer wg.Done()
							if err := pl.Play(context.Background(), w, prompt, CodecPCMU); err != nil {
								b.Error(err)
							}
						}()
					}
					wg.Wait()
					cpu += cpuTime() - cpu0
					wall += time.Since(t0)
					for _, w := range ws {
						for i := 1; i < len(w.at); i++ {
							d := w.at[i].Sub(w.at[i-1]) - frameDuration
							jitter = append(jitter, max(d, -d))
						}
					}
				}
				b.StopTimer()
				slices.Sort(jitter)
				pct := func(p float64) float64 {
					return float64(jitter[int(p*float64(len(jitter)-1))].Microseconds())
				}
				b.ReportMetric(pct(0.50), "jitter-p50-µs")
				b.ReportMetric(pct(0.99), "jitter-p99-µs")
				b.ReportMetric(cpu.Seconds()/wall.Seconds(), "cpu-cores")
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*streams*frames), "cpu-ns/pkt")
			})
		}
	}
}

// BenchmarkSRTP is what an SRTP leg adds per packet (srtp.go), without
// the sockets: open (authenticate and decrypt, in place, what the peer
// sent) and the encryption in write, for a 160-byte G.711 packet with
// AES_CM_128_HMAC_SHA1_80.
func BenchmarkSRTP(b *testing.B) {
	theirs, _ := NewCrypto(1, SuiteAES80)
	ours, _ := NewCrypto(1, SuiteAES80)
	plain := rtpBytes(b, 8, 0, 0x1111, make([]byte, 160))
	b.Run("open", func(b *testing.B) {
		// A lap of sequence numbers, encrypted by the peer beforehand; each
		// lap opens on fresh contexts, as its replay window has seen them.
		peer, err := srtp.CreateContext(theirs.Key[:16], theirs.Key[16:], suites[SuiteAES80])
		if err != nil {
			b.Fatal(err)
		}
		lap := make([][]byte, 1<<12)
		for i := range lap {
			p := rtpBytes(b, 8, uint16(i), 0x1111, make([]byte, 160))
			if lap[i], err = peer.EncryptRTP(nil, p, nil); err != nil {
				b.Fatal(err)
			}
		}
		l := &Leg{}
		buf := make([]byte, maxPacket)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if i%len(lap) == 0 {
				b.StopTimer()
				l.srtp.Store(nil)
				if err := l.SetSRTP(theirs, ours); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			n := copy(buf, lap[i%len(lap)])
			if _, ok := l.open(buf[:n], false); !ok {
				b.Fatal("a packet failed")
			}
		}
	})
	b.Run("seal", func(b *testing.B) {
		s, err := newLegSRTP(theirs, ours)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			plain[2], plain[3] = byte(i>>8), byte(i)
			s.mu.Lock()
			_, err := s.out.EncryptRTP(s.obuf[:0], plain, &s.oh)
			s.mu.Unlock()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
