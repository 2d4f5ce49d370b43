package sip

import (
	"testing"
	"time"
)

func TestAllowBridgesAudioBothWays(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	out, in := e.connect()

	if err := out.RTP.Send(10, 8, 0x11); err != nil {
		t.Fatal(err)
	}
	if err := in.RTP.WaitCount(ctx, 10); err != nil {
		t.Fatalf("line got %d packets from the caller: %v", in.RTP.Count(), err)
	}
	if err := in.RTP.Send(10, 8, 0x22); err != nil {
		t.Fatal(err)
	}
	if err := out.RTP.WaitCount(ctx, 10); err != nil {
		t.Fatalf("caller got %d packets from the line: %v", out.RTP.Count(), err)
	}
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-in.Ended():
	case <-ctx.Done():
		t.Fatal("line never got BYE")
	}
	e.waitNoCalls()
}
