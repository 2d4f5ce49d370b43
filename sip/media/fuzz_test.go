package media

import (
	"net/netip"
	"testing"

	"github.com/pion/rtp"
)

// FuzzParseSDP: no body, however broken, may panic the parser or the
// answer built from it (the B2BUA answers 488 instead).
func FuzzParseSDP(f *testing.F) {
	for _, seed := range [][]byte{linphoneOffer, trunkOffer, baresipOffer,
		[]byte("v=0\r\n"), []byte("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"),
		[]byte("v=0\r\no=- 1 1 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=rtcp:9 IN IP6 ::1\r\n"),
		savpOffer("1 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20", "2 AES_CM_128_HMAC_SHA1_80 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj|2^20|1:32"),
	} {
		f.Add(seed)
	}
	local := netip.MustParseAddrPort("127.0.0.1:40000")
	f.Fuzz(func(t *testing.T, body []byte) {
		si, err := ParseSDP(body)
		if err != nil {
			return
		}
		ans, neg, err := BuildAnswer(si, local, []Codec{CodecPCMU, CodecPCMA})
		if err != nil {
			return
		}
		if neg == nil || len(neg.Codecs) == 0 {
			t.Fatal("answer without codecs")
		}
		back, err := ParseSDP(ans)
		if err != nil {
			t.Fatalf("our own answer does not parse: %v\n%s", err, ans)
		}
		if back.SRTP != si.SRTP || si.SRTP && (len(back.Crypto) != 1 || neg.Ours == nil || back.Crypto[0].Tag != neg.Theirs.Tag) {
			t.Fatalf("answer's SRTP %v %+v to an offer's %v %+v", back.SRTP, back.Crypto, si.SRTP, si.Crypto)
		}
	})
}

// FuzzDecodeTelephoneEvent: payloads and packet sequences from the network
// never panic the RFC 4733 decoder.
func FuzzDecodeTelephoneEvent(f *testing.F) {
	f.Add([]byte{1, 0x0a, 0x00, 0xa0}, uint32(8000), uint32(1))
	f.Add([]byte{1, 0x8a, 0x03, 0x20, 1, 0x8a, 0x03, 0x20}, uint32(0), uint32(0))
	f.Add([]byte{255, 255, 255, 255}, uint32(1), uint32(2))
	f.Add([]byte{}, uint32(0), uint32(0))
	f.Fuzz(func(t *testing.T, payload []byte, ts, ssrc uint32) {
		ev, err := DecodeTelephoneEvent(payload)
		if err == nil {
			if got := ev.AppendTo(nil); len(payload) >= 4 && (got[0] != payload[0] || got[2] != payload[2] || got[3] != payload[3]) {
				t.Fatalf("round trip %v → %v", payload[:4], got)
			}
		}
		d := NewDTMFDecoder()
		// Feed the payload as a stream of 4-byte events with shifting
		// timestamps, as a hostile peer might.
		for i := 0; i+4 <= len(payload) && i < 256; i += 4 {
			p := &rtp.Packet{Header: rtp.Header{Timestamp: ts + uint32(payload[i]%3)*160, SSRC: ssrc}, Payload: payload[i : i+4]}
			if r, ok := d.Decode(p); ok {
				if _, valid := DigitEvent(r); !valid {
					t.Fatalf("decoded non-digit %q", r)
				}
			}
		}
		d.Flush()
	})
}
