package media

// G.711 (ITU-T G.711, 1988) companding, as used by RTP payload types 0
// (PCMU) and 8 (PCMA), RFC 3551 §4.5.14. The formulas are the classic Sun
// reference ones; decoding goes through 256-entry tables built once, since
// what decodes (the WAV loader, the test phones' receivers) does it for whole
// files and streams. The player only encodes, once per prompt and law (the
// Prompt caches it).

const (
	ulawBias = 0x84 // 132: G.711 µ-law bias added before segment search
	ulawClip = 8159 // 14-bit clip level

	// Silence codes: what a frame is padded with past the end of a prompt.
	ulawSilence = 0xFF
	alawSilence = 0xD5
)

var (
	ulawTable = func() (t [256]int16) {
		for i := range t {
			t[i] = ulawDecode(byte(i))
		}
		return t
	}()
	alawTable = func() (t [256]int16) {
		for i := range t {
			t[i] = alawDecode(byte(i))
		}
		return t
	}()
)

// LinearToUlaw encodes one 16-bit linear sample as G.711 µ-law.
func LinearToUlaw(s int16) byte {
	x := int(s) >> 2 // µ-law works on 14-bit magnitudes
	mask := 0xFF
	if x < 0 {
		x = -x
		mask = 0x7F
	}
	if x > ulawClip {
		x = ulawClip
	}
	x += ulawBias >> 2
	seg := segment(x, 0x3F)
	if seg >= 8 {
		return byte(0x7F ^ mask)
	}
	return byte((seg<<4 | (x>>(seg+1))&0x0F) ^ mask)
}

// segment returns the G.711 segment (0-7, or 8 when out of range) of a
// magnitude, the segment ends doubling from first.
func segment(x, first int) int {
	end := first
	for seg := 0; seg < 8; seg++ {
		if x <= end {
			return seg
		}
		end = end<<1 | 1
	}
	return 8
}

// UlawToLinear decodes one G.711 µ-law byte.
func UlawToLinear(b byte) int16 { return ulawTable[b] }

func ulawDecode(b byte) int16 {
	b = ^b
	exp := int(b>>4) & 0x07
	mant := int(b & 0x0F)
	x := ((mant << 3) + ulawBias) << exp
	x -= ulawBias
	if b&0x80 != 0 {
		return int16(-x)
	}
	return int16(x)
}

// LinearToAlaw encodes one 16-bit linear sample as G.711 A-law.
func LinearToAlaw(s int16) byte {
	x := int(s) >> 3 // A-law works on 13-bit magnitudes
	mask := 0xD5
	if x < 0 {
		x = -x - 1
		mask = 0x55
	}
	seg := segment(x, 0x1F)
	if seg >= 8 {
		return byte(0x7F ^ mask)
	}
	out := seg << 4
	if seg < 2 {
		out |= (x >> 1) & 0x0F
	} else {
		out |= (x >> seg) & 0x0F
	}
	return byte(out ^ mask)
}

// AlawToLinear decodes one G.711 A-law byte.
func AlawToLinear(b byte) int16 { return alawTable[b] }

func alawDecode(b byte) int16 {
	b ^= 0x55
	exp := int(b>>4) & 0x07
	mant := int(b & 0x0F)
	var x int
	if exp == 0 {
		x = mant<<4 + 8
	} else {
		x = (mant<<4 + 0x108) << (exp - 1)
	}
	if b&0x80 == 0 {
		return int16(-x)
	}
	return int16(x)
}

// EncodeG711 appends the G.711 encoding of pcm to dst; pt selects µ-law (0)
// or A-law (8).
func EncodeG711(dst []byte, pcm []int16, pt uint8) []byte {
	enc := LinearToUlaw
	if pt == PayloadTypePCMA {
		enc = LinearToAlaw
	}
	for _, s := range pcm {
		dst = append(dst, enc(s))
	}
	return dst
}

// DecodeG711 appends the linear decoding of G.711 payload to dst.
func DecodeG711(dst []int16, payload []byte, pt uint8) []int16 {
	tab := &ulawTable
	if pt == PayloadTypePCMA {
		tab = &alawTable
	}
	for _, b := range payload {
		dst = append(dst, tab[b])
	}
	return dst
}
