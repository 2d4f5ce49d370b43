package sip

import (
	"context"
	"testing"
	"time"

	"github.com/cleanline/cleanline/sip/siptest"
)

// D6, each leg on its own: one party keeps talking, the other's leg falls
// silent (a vanished gateway, a dead phone); after the media timeout both
// legs get BYE. The talking side alone must not keep the call alive.
func TestD6MediaInactivityOnEitherLeg(t *testing.T) {
	const inactivity = 400 * time.Millisecond
	for _, silent := range []string{"trunk", "line"} {
		t.Run(silent+"_silent", func(t *testing.T) {
			e := newEnv(t, withCfg(func(c *Config) { c.Timers.MediaInactivity = inactivity }))
			ctx := ctxT(t, 10*time.Second)
			out, in := e.connect()
			talker, listener := in.RTP, out.RTP
			if silent == "line" {
				talker, listener = out.RTP, in.RTP
			}
			ctx2, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { // the talking party: a packet every 20 ms, as a phone sends
				defer close(done)
				talk(ctx2, talker)
			}()
			defer func() { stop(); <-done }()
			start := time.Now()
			wantEnded(t, ctx, silent+" silent", out.Ended(), in.Ended())
			if d := time.Since(start); d < inactivity {
				t.Fatalf("torn down after %s, before the %s timeout", d, inactivity)
			}
			if listener.Count() == 0 {
				t.Fatal("test bug: the talking side's audio never crossed the relay")
			}
			e.waitNoCalls()
		})
	}
}

func talk(ctx context.Context, r *siptest.RTP) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		_ = r.Send(1, 8, 0x55)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
