package media

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/pion/sdp/v3"
)

// SDP offer/answer (RFC 3264) for one audio stream, on pion/sdp.

var (
	// ErrSDP is wrapped by every SDP error of this package: the body could
	// not be used, and the B2BUA answers 488 Not Acceptable Here
	// (RFC 3261 §21.4.26).
	ErrSDP = errors.New("media: unusable SDP")
	// ErrNoCommonCodec means the offer has no codec we support; it wraps
	// ErrSDP, so it too is answered with 488.
	ErrNoCommonCodec = fmt.Errorf("%w: no common codec", ErrSDP)
)

// RTP payload types of RFC 3551 §6 Table 4 that this package speaks.
const (
	PayloadTypePCMU uint8 = 0
	PayloadTypePCMA uint8 = 8
)

// Codec is one RTP payload format as named in SDP.
type Codec struct {
	PT       uint8
	Name     string // encoding name as in rtpmap, e.g. "PCMU", "telephone-event"
	Rate     uint32 // RTP clock rate
	Channels int    // 0 when not given (means 1 for audio)
	Fmtp     string // format parameters, e.g. "0-16" for telephone-event
}

func (c Codec) String() string { return fmt.Sprintf("%d %s/%d", c.PT, c.Name, c.Rate) }

// rtpmap renders the a=rtpmap value.
func (c Codec) rtpmap() string {
	s := fmt.Sprintf("%d %s/%d", c.PT, c.Name, c.Rate)
	if c.Channels > 1 {
		s += "/" + strconv.Itoa(c.Channels)
	}
	return s
}

// same reports whether two codecs are the same format, whatever their PT.
func (c Codec) same(o Codec) bool {
	return strings.EqualFold(c.Name, o.Name) && c.Rate == o.Rate && max(c.Channels, 1) == max(o.Channels, 1)
}

// IsTelephoneEvent reports whether c is RFC 4733 telephone-event.
func (c Codec) IsTelephoneEvent() bool { return strings.EqualFold(c.Name, "telephone-event") }

// The codecs cleanline offers by default: G.711 both laws and DTMF events.
var (
	CodecPCMU           = Codec{PT: PayloadTypePCMU, Name: "PCMU", Rate: 8000}
	CodecPCMA           = Codec{PT: PayloadTypePCMA, Name: "PCMA", Rate: 8000}
	CodecTelephoneEvent = Codec{PT: 101, Name: "telephone-event", Rate: 8000, Fmtp: "0-16"}
)

// staticCodec is RFC 3551 §6 Table 4, for offers that list static payload
// types without rtpmap (RFC 4566 §6 makes rtpmap optional for them).
func staticCodec(pt uint8) (Codec, bool) {
	names := map[uint8]string{0: "PCMU", 3: "GSM", 4: "G723", 8: "PCMA", 9: "G722", 15: "G728", 18: "G729"}
	n, ok := names[pt]
	// RFC 3551 §4.5.2: G.722's RTP clock is 8000 although it samples at 16 kHz.
	return Codec{PT: pt, Name: n, Rate: 8000}, ok
}

// Direction is an SDP media direction attribute (RFC 3264 §5.1).
type Direction string

const (
	SendRecv Direction = "sendrecv"
	SendOnly Direction = "sendonly"
	RecvOnly Direction = "recvonly"
	Inactive Direction = "inactive"
)

// Reverse is the direction an answer gives for an offer (RFC 3264 §6.1):
// "If a stream is offered as sendonly, the corresponding stream MUST be
// marked as recvonly or inactive in the answer."
func (d Direction) Reverse() Direction {
	switch d {
	case SendOnly:
		return RecvOnly
	case RecvOnly:
		return SendOnly
	case Inactive:
		return Inactive
	}
	return SendRecv
}

// SessionInfo is what a B2BUA needs from a peer's SDP: where its audio goes
// and what it can carry.
type SessionInfo struct {
	SessionID, SessionVersion uint64 // o= line, to detect a changed session

	// RTP is the audio stream's connection address and port. With c=0.0.0.0
	// (RFC 2543-style hold) the address is 0.0.0.0 and Hold is set.
	RTP netip.AddrPort
	// RTCP is the a=rtcp address (RFC 3605) if RTCPExplicit, else RTP port+1.
	RTCP         netip.AddrPort
	RTCPExplicit bool
	RTCPMux      bool // a=rtcp-mux (RFC 5761)

	// Codecs are the audio formats in the offerer's order of preference,
	// without telephone-event.
	Codecs []Codec
	// TelephoneEvent is the RFC 4733 format at 8000 Hz, nil if absent.
	TelephoneEvent *Codec

	Direction Direction
	// Hold is set when the peer will not receive audio: sendonly, inactive
	// or c=0.0.0.0 (RFC 3264 §8.4).
	Hold bool
	// SRTP is set for an RTP/SAVP stream (RFC 3711); Crypto are its
	// a=crypto lines of suites we do, in the offerer's order (RFC 4568).
	SRTP   bool
	Crypto []Crypto
	// Disabled means the audio m-line has port 0: the stream is rejected.
	Disabled bool
	Ptime    int // a=ptime in ms, 0 if absent

	desc  *sdp.SessionDescription
	audio int // index of the audio m-line in desc
}

func sdpErr(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrSDP}, a...)...)
}

// ParseSDP extracts the first audio stream of an SDP body. Errors wrap ErrSDP.
func ParseSDP(body []byte) (si *SessionInfo, err error) {
	defer func() {
		// pion/sdp is well tested, but a malformed body from the network
		// must never take the B2BUA down.
		if r := recover(); r != nil {
			si, err = nil, sdpErr("parser panic: %v", r)
		}
	}()
	var desc sdp.SessionDescription
	if err := desc.Unmarshal(body); err != nil {
		return nil, sdpErr("%v", err)
	}
	si = &SessionInfo{desc: &desc, audio: -1,
		SessionID: desc.Origin.SessionID, SessionVersion: desc.Origin.SessionVersion}
	var md *sdp.MediaDescription
	for i, m := range desc.MediaDescriptions {
		if m.MediaName.Media == "audio" {
			md, si.audio = m, i
			break
		}
	}
	if md == nil {
		return nil, sdpErr("no audio m-line")
	}
	switch {
	case hasProto(md.MediaName.Protos, "RTP", "AVP"):
	case hasProto(md.MediaName.Protos, "RTP", "SAVP"):
		si.SRTP = true
	default:
		return nil, sdpErr("audio transport %q is not RTP/AVP nor RTP/SAVP", strings.Join(md.MediaName.Protos, "/"))
	}
	port := md.MediaName.Port.Value
	if port < 0 || port > 65535 {
		return nil, sdpErr("audio port %d out of range", port)
	}
	si.Disabled = port == 0

	ci := md.ConnectionInformation
	if ci == nil {
		ci = desc.ConnectionInformation
	}
	if ci == nil || ci.Address == nil {
		return nil, sdpErr("no c= line for audio")
	}
	if ci.NetworkType != "IN" || (ci.AddressType != "IP4" && ci.AddressType != "IP6") {
		return nil, sdpErr("connection %s %s not supported", ci.NetworkType, ci.AddressType)
	}
	addr, err := netip.ParseAddr(ci.Address.Address)
	if err != nil {
		return nil, sdpErr("connection address %q is not an IP address", ci.Address.Address)
	}
	addr = addr.Unmap()
	si.RTP = netip.AddrPortFrom(addr, uint16(port))
	si.RTCP = rtcpFor(si.RTP)

	si.Direction = SendRecv
	if d := attrDirection(desc.Attributes); d != "" {
		si.Direction = d
	}
	if d := attrDirection(md.Attributes); d != "" {
		si.Direction = d
	}
	si.Hold = si.Direction == SendOnly || si.Direction == Inactive || addr.IsUnspecified()

	rtpmaps := map[uint8]Codec{}
	fmtps := map[uint8]string{}
	for _, a := range md.Attributes {
		switch a.Key {
		case "rtpmap":
			c, err := parseRtpmap(a.Value)
			if err != nil {
				return nil, err
			}
			rtpmaps[c.PT] = c
		case "fmtp":
			pt, rest, ok := strings.Cut(a.Value, " ")
			if n, err := strconv.ParseUint(pt, 10, 7); ok && err == nil {
				fmtps[uint8(n)] = strings.TrimSpace(rest)
			}
		case "rtcp":
			// RFC 3605 §2.1: a=rtcp:<port> [<nettype> <addrtype> <addr>]
			f := strings.Fields(a.Value)
			if len(f) == 0 {
				return nil, sdpErr("empty a=rtcp")
			}
			p, err := strconv.ParseUint(f[0], 10, 16)
			if err != nil || p == 0 {
				return nil, sdpErr("bad a=rtcp port %q", f[0])
			}
			ra := addr
			if len(f) >= 4 {
				if ra, err = netip.ParseAddr(f[3]); err != nil {
					return nil, sdpErr("bad a=rtcp address %q", f[3])
				}
			}
			si.RTCP, si.RTCPExplicit = netip.AddrPortFrom(ra.Unmap(), uint16(p)), true
		case "rtcp-mux":
			si.RTCPMux = true
		case "crypto":
			if c, ok := parseCrypto(a.Value); ok && si.SRTP {
				si.Crypto = append(si.Crypto, c)
			}
		case "ptime":
			if n, err := strconv.Atoi(strings.TrimSpace(a.Value)); err == nil && n > 0 && n <= 1000 {
				si.Ptime = n
			}
		}
	}
	for _, f := range md.MediaName.Formats {
		n, err := strconv.ParseUint(f, 10, 7)
		if err != nil {
			return nil, sdpErr("payload type %q in m=audio is not 0-127", f)
		}
		pt := uint8(n)
		c, ok := rtpmaps[pt]
		if !ok {
			if c, ok = staticCodec(pt); !ok {
				continue // dynamic PT without rtpmap: unusable, skip it
			}
		}
		c.Fmtp = fmtps[pt]
		if c.IsTelephoneEvent() {
			if c.Rate == 8000 && si.TelephoneEvent == nil {
				te := c
				si.TelephoneEvent = &te
			}
			continue
		}
		si.Codecs = append(si.Codecs, c)
	}
	if len(md.MediaName.Formats) == 0 {
		return nil, sdpErr("m=audio lists no formats")
	}
	return si, nil
}

func hasProto(protos []string, want ...string) bool {
	if len(protos) != len(want) {
		return false
	}
	for i := range protos {
		if protos[i] != want[i] {
			return false
		}
	}
	return true
}

func attrDirection(attrs []sdp.Attribute) Direction {
	var d Direction
	for _, a := range attrs {
		switch Direction(a.Key) {
		case SendRecv, SendOnly, RecvOnly, Inactive:
			d = Direction(a.Key)
		}
	}
	return d
}

// parseRtpmap reads "<pt> <name>/<rate>[/<channels>]" (RFC 4566 §6).
func parseRtpmap(v string) (Codec, error) {
	pt, enc, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok {
		return Codec{}, sdpErr("bad a=rtpmap %q", v)
	}
	n, err := strconv.ParseUint(pt, 10, 7)
	if err != nil {
		return Codec{}, sdpErr("bad a=rtpmap payload type %q", pt)
	}
	parts := strings.Split(strings.TrimSpace(enc), "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
		return Codec{}, sdpErr("bad a=rtpmap encoding %q", enc)
	}
	rate, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil || rate == 0 {
		return Codec{}, sdpErr("bad a=rtpmap clock rate %q", parts[1])
	}
	c := Codec{PT: uint8(n), Name: parts[0], Rate: uint32(rate)}
	if len(parts) == 3 {
		ch, err := strconv.Atoi(parts[2])
		if err != nil || ch < 1 || ch > 8 {
			return Codec{}, sdpErr("bad a=rtpmap channels %q", parts[2])
		}
		c.Channels = ch
	}
	return c, nil
}

// Negotiated is the outcome of an offer/answer exchange for the B2BUA.
type Negotiated struct {
	// Codec is what to send: the first offered codec we support
	// (RFC 3264 §6.1: the offerer's order is its preference).
	Codec Codec
	// Codecs are all common codecs, in the answer's order.
	Codecs []Codec
	// TelephoneEvent is the agreed RFC 4733 format (offerer's PT), or nil.
	TelephoneEvent *Codec
	// Direction is the direction written in the answer.
	Direction Direction
	RTCPMux   bool
	// Theirs and Ours are the SRTP keys agreed (the offer's crypto we took,
	// and ours in the answer, same tag and suite); nil for plain RTP.
	Theirs, Ours *Crypto
}

// SDPBuilder writes the SDP of one side of one call: its o= session id is
// random and stays the same, and the version goes up with every description
// it writes, as RFC 3264 §5 requires for a changed session ("the version
// MUST be incremented by one"). Safe for concurrent use.
type SDPBuilder struct {
	mu       sync.Mutex
	user     string
	id       uint64
	version  uint64
	lastBody []byte
	crypto   *Crypto // our SRTP key in what it writes; nil: RTP/AVP
}

// SetCrypto makes the offers written from now on RTP/SAVP with our key c
// (nil: plain RTP/AVP). An answer to an RTP/SAVP offer sets it itself.
func (b *SDPBuilder) SetCrypto(c *Crypto) {
	b.mu.Lock()
	b.crypto = c
	b.mu.Unlock()
}

// Crypto is our key in what it writes, nil for plain RTP.
func (b *SDPBuilder) Crypto() *Crypto {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.crypto
}

// NewSDPBuilder returns a builder; user is the o= username ("-" if empty).
func NewSDPBuilder(user string) *SDPBuilder {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	if user == "" || strings.ContainsAny(user, " \r\n") {
		user = "-"
	}
	// RFC 4566 §5.2 suggests an NTP timestamp; any unique number works and
	// 62 bits keep it positive for peers that parse it as a signed int.
	return &SDPBuilder{user: user, id: binary.BigEndian.Uint64(b[:]) >> 2, version: 1}
}

// Offer writes an offer for one audio stream at local with the codecs in
// the given order (include CodecTelephoneEvent to receive DTMF as RTP).
func (b *SDPBuilder) Offer(local netip.AddrPort, dir Direction, codecs ...Codec) ([]byte, error) {
	if len(codecs) == 0 {
		return nil, sdpErr("offer without codecs")
	}
	return b.write(local, dir, codecs, false, nil)
}

// Answer writes the answer to offer (RFC 3264 §6): the offered codecs that
// are in supported, with the offerer's payload type numbers and order, plus
// telephone-event if offered, with the direction mirrored. Non-audio streams
// and any audio stream after the first are refused with port 0 (§6: the
// answer has as many m-lines as the offer, in the same order). No common
// codec gives ErrNoCommonCodec.
func (b *SDPBuilder) Answer(offer *SessionInfo, local netip.AddrPort, supported []Codec) ([]byte, *Negotiated, error) {
	if offer == nil || offer.desc == nil {
		return nil, nil, sdpErr("no offer")
	}
	if offer.Disabled {
		// RFC 3264 §6: a stream offered with port 0 stays rejected; with no
		// audio there is no call for cleanline to screen.
		return nil, nil, sdpErr("audio stream disabled (port 0) in the offer")
	}
	neg := &Negotiated{RTCPMux: offer.RTCPMux}
	for _, oc := range offer.Codecs {
		for _, sc := range supported {
			if oc.same(sc) {
				neg.Codecs = append(neg.Codecs, oc)
				break
			}
		}
	}
	if len(neg.Codecs) == 0 {
		return nil, nil, fmt.Errorf("%w (offered %v, supported %v)", ErrNoCommonCodec, offer.Codecs, supported)
	}
	neg.Codec = neg.Codecs[0]
	codecs := neg.Codecs
	if offer.TelephoneEvent != nil {
		te := *offer.TelephoneEvent
		neg.TelephoneEvent = &te
		codecs = append(codecs[:len(codecs):len(codecs)], te)
	}
	dir := offer.Direction
	if offer.RTP.Addr().IsUnspecified() && dir == SendRecv {
		dir = SendOnly // c=0.0.0.0: the offerer will not receive
	}
	neg.Direction = dir.Reverse()
	if err := b.answerCrypto(offer, neg); err != nil {
		return nil, nil, err
	}
	body, err := b.write(local, neg.Direction, codecs, offer.RTCPMux, offer)
	if err != nil {
		return nil, nil, err
	}
	return body, neg, nil
}

// answerCrypto picks the SRTP key of an RTP/SAVP offer (RFC 4568 §7.1.1:
// the first crypto of a suite we do) and answers it with ours under its
// tag: the key we already use if the suite is the same (a re-INVITE keeps
// the keys), else a new one. A plain offer gets a plain answer.
func (b *SDPBuilder) answerCrypto(offer *SessionInfo, neg *Negotiated) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !offer.SRTP {
		b.crypto = nil
		return nil
	}
	if len(offer.Crypto) == 0 {
		return ErrNoCommonCrypto
	}
	theirs := offer.Crypto[0]
	ours := b.crypto
	if ours == nil || ours.Suite != theirs.Suite {
		var err error
		if ours, err = NewCrypto(theirs.Tag, theirs.Suite); err != nil {
			return err
		}
	} else if ours.Tag != theirs.Tag {
		ours = &Crypto{Tag: theirs.Tag, Suite: ours.Suite, Key: ours.Key}
	}
	b.crypto = ours
	neg.Theirs, neg.Ours = &theirs, ours
	return nil
}

func (b *SDPBuilder) write(local netip.AddrPort, dir Direction, codecs []Codec, mux bool, offer *SessionInfo) ([]byte, error) {
	if !local.IsValid() || local.Port() == 0 {
		return nil, sdpErr("local address %s has no port", local)
	}
	switch dir {
	case SendRecv, SendOnly, RecvOnly, Inactive:
	case "":
		dir = SendRecv
	default:
		return nil, sdpErr("unknown direction %q", dir)
	}
	ip := local.Addr().Unmap()
	addrType := "IP4"
	if ip.Is6() {
		addrType = "IP6"
	}
	audio := &sdp.MediaDescription{
		MediaName: sdp.MediaName{
			Media: "audio", Port: sdp.RangedPort{Value: int(local.Port())},
			Protos: []string{"RTP", "AVP"},
		},
	}
	for _, c := range codecs {
		audio.MediaName.Formats = append(audio.MediaName.Formats, strconv.Itoa(int(c.PT)))
	}
	for _, c := range codecs {
		audio.Attributes = append(audio.Attributes, sdp.NewAttribute("rtpmap", c.rtpmap()))
		if c.Fmtp != "" {
			audio.Attributes = append(audio.Attributes, sdp.NewAttribute("fmtp", fmt.Sprintf("%d %s", c.PT, c.Fmtp)))
		}
	}
	// RFC 3551 §4.5: 20 ms is the default packetisation for G.711, and
	// the prompt player sends 20 ms frames.
	audio.Attributes = append(audio.Attributes, sdp.NewAttribute("ptime", "20"))
	if mux {
		audio.Attributes = append(audio.Attributes, sdp.NewPropertyAttribute("rtcp-mux"))
	}
	audio.Attributes = append(audio.Attributes, sdp.NewPropertyAttribute(string(dir)))

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.crypto != nil {
		audio.MediaName.Protos = []string{"RTP", "SAVP"}
		audio.Attributes = append(audio.Attributes, sdp.NewAttribute("crypto", b.crypto.String()))
	}
	desc := &sdp.SessionDescription{
		Origin: sdp.Origin{
			Username: b.user, SessionID: b.id, SessionVersion: b.version,
			NetworkType: "IN", AddressType: addrType, UnicastAddress: ip.String(),
		},
		SessionName:           "cleanline",
		ConnectionInformation: &sdp.ConnectionInformation{NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: ip.String()}},
		TimeDescriptions:      []sdp.TimeDescription{{}},
	}
	if offer == nil {
		desc.MediaDescriptions = []*sdp.MediaDescription{audio}
	} else {
		for i, om := range offer.desc.MediaDescriptions {
			if i == offer.audio {
				desc.MediaDescriptions = append(desc.MediaDescriptions, audio)
				continue
			}
			// RFC 3264 §6: "An offered stream MAY be rejected in the answer,
			// for any reason. If a stream is rejected, the offerer and
			// answerer MUST NOT generate media ... set the port to zero."
			rej := &sdp.MediaDescription{MediaName: sdp.MediaName{
				Media: om.MediaName.Media, Port: sdp.RangedPort{Value: 0},
				Protos: om.MediaName.Protos, Formats: om.MediaName.Formats,
			}}
			if len(rej.MediaName.Formats) == 0 {
				rej.MediaName.Formats = []string{"0"}
			}
			desc.MediaDescriptions = append(desc.MediaDescriptions, rej)
		}
	}
	body, err := desc.Marshal()
	if err != nil {
		return nil, sdpErr("marshal: %v", err)
	}
	// RFC 3264 §8: an unchanged description keeps its version; any change
	// bumps it. Compare bodies with the version left as is.
	if b.lastBody != nil && string(body) == string(b.lastBody) {
		return body, nil
	}
	if b.lastBody != nil {
		b.version++
		desc.Origin.SessionVersion = b.version
		if body, err = desc.Marshal(); err != nil {
			return nil, sdpErr("marshal: %v", err)
		}
	}
	b.lastBody = body
	return body, nil
}

// BuildOffer writes a one-off sendrecv offer (a fresh session id); use an
// SDPBuilder to keep the o= line stable across re-INVITEs.
func BuildOffer(local netip.AddrPort, codecs ...Codec) ([]byte, error) {
	return NewSDPBuilder("").Offer(local, SendRecv, codecs...)
}

// BuildAnswer writes a one-off answer; see SDPBuilder.Answer.
func BuildAnswer(offer *SessionInfo, local netip.AddrPort, supported []Codec) ([]byte, *Negotiated, error) {
	return NewSDPBuilder("").Answer(offer, local, supported)
}
