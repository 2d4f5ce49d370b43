package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// ErrWAVFormat is wrapped by every prompt-loading error about the file's
// content; the message names the accepted formats.
var ErrWAVFormat = errors.New("media: unsupported prompt file")

// acceptedFormats is quoted in every format error so an operator can fix
// the file without reading code.
const acceptedFormats = "want a RIFF/WAVE file, mono, either 16-bit PCM at 8000 or 16000 Hz, or G.711 mu-law/A-law at 8000 Hz " +
	"(e.g. sox in.wav -r 8000 -c 1 -b 16 -e signed out.wav)"

// WAVE format tags (RFC 2361 appendix A).
const (
	wavePCM        = 0x0001
	waveALaw       = 0x0006
	waveMuLaw      = 0x0007
	waveExtensible = 0xFFFE
)

// maxPromptSeconds bounds a prompt so a bogus header cannot make the loader
// allocate gigabytes.
const maxPromptSeconds = 600

func wavErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format+"; "+acceptedFormats, append([]any{ErrWAVFormat}, a...)...)
}

// LoadPrompt reads an operator's prompt file; errors name the file.
func LoadPrompt(path string) (*Prompt, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("media: prompt %s: %w", path, err)
	}
	defer f.Close()
	p, err := LoadWAV(f)
	if err != nil {
		return nil, fmt.Errorf("prompt %s: %w", path, err)
	}
	return p, nil
}

// LoadWAV decodes a WAV prompt into 8 kHz 16-bit PCM, converting once at
// load: G.711 is expanded, 16 kHz is low-pass filtered and decimated.
func LoadWAV(r io.Reader) (*Prompt, error) {
	var hdr [12]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, wavErr("file too short for a RIFF header")
	}
	if string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return nil, wavErr("not a RIFF/WAVE file")
	}
	var (
		haveFmt             bool
		tag, channels, bits uint16
		rate                uint32
		chunk               [8]byte
		fmtBuf              [40]byte
	)
	for {
		if _, err := io.ReadFull(r, chunk[:]); err != nil {
			return nil, wavErr("no data chunk")
		}
		id := string(chunk[0:4])
		size := binary.LittleEndian.Uint32(chunk[4:8])
		switch id {
		case "fmt ":
			if size < 16 {
				return nil, wavErr("fmt chunk of %d bytes", size)
			}
			n := min(int(size), len(fmtBuf))
			if _, err := io.ReadFull(r, fmtBuf[:n]); err != nil {
				return nil, wavErr("truncated fmt chunk")
			}
			if err := skip(r, int64(size)-int64(n)+int64(size&1)); err != nil {
				return nil, wavErr("truncated fmt chunk")
			}
			tag = binary.LittleEndian.Uint16(fmtBuf[0:2])
			channels = binary.LittleEndian.Uint16(fmtBuf[2:4])
			rate = binary.LittleEndian.Uint32(fmtBuf[4:8])
			bits = binary.LittleEndian.Uint16(fmtBuf[14:16])
			if tag == waveExtensible {
				if n < 26 {
					return nil, wavErr("truncated WAVE_FORMAT_EXTENSIBLE")
				}
				// The sub-format GUID starts with the plain format tag.
				tag = binary.LittleEndian.Uint16(fmtBuf[24:26])
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return nil, wavErr("data chunk before fmt chunk")
			}
			return decodeWAVData(r, size, tag, channels, rate, bits)
		default:
			if err := skip(r, int64(size)+int64(size&1)); err != nil {
				return nil, wavErr("truncated %q chunk", id)
			}
		}
	}
}

func skip(r io.Reader, n int64) error {
	if n <= 0 {
		return nil
	}
	m, err := io.CopyN(io.Discard, r, n)
	if m != n {
		return io.ErrUnexpectedEOF
	}
	return err
}

func decodeWAVData(r io.Reader, size uint32, tag, channels uint16, rate uint32, bits uint16) (*Prompt, error) {
	if channels != 1 {
		return nil, wavErr("%d channels", channels)
	}
	var bytesPerSample int
	switch {
	case tag == wavePCM && bits == 16 && (rate == 8000 || rate == 16000):
		bytesPerSample = 2
	case (tag == waveMuLaw || tag == waveALaw) && bits == 8 && rate == 8000:
		bytesPerSample = 1
	default:
		return nil, wavErr("format tag %#04x, %d bits, %d Hz", tag, bits, rate)
	}
	limit := uint32(maxPromptSeconds) * rate * uint32(bytesPerSample)
	// Writers that stream set the size to 0 or 0xFFFFFFFF: read to EOF.
	if size == 0 || size == math.MaxUint32 || size > limit {
		if size != 0 && size != math.MaxUint32 {
			return nil, wavErr("audio longer than %d s", maxPromptSeconds)
		}
		size = limit
	}
	data, err := io.ReadAll(io.LimitReader(r, int64(size)))
	if err != nil {
		return nil, fmt.Errorf("%w: read: %v", ErrWAVFormat, err)
	}
	data = data[:len(data)/bytesPerSample*bytesPerSample]
	if len(data) == 0 {
		return nil, wavErr("no audio samples")
	}
	var pcm []int16
	switch tag {
	case waveMuLaw:
		pcm = DecodeG711(make([]int16, 0, len(data)), data, PayloadTypePCMU)
	case waveALaw:
		pcm = DecodeG711(make([]int16, 0, len(data)), data, PayloadTypePCMA)
	default:
		pcm = make([]int16, len(data)/2)
		for i := range pcm {
			pcm[i] = int16(binary.LittleEndian.Uint16(data[2*i:]))
		}
		if rate == 16000 {
			pcm = Downsample16kTo8k(pcm)
		}
	}
	return &Prompt{Samples: pcm}, nil
}

// Downsample16kTo8k halves the sample rate: a windowed-sinc low-pass at
// 3.6 kHz (telephone band, below the new 4 kHz Nyquist) then every second
// sample. Done once at load, so plain float math is fine.
func Downsample16kTo8k(in []int16) []int16 {
	const taps = 31
	const cutoff = 3600.0 / 16000.0 // normalised to the input rate
	var h [taps]float64
	sum := 0.0
	for i := range h {
		n := float64(i - taps/2)
		sinc := 2 * cutoff
		if n != 0 {
			sinc = math.Sin(2*math.Pi*cutoff*n) / (math.Pi * n)
		}
		w := 0.54 - 0.46*math.Cos(2*math.Pi*float64(i)/(taps-1)) // Hamming
		h[i] = sinc * w
		sum += h[i]
	}
	out := make([]int16, 0, len(in)/2+1)
	for c := 0; c < len(in); c += 2 {
		acc := 0.0
		for k := range h {
			j := c + k - taps/2
			if j >= 0 && j < len(in) {
				acc += h[k] * float64(in[j])
			}
		}
		acc /= sum
		out = append(out, int16(max(-32768, min(32767, math.Round(acc)))))
	}
	return out
}

// WriteWAV writes 8 kHz mono 16-bit PCM as a WAV file (for tests, tools and
// recordings).
func WriteWAV(w io.Writer, pcm []int16, rate int) error {
	data := len(pcm) * 2
	b := make([]byte, 44, 44+data)
	copy(b[0:], "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+data))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], wavePCM)
	binary.LittleEndian.PutUint16(b[22:], 1)
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(rate*2))
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(data))
	for _, s := range pcm {
		b = binary.LittleEndian.AppendUint16(b, uint16(s))
	}
	_, err := w.Write(b)
	return err
}
