package sip

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/pion/rtp"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/sip/media"
	"github.com/cleanline/cleanline/sip/siptest"
)

// Issue 12 §1: an off-path sender on ipStranger sprays RTP at every port of
// cleanline's media range, thousands of packets a second, from before the
// call is placed until it is over: set-up, ringing, the warning and the
// bridged call. Nothing of it may reach the line or the caller, the real
// audio must still cross both ways, and its RFC 4733 "1" must never
// connect a warned call. (`go test -run Spray ./sip/...` runs these and the
// accept rule's own tests in sip/media.)

const (
	spraySSRC = 0x5B4A7BAD // the sprayer's packets: SSRC...
	sprayFill = 0xEE       // ...and audio payload, told from everyone else's
	// sprayEvery paces the sprayer's rounds: one packet to each of the 400
	// ports per round, 16,000 packets a second.
	sprayEvery = 25 * time.Millisecond
)

// sprayer sends, round after round, one RTP packet to every port of a media
// range: in turn G.711 audio, and the end packet of an RFC 4733 "1" with
// each of its telephone-event payload types, each round a new event (a
// new timestamp), so that every round could press a key.
type sprayer struct {
	conn     *net.UDPConn
	dst      netip.Addr
	min, max int
	pts      []uint8 // telephone-event payload types it presses 1 with

	sent   atomic.Uint64
	errs   atomic.Uint64
	start  time.Time
	mu     sync.Mutex
	rounds int
	notify chan struct{}
	quit   chan struct{}
	done   chan struct{}
	once   sync.Once
	took   time.Duration
}

// startSpraying sprays e's whole media range from ipStranger until the
// test stops it (or ends).
func startSpraying(t *testing.T, e *env, dtmfPTs ...uint8) *sprayer {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ipStranger)})
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetWriteBuffer(4 << 20)
	sp := &sprayer{conn: c, dst: netip.MustParseAddr(ipCleanline), min: e.s.cfg.Media.PortMin, max: e.s.cfg.Media.PortMax,
		pts: dtmfPTs, notify: make(chan struct{}), quit: make(chan struct{}), done: make(chan struct{}), start: time.Now()}
	go sp.run()
	t.Cleanup(sp.stop)
	return sp
}

func (sp *sprayer) run() {
	defer close(sp.done)
	tk := time.NewTicker(sprayEvery)
	defer tk.Stop()
	audio := bytes.Repeat([]byte{sprayFill}, 160)
	kinds := 1 + len(sp.pts)
	for round := 0; ; round++ {
		h := rtp.Header{Version: 2, PayloadType: media.PayloadTypePCMA, SSRC: spraySSRC,
			SequenceNumber: uint16(round), Timestamp: uint32(round) * 160}
		payload := audio
		if k := round % kinds; k > 0 {
			// RFC 4733 §2.5.1.4: the end packet alone completes a digit.
			h.PayloadType = sp.pts[k-1]
			h.Marker = true
			payload = media.TelephoneEvent{Event: 1, End: true, Volume: 10, Duration: 800}.AppendTo(nil)
		}
		b, err := (&rtp.Packet{Header: h, Payload: payload}).Marshal()
		if err != nil {
			panic(err)
		}
		for port := sp.min; port <= sp.max; port++ {
			if _, err := sp.conn.WriteToUDPAddrPort(b, netip.AddrPortFrom(sp.dst, uint16(port))); err != nil {
				sp.errs.Add(1)
				continue
			}
			sp.sent.Add(1)
		}
		sp.mu.Lock()
		sp.rounds++
		close(sp.notify)
		sp.notify = make(chan struct{})
		sp.mu.Unlock()
		select {
		case <-sp.quit:
			return
		case <-tk.C:
		}
	}
}

// waitRounds waits until n more rounds have hit every port.
func (sp *sprayer) waitRounds(ctx context.Context, t *testing.T, n int) {
	t.Helper()
	sp.mu.Lock()
	want := sp.rounds + n
	sp.mu.Unlock()
	for {
		sp.mu.Lock()
		got, ch := sp.rounds, sp.notify
		sp.mu.Unlock()
		if got >= want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("sprayer stalled at round %d of %d", got, want)
		case <-ch:
		}
	}
}

// stop ends the spraying and closes the socket; idempotent.
func (sp *sprayer) stop() {
	sp.once.Do(func() {
		close(sp.quit)
		<-sp.done
		sp.took = time.Since(sp.start)
		sp.conn.Close()
	})
}

// report logs what the sprayer sent and what cleanline dropped for it, the
// figures BENCHMARKS.md quotes.
func (sp *sprayer) report(t *testing.T, e *env) (trunk, line float64) {
	t.Helper()
	sp.stop()
	trunk = value(t, e.s.metrics.foreign.WithLabelValues("trunk"))
	line = value(t, e.s.metrics.foreign.WithLabelValues("line"))
	sp.mu.Lock()
	rounds := sp.rounds
	sp.mu.Unlock()
	t.Logf("sprayer: %d packets to ports %d-%d in %d rounds over %s (%.0f packets/s, %d send errors); cleanline_rtp_foreign_dropped_total trunk %.0f, line %.0f",
		sp.sent.Load(), sp.min, sp.max, rounds, sp.took.Round(time.Millisecond), float64(sp.sent.Load())/sp.took.Seconds(), sp.errs.Load(), trunk, line)
	return trunk, line
}

// noSpray fails if any packet a phone received is the sprayer's: checked
// one by one, audio and events alike.
func noSpray(t *testing.T, who string, r *siptest.RTP) {
	t.Helper()
	for i, p := range r.Packets() {
		if p.Pkt.SSRC == spraySSRC || (len(p.Pkt.Payload) > 0 && bytes.Count(p.Pkt.Payload, []byte{sprayFill}) == len(p.Pkt.Payload)) {
			t.Fatalf("%s received the sprayer's packet (#%d of %d: SSRC %#x PT %d)", who, i, r.Count(), p.Pkt.SSRC, p.Pkt.PayloadType)
		}
	}
}

// countFill is how many G.711 packets filled with fill r received.
func countFill(r *siptest.RTP, fill byte) int {
	n := 0
	for _, p := range r.Packets() {
		if len(p.Pkt.Payload) == 160 && bytes.Count(p.Pkt.Payload, []byte{fill}) == 160 {
			n++
		}
	}
	return n
}

// send sends n G.711 packets filled with fill from one phone to the other
// and waits until all of them have arrived.
func send(ctx context.Context, t *testing.T, what string, from, to *siptest.RTP, n int, fill byte) {
	t.Helper()
	want := countFill(to, fill) + n
	if err := from.Send(n, media.PayloadTypePCMA, fill); err != nil {
		t.Fatal(err)
	}
	for {
		seen := to.Count() // before counting: a packet after it ends the wait
		if countFill(to, fill) >= want {
			return
		}
		if err := to.WaitCount(ctx, seen+1); err != nil {
			t.Fatalf("%s: %d of %d packets arrived: %v", what, countFill(to, fill)-want+n, n, err)
		}
	}
}

// talkUnderSpray sends n packets each way and waits for all of them.
func talkUnderSpray(ctx context.Context, t *testing.T, out *siptest.Outgoing, in *siptest.Incoming, n int) {
	t.Helper()
	send(ctx, t, "caller→line", out.RTP, in.RTP, n, 0x11)
	send(ctx, t, "line→caller", in.RTP, out.RTP, n, 0x22)
}

// sprayedWarned places a warned call while the sprayer runs: the caller
// hears 180, the line rings under the spray and answers, and the warning
// starts.
func sprayedWarned(ctx context.Context, t *testing.T, e *env, sp *sprayer) (*siptest.Outgoing, *siptest.Incoming) {
	t.Helper()
	sp.waitRounds(ctx, t, 3) // set-up under the spray
	out := e.dial(callerSuspect)
	if _, err := out.WaitProvisional(ctx, 180); err != nil {
		t.Fatal(err)
	}
	in, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pt := in.TelephoneEventPT()
	found := false
	for _, p := range sp.pts {
		found = found || p == pt
	}
	if !found {
		t.Fatalf("the line negotiated telephone-event %d, which the sprayer does not press 1 with (%v)", pt, sp.pts)
	}
	sp.waitRounds(ctx, t, 40) // ringing for a second under the spray, as in the issue
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	return out, in
}

// heardWarning waits until the line has heard n packets of the warning.
func heardWarning(ctx context.Context, t *testing.T, in *siptest.Incoming, n int) {
	t.Helper()
	if err := in.RTP.WaitCount(ctx, n); err != nil {
		t.Fatalf("the line heard %d packets of the warning, want %d: %v", in.RTP.Count(), n, err)
	}
}

// TestSprayAllowedCallKeepsItsAudio: an allowed call set up, rung and
// talked under the spray: both parties hear each other and nothing else.
func TestSprayAllowedCallKeepsItsAudio(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	sp := startSpraying(t, e, media.CodecTelephoneEvent.PT, 96)
	sp.waitRounds(ctx, t, 3)
	out := e.dial(callerOK)
	in, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Ring(); err != nil {
		t.Fatal(err)
	}
	if _, err := out.WaitProvisional(ctx, 180); err != nil {
		t.Fatal(err)
	}
	sp.waitRounds(ctx, t, 40) // ringing for a second under the spray, as in the issue
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	talkUnderSpray(ctx, t, out, in, 50)
	sp.waitRounds(ctx, t, 20) // the bridged call under the spray
	talkUnderSpray(ctx, t, out, in, 50)
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	waitEnded(ctx, t, in.Ended())
	e.waitNoCalls()
	trunk, line := sp.report(t, e)
	noSpray(t, "the line", in.RTP)
	noSpray(t, "the caller", out.RTP)
	if trunk == 0 || line == 0 {
		t.Fatalf("foreign drops trunk %.0f line %.0f: the spray never reached the call's ports", trunk, line)
	}
}

// TestSprayWarnedCallSprayedOneNeverConnects: the person's phone answers
// the warning and stays silent. The sprayer presses 1 at every port with
// the payload type the line negotiated and with 101, hundreds of times;
// the call is refused when the choice times out, and the caller, who heard
// only ringing, never gets 200.
func TestSprayWarnedCallSprayedOneNeverConnects(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	sp := startSpraying(t, e, media.CodecTelephoneEvent.PT, 101, 96)
	out, in := sprayedWarned(ctx, t, e, sp)
	lineBefore := value(t, e.s.metrics.foreign.WithLabelValues("line"))
	res, err := out.WaitFinal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 603 {
		t.Fatalf("the caller got %d, want 603: a sprayed 1 connected a warned call", res.StatusCode)
	}
	if err := e.waitRecord(ctx, outcomeWarnTimeout); err != nil {
		t.Fatal(err)
	}
	waitEnded(ctx, t, in.Ended())
	e.waitNoCalls()
	// The whole warning (0.4 s: 20 packets) reached the person, not the sprayer.
	heardWarning(ctx, t, in, 20)
	_, line := sp.report(t, e)
	if line <= lineBefore {
		t.Fatalf("no foreign drop on the line's leg during the warning (%.0f → %.0f): the spray missed it", lineBefore, line)
	}
	noSpray(t, "the line", in.RTP)
	if n := out.RTP.Count(); n != 0 {
		t.Fatalf("the refused caller received %d packets", n)
	}
}

// TestSprayWarnedCallRealOneConnects: under the same spray, the person's
// own 1 still connects, and the bridged call's audio crosses both ways.
func TestSprayWarnedCallRealOneConnects(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	sp := startSpraying(t, e, media.CodecTelephoneEvent.PT, 101, 96)
	out, in := sprayedWarned(ctx, t, e, sp)
	heardWarning(ctx, t, in, 5) // the person hears the warning, then presses 1
	if err := in.RTP.SendDTMF('1', in.TelephoneEventPT()); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	talkUnderSpray(ctx, t, out, in, 50)
	sp.waitRounds(ctx, t, 20)
	talkUnderSpray(ctx, t, out, in, 50)
	if err := in.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	waitEnded(ctx, t, out.Ended())
	e.waitNoCalls()
	sp.report(t, e)
	noSpray(t, "the line", in.RTP)
	noSpray(t, "the caller", out.RTP)
	if e.logs.FilterMessage("call").FilterField(zap.String("choice", ChoiceConnect)).Len() != 1 {
		t.Fatal("the call record does not say the person chose to connect")
	}
}

// TestSprayForgedInfoNeverPressesTheDigit: SIP INFO digits count only from
// the dialog's own peer. An INFO "Signal=1" naming the line's dialog
// exactly, forged from the trunk's address (a known peer, another dialog)
// and from a stranger's, gets 403 and presses nothing: the warned call is
// refused when the choice times out.
func TestSprayForgedInfoNeverPressesTheDigit(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 30*time.Second)
	out, in := e.warned()
	if err := in.RTP.WaitCount(ctx, 5); err != nil {
		t.Fatal(err)
	}
	for _, ip := range []string{ipTrunk, ipStranger} {
		if code := forgeLineRequest(ctx, t, e, in, newRawPeer(t, ip), "INFO", "Signal=1\r\nDuration=100\r\n"); code != sip.StatusForbidden {
			t.Errorf("INFO 1 forged from %s: %d, want 403", ip, code)
		}
	}
	if res := wantFinal(t, out, 603); res == nil {
		t.Fatal("no final response")
	}
	if err := e.waitRecord(ctx, outcomeWarnTimeout); err != nil {
		t.Fatal(fmt.Errorf("a forged INFO decided the call: %w", err))
	}
}

// TestSprayNATLineLatchesItsSignallingIP: a line marked `nat: true` whose
// media leaves from another port than its SDP names (a NAT rewrote it) is
// heard, and hears the caller at that port, under the spray; the sprayer,
// on another IP, latches nothing. The same device on a line not marked
// so is not heard: every packet of it is foreign.
func TestSprayNATLineLatchesItsSignallingIP(t *testing.T) {
	for _, nat := range []bool{true, false} {
		t.Run(fmt.Sprintf("nat=%v", nat), func(t *testing.T) {
			e := newEnv(t, withCfg(func(c *Config) { c.Lines[0].NAT = nat }))
			ctx := ctxT(t, 30*time.Second)
			var sp *sprayer
			if nat {
				sp = startSpraying(t, e, media.CodecTelephoneEvent.PT, 96)
				sp.waitRounds(ctx, t, 3)
			}
			out := e.dial(callerOK)
			in, err := e.line.Incoming(ctx)
			if err != nil {
				t.Fatal(err)
			}
			mapped, err := in.RTP.BehindNAT()
			if err != nil {
				t.Fatal(err)
			}
			if sp != nil {
				sp.waitRounds(ctx, t, 40) // ringing under the spray
			}
			if err := in.Answer(); err != nil {
				t.Fatal(err)
			}
			wantFinal(t, out, 200)
			if !nat {
				before := value(t, e.s.metrics.foreign.WithLabelValues("line"))
				if err := in.RTP.Send(50, media.PayloadTypePCMA, 0x22); err != nil {
					t.Fatal(err)
				}
				deadline := time.Now().Add(5 * time.Second)
				for value(t, e.s.metrics.foreign.WithLabelValues("line")) < before+50 {
					if time.Now().After(deadline) {
						t.Fatal("the NATed line's packets were not counted foreign")
					}
					time.Sleep(5 * time.Millisecond) // a counter: nothing to wait on
				}
				if n := countFill(out.RTP, 0x22); n != 0 {
					t.Fatalf("the caller heard %d packets from a port the line's SDP does not name, on a line without nat", n)
				}
				return
			}
			// The line speaks first (from the NAT's port): the leg latches it.
			send(ctx, t, "line→caller", in.RTP, out.RTP, 50, 0x22)
			send(ctx, t, "caller→line", out.RTP, in.RTP, 50, 0x11)
			for _, p := range in.RTP.Packets() {
				if bytes.Count(p.Pkt.Payload, []byte{0x11}) == 160 && p.Local != mapped {
					t.Fatalf("the caller's audio went to %s, not the NAT's mapping %s", p.Local, mapped)
				}
			}
			sp.waitRounds(ctx, t, 20)
			talkUnderSpray(ctx, t, out, in, 50)
			if err := out.Bye(ctx); err != nil {
				t.Fatal(err)
			}
			waitEnded(ctx, t, in.Ended())
			e.waitNoCalls()
			sp.report(t, e)
			noSpray(t, "the line", in.RTP)
			noSpray(t, "the caller", out.RTP)
		})
	}
}
