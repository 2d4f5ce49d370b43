package sip

import (
	"context"
	"testing"
	"time"
)

// A trunk that never ACKs our 603 holds nothing: the server transaction
// retransmits the response and absorbs the ACK by itself (RFC 3261
// §17.2.1), so the call is torn down and recorded at once and Shutdown
// does not wait for the ACK (sipgo's DialogServerSession.Respond would, for
// up to 64*T1).
func TestRefusalNeverAckedDoesNotHoldShutdown(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	trunk := newRawPeer(t, ipTrunk)
	trunk.invite(e.s.Addr("udp"), callerScam)
	if _, err := trunk.response(ctx, 603); err != nil {
		t.Fatal(err)
	}
	if err := e.waitRecord(ctx, outcomeBlocked); err != nil {
		t.Fatal(err)
	}
	e.waitNoCalls()
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := e.s.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown waited for the ACK of a 603: %v", err)
	}
	// Still unacknowledged, the 603 is retransmitted (Timer G).
	if _, err := trunk.response(ctx, 603); err != nil {
		t.Fatal(err)
	}
}
