package media

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pion/rtp"
)

func digitPackets(t *testing.T, d rune, ts uint32, seq uint16) []*rtp.Packet {
	t.Helper()
	pkts, err := EncodeDTMF(d, 101, 0x5EED, seq, ts, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	return pkts
}

func decodeAll(d *DTMFDecoder, pkts []*rtp.Packet) string {
	var out []rune
	for _, p := range pkts {
		if r, ok := d.Decode(p); ok {
			out = append(out, r)
		}
	}
	if r, ok := d.Flush(); ok {
		out = append(out, r)
	}
	return string(out)
}

func TestEncodeDTMF(t *testing.T) {
	pkts := digitPackets(t, '#', 1000, 10)
	if len(pkts) != 4+3 { // 100 ms: 4 progress packets, then 3 end packets
		t.Fatalf("%d packets", len(pkts))
	}
	for i, p := range pkts {
		ev, err := DecodeTelephoneEvent(p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		wantDur := uint16(160 * (i + 1))
		if i >= 4 {
			wantDur = 800
		}
		if ev.Event != 11 || ev.End != (i >= 4) || ev.Duration != wantDur || p.Timestamp != 1000 ||
			p.SequenceNumber != uint16(10+i) || p.Marker != (i == 0) || p.PayloadType != 101 {
			t.Fatalf("packet %d: %+v %+v", i, p.Header, ev)
		}
	}
	if _, err := EncodeDTMF('x', 101, 1, 1, 1, time.Second); !errors.Is(err, ErrNotDTMF) {
		t.Fatal(err)
	}
}

func TestDTMFDecoder(t *testing.T) {
	one := digitPackets(t, '1', 8000, 100)
	three := digitPackets(t, '3', 16000, 200)
	oneAgain := digitPackets(t, '1', 24000, 300) // same key pressed twice

	cases := []struct {
		name string
		pkts []*rtp.Packet
		want string
	}{
		{"three end packets give one digit", one, "1"},
		{"two digits", cat(one, three), "13"},
		{"same key twice", cat(one, oneAgain), "11"},
		{"all end packets lost, next digit starts", cat(one[:4], three), "13"},
		{"all end packets lost, stream stops", one[:4], "1"},
		{"end packets only", one[4:], "1"},
		{"only one end packet arrives", cat(one[:1], one[6:]), "1"},
		{"out of order within a digit", []*rtp.Packet{one[4], one[0], one[2], one[1], one[5], one[3], one[6]}, "1"},
		{"retransmitted end after the next digit began", cat(one, three[:2], one[4:], three[2:]), "13"},
		{"next digit's start overtakes the end", cat(one[:4], three[:1], one[4:], three[1:]), "13"},
		{"duplicates of everything", cat(one, one, three, three), "13"},
		{"end of a one-packet digit right after a lost end", cat(one[:2], three[4:]), "13"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := decodeAll(NewDTMFDecoder(), c.pkts); got != c.want {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}

	// Non-DTMF events (flash, 16) and short payloads are ignored.
	d := NewDTMFDecoder()
	for _, payload := range [][]byte{{16, 0x80, 0, 160}, {1, 0x80}, nil} {
		if r, ok := d.Decode(&rtp.Packet{Payload: payload}); ok {
			t.Fatalf("payload %v gave %q", payload, r)
		}
	}
}

func cat(ps ...[]*rtp.Packet) []*rtp.Packet {
	var out []*rtp.Packet
	for _, p := range ps {
		out = append(out, p...)
	}
	return out
}

func TestDigitCollector(t *testing.T) {
	c := NewDigitCollector()
	ctx := context.Background()
	c.Feed('9')
	c.Clear() // pressed before the prompt asked
	c.Feed('x')
	c.Feed('a') // SIP INFO may send lower case
	c.Feed('1')
	if d, err := c.Next(ctx, time.Second); d != 'A' || err != nil {
		t.Fatalf("%q %v", d, err)
	}
	if d, err := c.Next(ctx, time.Second); d != '1' || err != nil {
		t.Fatalf("%q %v", d, err)
	}
	start := time.Now()
	if _, err := c.Next(ctx, 50*time.Millisecond); !errors.Is(err, ErrDigitTimeout) || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("timeout: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Next(cctx, time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v", err)
	}
	// Feed never blocks, even with nobody reading.
	for range 100 {
		c.Feed('5')
	}
}
