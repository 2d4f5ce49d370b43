package media

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pion/rtp"
)

// RFC 4733 telephone-events ("named events") carrying DTMF.

var (
	// ErrTelephoneEvent is wrapped by every telephone-event decoding error.
	ErrTelephoneEvent = errors.New("media: bad telephone-event payload")
	// ErrDigitTimeout is returned by DigitCollector.Next when no digit came.
	ErrDigitTimeout = errors.New("media: no digit before timeout")
	// ErrNotDTMF is returned by EncodeDTMF for a rune that is no DTMF key.
	ErrNotDTMF = errors.New("media: not a DTMF digit")
)

// TelephoneEvent is one RFC 4733 §2.3 payload:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     event     |E|R| volume    |          duration             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
type TelephoneEvent struct {
	Event    uint8
	End      bool
	Volume   uint8  // 0-63, -dBm0
	Duration uint16 // in RTP timestamp units since the event began
}

const telephoneEventLen = 4

// DecodeTelephoneEvent parses a telephone-event payload. RFC 4733 §2.5.1.3
// lets a packet carry several events back to back (redundancy); only the
// first is returned, which is the one the decoder needs.
func DecodeTelephoneEvent(payload []byte) (TelephoneEvent, error) {
	if len(payload) < telephoneEventLen {
		return TelephoneEvent{}, fmt.Errorf("%w: %d bytes, want at least %d", ErrTelephoneEvent, len(payload), telephoneEventLen)
	}
	return TelephoneEvent{
		Event:    payload[0],
		End:      payload[1]&0x80 != 0,
		Volume:   payload[1] & 0x3F,
		Duration: uint16(payload[2])<<8 | uint16(payload[3]),
	}, nil
}

// AppendTo appends the 4-byte wire form of e to b.
func (e TelephoneEvent) AppendTo(b []byte) []byte {
	flags := e.Volume & 0x3F
	if e.End {
		flags |= 0x80
	}
	return append(b, e.Event, flags, byte(e.Duration>>8), byte(e.Duration))
}

// dtmfKeys maps RFC 4733 §3.2 event codes 0-15 to keys.
const dtmfKeys = "0123456789*#ABCD"

// EventDigit returns the key of a DTMF event code (0-15).
func EventDigit(event uint8) (rune, bool) {
	if int(event) >= len(dtmfKeys) {
		return 0, false
	}
	return rune(dtmfKeys[event]), true
}

// DigitEvent returns the event code of a DTMF key; a-d are accepted.
func DigitEvent(digit rune) (uint8, bool) {
	if digit >= 'a' && digit <= 'd' {
		digit -= 'a' - 'A'
	}
	for i, k := range dtmfKeys {
		if k == digit {
			return uint8(i), true
		}
	}
	return 0, false
}

// EncodeDTMF returns the packets of one digit as RFC 4733 §2.5.1 wants them
// sent every 20 ms: all with the event's start timestamp ts, the marker on
// the first (§2.5.1.3), the duration growing by 160 (20 ms at 8 kHz) per
// packet, and the final packet with E set sent three times (§2.5.1.4).
// Sequence numbers start at seq and increase by one per packet.
func EncodeDTMF(digit rune, pt uint8, ssrc uint32, seq uint16, ts uint32, length time.Duration) ([]*rtp.Packet, error) {
	ev, ok := DigitEvent(digit)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotDTMF, digit)
	}
	frames := int(length / (20 * time.Millisecond))
	if frames < 1 {
		frames = 1
	}
	if frames > 65535/160 { // duration is 16 bits of timestamp units
		frames = 65535 / 160
	}
	var pkts []*rtp.Packet
	add := func(dur uint16, end bool) {
		p := &rtp.Packet{
			Header: rtp.Header{
				Version: 2, PayloadType: pt & 0x7F, SSRC: ssrc,
				SequenceNumber: seq, Timestamp: ts, Marker: len(pkts) == 0,
			},
			Payload: TelephoneEvent{Event: ev, End: end, Volume: 10, Duration: dur}.AppendTo(nil),
		}
		seq++
		pkts = append(pkts, p)
	}
	for i := 1; i < frames; i++ {
		add(uint16(i*160), false)
	}
	for range 3 {
		add(uint16(frames*160), true)
	}
	return pkts, nil
}

type eventKey struct {
	ssrc, ts uint32
	event    uint8
}

// DTMFDecoder turns a stream of telephone-event packets into digits, each
// reported once. It is not safe for concurrent use; the relay gives each
// leg its own.
//
// RFC 4733 §2.5.1.4 sends the end packet three times and §2.5.1.3 repeats
// progress packets, so events are keyed by (SSRC, timestamp, event). A digit
// is reported on its first end packet. If all its end packets are lost, it
// is reported when a packet of a different event arrives (§2.5.2.2: a new
// timestamp means the previous event is over). Late packets of an event
// already reported are recognised from a short history and ignored.
type DTMFDecoder struct {
	cur     eventKey
	active  bool
	history [16]eventKey
	hlen    int
	hpos    int
}

// NewDTMFDecoder returns an empty decoder.
func NewDTMFDecoder() *DTMFDecoder { return &DTMFDecoder{} }

// Decode feeds one telephone-event packet. It returns the digit when this
// packet completes one that has not been reported yet. When a new event
// also ends the one before it in a single packet (lost end packets of the
// previous digit, and a one-packet new digit), the earlier digit is
// returned now and the new one by the next call of Flush or Decode.
func (d *DTMFDecoder) Decode(p *rtp.Packet) (rune, bool) {
	ev, err := DecodeTelephoneEvent(p.Payload)
	if err != nil {
		return 0, false
	}
	if _, ok := EventDigit(ev.Event); !ok {
		return 0, false // flash and the non-DTMF events are not digits
	}
	k := eventKey{ssrc: p.SSRC, ts: p.Timestamp, event: ev.Event}
	if d.seen(k) {
		return 0, false
	}
	if d.active && d.cur != k {
		// A different event started: the current one ended unseen.
		prev := d.cur
		d.remember(prev)
		if ev.End {
			d.cur, d.active = k, true // report k on the next call
		} else {
			d.cur = k
		}
		digit, _ := EventDigit(prev.event)
		return digit, true
	}
	if ev.End {
		d.active = false
		d.remember(k)
		digit, _ := EventDigit(k.event)
		return digit, true
	}
	d.cur, d.active = k, true
	return 0, false
}

// Flush reports a digit still in progress (its end never came); call it when
// the stream stops, e.g. when a collector's wait times out.
func (d *DTMFDecoder) Flush() (rune, bool) {
	if !d.active {
		return 0, false
	}
	d.active = false
	d.remember(d.cur)
	return EventDigit(d.cur.event)
}

func (d *DTMFDecoder) seen(k eventKey) bool {
	for i := range d.hlen {
		if d.history[i] == k {
			return true
		}
	}
	return false
}

func (d *DTMFDecoder) remember(k eventKey) {
	d.history[d.hpos] = k
	d.hpos = (d.hpos + 1) % len(d.history)
	if d.hlen < len(d.history) {
		d.hlen++
	}
}

// DigitCollector gathers digits from RTP (Relay.OnTelephoneEvent) and from
// SIP INFO (application/dtmf-relay, fed by the B2BUA) into one queue, for
// "press 1 to connect".
type DigitCollector struct {
	ch chan rune
}

// NewDigitCollector returns a collector that buffers up to 32 digits; more
// are dropped (nobody presses 33 keys during one prompt).
func NewDigitCollector() *DigitCollector {
	return &DigitCollector{ch: make(chan rune, 32)}
}

// Feed adds a digit; it never blocks, so it is safe to call from a relay's
// receive goroutine. Runes that are not DTMF keys are ignored.
func (c *DigitCollector) Feed(digit rune) {
	ev, ok := DigitEvent(digit)
	if !ok {
		return
	}
	digit, _ = EventDigit(ev)
	select {
	case c.ch <- digit:
	default:
	}
}

// Next waits for the next digit, up to timeout (zero or less: until ctx
// ends). It returns ErrDigitTimeout on timeout and ctx.Err() on cancel.
func (c *DigitCollector) Next(ctx context.Context, timeout time.Duration) (rune, error) {
	var tc <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		tc = t.C
	}
	select {
	case d := <-c.ch:
		return d, nil
	case <-tc:
		return 0, ErrDigitTimeout
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Clear discards buffered digits, e.g. keys pressed before the prompt that
// asks for them.
func (c *DigitCollector) Clear() {
	for {
		select {
		case <-c.ch:
		default:
			return
		}
	}
}
