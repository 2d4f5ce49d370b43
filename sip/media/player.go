package media

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"go.uber.org/zap"
)

// frameSamples is 20 ms at 8 kHz: RFC 3551 §4.5 makes 20 ms the default
// packetisation for G.711, and every phone accepts it.
const (
	frameSamples  = 160
	frameDuration = 20 * time.Millisecond
)

var (
	// ErrCodec is returned for a codec the player cannot produce.
	ErrCodec = errors.New("media: player supports only PCMU and PCMA")
	// ErrPlayerClosed is returned by Player.Play on a closed player and by
	// plays cut short by Player.Close.
	ErrPlayerClosed = errors.New("media: player closed")
)

// RTPWriter is where a prompt goes: a relay Leg, or anything that sends RTP.
// WriteRTP must not retain the packet (it is reused for the next frame) and
// should not block: each of a Player's few pacing goroutines drives many
// streams.
type RTPWriter interface {
	WriteRTP(*rtp.Packet) error
}

// PlayOption adjusts one playback.
type PlayOption func(*playOpts)

type playOpts struct {
	ssrc     uint32
	seq      uint16
	ts       uint32
	haveSSRC bool
	haveSeq  bool
}

// WithSSRC sets the stream's SSRC (default: random, RFC 3550 §8.1).
func WithSSRC(ssrc uint32) PlayOption {
	return func(o *playOpts) { o.ssrc, o.haveSSRC = ssrc, true }
}

// WithSequence sets the first sequence number and timestamp (default:
// random, RFC 3550 §5.1), so a prompt can continue an outgoing stream on
// the same SSRC.
func WithSequence(seq uint16, ts uint32) PlayOption {
	return func(o *playOpts) { o.seq, o.ts, o.haveSeq = seq, ts, true }
}

// stream is one playback's RTP state: jart/gosip style, one packet header
// mutated in place and payloads sliced from the shared encoded prompt.
type stream struct {
	w      RTPWriter
	data   []byte
	frames int
	seq0   uint16
	ts0    uint32
	pkt    rtp.Packet

	mu      sync.Mutex // held while sending a frame; Stop waits for it
	n       int        // next frame
	stopped bool
	done    chan error // receives the result once, buffered
}

func newStream(w RTPWriter, p *Prompt, codec Codec, opts []PlayOption) (*stream, error) {
	if w == nil || p == nil {
		return nil, errors.New("media: Play needs a writer and a prompt")
	}
	var pt uint8
	switch {
	case strings.EqualFold(codec.Name, "PCMU") && codec.Rate == 8000:
		pt = PayloadTypePCMU
	case strings.EqualFold(codec.Name, "PCMA") && codec.Rate == 8000:
		pt = PayloadTypePCMA
	default:
		return nil, fmt.Errorf("%w, not %s", ErrCodec, codec)
	}
	o := &playOpts{}
	for _, opt := range opts {
		opt(o)
	}
	if !o.haveSSRC {
		o.ssrc = rand.Uint32()
	}
	if !o.haveSeq {
		o.seq, o.ts = uint16(rand.Uint32()), rand.Uint32()
	}
	data := p.encoded(pt)
	s := &stream{
		w: w, data: data, frames: len(data) / frameSamples,
		seq0: o.seq, ts0: o.ts,
		done: make(chan error, 1),
	}
	s.pkt.Header = rtp.Header{Version: 2, PayloadType: codec.PT & 0x7F, SSRC: o.ssrc}
	return s, nil
}

// send writes frame i. RFC 3550 §5.1: sequence numbers increase by one per
// packet and the timestamp by the samples in the previous packet; RFC 3551
// §4.1: the marker is set on the first packet after silence, i.e. only on
// the first packet of a prompt (pion's packetizer would set it on all).
func (s *stream) send(i int) error {
	s.pkt.SequenceNumber = s.seq0 + uint16(i)
	s.pkt.Timestamp = s.ts0 + uint32(i)*frameSamples
	s.pkt.Marker = i == 0
	s.pkt.Payload = s.data[i*frameSamples : (i+1)*frameSamples]
	return s.w.WriteRTP(&s.pkt)
}

// stop ends the stream if it is still running; after it returns, no frame of
// the stream is being or will be written.
func (s *stream) stop(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopped {
		s.stopped = true
		s.done <- err
	}
}

// PlayerConfig configures a Player.
type PlayerConfig struct {
	// Pacing is the wall time per 20 ms frame; zero means 20 ms. Tests use
	// less to play faster than real time; RTP timestamps still advance 160
	// per frame.
	Pacing time.Duration
	// Slots spreads streams over this many sub-ticks of a frame so that
	// 1,000 prompts started together are not all sent in one burst. Zero
	// means 20 (1 ms ticks at 20 ms pacing).
	Slots int
	// Shards is the number of pacing goroutines; zero means GOMAXPROCS.
	Shards int
	Logger *zap.Logger
}

// Player plays many prompts at once from a few pacing goroutines (Shards,
// default GOMAXPROCS) instead of a goroutine and timer per prompt. In each
// shard, every frame period is cut into Slots ticks; a stream is assigned
// to the least busy tick when it starts and is served on that tick of
// every frame, so its frame n is sent at epoch + (slot0 + n×Slots)×tick:
// evenly spaced and driftless, with one wake-up per tick for all of the
// shard's streams. Several shards keep one descheduled OS thread from
// delaying every prompt at once.
type Player struct {
	shards []*pacer
	next   atomic.Uint64
}

// pacer is one shard of a Player.
type pacer struct {
	tick  time.Duration
	slots int
	log   *zap.Logger

	mu      sync.Mutex
	buckets [][]*stream
	count   int
	epoch   time.Time
	k       int64 // next tick to serve
	closed  bool

	wake chan struct{}
	quit chan struct{}
	wg   sync.WaitGroup
}

// NewPlayer starts a player; Close stops it.
func NewPlayer(cfg PlayerConfig) *Player {
	if cfg.Pacing <= 0 {
		cfg.Pacing = frameDuration
	}
	if cfg.Slots <= 1 {
		cfg.Slots = 20
	}
	if cfg.Shards <= 0 {
		cfg.Shards = runtime.GOMAXPROCS(0)
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	pl := &Player{}
	for range cfg.Shards {
		pc := &pacer{
			tick:    cfg.Pacing / time.Duration(cfg.Slots),
			slots:   cfg.Slots,
			log:     cfg.Logger,
			buckets: make([][]*stream, cfg.Slots),
			wake:    make(chan struct{}, 1),
			quit:    make(chan struct{}),
		}
		pc.wg.Add(1)
		go pc.run()
		pl.shards = append(pl.shards, pc)
	}
	return pl
}

// Play sends prompt p to w as RTP in codec (PCMU or PCMA, with the
// negotiated payload type) and returns when it has been played: one Pacing
// after its last frame was sent. The first frame goes out within one frame
// period (within one tick when the shard is idle), and each next one a
// Pacing later on the shard's fixed grid of the monotonic clock, so timer
// lateness never accumulates. Play returns ctx.Err() as soon as ctx ends
// and ErrPlayerClosed once Close stops the player; either way, no packet of
// the prompt is sent after it returns. An error from w ends the play and is
// returned.
func (pl *Player) Play(ctx context.Context, w RTPWriter, p *Prompt, codec Codec, opts ...PlayOption) error {
	s, err := newStream(w, p, codec, opts)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pc := pl.shards[pl.next.Add(1)%uint64(len(pl.shards))]
	if err := pc.add(s); err != nil {
		return err
	}
	select {
	case err := <-s.done:
		if err != nil && !errors.Is(err, ErrPlayerClosed) {
			err = fmt.Errorf("media: play %s: %w", p.Name, err)
		}
		return err
	case <-ctx.Done():
		s.stop(ctx.Err())
		return ctx.Err()
	}
}

func (pl *pacer) add(s *stream) error {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.closed {
		return ErrPlayerClosed
	}
	if pl.count == 0 {
		pl.epoch, pl.k = time.Now(), 0
	}
	// Least busy slot; ties go to the one served soonest, so a lone prompt
	// starts within a tick.
	best, bestLen := 0, -1
	for i := range pl.slots {
		b := int((pl.k + int64(i)) % int64(pl.slots))
		if bestLen < 0 || len(pl.buckets[b]) < bestLen {
			best, bestLen = b, len(pl.buckets[b])
		}
	}
	pl.buckets[best] = append(pl.buckets[best], s)
	pl.count++
	select {
	case pl.wake <- struct{}{}:
	default:
	}
	return nil
}

// Close stops the player; running plays return ErrPlayerClosed.
func (pl *Player) Close() error {
	for _, pc := range pl.shards {
		pc.close()
	}
	return nil
}

func (pl *pacer) close() {
	pl.mu.Lock()
	if pl.closed {
		pl.mu.Unlock()
		return
	}
	pl.closed = true
	close(pl.quit)
	pl.mu.Unlock()
	pl.wg.Wait()
	for _, b := range pl.buckets {
		for _, s := range b {
			s.stop(ErrPlayerClosed)
		}
	}
}

func (pl *pacer) run() {
	defer pl.wg.Done()
	var scratch []*stream
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		pl.mu.Lock()
		if pl.count == 0 {
			pl.mu.Unlock()
			select {
			case <-pl.wake:
				continue
			case <-pl.quit:
				return
			}
		}
		k := pl.k
		deadline := pl.epoch.Add(time.Duration(k) * pl.tick)
		pl.mu.Unlock()

		if d := time.Until(deadline); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-pl.quit:
				return
			}
		}

		pl.mu.Lock()
		bi := int(k % int64(pl.slots))
		scratch = append(scratch[:0], pl.buckets[bi]...)
		pl.k++
		pl.mu.Unlock()

		ended := 0
		for _, s := range scratch {
			if pl.step(s) {
				ended++
			}
		}
		if ended > 0 {
			pl.mu.Lock()
			b := pl.buckets[bi][:0]
			for _, s := range pl.buckets[bi] {
				s.mu.Lock()
				live := !s.stopped
				s.mu.Unlock()
				if live {
					b = append(b, s)
				}
			}
			clear(pl.buckets[bi][len(b):])
			pl.count -= len(pl.buckets[bi]) - len(b)
			pl.buckets[bi] = b
			pl.mu.Unlock()
		}
	}
}

// step serves one stream on its tick; true means it has ended.
func (pl *pacer) step(s *stream) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return true
	}
	if s.n == s.frames { // the last frame has had its 20 ms
		s.stopped = true
		s.done <- nil
		return true
	}
	if err := s.send(s.n); err != nil {
		s.stopped = true
		s.done <- err
		return true
	}
	s.n++
	return false
}
