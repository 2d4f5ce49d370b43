package sip

import (
	"context"
	"testing"
	"time"

	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/siptest"
)

// D4 for every form of every kind of protected number, over real SIP and
// RTP: the line holds a call open (the fraudster's), then dials the number
// the way a phone sends it. A protected number ends the held call on both
// legs before the new call reaches the trunk; a number that merely
// resembles one leaves the held call alone.
func TestD4ProtectedNumberInEveryForm(t *testing.T) {
	e := newEnv(t,
		withCfg(func(c *Config) { c.Lines[0].Policy.Protected = []string{"+443001234567"} }), // the line's bank
		withScreening(func(sc *screening.Config) { sc.Protected = []string{"020 7946 0555"} }))
	cases := []struct {
		what, dial string
		protected  bool
		sent       string // what the trunk gets, when not dial
	}{
		{"built-in, national", "999", true, ""},
		{"built-in 159", "159", true, ""},
		{"built-in 101, international", "+44101", true, ""},
		{"screening.protected, national", "02079460555", true, ""},
		{"screening.protected, 00 form", "00442079460555", true, ""},
		{"line's bank, national", "03001234567", true, ""},
		{"line's bank, international", "+443001234567", true, ""},
		{"line's bank, 00 form", "00443001234567", true, ""},
		{"line's bank, dashes", "0300-123-4567", true, ""},
		{"line's bank, dots", "0300.123.4567", true, ""},
		{"line's bank, escaped spaces", "0300%20123%204567", true, "03001234567"},
		{"line's bank, escaped +", "%2B443001234567", true, "+443001234567"},
		{"a prefix of the bank", "0300123456", false, ""},
		{"the bank and one more digit", "030012345678", false, ""},
		{"the bank's neighbour", "03001234568", false, ""},
		{"999 and one more digit", "9999", false, ""},
	}
	for _, c := range cases {
		t.Run(c.what, func(t *testing.T) {
			ctx := ctxT(t, 10*time.Second)
			held, heldLine := e.connect()
			call, err := e.line.Dial(ctx, "sip:"+c.dial+"@"+e.s.Addr("udp").String(), siptest.DialOptions{FromUser: "landline"})
			if err != nil {
				t.Fatal(err)
			}
			in, err := e.trunk.Incoming(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if c.sent == "" {
				c.sent = c.dial
			}
			if in.Req.Recipient.User != c.sent {
				t.Errorf("trunk got %s; want the number as dialled, %s", in.Req.Recipient.User, c.sent)
			}
			if c.protected {
				// The teardown comes first: by the time the trunk sees the
				// new INVITE, the held call is ended on our side.
				for leg, ended := range map[string]<-chan struct{}{"caller": held.Ended(), "line": heldLine.Ended()} {
					select {
					case <-ended:
					case <-ctx.Done():
						t.Fatalf("held call's %s leg still up after the line dialled %s", leg, c.dial)
					}
				}
			} else {
				select {
				case <-held.Ended():
					t.Fatalf("dialling %s ended the held call", c.dial)
				case <-heldLine.Ended():
					t.Fatalf("dialling %s ended the held call", c.dial)
				default:
				}
				if err := held.RTP.Send(5, 8, 0x33); err != nil {
					t.Fatal(err)
				}
				if err := heldLine.RTP.WaitCount(ctx, 5); err != nil {
					t.Fatalf("held call no longer carries audio: %v", err)
				}
				_ = held.Bye(ctx)
			}
			if err := in.Answer(); err != nil {
				t.Fatal(err)
			}
			wantFinal(t, call, 200)
			if err := call.Bye(ctx); err != nil {
				t.Fatal(err)
			}
			waitEnded(ctx, t, in.Ended())
			e.waitNoCalls()
		})
	}
}

func waitEnded(ctx context.Context, t *testing.T, ended <-chan struct{}) {
	t.Helper()
	select {
	case <-ended:
	case <-ctx.Done():
		t.Fatal("leg never got BYE")
	}
}
