package sip

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"go.uber.org/zap"

	"github.com/cleanline/cleanline/sip/media"
)

// callMedia is everything a call does with media, in one place: the relay,
// one SDP builder per side (stable o= line, RFC 3264 §5), the codec agreed
// on the leg we answered (the relay does not transcode, so the other leg is
// offered exactly that), and the digits the line presses.
type callMedia struct {
	relay  *media.Relay
	player *media.Player
	sdp    [2]*media.SDPBuilder // indexed by media.Side
	digits *media.DigitCollector

	// secure reports whether sd's peer must use SRTP (sip.trunks[].srtp,
	// sip.lines[].srtp), read when we offer or answer.
	secure func(sd side) bool

	mu        sync.Mutex
	codec     media.Codec // zero until the first answer
	te        [2]uint8    // telephone-event PT per side, 0 when none
	closeOnce sync.Once
}

// supportedCodecs is what we answer an offer with, in our preference.
var supportedCodecs = []media.Codec{media.CodecPCMA, media.CodecPCMU}

func (s *Server) newCallMedia(c *call) (*callMedia, error) {
	// D6: the relay owns the media timeout; its clock starts when the call
	// is answered (watch), and a silent leg ends the call.
	r, err := media.NewRelay(media.RelayConfig{
		Pool:        s.ports,
		BindIP:      s.bindIP,
		AdvertiseIP: s.local.media,
		Inactivity:  max(s.timers().MediaInactivity, 0),
		OnInactive:  func(media.Side) { c.end(outcomeMediaInactive, sideNone) },
		OnForeign:   s.metrics.foreignMedia, // per packet of a flood: an atomic add
		Logger:      c.log.Named("media"),
	})
	if err != nil {
		if errors.Is(err, media.ErrNoPorts) {
			return nil, fmt.Errorf("%w: %w", ErrOverloaded, err)
		}
		return nil, err
	}
	return &callMedia{
		relay:  r,
		player: s.player,
		sdp:    [2]*media.SDPBuilder{media.NewSDPBuilder("cleanline"), media.NewSDPBuilder("cleanline")},
		digits: media.NewDigitCollector(),
		secure: c.secure,
	}, nil
}

// secure reports whether sd's peer is configured for SRTP only.
func (c *call) secure(sd side) bool {
	if sd == sideLine {
		return c.line.SRTP
	}
	return c.trunk != nil && c.trunk.SRTP
}

func (m *callMedia) leg(sd side) *media.Leg { return m.relay.Leg(sd.media()) }

// origin is where a peer's SDP came from: the source address of the SIP
// message that carried it (the INVITE, re-INVITE or UPDATE, or the
// response), and whether the operator marked that peer as behind NAT
// (sip.trunks[].nat, sip.lines[].nat). Only then does the relay look at
// the address: it takes media from the SDP's address, or for a peer
// behind NAT also from that IP (media/source.go).
type origin struct {
	nat bool
	ip  netip.Addr
}

// originOf is the origin of SDP that sd's peer sent from src (a message's
// Source()). A registered device behind NAT is treated as a line marked
// nat: its media comes from the IP its registration and signalling came
// from.
func (c *call) originOf(sd side, src string) origin {
	if sd == sideLine {
		c.mu.Lock()
		nat := c.devNAT
		c.mu.Unlock()
		return originFrom(c.line.NAT || nat, src)
	}
	return originFrom(c.trunk != nil && c.trunk.NAT, src)
}

// originFrom is the origin of SDP sent from src by a peer behind NAT or not.
func originFrom(nat bool, src string) origin {
	o := origin{nat: nat}
	if ap, err := netip.ParseAddrPort(src); err == nil {
		o.ip = ap.Addr().Unmap()
	}
	return o
}

// setRemote tells sd's leg its peer's SDP, and where it came from.
func (m *callMedia) setRemote(sd side, si *media.SessionInfo, from origin) {
	if from.nat {
		m.leg(sd).SetNAT(from.ip)
	}
	m.leg(sd).SetRemoteSDP(si)
}

// at is where sd's peer reaches the leg: adv, the media address of the face
// that peer is told (face.go), and the leg's port.
func (m *callMedia) at(sd side, adv netip.Addr) netip.AddrPort {
	return netip.AddrPortFrom(adv, m.leg(sd).LocalAddr().Port())
}

// answer applies an offer from sd's peer and writes our answer, at adv. The first
// answer of a call picks the codec; later ones (re-INVITE, UPDATE) must keep
// it, because the other leg was offered only that codec.
func (m *callMedia) answer(sd side, offer []byte, from origin, adv netip.Addr) ([]byte, error) {
	si, err := media.ParseSDP(offer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAcceptable, err)
	}
	if !si.SRTP && m.secure(sd) {
		return nil, fmt.Errorf("%w: RTP/AVP offered where SRTP is required", ErrNotAcceptable)
	}
	m.mu.Lock()
	supported := supportedCodecs
	if m.codec.Name != "" {
		supported = []media.Codec{m.codec}
	}
	m.mu.Unlock()
	body, neg, err := m.sdp[sd.media()].Answer(si, m.at(sd, adv), supported)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAcceptable, err)
	}
	if err := m.leg(sd).SetSRTP(neg.Theirs, neg.Ours); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAcceptable, err)
	}
	m.setRemote(sd, si, from)
	m.mu.Lock()
	if m.codec.Name == "" {
		m.codec = neg.Codec
	}
	m.mu.Unlock()
	if neg.TelephoneEvent != nil {
		m.setTE(sd, neg.TelephoneEvent.PT)
	}
	return body, nil
}

// offer writes our offer to sd's peer, at adv: the call's codec and
// telephone-event.
func (m *callMedia) offer(sd side, adv netip.Addr) ([]byte, error) {
	m.mu.Lock()
	codec := m.codec
	m.mu.Unlock()
	if codec.Name == "" {
		return nil, fmt.Errorf("%w: no codec agreed yet", ErrNotAcceptable)
	}
	b := m.sdp[sd.media()]
	if m.secure(sd) && b.Crypto() == nil {
		c, err := media.NewCrypto(1, media.SuiteAES80)
		if err != nil {
			return nil, err
		}
		b.SetCrypto(c)
	}
	return b.Offer(m.at(sd, adv), media.SendRecv, codec, media.CodecTelephoneEvent)
}

// applyAnswer applies sd's peer's answer to our offer.
func (m *callMedia) applyAnswer(sd side, body []byte, from origin) error {
	si, err := media.ParseSDP(body)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotAcceptable, err)
	}
	if si.Disabled || len(si.Codecs) == 0 {
		return fmt.Errorf("%w: answer refuses the audio stream", ErrNotAcceptable)
	}
	if err := m.answeredCrypto(sd, si); err != nil {
		return err
	}
	m.setRemote(sd, si, from)
	if si.TelephoneEvent != nil {
		m.setTE(sd, si.TelephoneEvent.PT)
	}
	return nil
}

// setTE watches sd's RFC 4733 events; the line's feed the digit collector.
func (m *callMedia) setTE(sd side, pt uint8) {
	m.mu.Lock()
	same := m.te[sd.media()] == pt
	m.te[sd.media()] = pt
	m.mu.Unlock()
	if same || sd != sideLine {
		return
	}
	m.relay.OnTelephoneEvent(media.SideLine, pt, m.digits.Feed)
}

func (m *callMedia) bridge() { m.relay.SetBridged(true) }

// earlyMedia lets from's audio reach the other leg before answer (183).
func (m *callMedia) earlyMedia(from side) {
	m.relay.SetForwarding(from == sideTrunk, from == sideLine)
}

func (m *callMedia) close() { m.closeOnce.Do(func() { _ = m.relay.Close() }) }

func (m *callMedia) stats() media.RelayStats { return m.relay.Stats() }

// play sends a prompt to sd's peer in the call's codec, paced in real time,
// until it ends or ctx does.
func (m *callMedia) play(ctx context.Context, sd side, p *media.Prompt) error {
	m.mu.Lock()
	codec := m.codec
	m.mu.Unlock()
	return m.player.Play(ctx, m.leg(sd), p, codec)
}

// playNamed plays a named prompt; a missing prompt is logged, not fatal.
func (c *call) playNamed(ctx context.Context, sd side, name string) {
	p, err := c.rt.prompts.Get(name)
	if err != nil {
		c.log.Error("prompt missing", zap.String("prompt", name), zap.Error(err))
		return
	}
	c.s.metrics.prompts.WithLabelValues(name).Inc()
	if err := c.m.play(ctx, sd, p); err != nil && ctx.Err() == nil {
		c.log.Warn("prompt not played", zap.String("prompt", name), zap.Error(err))
	}
}

// answeredCrypto applies the SRTP of sd's answer to our offer (RFC 4568
// §7.1.2): an RTP/SAVP offer must be answered RTP/SAVP with a crypto of
// our tag and suite, which gives the peer's key; a plain offer, plainly.
func (m *callMedia) answeredCrypto(sd side, si *media.SessionInfo) error {
	ours := m.sdp[sd.media()].Crypto()
	if ours == nil {
		if si.SRTP {
			return fmt.Errorf("%w: RTP/SAVP answer to an RTP/AVP offer", ErrNotAcceptable)
		}
		return m.leg(sd).SetSRTP(nil, nil)
	}
	if !si.SRTP {
		return fmt.Errorf("%w: answer refuses SRTP", ErrNotAcceptable)
	}
	for i := range si.Crypto {
		if c := &si.Crypto[i]; c.Tag == ours.Tag && c.Suite == ours.Suite {
			if err := m.leg(sd).SetSRTP(c, ours); err != nil {
				return fmt.Errorf("%w: %w", ErrNotAcceptable, err)
			}
			return nil
		}
	}
	return fmt.Errorf("%w: answer has no crypto for our tag %d (%s)", ErrNotAcceptable, ours.Tag, ours.Suite)
}
