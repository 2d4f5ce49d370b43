package media

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

// SRTP with keys in SDP (SDES, RFC 4568): a leg whose peer wants its media
// encrypted (RTP/SAVP) decrypts and authenticates what the peer sends
// with the peer's key, and encrypts what goes to the peer with ours; the
// other leg may be plain. A packet that fails authentication (a forged
// or replayed one, even from the peer's own address) is dropped before it
// is counted, decoded for DTMF or relayed. The keys travel in the SDP: they
// are as private as the signalling (TLS) that carries them.

// ErrNoCommonCrypto: an RTP/SAVP offer has no a=crypto of a suite we do.
var ErrNoCommonCrypto = errors.New("media: no supported SRTP crypto suite offered")

// The crypto suites we do (RFC 4568 §6.2), in our order of preference:
// both AES-CM-128 with HMAC-SHA1, 30-byte inline keys (16 key, 14 salt).
const (
	SuiteAES80 = "AES_CM_128_HMAC_SHA1_80"
	SuiteAES32 = "AES_CM_128_HMAC_SHA1_32"
)

var suites = map[string]srtp.ProtectionProfile{
	SuiteAES80: srtp.ProtectionProfileAes128CmHmacSha1_80,
	SuiteAES32: srtp.ProtectionProfileAes128CmHmacSha1_32,
}

// keyLen is an AES-CM-128 master key and salt (RFC 4568 §6.2.1).
const keyLen = 16 + 14

// replayWindow is how many packets back a late one is still taken once
// (RFC 3711 §3.3.2: at least 64).
const replayWindow = 128

// Crypto is one a=crypto attribute: its tag, suite and inline key (master
// key then salt).
type Crypto struct {
	Tag   int
	Suite string
	Key   []byte
}

// NewCrypto is a fresh random key for suite under tag.
func NewCrypto(tag int, suite string) (*Crypto, error) {
	if _, ok := suites[suite]; !ok {
		return nil, fmt.Errorf("media: SRTP suite %q not supported", suite)
	}
	c := &Crypto{Tag: tag, Suite: suite, Key: make([]byte, keyLen)}
	_, _ = rand.Read(c.Key) // crypto/rand.Read never fails (Go 1.24+)
	return c, nil
}

// String is the attribute's value: "1 AES_CM_128_HMAC_SHA1_80 inline:...".
func (c *Crypto) String() string {
	return fmt.Sprintf("%d %s inline:%s", c.Tag, c.Suite, base64.StdEncoding.EncodeToString(c.Key))
}

func (c *Crypto) equal(o *Crypto) bool {
	return c == nil && o == nil || c != nil && o != nil && c.Suite == o.Suite && bytes.Equal(c.Key, o.Key)
}

// parseCrypto reads a=crypto's value (RFC 4568 §9.1): tag, suite, and
// the first key's "inline:" parameters (key||salt, then an optional
// |lifetime and |MKI:length, which we do not use: a key with an MKI is
// refused, as we would not send the MKI). ok is false for a suite we do
// not do or anything malformed.
func parseCrypto(v string) (Crypto, bool) {
	f := strings.Fields(v)
	if len(f) < 3 {
		return Crypto{}, false
	}
	tag, err := strconv.Atoi(f[0])
	if err != nil || tag < 0 || tag > 999999999 {
		return Crypto{}, false
	}
	if _, ok := suites[f[1]]; !ok {
		return Crypto{}, false
	}
	key, ok := strings.CutPrefix(strings.SplitN(f[2], ";", 2)[0], "inline:")
	if !ok {
		return Crypto{}, false
	}
	parts := strings.Split(key, "|")
	if len(parts) > 2 || len(parts) == 2 && strings.Contains(parts[1], ":") {
		return Crypto{}, false // an MKI (with or without a lifetime)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[0])
	if err != nil {
		if raw, err = base64.RawStdEncoding.DecodeString(parts[0]); err != nil {
			return Crypto{}, false
		}
	}
	if len(raw) != keyLen {
		return Crypto{}, false
	}
	return Crypto{Tag: tag, Suite: f[1], Key: raw}, true
}

// legSRTP is a leg's encryption: the contexts of both directions and the
// buffers they work in.
type legSRTP struct {
	theirs, ours *Crypto

	imu sync.Mutex    // in and its headers: the RTP and RTCP receive loops both open
	in  *srtp.Context // what the peer sends: its key
	rh  rtp.Header
	rch rtcp.Header

	mu   sync.Mutex    // out and obuf: the relay and the player both send
	out  *srtp.Context // what we send: our key
	oh   rtp.Header
	och  rtcp.Header
	obuf [maxPacket + 32]byte // room for SRTCP's index and either tag
}

func newLegSRTP(theirs, ours *Crypto) (*legSRTP, error) {
	if theirs.Suite != ours.Suite {
		return nil, fmt.Errorf("media: SRTP suites differ: theirs %s, ours %s", theirs.Suite, ours.Suite)
	}
	profile := suites[theirs.Suite]
	in, err := srtp.CreateContext(theirs.Key[:16], theirs.Key[16:], profile,
		srtp.SRTPReplayProtection(replayWindow), srtp.SRTCPReplayProtection(replayWindow))
	if err != nil {
		return nil, fmt.Errorf("media: SRTP context for the peer's key: %w", err)
	}
	out, err := srtp.CreateContext(ours.Key[:16], ours.Key[16:], profile)
	if err != nil {
		return nil, fmt.Errorf("media: SRTP context for our key: %w", err)
	}
	return &legSRTP{theirs: theirs, ours: ours, in: in, out: out}, nil
}

// SetSRTP makes the leg's media SRTP with the peer's key theirs and ours,
// or plain with both nil. The same keys again (a re-INVITE that keeps
// them) change nothing: the contexts and their rollover counters go on.
func (l *Leg) SetSRTP(theirs, ours *Crypto) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.srtp.Load()
	if theirs == nil || ours == nil {
		l.srtp.Store(nil)
		return nil
	}
	if cur != nil && cur.theirs.equal(theirs) && cur.ours.equal(ours) {
		return nil
	}
	s, err := newLegSRTP(theirs, ours)
	if err != nil {
		return err
	}
	l.srtp.Store(s)
	return nil
}

// SRTP reports whether the leg's media is encrypted.
func (l *Leg) SRTP() bool { return l.srtp.Load() != nil }

// open decrypts and authenticates a packet the peer sent, in place (b is
// its receive loop's buffer, as in pion's own sessions); false: it fails
// (forged, replayed, or not SRTP), and is dropped. Plain legs pass b.
func (l *Leg) open(b []byte, rtcpPkt bool) ([]byte, bool) {
	s := l.srtp.Load()
	if s == nil {
		return b, true
	}
	s.imu.Lock()
	defer s.imu.Unlock()
	var out []byte
	var err error
	if rtcpPkt {
		out, err = s.in.DecryptRTCP(b, b, &s.rch)
	} else {
		out, err = s.in.DecryptRTP(b, b, &s.rh)
	}
	if err != nil {
		l.srtpFailed.Add(1)
		return nil, false
	}
	return out, true
}

// write sends b (RTP, or RTCP with rtcpPkt) to the peer at addr over
// conn, encrypted on an SRTP leg.
func (l *Leg) write(conn *net.UDPConn, addr netip.AddrPort, b []byte, rtcpPkt bool) error {
	s := l.srtp.Load()
	if s == nil {
		_, err := conn.WriteToUDPAddrPort(b, addr)
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []byte
	var err error
	if rtcpPkt {
		out, err = s.out.EncryptRTCP(s.obuf[:0], b, &s.och)
	} else {
		out, err = s.out.EncryptRTP(s.obuf[:0], b, &s.oh)
	}
	if err != nil {
		return fmt.Errorf("media: SRTP for %s leg: %w", l.side, err)
	}
	_, err = conn.WriteToUDPAddrPort(out, addr)
	return err
}
