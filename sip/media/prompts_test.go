package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultPrompts(t *testing.T) {
	ps, err := DefaultPrompts()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]time.Duration{
		PromptWarning:   {10 * time.Second, 25 * time.Second},
		PromptBlocked:   {2 * time.Second, 10 * time.Second},
		PromptLineClear: {1 * time.Second, 8 * time.Second},
		PromptLineBusy:  {2 * time.Second, 10 * time.Second},
		PromptReported:  {1 * time.Second, 6 * time.Second},
		PromptBarred:    {2 * time.Second, 8 * time.Second},
	}
	if got := strings.Join(ps.Names(), ","); got != "barred,blocked,line_busy,line_clear,reported,warning" {
		t.Fatalf("names %s", got)
	}
	for name, d := range want {
		p, err := ps.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if p.Duration() < d[0] || p.Duration() > d[1] || p.Name != name {
			t.Errorf("%s: %v long", name, p.Duration())
		}
		var peak int
		for _, s := range p.Samples {
			peak = max(peak, abs(int(s)))
		}
		if peak < 8000 {
			t.Errorf("%s: peak %d, too quiet", name, peak)
		}
	}
	if _, err := ps.Get("nope"); !errors.Is(err, ErrUnknownPrompt) {
		t.Fatal(err)
	}
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// wavBytes writes a WAV header by hand, so tests can produce formats that
// WriteWAV refuses to make.
func wavBytes(tag, channels uint16, rate uint32, bits uint16, data []byte) []byte {
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	le(uint32(4 + 8 + 16 + 8 + 8 + len(data)))
	b.WriteString("WAVE")
	b.WriteString("LIST") // a chunk to skip, as many editors write
	le(uint32(4))
	b.WriteString("INFO")
	b.WriteString("fmt ")
	le(uint32(16))
	le(tag)
	le(channels)
	le(rate)
	le(rate * uint32(channels) * uint32(bits) / 8)
	le(channels * bits / 8)
	le(bits)
	b.WriteString("data")
	le(uint32(len(data)))
	b.Write(data)
	return b.Bytes()
}

func TestLoadWAVFormats(t *testing.T) {
	tone := sine(200*time.Millisecond, 10000)
	pcm8 := make([]byte, 0, 2*len(tone))
	for _, s := range tone {
		pcm8 = binary.LittleEndian.AppendUint16(pcm8, uint16(s))
	}
	// 16 kHz version of a 440 Hz tone plus a 6 kHz component that the
	// low-pass must remove before decimation (it would alias to 2 kHz).
	var pcm16 []byte
	for i := range 2 * len(tone) {
		v := 10000*math.Sin(2*math.Pi*440*float64(i)/16000) + 5000*math.Sin(2*math.Pi*6000*float64(i)/16000)
		pcm16 = binary.LittleEndian.AppendUint16(pcm16, uint16(int16(v)))
	}

	cases := []struct {
		name string
		file []byte
	}{
		{"pcm 8k", wavBytes(wavePCM, 1, 8000, 16, pcm8)},
		{"pcm 16k", wavBytes(wavePCM, 1, 16000, 16, pcm16)},
		{"mulaw", wavBytes(waveMuLaw, 1, 8000, 8, EncodeG711(nil, tone, PayloadTypePCMU))},
		{"alaw", wavBytes(waveALaw, 1, 8000, 8, EncodeG711(nil, tone, PayloadTypePCMA))},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := LoadWAV(bytes.NewReader(c.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Samples) != len(tone) {
				t.Fatalf("%d samples, want %d", len(p.Samples), len(tone))
			}
			// Compare away from the filter's edges; the 6 kHz alias must be
			// gone (it would add up to 5000 of error).
			var maxErr float64
			for i := 40; i < len(tone)-40; i++ {
				maxErr = math.Max(maxErr, math.Abs(float64(p.Samples[i])-float64(tone[i])))
			}
			if maxErr > 1200 {
				t.Fatalf("max error %v against the source tone", maxErr)
			}
		})
	}
}

func TestLoadPromptRejectsWithClearError(t *testing.T) {
	dir := t.TempDir()
	bad := map[string][]byte{
		"stereo.wav":   wavBytes(wavePCM, 2, 8000, 16, make([]byte, 64)),
		"44k.wav":      wavBytes(wavePCM, 1, 44100, 16, make([]byte, 64)),
		"8bit.wav":     wavBytes(wavePCM, 1, 8000, 8, make([]byte, 64)),
		"float.wav":    wavBytes(3, 1, 8000, 32, make([]byte, 64)),
		"mp3.wav":      []byte("ID3\x03\x00\x00\x00\x00\x00\x00junk"),
		"empty.wav":    nil,
		"nodata.wav":   wavBytes(wavePCM, 1, 8000, 16, nil)[:36+12],
		"16k-ulaw.wav": wavBytes(waveMuLaw, 1, 16000, 8, make([]byte, 64)),
	}
	for name, b := range bad {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadPrompt(path)
		if !errors.Is(err, ErrWAVFormat) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "16-bit PCM at 8000 or 16000 Hz") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := LoadPrompt(filepath.Join(dir, "missing.wav")); err == nil || !strings.Contains(err.Error(), "missing.wav") {
		t.Errorf("missing file: %v", err)
	}

	// A good operator file replaces the default; a bad one leaves it.
	ps, err := DefaultPrompts()
	if err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "mine.wav")
	var buf bytes.Buffer
	if err := WriteWAV(&buf, sine(time.Second, 5000), 8000); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(good, buf.Bytes(), 0o644)
	if err := ps.Override(PromptWarning, filepath.Join(dir, "stereo.wav")); err == nil {
		t.Fatal("bad override accepted")
	}
	if p, _ := ps.Get(PromptWarning); p.Duration() < 5*time.Second {
		t.Fatal("failed override replaced the default")
	}
	if err := ps.Override(PromptWarning, good); err != nil {
		t.Fatal(err)
	}
	if p, _ := ps.Get(PromptWarning); p.Duration() != time.Second || p.Name != PromptWarning {
		t.Fatalf("override: %v %q", p.Duration(), p.Name)
	}
}

func TestG711RoundTrip(t *testing.T) {
	for _, pt := range []uint8{PayloadTypePCMU, PayloadTypePCMA} {
		// Every code decodes to a value that encodes back to the same code
		// (except µ-law's negative zero, 0x7F, which encodes as 0xFF).
		for c := range 256 {
			lin := DecodeG711(nil, []byte{byte(c)}, pt)[0]
			back := EncodeG711(nil, []int16{lin}, pt)[0]
			if back != byte(c) && !(pt == PayloadTypePCMU && c == 0x7F) {
				t.Fatalf("pt %d: code %#02x → %d → %#02x", pt, c, lin, back)
			}
		}
		for s := -32768; s <= 32767; s += 7 {
			d := DecodeG711(nil, EncodeG711(nil, []int16{int16(s)}, pt), pt)[0]
			if e := math.Abs(float64(d) - float64(s)); e > math.Abs(float64(s))/16+16 {
				t.Fatalf("pt %d: %d → %d", pt, s, d)
			}
		}
	}
	// Known values from ITU-T G.711: µ-law 0xFF and A-law 0xD5 are silence.
	if UlawToLinear(0xFF) != 0 || AlawToLinear(0xD5) != 8 || LinearToUlaw(0) != 0xFF || LinearToAlaw(0) != 0xD5 {
		t.Fatal("silence codes")
	}
}
