package sip

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// What a flood costs (issue 12 §4): strangers over sip.limits'
// rate_per_source are banned and then forgiven, trunks never are, and
// what sipgo keeps of answered requests is capped. `go test -run Flood`.

// floodReq is a request from peer to cleanline at dst with its own
// Call-ID and branch (a new transaction), never to be ACKed.
func floodReq(method sip.RequestMethod, user string, peer, dst netip.AddrPort, id string) string {
	return fmt.Sprintf("%s sip:%s@%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:%s@%s>;tag=f%s\r\n"+
		"To: <sip:%s@%s>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: 1 %s\r\n"+
		"Contact: <sip:x@%s>\r\n"+
		"Content-Length: 0\r\n\r\n",
		method, user, dst, peer, id, callerOK, peer.Addr(), id, user, dst, id, method, peer)
}

// paced sends n requests built by msg(i) from p at rate per second, in
// batches every 10 ms, as a busy peer would rather than all in one burst
// that only the kernel's socket buffers would see.
func (p *rawPeer) paced(t *testing.T, dst netip.AddrPort, n, rate int, msg func(i int) string) {
	t.Helper()
	to := net.UDPAddrFromAddrPort(dst)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for i := 0; i < n; {
		for due := min(n, int(time.Since(start).Seconds()*float64(rate))+1); i < due; i++ {
			if _, err := p.pc.WriteTo([]byte(msg(i)), to); err != nil {
				t.Fatal(err)
			}
		}
		<-tick.C
	}
}

// answers counts the final responses p got per Call-ID with the given
// prefix (retransmissions included), leaving them taken.
func (p *rawPeer) finals(prefix string) map[string]int {
	out := map[string]int{}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.msgs {
		if r, ok := m.msg.(*sip.Response); ok && !r.IsProvisional() && r.CallID() != nil {
			if id := r.CallID().Value(); len(id) >= len(prefix) && id[:len(prefix)] == prefix {
				out[id]++
			}
		}
	}
	return out
}

// waitFor polls cond (cheap reads of counters) until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, with a deadline
	}
}

// answeredWithin reports whether p gets a final response to Call-ID id
// within d.
func (p *rawPeer) answeredWithin(d time.Duration, id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, err := p.take(ctx, "answer to "+id, func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && !r.IsProvisional() && r.CallID() != nil && r.CallID().Value() == id
	})
	return err == nil
}

// A stranger flooding INVITEs or OPTIONS above sip.limits.rate_per_source
// is banned: after its burst it gets no answer at all, one log line says
// so, and ban_for later it is answered again.
func TestFloodStrangerIsBannedThenForgiven(t *testing.T) {
	for _, method := range []sip.RequestMethod{sip.INVITE, sip.OPTIONS} {
		t.Run(string(method), func(t *testing.T) {
			const rate, burst, banFor, n = 10, 10, 2 * time.Second, 60
			e := newEnv(t, withCfg(func(c *Config) {
				c.Limits.RatePerSource, c.Limits.BurstPerSource, c.Limits.BanFor = rate, burst, banFor
			}))
			stranger := newRawPeer(t, ipStranger)
			dst := e.s.Addr("udp")
			to := net.UDPAddrFromAddrPort(dst)
			send := func(id string) {
				if _, err := stranger.pc.WriteTo([]byte(floodReq(method, lineNumber, stranger.addr, dst, id)), to); err != nil {
					t.Fatal(err)
				}
			}
			start := time.Now()
			for i := range n {
				send(fmt.Sprintf("flood%d", i))
			}
			sent := time.Since(start)
			waitFor(t, 5*time.Second, "the ban", func() bool { return e.s.rates.Bans() == 1 })
			// The first request is answered (403, stateless); beyond the burst
			// and what the rate refilled while sending, nothing is.
			if !stranger.answeredWithin(3*time.Second, "flood0") {
				t.Fatal("the flood's first request got no answer")
			}
			most := burst + int(sent.Seconds()*rate) + 1
			if got := len(stranger.finals("flood")); got > most {
				t.Fatalf("%d of %d flooding requests answered, want at most %d (burst %d, rate %d/s over %s)", got, n, most, burst, rate, sent)
			}
			// Banned: a request is dropped unread, and never answered.
			dropped := e.s.rates.Dropped()
			send("probe-banned")
			waitFor(t, 3*time.Second, "the probe dropped", func() bool { return e.s.rates.Dropped() > dropped })
			if stranger.answeredWithin(300*time.Millisecond, "probe-banned") {
				t.Fatal("a banned source was answered")
			}
			if k := e.logs.FilterMessage("source banned: over its request rate").Len(); k != 1 {
				t.Fatalf("%d ban log lines, want 1 (one per ban, not per packet)", k)
			}
			// ban_for after the ban began (after start), it is answered again.
			var answeredAt time.Time
			for i := 0; answeredAt.IsZero(); i++ {
				if time.Since(start) > banFor+5*time.Second {
					t.Fatalf("still no answer %s after the flood began (ban_for %s)", time.Since(start), banFor)
				}
				id := fmt.Sprintf("probe%d", i)
				at := time.Now()
				send(id)
				if stranger.answeredWithin(150*time.Millisecond, id) {
					answeredAt = at
				}
			}
			if answeredAt.Sub(start) < banFor {
				t.Fatalf("answered again %s after the flood began, before ban_for %s", answeredAt.Sub(start), banFor)
			}
			if e.s.rates.Bans() != 1 {
				t.Fatalf("%d bans; the probes at a low rate must not ban again", e.s.rates.Bans())
			}
		})
	}
}

// A stranger's 403 is stateless (RFC 3261 §8.2.7): never retransmitted,
// nothing retained, however long it goes without an ACK.
func TestFloodStrangerAnswerIsStateless(t *testing.T) {
	e := newEnv(t)
	stranger := newRawPeer(t, ipStranger)
	dst := e.s.Addr("udp")
	if _, err := stranger.pc.WriteTo([]byte(floodReq(sip.INVITE, lineNumber, stranger.addr, dst, "once")), net.UDPAddrFromAddrPort(dst)); err != nil {
		t.Fatal(err)
	}
	if !stranger.answeredWithin(3*time.Second, "once") {
		t.Fatal("no 403")
	}
	// Timer G would retransmit the 403 at 0.5 s and 1.5 s (T1 = 500 ms).
	if stranger.answeredWithin(1700*time.Millisecond, "once") {
		t.Fatal("the 403 to a stranger was retransmitted: its transaction was kept")
	}
	if k := e.s.kept.len(); k != 0 {
		t.Fatalf("%d transactions retained after a stranger's INVITE", k)
	}
}

// A legitimate call from the trunk completes, media and all, while a
// stranger floods INVITEs; the stranger is banned after its burst and gets
// nothing more.
func TestFloodTrunkCallCompletesDuringStrangerFlood(t *testing.T) {
	e := newEnv(t) // default limits: 20/s, burst 40, ban 60 s
	stranger := newRawPeer(t, ipStranger)
	dst := e.s.Addr("udp")
	to := net.UDPAddrFromAddrPort(dst)
	var sent atomic.Int64
	stop := make(chan struct{})
	flooded := make(chan struct{})
	go func() {
		defer close(flooded)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			for range 10 { // 2,000/s
				msg := floodReq(sip.INVITE, lineNumber, stranger.addr, dst, fmt.Sprintf("flood%d", sent.Add(1)))
				if _, err := stranger.pc.WriteTo([]byte(msg), to); err != nil {
					return
				}
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	waitFor(t, 5*time.Second, "the stranger banned", func() bool { return e.s.rates.Bans() == 1 })
	talkThenHangUp(t, e)
	// Flooding on after the call, so that it is seen through (1,000 INVITEs).
	waitFor(t, 10*time.Second, "1,000 INVITEs flooded", func() bool { return sent.Load() >= 1000 })
	close(stop)
	<-flooded
	// Burst 40, and 20/s refilled while the first 40 went out (milliseconds).
	if got := len(stranger.finals("flood")); got == 0 || got > 45 {
		t.Fatalf("%d of %d flooding INVITEs answered, want 1..45", got, sent.Load())
	}
	t.Logf("%d flooding INVITEs sent, %d answered, %d dropped unread", sent.Load(), len(stranger.finals("flood")), e.s.rates.Dropped())
}

// A trunk sending well above a stranger's rate is never banned: every
// request is answered, its calls go through, and what sipgo keeps of the
// answers stays within sip.limits.retained_transactions.
func TestFloodFromTrunkAddressIsNeverBanned(t *testing.T) {
	// 500 OPTIONS at 500/s: 25 times a stranger's rate, 12 times its burst.
	const n, rate, keep = 500, 500, 50
	e := newEnv(t, withCfg(func(c *Config) { c.Limits.RetainedTransactions = keep }))
	trunk := newRawPeer(t, ipTrunk)
	dst := e.s.Addr("udp")
	trunk.paced(t, dst, n, rate, func(i int) string {
		return floodReq(sip.OPTIONS, lineNumber, trunk.addr, dst, fmt.Sprintf("opt%d", i))
	})
	waitFor(t, 10*time.Second, "every OPTIONS answered", func() bool { return len(trunk.finals("opt")) == n })
	if b := e.s.rates.Bans(); b != 0 {
		t.Fatalf("%d bans from the trunk's own traffic", b)
	}
	if k := e.s.kept.len(); k > keep {
		t.Fatalf("%d transactions retained, want at most %d", k, keep)
	}
	if shed := e.s.kept.shed.Load(); shed < n-keep {
		t.Fatalf("%d transactions shed, want at least %d", shed, n-keep)
	}
	talkThenHangUp(t, e)
}

// N never-ACKed INVITEs from the trunk's address leave at most the cap of
// transactions retransmitting their final response (Timer G); without
// the cap every one of them would, for 32 s (Timer H).
func TestFloodRetainedInvitesCapped(t *testing.T) {
	const n, keep = 150, 20
	e := newEnv(t, withCfg(func(c *Config) { c.Limits.RetainedTransactions = keep }))
	trunk := newRawPeer(t, ipTrunk)
	dst := e.s.Addr("udp")
	// No line has this number: 404, which waits for an ACK that never comes.
	trunk.paced(t, dst, n, 500, func(i int) string {
		return floodReq(sip.INVITE, "+442079460999", trunk.addr, dst, fmt.Sprintf("inv%d", i))
	})
	waitFor(t, 10*time.Second, "every INVITE answered", func() bool { return len(trunk.finals("inv")) == n })
	if k := e.s.kept.len(); k > keep {
		t.Fatalf("%d transactions retained, want at most %d", k, keep)
	}
	if shed := e.s.kept.shed.Load(); shed < n-keep {
		t.Fatalf("%d transactions shed, want at least %d", shed, n-keep)
	}
	// Count the 404s retransmitted from 300 ms on (what shed transactions
	// sent before they were shed has arrived by then): Timer G fires 0.5 s
	// and 1.5 s after each first 404, so 1.7 s sees every live one.
	settle, cancelSettle := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelSettle()
	<-settle.Done() // a measuring window, not synchronisation
	before := trunk.finals("inv")
	ctx, cancel := context.WithTimeout(context.Background(), 1700*time.Millisecond)
	defer cancel()
	<-ctx.Done() // a measuring window, not synchronisation
	after := trunk.finals("inv")
	retransmitted := 0
	for id, k := range after {
		if k > before[id] {
			retransmitted++
		}
	}
	t.Logf("%d INVITEs answered 404, %d still retransmitting, %d retained, %d shed", n, retransmitted, e.s.kept.len(), e.s.kept.shed.Load())
	if retransmitted > keep {
		t.Fatalf("%d transactions retransmitted their 404, want at most the cap %d", retransmitted, keep)
	}
	if retransmitted == 0 {
		t.Fatal("no 404 retransmitted: the retained transactions should still be (RFC 3261 §17.2.1)")
	}
}

// The flood keys are checked like every other: a bad value is a one-line
// error naming the key; unset ones take their defaults.
func TestFloodLimitsConfig(t *testing.T) {
	for _, c := range []struct {
		l    Limits
		want string
	}{
		{Limits{RatePerSource: -2}, "sip.limits.rate_per_source"},
		{Limits{BurstPerSource: -1}, "sip.limits.burst_per_source"},
		{Limits{BanFor: -time.Second}, "sip.limits.ban_for"},
		{Limits{RetainedTransactions: -2}, "sip.limits.retained_transactions"},
	} {
		cfg := Config{Advertise: "127.0.0.1", Trunks: []Trunk{{Name: "provider", Sources: []string{ipTrunk}}},
			Lines: []Line{{Name: "home", Numbers: []string{lineNumber}, Contact: "sip:home@127.0.0.3"}}, Limits: c.l}
		cfg.Defaults()
		err := cfg.Validate()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an ErrConfig naming %s", c.l, err, c.want)
		}
	}
	var cfg Config
	cfg.Defaults()
	if l := cfg.Limits; l.RatePerSource != 20 || l.BurstPerSource != 40 || l.BanFor != time.Minute || l.RetainedTransactions != 4096 {
		t.Errorf("defaults: %+v", l)
	}
}

// Over TCP a stranger's messages are counted, not its reads; once banned
// its connection is closed, and a new one is closed at its first message,
// unanswered.
func TestFloodStrangerOverTCPIsCutOff(t *testing.T) {
	const rate, burst, n = 10, 10, 60
	e := newEnv(t, withCfg(func(c *Config) {
		c.Limits.RatePerSource, c.Limits.BurstPerSource, c.Limits.BanFor = rate, burst, time.Minute
		c.Listen = append(c.Listen, Listener{Network: "tcp", Addr: ipCleanline + ":0"})
	}))
	dst := e.s.Addr("tcp")
	dial := func() net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ipStranger)}, Timeout: 3 * time.Second}
		c, err := d.Dial("tcp", dst.String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// readAll reads until cleanline closes the connection (or the deadline
	// fails the test): what it answered first.
	readAll := func(c net.Conn) string {
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		var got []byte
		buf := make([]byte, 65535)
		for {
			k, err := c.Read(buf)
			got = append(got, buf[:k]...)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("the banned source's connection is still open after 5 s (read %d bytes)", len(got))
				}
				return string(got)
			}
		}
	}
	local := func(c net.Conn) netip.AddrPort { return c.LocalAddr().(*net.TCPAddr).AddrPort() }
	c := dial()
	var all strings.Builder
	for i := range n {
		all.WriteString(strings.Replace(floodReq(sip.OPTIONS, lineNumber, local(c), dst, fmt.Sprintf("tcp%d", i)), "SIP/2.0/UDP", "SIP/2.0/TCP", 1))
	}
	if _, err := c.Write([]byte(all.String())); err != nil {
		t.Fatal(err)
	}
	answers := strings.Count(readAll(c), "SIP/2.0 403")
	if answers > burst+1 {
		t.Fatalf("%d of %d messages sent in one write answered, want at most the burst %d", answers, n, burst)
	}
	if e.s.rates.Bans() != 1 {
		t.Fatalf("%d bans, want 1", e.s.rates.Bans())
	}
	c2 := dial()
	if _, err := c2.Write([]byte(strings.Replace(floodReq(sip.OPTIONS, lineNumber, local(c2), dst, "tcp-again"), "SIP/2.0/UDP", "SIP/2.0/TCP", 1))); err != nil {
		t.Fatal(err)
	}
	if got := readAll(c2); strings.Contains(got, "SIP/2.0") {
		t.Fatalf("a banned source's new connection was answered: %q", got)
	}
}

// Where we send requests is a known source too: the responses of a trunk's
// outbound proxy or of a line's device are never rate limited, even when
// its address is not among the sources.
func TestFloodPeersIncludeOutboundAndContactHosts(t *testing.T) {
	cfg := Config{Advertise: "127.0.0.1",
		Trunks: []Trunk{{Name: "provider", Sources: []string{ipTrunk}, Outbound: "sip:127.0.0.9:5060"}},
		Lines:  []Line{{Name: "home", Numbers: []string{lineNumber}, Contact: "sip:home@127.0.0.8:5070", Sources: []string{ipLine}}}}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: cfg}
	s.rt.Store(&routing{cfg: cfg, peerHosts: hostsOf(&cfg)})
	for ip, want := range map[string]bool{ipTrunk: true, ipLine: true, "127.0.0.9": true, "127.0.0.8": true, ipStranger: false, "::ffff:127.0.0.9": true} {
		if got := s.knownSource(netip.MustParseAddr(ip)); got != want {
			t.Errorf("knownSource(%s) = %v, want %v", ip, got, want)
		}
	}
}
