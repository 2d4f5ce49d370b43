package siptest

// Tones: what a test phone sends to prove audio crossed the bridge, and
// how it is recognised on the far side (Goertzel's single-frequency DFT).

import (
	"context"
	"math"
	"time"

	"github.com/pion/rtp"

	"github.com/cleanline/cleanline/sip/media"
)

// Goertzel is the power of freq (Hz) in 8 kHz pcm, normalised by length,
// so that tones can be told apart whatever the level.
func Goertzel(pcm []int16, freq float64) float64 {
	if len(pcm) == 0 {
		return 0
	}
	w := 2 * math.Pi * freq / 8000
	c := 2 * math.Cos(w)
	var s1, s2 float64
	for _, x := range pcm {
		s0 := float64(x) + c*s1 - s2
		s2, s1 = s1, s0
	}
	p := s1*s1 + s2*s2 - c*s1*s2
	return p / float64(len(pcm)) / float64(len(pcm))
}

// ToneDominates reports whether freq carries at least ratio times the power
// of each of the other frequencies in pcm, and how large the smallest ratio
// was.
func ToneDominates(pcm []int16, freq float64, others []float64, ratio float64) (bool, float64) {
	want := Goertzel(pcm, freq)
	least := math.Inf(1)
	for _, f := range others {
		least = math.Min(least, want/math.Max(Goertzel(pcm, f), 1e-9))
	}
	return least >= ratio, least
}

// SendPCM sends 8 kHz pcm as G.711 of payload type pt in 20 ms packets,
// paced in real time as a phone does (a real peer's jitter buffer drops a
// burst), until pcm ends or ctx is done.
func (r *RTP) SendPCM(ctx context.Context, pcm []int16, pt uint8) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for off := 0; off+160 <= len(pcm); off += 160 {
		r.mu.Lock()
		p := rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: pt, SSRC: r.ssrc, SequenceNumber: r.seq, Timestamp: r.ts, Marker: off == 0},
			Payload: media.EncodeG711(nil, pcm[off:off+160], pt)}
		r.seq++
		r.ts += 160
		to := r.remote
		r.mu.Unlock()
		if err := r.write(&p, to); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// Sine is d of a freq Hz sine at 8 kHz.
func Sine(freq float64, d time.Duration) []int16 {
	pcm := make([]int16, int(d.Seconds()*8000))
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(2*math.Pi*freq*float64(i)/8000))
	}
	return pcm
}
