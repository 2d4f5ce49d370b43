package load

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// startAnswerer runs an answering endpoint on a free loopback port and
// stops it when the test ends; the report comes from stop.
func startAnswerer(t *testing.T, cfg AnswerConfig) (*Answerer, func() AnswerReport) {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	if cfg.Transport == "" {
		cfg.Transport = "udp"
	}
	a, err := StartAnswerer(cfg)
	if err != nil {
		t.Fatalf("StartAnswerer: %v", err)
	}
	var rep *AnswerReport
	stop := func() AnswerReport {
		if rep == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			r := a.Close(ctx)
			rep = &r
		}
		return *rep
	}
	t.Cleanup(func() { stop() })
	return a, stop
}

func numbers(t *testing.T, blocked []string, fraction float64) *Numbers {
	t.Helper()
	nc := NumbersConfig{PoolSize: 1000, PoolPrefix: "+4479460", BlockedFraction: fraction, Seed: 7}
	if len(blocked) > 0 {
		nc.BlocklistFile = filepath.Join(t.TempDir(), "blocked.txt")
		if err := os.WriteFile(nc.BlocklistFile, []byte(strings.Join(blocked, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	n, err := NewNumbers(nc)
	if err != nil {
		t.Fatalf("NewNumbers: %v", err)
	}
	return n
}

func callConfig(target *net.UDPAddr, n *Numbers) CallConfig {
	return CallConfig{
		Target: target.String(), Transport: "udp", Bind: "127.0.0.1:0", To: "line",
		Steps: []float64{40}, StepDuration: 1500 * time.Millisecond, Hold: 200 * time.Millisecond,
		AnswerTimeout: 5 * time.Second, MaxConcurrent: 1000, Numbers: n, ProbeTimeout: 3 * time.Second,
	}
}

func TestCallAgainstAnswerCountsOutcomesAndRTP(t *testing.T) {
	for _, transport := range []string{"udp", "tcp"} {
		t.Run(transport, func(t *testing.T) {
			blocked := []string{"+447700900001", "+447700900002", "+447700900003"}
			decline := map[string]bool{}
			for _, b := range blocked {
				decline[b] = true
			}
			a, stop := startAnswerer(t, AnswerConfig{Transport: transport, RTP: true, Decline: decline, Ring: 10 * time.Millisecond,
				Watch: 200 * time.Millisecond, Grace: 20 * time.Millisecond})
			cfg := callConfig(a.Addr(), numbers(t, blocked, 0.3))
			cfg.Transport = transport
			cfg.RTP = true
			rep, err := RunCalls(context.Background(), cfg)
			if err != nil {
				t.Fatalf("RunCalls: %v", err)
			}
			ar := stop()
			if len(rep.Steps) != 1 {
				t.Fatalf("steps = %d, want 1", len(rep.Steps))
			}
			s := rep.Steps[0]
			if s.Attempted != 60 {
				t.Errorf("placed %d calls, want 40/s * 1.5s = 60", s.Attempted)
			}
			if s.Failed+s.TimedOut+s.Errors+s.Capped+s.HangupFailed != 0 || rep.Unfinished != 0 {
				t.Errorf("failures: %+v unfinished %d", s, rep.Unfinished)
			}
			if s.BlockedDrawn == 0 || s.BlockedDrawn == s.Attempted {
				t.Fatalf("blocked callers drawn = %d of %d: the draw is not mixing", s.BlockedDrawn, s.Attempted)
			}
			if s.Declined != s.BlockedDrawn || s.DeclinedBlock != s.BlockedDrawn {
				t.Errorf("declined %d (of them blocked %d), want exactly the %d blocked callers", s.Declined, s.DeclinedBlock, s.BlockedDrawn)
			}
			if s.Answered != s.Attempted-s.BlockedDrawn {
				t.Errorf("answered %d, want %d", s.Answered, s.Attempted-s.BlockedDrawn)
			}
			if s.PDD.N != s.Answered || s.Final.N != s.Attempted || s.Hangup.N != s.Answered {
				t.Errorf("latency samples pdd %d final %d hangup %d for %d calls", s.PDD.N, s.Final.N, s.Hangup.N, s.Attempted)
			}
			if ar.Invites != int64(s.Attempted) || ar.Answered != int64(s.Answered) || ar.Declined != int64(s.Declined) {
				t.Errorf("answerer saw invites %d answered %d declined %d", ar.Invites, ar.Answered, ar.Declined)
			}
			if ar.ByeReceived != int64(s.Answered) {
				t.Errorf("answerer got %d BYEs for %d answered calls", ar.ByeReceived, s.Answered)
			}
			// Both directions: every answered call received audio at each end.
			if s.RTPRecv == 0 || ar.RTPRecv == 0 || ar.CallsNoRTP != 0 || s.RTPBad+ar.RTPBad != 0 {
				t.Errorf("rtp: caller recv %d bad %d; answerer recv %d bad %d, %d calls without", s.RTPRecv, s.RTPBad, ar.RTPRecv, ar.RTPBad, ar.CallsNoRTP)
			}
			if ar.LateCalls != 0 || ar.StrayRequests != 0 {
				t.Errorf("a well-behaved caller caused late traffic on %d calls, %d stray requests: %+v", ar.LateCalls, ar.StrayRequests, ar.Calls)
			}
		})
	}
}

// The detector must be able to fail: a caller that keeps sending RTP and an
// INFO after the hang-up, straight to the line with nothing in between, is
// what CleanLine has to stop, and the answerer must see every such call.
func TestAnswerDetectsTrafficAfterHangup(t *testing.T) {
	a, stop := startAnswerer(t, AnswerConfig{RTP: true, Watch: 400 * time.Millisecond, Grace: 10 * time.Millisecond})
	cfg := callConfig(a.Addr(), numbers(t, nil, 0))
	cfg.Steps, cfg.StepDuration = []float64{20}, 500*time.Millisecond
	cfg.RTP, cfg.LateRTP, cfg.LateInfo = true, 120*time.Millisecond, true
	rep, err := RunCalls(context.Background(), cfg)
	if err != nil {
		t.Fatalf("RunCalls: %v", err)
	}
	ar := stop()
	answered := int64(rep.Steps[0].Answered)
	if answered != 10 {
		t.Fatalf("answered %d, want 10", answered)
	}
	if ar.LateCalls != answered || ar.LateRequests != answered || ar.LatePackets < uint64(answered) {
		t.Errorf("late calls %d requests %d packets %d, want every one of %d calls flagged", ar.LateCalls, ar.LateRequests, ar.LatePackets, answered)
	}
	for _, c := range ar.Calls {
		if !c.Late || c.FirstLateMs <= 0 {
			t.Errorf("call record %+v not flagged late", c)
		}
	}
}

func TestAnswererHangsUpAndCallerCountsIt(t *testing.T) {
	a, stop := startAnswerer(t, AnswerConfig{HangupAfter: 50 * time.Millisecond})
	cfg := callConfig(a.Addr(), numbers(t, nil, 0))
	cfg.Steps, cfg.StepDuration, cfg.Hold = []float64{20}, 500*time.Millisecond, time.Minute
	rep, err := RunCalls(context.Background(), cfg)
	if err != nil {
		t.Fatalf("RunCalls: %v", err)
	}
	ar := stop()
	s := rep.Steps[0]
	if s.Answered != 10 || s.HangupFailed != 0 || s.Hangup.N != 0 {
		t.Errorf("answered %d hangup failed %d, caller BYEs %d: want 10, 0, 0", s.Answered, s.HangupFailed, s.Hangup.N)
	}
	if ar.ByeSent != 10 || ar.ByeFailed != 0 || ar.LateCalls != 0 {
		t.Errorf("answerer BYE sent %d failed %d late %d", ar.ByeSent, ar.ByeFailed, ar.LateCalls)
	}
}

func TestDeclineEverythingIsNotAFailure(t *testing.T) {
	blocked := []string{"+447700900009"}
	a, stop := startAnswerer(t, AnswerConfig{Decline: map[string]bool{blocked[0]: true}})
	cfg := callConfig(a.Addr(), numbers(t, blocked, 1))
	cfg.Steps, cfg.StepDuration = []float64{20}, 250*time.Millisecond
	rep, err := RunCalls(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if s := rep.Steps[0]; s.Declined != 5 || s.FailureRatio != 0 {
		t.Errorf("declined %d failure ratio %g", s.Declined, s.FailureRatio)
	}
}

func TestUnreachableTarget(t *testing.T) {
	// A port nobody listens on: bind one and let it go.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udp := pc.LocalAddr().(*net.UDPAddr)
	pc.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcp := l.Addr().(*net.TCPAddr)
	l.Close()
	for _, tc := range []struct{ transport, target string }{{"udp", udp.String()}, {"tcp", tcp.String()}} {
		cfg := callConfig(udp, numbers(t, nil, 0))
		cfg.Transport, cfg.Target, cfg.ProbeTimeout = tc.transport, tc.target, 600*time.Millisecond
		start := time.Now()
		_, err := RunCalls(context.Background(), cfg)
		if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), tc.target) {
			t.Errorf("%s: err = %v, want ErrUnreachable naming %s", tc.transport, err, tc.target)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: took %s to give up", tc.transport, d)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	n := &Numbers{pool: []string{"+441"}}
	good := CallConfig{Target: "127.0.0.1:5060", Transport: "udp", To: "line", Steps: []float64{1},
		StepDuration: time.Second, AnswerTimeout: time.Second, MaxConcurrent: 1, Numbers: n}
	for name, mut := range map[string]func(*CallConfig){
		"no target":     func(c *CallConfig) { c.Target = "" },
		"no steps":      func(c *CallConfig) { c.Steps = nil },
		"zero rate":     func(c *CallConfig) { c.Steps = []float64{0} },
		"bad transport": func(c *CallConfig) { c.Transport = "sctp" },
		"bad to":        func(c *CallConfig) { c.To = "a@b" },
		"stop above":    func(c *CallConfig) { c.StopAbove = 1 },
	} {
		c := good
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: err = %v, want one-line ErrConfig", name, err)
		}
	}
	if err := good.Validate(); err != nil {
		t.Errorf("good config: %v", err)
	}
	if _, err := NewNumbers(NumbersConfig{PoolSize: 10, PoolPrefix: "+44", BlockedFraction: 0.5}); !errors.Is(err, ErrConfig) {
		t.Errorf("fraction without blocklist: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "n.txt")
	if err := os.WriteFile(bad, []byte("+441234\nnot-a-number\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadNumbers(bad); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), ":2:") {
		t.Errorf("bad numbers file: %v", err)
	}
}

func TestParseSDPAndPercentiles(t *testing.T) {
	md, ok := parseSDP(buildSDP(net.IPv4(127, 0, 0, 1), 4000, 4000000000, 8, 0))
	if !ok || md.addr.Port != 4000 || md.pt != 8 || !md.addr.IP.Equal(net.IPv4(127, 0, 0, 1)) || !md.hasSSRC || md.ssrc != 4000000000 {
		t.Errorf("parseSDP = %+v %v", md, ok)
	}
	if md, ok := parseSDP(buildSDP(net.IPv4(127, 0, 0, 1), 4000, 0, 0)); !ok || md.hasSSRC {
		t.Errorf("parseSDP without a=ssrc = %+v %v", md, ok)
	}
	for _, junk := range []string{"", "m=audio x RTP/AVP 0", "c=IN IP4 1.2.3.4\r\nm=audio 5 RTP/AVP 18", "m=audio 99999 RTP/AVP 0"} {
		if _, ok := parseSDP([]byte(junk)); ok {
			t.Errorf("parseSDP(%q) accepted", junk)
		}
	}
	var l Latencies
	for i := 100; i >= 1; i-- {
		l.Add(time.Duration(i) * time.Millisecond)
	}
	if s := l.Summary(); s.P50 != 50*time.Millisecond || s.P90 != 90*time.Millisecond || s.P99 != 99*time.Millisecond || s.Max != 100*time.Millisecond {
		t.Errorf("summary = %+v", s)
	}
}

func TestCallsOutJoinsWithTheLinesRecords(t *testing.T) {
	a, stop := startAnswerer(t, AnswerConfig{Ring: 5 * time.Millisecond, Watch: 50 * time.Millisecond, KeepCalls: true})
	cfg := callConfig(a.Addr(), numbers(t, nil, 0))
	var buf syncBuffer
	cfg.CallsOut = &buf
	rep, err := RunCalls(context.Background(), cfg)
	if err != nil {
		t.Fatalf("RunCalls: %v", err)
	}
	ans := stop()
	sent := map[string][]CallSent{}
	n, withPDD := 0, 0
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var c CallSent
		if err := json.Unmarshal([]byte(l), &c); err != nil {
			t.Fatalf("calls-out line %q: %v", l, err)
		}
		if c.From == "" || c.SentUnixNs == 0 || c.Outcome != "answered" || c.FinalNs <= 0 || c.PDDNs < 0 || c.PDDNs > c.FinalNs {
			t.Errorf("incomplete line %+v", c)
		}
		// The line rings before it answers, but sipgo handles each
		// response on its own goroutine: on a busy machine the 200 can be
		// handled first, and the 180 after it is dropped. Such a call has
		// no PDD (stats.go: 0 when none came), but some calls must have one.
		if c.PDDNs > 0 {
			withPDD++
		}
		sent[c.From] = append(sent[c.From], c)
		n++
	}
	if withPDD == 0 {
		t.Errorf("none of %d calls-out lines has a post-dial delay", n)
	}
	if n != rep.Steps[0].Attempted || len(ans.Calls) != n {
		t.Fatalf("%d calls-out lines, %d line records, %d calls placed; the line saw %d INVITEs, answered %d, failed %d, %d BYEs in, %d out, %d calls unfinished",
			n, len(ans.Calls), rep.Steps[0].Attempted, ans.Invites, ans.Answered, ans.Failed, ans.ByeReceived, ans.ByeSent, ans.Unfinished)
	}
	for _, r := range ans.Calls {
		// The join holds by causality, not by a time window: the line got
		// the INVITE after the caller sent it and before the caller had
		// its answer, however slow the machine.
		ok := false
		for _, s := range sent[r.From] {
			if d := r.InviteUnixNs - s.SentUnixNs; d > 0 && d <= s.FinalNs {
				ok = true
			}
		}
		if !ok {
			t.Errorf("line record %s (INVITE at %d) has no matching send %v", r.From, r.InviteUnixNs, sent[r.From])
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the caller's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestBlockedCallerAnsweredIsAFailure(t *testing.T) {
	blocked := []string{"+447700900001", "+447700900002"}
	// The answerer declines nobody: a peer that does not screen.
	a, _ := startAnswerer(t, AnswerConfig{Ring: 5 * time.Millisecond, Watch: 50 * time.Millisecond})
	cfg := callConfig(a.Addr(), numbers(t, blocked, 0.5))
	cfg.Steps, cfg.StepDuration = []float64{40}, 500*time.Millisecond
	rep, err := RunCalls(context.Background(), cfg)
	if err != nil {
		t.Fatalf("RunCalls: %v", err)
	}
	s := rep.Steps[0]
	if s.BlockedDrawn == 0 || s.AnsweredBlock != s.BlockedDrawn {
		t.Fatalf("blocked callers drawn %d, answered %d: want all answered", s.BlockedDrawn, s.AnsweredBlock)
	}
	if want := float64(s.AnsweredBlock) / float64(s.Attempted); s.FailureRatio != want {
		t.Errorf("failure ratio %g, want %g (the answered blocked callers)", s.FailureRatio, want)
	}
}
