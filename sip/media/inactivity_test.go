package media

// The relay's media inactivity watch (D6): when a leg counts as silent,
// what keeps it alive, and that Close stops it for good.

import (
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/pion/rtp"
)

// inactivityLog records OnInactive calls.
type inactivityLog struct{ ch chan Side }

func newInactivityLog() *inactivityLog { return &inactivityLog{ch: make(chan Side, 16)} }

func (g *inactivityLog) fn(s Side) { g.ch <- s }

// next waits up to d for the next report; ok is false if none came.
func (g *inactivityLog) next(d time.Duration) (Side, bool) {
	select {
	case s := <-g.ch:
		return s, true
	case <-time.After(d):
		return 0, false
	}
}

// none asserts that nothing is reported for d.
func (g *inactivityLog) none(t *testing.T, d time.Duration, why string) {
	t.Helper()
	if s, ok := g.next(d); ok {
		t.Fatalf("OnInactive(%s) %s", s, why)
	}
}

// watchArmed and timerPending look inside a leg's watch.
func watchArmed(l *Leg) bool {
	l.watchMu.Lock()
	defer l.watchMu.Unlock()
	return l.timer != nil
}

// timerPending stops the leg's timer and says whether it was still due to
// fire: for checks after Close, when nothing may be pending.
func timerPending(l *Leg) bool {
	l.watchMu.Lock()
	defer l.watchMu.Unlock()
	return l.timer != nil && l.timer.Stop()
}

func rtpFrom(ssrc uint32) func(uint16) []byte {
	return func(n uint16) []byte {
		p := rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: n, Timestamp: uint32(n) * 160, SSRC: ssrc}, Payload: make([]byte, 160)}
		b, _ := p.Marshal()
		return b
	}
}

func rtcpFrom(ssrc uint32) func(uint16) []byte { return func(uint16) []byte { return rtcpBytes(ssrc) } }

func rtcpAddrOf(l *Leg) netip.AddrPort {
	return netip.AddrPortFrom(l.LocalAddr().Addr(), l.LocalAddr().Port()+1)
}

// talkInactivity is the timeout of the tests in which a peer talks: a
// talker (one packet every 10 ms) is taken for silent only if it, or the
// relay's receive loop, is held up for 100 intervals, which even a machine
// shared with other test runs and CPU hogs has not done.
const talkInactivity = time.Second

// TestRelayInactivityArmedByReset: a ringing call is not judged. Nothing is
// timed before ResetInactivity; after it each silent leg is reported once
// for its silence, and again only after a packet starts a new period.
func TestRelayInactivityArmedByReset(t *testing.T) {
	t.Parallel()
	const inactivity = 50 * time.Millisecond
	g := newInactivityLog()
	r, trunk, _ := bridgedCall(t, RelayConfig{Inactivity: inactivity, OnInactive: g.fn})
	if watchArmed(r.Trunk()) || watchArmed(r.Line()) {
		t.Fatal("NewRelay armed the watch")
	}
	g.none(t, 4*inactivity, "before ResetInactivity")

	reset := time.Now()
	r.ResetInactivity()
	got := map[Side]bool{}
	for range 2 {
		s, ok := g.next(5 * time.Second)
		if !ok {
			t.Fatalf("after ResetInactivity only %v reported", got)
		}
		if got[s] {
			t.Fatalf("%s reported twice for one silence", s)
		}
		got[s] = true
		if el := time.Since(reset); el < inactivity {
			t.Fatalf("%s reported %v after the reset, before its %v", s, el, inactivity)
		}
	}
	g.none(t, 4*inactivity, "again for a silence already reported")

	// One packet ends the trunk's silent period; the next one is reported.
	sent := time.Now()
	send(t, trunk.rtp, r.Trunk().LocalAddr(), rtpFrom(1)(1))
	if s, ok := g.next(5 * time.Second); !ok || s != SideTrunk {
		t.Fatalf("after one packet: OnInactive(%s) ok=%v, want the trunk", s, ok)
	}
	if el := time.Since(sent); el < inactivity {
		t.Fatalf("trunk reported %v after its packet", el)
	}
	if st := r.Stats(); st.Trunk.PacketsIn != 1 {
		t.Fatalf("trunk leg %+v, want the one packet", st.Trunk)
	}
	g.none(t, 4*inactivity, "for the line, silent all along and already reported")
}

// TestRelayInactivity: a talking leg is never reported; a silent one is, and
// so is the talker once it stops. ResetInactivity re-arms both.
func TestRelayInactivity(t *testing.T) {
	t.Parallel()
	const inactivity = talkInactivity
	g := newInactivityLog()
	r, trunk, _ := bridgedCall(t, RelayConfig{Inactivity: inactivity, OnInactive: g.fn})
	stop := sender(t, trunk.rtp, r.Trunk().LocalAddr(), 10*time.Millisecond, rtpFrom(1))
	start := time.Now()
	r.ResetInactivity()
	if s, ok := g.next(5 * inactivity); !ok || s != SideLine {
		t.Fatalf("OnInactive(%s) ok=%v, want the silent line", s, ok)
	}
	if el := time.Since(start); el < inactivity {
		t.Fatalf("fired after %v, before the %v timeout", el, inactivity)
	}
	// The talking trunk must not be reported while it talks...
	g.none(t, inactivity*3/2, "while the trunk talks")
	// ...but is once it stops.
	stop()
	if s, ok := g.next(5 * inactivity); !ok || s != SideTrunk {
		t.Fatalf("OnInactive(%s) ok=%v, want the trunk after it stopped", s, ok)
	}
	// Answer-time reset: both clocks restart, and both fire again.
	reset := time.Now()
	r.ResetInactivity()
	got := map[Side]bool{}
	for len(got) < 2 {
		s, ok := g.next(5 * inactivity)
		if !ok {
			t.Fatalf("after ResetInactivity only %v fired", got)
		}
		got[s] = true
		if el := time.Since(reset); el < inactivity {
			t.Fatalf("%s fired %v after the reset", s, el)
		}
	}
}

// TestRelayInactivityRTCPCounts: a held call sends only RTCP (RFC 3264
// §8.4), on the RTCP port or muxed on the RTP port, and is not silent. A
// foreign source does not keep a leg alive.
func TestRelayInactivityRTCPCounts(t *testing.T) {
	t.Parallel()
	const inactivity = talkInactivity
	g := newInactivityLog()
	r, trunk, line := bridgedCall(t, RelayConfig{Inactivity: inactivity, OnInactive: g.fn})
	r.Trunk().SetRTCPMux(true)
	// The line latches its RTP with one packet, then sends only RTCP.
	send(t, line.rtp, r.Line().LocalAddr(), rtpFrom(2)(0))
	stopTrunk := sender(t, trunk.rtp, r.Trunk().LocalAddr(), 10*time.Millisecond, rtcpFrom(1)) // muxed
	stopLine := sender(t, line.rtcp, rtcpAddrOf(r.Line()), 10*time.Millisecond, rtcpFrom(2))
	r.ResetInactivity()
	g.none(t, inactivity*3/2, "for a leg sending RTCP")
	if st := r.Stats(); st.Trunk.RTCPIn == 0 || st.Line.RTCPIn == 0 || st.Trunk.PacketsIn != 0 || st.Line.PacketsIn != 1 {
		t.Fatalf("not an RTCP-only call: trunk %+v line %+v", st.Trunk, st.Line)
	}

	// The line hangs; a stranger keeps sending to its ports.
	stopLine()
	stranger := newPeer(t)
	sender(t, stranger.rtcp, rtcpAddrOf(r.Line()), 10*time.Millisecond, rtcpFrom(3))
	sender(t, stranger.rtp, r.Line().LocalAddr(), 10*time.Millisecond, rtpFrom(3))
	if s, ok := g.next(5 * inactivity); !ok || s != SideLine {
		t.Fatalf("OnInactive(%s) ok=%v, want the line, whose peer went quiet", s, ok)
	}
	if st := r.Stats(); st.Line.Foreign == 0 {
		t.Fatalf("the stranger's packets were not seen as foreign: %+v", st.Line)
	}
	stopTrunk()
	if s, ok := g.next(5 * inactivity); !ok || s != SideTrunk {
		t.Fatalf("OnInactive(%s) ok=%v, want the trunk", s, ok)
	}
}

// TestRelayInactivityKeepsItsClock: packets arriving around the very moment
// of the verdict never lose the leg's clock: once the leg goes quiet for
// good, that silence is reported.
func TestRelayInactivityKeepsItsClock(t *testing.T) {
	const inactivity = 5 * time.Millisecond
	var mu sync.Mutex
	var fired []time.Time
	r, trunk, _ := bridgedCall(t, RelayConfig{Inactivity: inactivity, OnInactive: func(s Side) {
		if s == SideTrunk {
			mu.Lock()
			fired = append(fired, time.Now())
			mu.Unlock()
		}
	}})
	r.ResetInactivity()
	// Gaps of 2-8 ms around a 5 ms timeout, for 400 ms.
	end := time.Now().Add(400 * time.Millisecond)
	var quiet time.Time // when the last packet was sent
	sent := uint64(0)
	for n := uint16(0); time.Now().Before(end); n++ {
		quiet = time.Now()
		send(t, trunk.rtp, r.Trunk().LocalAddr(), rtpFrom(1)(n))
		sent++
		time.Sleep(time.Duration(2+n%7) * time.Millisecond) // the traffic's shape, not synchronisation
	}
	// Every packet handled, the leg judged silent since (idle is cleared by
	// each packet that finds it set), and reported after the last packet.
	waitFor(t, "the final silence reported", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return r.Stats().Trunk.PacketsIn == sent && r.Trunk().idle.Load() &&
			len(fired) > 0 && fired[len(fired)-1].After(quiet)
	})
	mu.Lock()
	t.Logf("%d packets, %d silences reported", sent, len(fired))
	mu.Unlock()
}

// The B2BUA ends a dead call from the inactivity callback itself; both legs
// may be reported at once, and each may call Close.
func TestRelayCloseFromOnInactive(t *testing.T) {
	pool := newTestPool(t, 4)
	var r *Relay
	calls := make(chan Side, 2)
	r, err := NewRelay(RelayConfig{Pool: pool, BindIP: loopback, Inactivity: 50 * time.Millisecond,
		OnInactive: func(s Side) {
			r.Close()
			calls <- s // Close returned
		}})
	if err != nil {
		t.Fatal(err)
	}
	r.ResetInactivity()
	if _, ok := (&inactivityLog{ch: calls}).next(2 * time.Second); !ok {
		t.Fatal("Close from OnInactive did not return")
	}
	if pool.Free() != pool.Size() {
		t.Fatalf("%d of %d ports free", pool.Free(), pool.Size())
	}
	// The other leg was silent too: reported just as the first was, or
	// stopped by its Close; either way nothing is left pending.
	for _, l := range r.legs {
		if timerPending(l) {
			t.Fatalf("%s leg's timer outlived Close", l.side)
		}
	}
}

// TestRelayCloseStopsInactivityWatch: no timer outlives Close, however it
// races with traffic and ResetInactivity, and ResetInactivity after Close
// arms nothing.
func TestRelayCloseStopsInactivityWatch(t *testing.T) {
	const inactivity = 20 * time.Millisecond
	for range 20 {
		g := newInactivityLog()
		r, trunk, line := bridgedCall(t, RelayConfig{Inactivity: inactivity, OnInactive: g.fn})
		stopT := sender(t, trunk.rtp, r.Trunk().LocalAddr(), time.Millisecond, rtpFrom(1))
		stopL := sender(t, line.rtcp, rtcpAddrOf(r.Line()), time.Millisecond, rtcpFrom(2))
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				r.ResetInactivity()
			}
		}()
		r.Close()
		wg.Wait()
		r.ResetInactivity()
		for _, l := range r.legs {
			if timerPending(l) {
				t.Fatalf("%s leg's timer outlived Close", l.side)
			}
		}
		stopT()
		stopL()
		// (A report decided before Close may still arrive: on a busy
		// machine a 20 ms silence is possible. The pending timers are the
		// proof.)
	}
	// And a relay closed while both legs were silent and armed: within
	// less than Inactivity of the reset no verdict can have been reached,
	// so any report at all would come from a timer that outlived Close.
	const slow = 300 * time.Millisecond
	g := newInactivityLog()
	r := newTestRelay(t, RelayConfig{Inactivity: slow, OnInactive: g.fn})
	t0 := time.Now()
	r.ResetInactivity()
	r.Close()
	closedIn := time.Since(t0)
	r.ResetInactivity()
	for _, l := range r.legs {
		if timerPending(l) {
			t.Fatalf("%s leg's timer outlived Close", l.side)
		}
	}
	if closedIn < slow {
		g.none(t, 2*slow, "after Close")
	} else {
		t.Logf("Close came %v after the reset: the machine is too busy to judge the wall clock", closedIn)
	}
}
