package media

import (
	"context"
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// sine returns d of a 440 Hz tone at 8 kHz.
func sine(d time.Duration, amp float64) []int16 {
	n := int(d.Seconds() * 8000)
	s := make([]int16, n)
	for i := range s {
		s[i] = int16(amp * math.Sin(2*math.Pi*440*float64(i)/8000))
	}
	return s
}

// capture records what a player writes, with arrival times.
type capture struct {
	mu   sync.Mutex
	pkts []rtp.Packet
	at   []time.Time
}

func (c *capture) WriteRTP(p *rtp.Packet) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := *p.Clone()
	c.pkts = append(c.pkts, q)
	c.at = append(c.at, time.Now())
	return nil
}

func (c *capture) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pkts)
}

// checkStream asserts RFC 3550/3551 framing: one SSRC, consecutive
// sequence numbers, timestamps +160, marker on the first packet only.
func checkStream(t *testing.T, pkts []rtp.Packet, pt uint8, frames int) {
	t.Helper()
	if len(pkts) != frames {
		t.Fatalf("%d packets, want %d", len(pkts), frames)
	}
	for i, p := range pkts {
		if p.Version != 2 || p.PayloadType != pt || p.SSRC != pkts[0].SSRC || len(p.Payload) != 160 {
			t.Fatalf("packet %d header %+v, payload %d", i, p.Header, len(p.Payload))
		}
		if p.Marker != (i == 0) {
			t.Fatalf("packet %d marker %v", i, p.Marker)
		}
		if i > 0 {
			if p.SequenceNumber != pkts[i-1].SequenceNumber+1 || p.Timestamp != pkts[i-1].Timestamp+160 {
				t.Fatalf("packet %d seq %d ts %d after seq %d ts %d", i, p.SequenceNumber, p.Timestamp, pkts[i-1].SequenceNumber, pkts[i-1].Timestamp)
			}
		}
	}
}

// newFastPlayer is a player at 1 ms per 20 ms frame, for tests about what
// is sent rather than when.
func newFastPlayer(t testing.TB) *Player {
	t.Helper()
	pl := NewPlayer(PlayerConfig{Pacing: time.Millisecond})
	t.Cleanup(func() { pl.Close() })
	return pl
}

// TestPlayOverUDPDecodesBack plays through a relay leg to a phone socket and
// decodes what arrives.
func TestPlayOverUDPDecodesBack(t *testing.T) {
	pl := newFastPlayer(t)
	for _, codec := range []Codec{CodecPCMU, CodecPCMA} {
		t.Run(codec.Name, func(t *testing.T) {
			r := newTestRelay(t, RelayConfig{})
			phone := newPeer(t)
			r.Line().SetRemote(phone.addr())
			src := sine(500*time.Millisecond+7*time.Millisecond, 12000) // not a whole number of frames
			prompt := NewPrompt("tone", src)
			frames := (len(src) + 159) / 160

			done := make(chan error, 1)
			go func() { done <- pl.Play(context.Background(), r.Line(), prompt, codec) }()
			var pkts []rtp.Packet
			var pcm []int16
			for range frames {
				b, _, ok := recv(t, phone.rtp, 2*time.Second)
				if !ok {
					t.Fatalf("only %d of %d frames arrived", len(pkts), frames)
				}
				var p rtp.Packet
				if err := p.Unmarshal(b); err != nil {
					t.Fatal(err)
				}
				pkts = append(pkts, p)
				pcm = DecodeG711(pcm, p.Payload, codec.PT)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			checkStream(t, pkts, codec.PT, frames)
			for i, s := range src {
				// G.711 keeps about 12 bits: the error is within 1/16 of the
				// magnitude plus the smallest step.
				if d := math.Abs(float64(pcm[i]) - float64(s)); d > math.Abs(float64(s))/16+16 {
					t.Fatalf("sample %d: %d decoded as %d", i, s, pcm[i])
				}
			}
			for i := len(src); i < len(pcm); i++ {
				if pcm[i] > 8 || pcm[i] < -8 {
					t.Fatalf("padding sample %d = %d, want silence", i, pcm[i])
				}
			}
		})
	}
}

// TestPlayTakesItsOwnLength: a 2 s prompt takes 2 s of wall time, its
// frames are never early, and they stay on one 20 ms grid that starts at
// once on an idle player (no accumulated drift). The machine may be shared,
// so single frames may be late; the grid is judged by its punctual frames.
func TestPlayTakesItsOwnLength(t *testing.T) {
	prompt := NewPrompt("two seconds", sine(2*time.Second, 8000))
	pl := NewPlayer(PlayerConfig{})
	t.Cleanup(func() { pl.Close() })
	c := &capture{}
	start := time.Now()
	if err := pl.Play(context.Background(), c, prompt, CodecPCMU); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	// Never short; a late wake-up at the end is the machine's, not the
	// player's, so the bound above is loose: drift is judged by the grid.
	if took < 2*time.Second || took > 3*time.Second {
		t.Fatalf("2 s prompt took %v", took)
	}
	checkStream(t, c.pkts, 0, 100)
	// off[i] is frame i's send time less its place on a grid from start.
	// No frame may be early; the grid's origin is the most punctual frame.
	off := make([]time.Duration, len(c.at))
	origin := time.Duration(1 << 62)
	for i, at := range c.at {
		off[i] = at.Sub(start) - time.Duration(i)*frameDuration
		if off[i] < -2*time.Millisecond {
			t.Fatalf("frame %d sent %v early", i, -off[i])
		}
		origin = min(origin, off[i])
	}
	if origin > 5*time.Millisecond {
		t.Errorf("the grid starts %v after Play on an idle player", origin)
	}
	// A pacer that sleeps from frame to frame adds its lateness to every
	// later frame: then even the most punctual frame of the last 400 ms is
	// late. On the grid, each 400 ms has a frame within 5 ms of it.
	const window = 20
	late := 0
	for w := 0; w+window <= len(off); w += window {
		best := time.Duration(1 << 62)
		for _, o := range off[w : w+window] {
			best = min(best, o-origin)
			if o-origin > 10*time.Millisecond {
				late++
			}
		}
		if best > 5*time.Millisecond {
			t.Fatalf("frames %d-%d: the most punctual is %v off the grid: drift", w, w+window-1, best)
		}
	}
	t.Logf("grid origin %v after Play; %d of %d frames more than 10 ms late", origin, late, len(off))
}

// TestPlayCancelStopsAtOnce: Play returns as soon as ctx ends, and not one
// frame is sent after it returns.
func TestPlayCancelStopsAtOnce(t *testing.T) {
	prompt := NewPrompt("long", sine(10*time.Second, 8000))
	pl := NewPlayer(PlayerConfig{})
	t.Cleanup(func() { pl.Close() })
	c := &capture{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pl.Play(ctx, c, prompt, CodecPCMA) }()
	// Cancel once some audio has gone out.
	waitFor(t, "first frames", func() bool { return c.len() >= 3 })
	cancel()
	cancelled := time.Now()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Play returned %v", err)
	}
	if d := time.Since(cancelled); d > 5*time.Millisecond {
		t.Fatalf("Play returned %v after cancel", d)
	}
	n := c.len()
	// Not one frame after Play returned: wait three frame periods.
	<-time.After(60 * time.Millisecond)
	if c.len() != n {
		t.Fatalf("%d frames sent after Play returned", c.len()-n)
	}
	// A context that has already ended sends nothing at all.
	c2 := &capture{}
	if err := pl.Play(ctx, c2, prompt, CodecPCMA); !errors.Is(err, context.Canceled) || c2.len() != 0 {
		t.Fatalf("Play on an ended context: %v, %d frames", err, c2.len())
	}
}

// TestPlayerCloseEndsPlays: Close cuts running plays short with
// ErrPlayerClosed, and no frame is sent once it has returned.
func TestPlayerCloseEndsPlays(t *testing.T) {
	pl := NewPlayer(PlayerConfig{Shards: 2})
	prompt := NewPrompt("long", sine(10*time.Second, 8000))
	caps := make([]*capture, 4)
	done := make(chan error, len(caps))
	for i := range caps {
		caps[i] = &capture{}
		go func() { done <- pl.Play(context.Background(), caps[i], prompt, CodecPCMU) }()
	}
	for _, c := range caps {
		waitFor(t, "first frames", func() bool { return c.len() >= 2 })
	}
	pl.Close()
	var n [4]int
	for i, c := range caps {
		n[i] = c.len()
	}
	for range caps {
		if err := <-done; !errors.Is(err, ErrPlayerClosed) {
			t.Fatalf("play cut short by Close returned %v", err)
		}
	}
	<-time.After(60 * time.Millisecond) // three frame periods
	for i, c := range caps {
		if c.len() != n[i] {
			t.Fatalf("stream %d: %d frames after Close returned", i, c.len()-n[i])
		}
	}
	if err := pl.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
}

func TestPlayerConcurrentStreams(t *testing.T) {
	pl := NewPlayer(PlayerConfig{Pacing: 5 * time.Millisecond})
	defer pl.Close()
	prompt := NewPrompt("short", sine(300*time.Millisecond, 8000))
	var wg sync.WaitGroup
	caps := make([]*capture, 50)
	errs := make(chan error, len(caps))
	for i := range caps {
		caps[i] = &capture{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- pl.Play(context.Background(), caps[i], prompt, CodecPCMU)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ssrcs := map[uint32]bool{}
	for _, c := range caps {
		checkStream(t, c.pkts, 0, 15)
		ssrcs[c.pkts[0].SSRC] = true
	}
	if len(ssrcs) != len(caps) {
		t.Fatalf("%d distinct SSRCs for %d streams", len(ssrcs), len(caps))
	}
	// A closed player refuses new plays.
	pl.Close()
	if err := pl.Play(context.Background(), &capture{}, prompt, CodecPCMU); !errors.Is(err, ErrPlayerClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestPlayErrors(t *testing.T) {
	pl := newFastPlayer(t)
	p := NewPrompt("x", sine(100*time.Millisecond, 1000))
	if err := pl.Play(context.Background(), &capture{}, p, Codec{PT: 9, Name: "G722", Rate: 8000}); !errors.Is(err, ErrCodec) {
		t.Fatalf("G722: %v", err)
	}
	if err := pl.Play(context.Background(), nil, p, CodecPCMU); err == nil {
		t.Fatal("nil writer accepted")
	}
	werr := errors.New("socket gone")
	if err := pl.Play(context.Background(), failWriter{werr}, p, CodecPCMU); !errors.Is(err, werr) {
		t.Fatalf("writer error: %v", err)
	}
	c := &capture{}
	if err := pl.Play(context.Background(), c, p, Codec{PT: 0, Name: "pcmu", Rate: 8000}, WithSSRC(77), WithSequence(65535, 4294967200)); err != nil {
		t.Fatal(err)
	}
	// Sequence and timestamp wrap around (RFC 3550 §5.1 arithmetic).
	if c.pkts[0].SSRC != 77 || c.pkts[1].SequenceNumber != 0 || c.pkts[1].Timestamp != 64 { // 4294967200+160 mod 2^32
		t.Fatalf("%+v", c.pkts[1].Header)
	}
}

type failWriter struct{ err error }

func (f failWriter) WriteRTP(*rtp.Packet) error { return f.err }
