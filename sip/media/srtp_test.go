package media

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

func TestParseCrypto(t *testing.T) {
	key := bytes.Repeat([]byte{7}, keyLen)
	k64 := base64.StdEncoding.EncodeToString(key)
	for _, c := range []struct {
		in   string
		ok   bool
		want Crypto
	}{
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + k64, true, Crypto{1, SuiteAES80, key}},
		{"2 AES_CM_128_HMAC_SHA1_32 inline:" + k64 + "|2^20", true, Crypto{2, SuiteAES32, key}},
		{"3 AES_CM_128_HMAC_SHA1_80 inline:" + strings.TrimRight(k64, "=") + " KDR=0", true, Crypto{3, SuiteAES80, key}},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + k64 + "|2^20|1:4", false, Crypto{}}, // MKI
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + k64 + "|1:4", false, Crypto{}},
		{"1 AES_256_CM_HMAC_SHA1_80 inline:" + k64, false, Crypto{}},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:!!!!", false, Crypto{}},
		{"1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.StdEncoding.EncodeToString(key[:20]), false, Crypto{}},
		{"1 AES_CM_128_HMAC_SHA1_80 " + k64, false, Crypto{}},
		{"x AES_CM_128_HMAC_SHA1_80 inline:" + k64, false, Crypto{}},
		{"1 AES_CM_128_HMAC_SHA1_80", false, Crypto{}},
		{"", false, Crypto{}},
	} {
		got, ok := parseCrypto(c.in)
		if ok != c.ok || ok && (got.Tag != c.want.Tag || got.Suite != c.want.Suite || !bytes.Equal(got.Key, c.want.Key)) {
			t.Errorf("%q: %+v %v; want %+v %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

// savpOffer is an RTP/SAVP offer with cryptos, each an a=crypto value.
func savpOffer(cryptos ...string) []byte {
	b := "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/SAVP 8 101\r\n" +
		"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
	for _, c := range cryptos {
		b += "a=crypto:" + c + "\r\n"
	}
	return []byte(b)
}

// An RTP/SAVP offer is answered RTP/SAVP with the first crypto of a suite
// we do, under its tag, and our own key; the answer to the same offer
// again keeps our key; a plain offer gets a plain answer; an RTP/SAVP
// offer with no crypto we do is refused. Our offer with a key is
// RTP/SAVP and reads back with that key.
func TestSDPAnswersSRTP(t *testing.T) {
	theirs, _ := NewCrypto(2, SuiteAES80)
	offer, err := ParseSDP(savpOffer("1 AES_256_CM_HMAC_SHA1_80 inline:"+base64.StdEncoding.EncodeToString(make([]byte, 46)), theirs.String()))
	if err != nil {
		t.Fatal(err)
	}
	if !offer.SRTP || len(offer.Crypto) != 1 || offer.Crypto[0].Tag != 2 {
		t.Fatalf("offer read as SRTP %v with %+v", offer.SRTP, offer.Crypto)
	}
	b := NewSDPBuilder("cleanline")
	local := netip.MustParseAddrPort("127.0.0.1:20000")
	body, neg, err := b.Answer(offer, local, []Codec{CodecPCMA})
	if err != nil {
		t.Fatal(err)
	}
	ans, err := ParseSDP(body)
	if err != nil {
		t.Fatal(err)
	}
	if !ans.SRTP || len(ans.Crypto) != 1 || ans.Crypto[0].Tag != 2 || ans.Crypto[0].Suite != SuiteAES80 {
		t.Fatalf("answer SRTP %v crypto %+v; want tag 2 %s\n%s", ans.SRTP, ans.Crypto, SuiteAES80, body)
	}
	if !bytes.Equal(neg.Theirs.Key, theirs.Key) || !bytes.Equal(neg.Ours.Key, ans.Crypto[0].Key) || bytes.Equal(neg.Ours.Key, theirs.Key) {
		t.Fatalf("negotiated theirs %x ours %x; answer has %x", neg.Theirs.Key, neg.Ours.Key, ans.Crypto[0].Key)
	}
	_, again, err := b.Answer(offer, local, []Codec{CodecPCMA})
	if err != nil || !bytes.Equal(again.Ours.Key, neg.Ours.Key) {
		t.Fatalf("a re-offer's answer changed our key (%v)", err)
	}
	plain, err := ParseSDP([]byte(strings.ReplaceAll(string(savpOffer()), "RTP/SAVP", "RTP/AVP")))
	if err != nil {
		t.Fatal(err)
	}
	body, neg, err = b.Answer(plain, local, []Codec{CodecPCMA})
	if err != nil || neg.Ours != nil || strings.Contains(string(body), "SAVP") || strings.Contains(string(body), "crypto") {
		t.Fatalf("plain offer: %v, %+v\n%s", err, neg, body)
	}
	none, err := ParseSDP(savpOffer("1 F8_128_HMAC_SHA1_80 inline:" + base64.StdEncoding.EncodeToString(make([]byte, keyLen))))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Answer(none, local, []Codec{CodecPCMA}); !errors.Is(err, ErrNoCommonCrypto) {
		t.Fatalf("an offer without a crypto we do: %v; want ErrNoCommonCrypto", err)
	}

	ours, _ := NewCrypto(1, SuiteAES80)
	o := NewSDPBuilder("cleanline")
	o.SetCrypto(ours)
	body, err = o.Offer(local, SendRecv, CodecPCMA, CodecTelephoneEvent)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSDP(body)
	if err != nil || !back.SRTP || len(back.Crypto) != 1 || !bytes.Equal(back.Crypto[0].Key, ours.Key) {
		t.Fatalf("our offer read back: %v %+v\n%s", err, back, body)
	}
}

// peerSRTP is a peer's side of an SRTP leg: it encrypts with its key and
// decrypts with ours, as a phone that answered would.
type peerSRTP struct{ enc, dec *srtp.Context }

func newPeerSRTP(t *testing.T, theirs, ours *Crypto) *peerSRTP {
	t.Helper()
	p := suites[theirs.Suite]
	enc, err := srtp.CreateContext(theirs.Key[:16], theirs.Key[16:], p)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := srtp.CreateContext(ours.Key[:16], ours.Key[16:], p)
	if err != nil {
		t.Fatal(err)
	}
	return &peerSRTP{enc: enc, dec: dec}
}

// The trunk leg speaks SRTP, the line leg plain RTP: what the trunk's peer
// encrypts reaches the line as the plain packet, what the line sends
// reaches the trunk encrypted with our key, and so does a prompt. A
// packet from the trunk peer's own address that fails authentication (a
// forged one, under another key) or comes again (a replay) is dropped and
// counted, and reaches nobody.
func TestRelaySRTP(t *testing.T) {
	r, trunk, line := bridgedCall(t, RelayConfig{})
	theirs, _ := NewCrypto(1, SuiteAES80)
	ours, _ := NewCrypto(1, SuiteAES80)
	if err := r.Trunk().SetSRTP(theirs, ours); err != nil {
		t.Fatal(err)
	}
	ps := newPeerSRTP(t, theirs, ours)
	var sent []byte
	for i := range 3 {
		plain := rtpBytes(t, 8, uint16(i), 0x1111, bytes.Repeat([]byte{byte(i + 1)}, 160))
		enc, err := ps.enc.EncryptRTP(nil, plain, nil)
		if err != nil {
			t.Fatal(err)
		}
		send(t, trunk.rtp, r.Trunk().LocalAddr(), enc)
		got, _, ok := recv(t, line.rtp, time.Second)
		if !ok || !bytes.Equal(got, plain) {
			t.Fatalf("packet %d: the line got %x, ok %v; want the plain packet", i, got, ok)
		}
		sent = enc
	}
	// Line to trunk: encrypted with our key.
	plain := rtpBytes(t, 8, 7, 0x2222, bytes.Repeat([]byte{0xD5}, 160))
	send(t, line.rtp, r.Line().LocalAddr(), plain)
	got, _, ok := recv(t, trunk.rtp, time.Second)
	if !ok || bytes.Equal(got, plain) {
		t.Fatalf("the trunk got %d bytes, ok %v; want them encrypted", len(got), ok)
	}
	dec, err := ps.dec.DecryptRTP(nil, got, nil)
	if err != nil || !bytes.Equal(dec, plain) {
		t.Fatalf("the trunk's packet does not decrypt with our key to the line's: %v", err)
	}
	// A prompt (WriteRTP) too.
	if err := r.Trunk().WriteRTP(&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 8, SequenceNumber: 9, SSRC: 0x3333}, Payload: make([]byte, 160)}); err != nil {
		t.Fatal(err)
	}
	if got, _, ok = recv(t, trunk.rtp, time.Second); !ok {
		t.Fatal("no prompt packet")
	}
	if _, err := ps.dec.DecryptRTP(nil, got, nil); err != nil {
		t.Fatalf("the prompt packet does not decrypt with our key: %v", err)
	}
	// Forged (another key) and replayed packets from the peer's address.
	forger := newPeerSRTP(t, ours, ours)
	forged, err := forger.enc.EncryptRTP(nil, rtpBytes(t, 8, 50, 0x1111, make([]byte, 160)), nil)
	if err != nil {
		t.Fatal(err)
	}
	before := r.Stats().Trunk
	send(t, trunk.rtp, r.Trunk().LocalAddr(), forged)
	send(t, trunk.rtp, r.Trunk().LocalAddr(), sent)
	waitFor(t, "two packets failing SRTP", func() bool { return r.Stats().Trunk.SRTPFailed-before.SRTPFailed >= 2 })
	if _, _, ok := recv(t, line.rtp, 100*time.Millisecond); ok {
		t.Fatal("a forged or replayed packet reached the line")
	}
	st := r.Stats().Trunk
	if st.PacketsIn != before.PacketsIn || st.Dropped-before.Dropped != 2 || !st.SRTP {
		t.Errorf("after a forgery and a replay: %+v (before %+v)", st, before)
	}
	// The same keys again keep the contexts (a re-INVITE): the next packet
	// in sequence still decrypts, and a plain leg is plain again.
	if err := r.Trunk().SetSRTP(&Crypto{Tag: 1, Suite: theirs.Suite, Key: theirs.Key}, ours); err != nil {
		t.Fatal(err)
	}
	next, _ := ps.enc.EncryptRTP(nil, rtpBytes(t, 8, 3, 0x1111, make([]byte, 160)), nil)
	send(t, trunk.rtp, r.Trunk().LocalAddr(), next)
	if _, _, ok := recv(t, line.rtp, time.Second); !ok {
		t.Fatal("the same keys again lost the stream")
	}
	if err := r.Trunk().SetSRTP(nil, nil); err != nil || r.Trunk().SRTP() {
		t.Fatalf("back to plain: %v, %v", err, r.Trunk().SRTP())
	}
}
