package sip

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/media"
	"github.com/cleanline/cleanline/sip/siptest"
)

// Loopback addresses of the parties in every end-to-end test. Linux routes
// all of 127/8 to lo, so each party has its own IP and cleanline can tell a
// trunk from a line from a stranger by source address, as in production.
const (
	ipCleanline = "127.0.0.1"
	ipTrunk     = "127.0.0.2"
	ipLine      = "127.0.0.3"
	ipStranger  = "127.0.0.4"
)

// Numbers used by the tests (Ofcom drama ranges, valid for GB).
const (
	callerOK      = "+442079460018"
	callerScam    = "+442079460666" // confirmed: blocked
	callerSuspect = "+442079460777" // reported once: warned
	lineNumber    = "+442079460123"
)

var portBase atomic.Int32

// env is one cleanline with a trunk phone and a line phone around it.
type env struct {
	t     testing.TB
	s     *Server
	store *blocklist.FileStore
	sc    *screening.Screener
	trunk *siptest.Phone
	line  *siptest.Phone
	logs  *observer.ObservedLogs // what cleanline logged at Info and above
}

type envSetup struct {
	cfg         *Config
	realPrompts bool
	tcp         bool
	store       blocklist.Store // screens instead of env.store when set
	serverOpts  []Option
	screening   func(*screening.Config)
	noContact   bool // the line has no static contact (registrar_test.go)
	debugLogs   bool // env.logs observes Debug too (what must never be logged)
}

// withScreening changes the screener's configuration.
func withScreening(f func(*screening.Config)) envOption {
	return func(s *envSetup) { s.screening = f }
}

// withServerOpts passes options to NewServer.
func withServerOpts(o ...Option) envOption {
	return func(s *envSetup) { s.serverOpts = append(s.serverOpts, o...) }
}

// withStore screens calls with st (env.store still holds the test numbers).
func withStore(st blocklist.Store) envOption { return func(s *envSetup) { s.store = st } }

// overTCP makes both phones use TCP (and listen on it), and cleanline
// listen on TCP besides UDP.
func overTCP(s *envSetup) { s.tcp = true }

type envOption func(*envSetup)

// withCfg changes the server's configuration.
func withCfg(f func(*Config)) envOption { return func(s *envSetup) { f(s.cfg) } }

// debugLogs makes env.logs observe everything cleanline logs, Debug too.
func debugLogs(s *envSetup) { s.debugLogs = true }

// realPrompts keeps the embedded prompts (the warning is 17 s long); by
// default tests get 0.4 s tones so that they stay fast.
func realPrompts(s *envSetup) { s.realPrompts = true }

func tone(name string, d time.Duration) *media.Prompt {
	n := int(d.Seconds() * 8000)
	pcm := make([]int16, n)
	for i := range pcm {
		pcm[i] = int16(8000 * math.Sin(2*math.Pi*440*float64(i)/8000))
	}
	return media.NewPrompt(name, pcm)
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t}
	var err error
	e.store, err = blocklist.OpenFile(filepath.Join(t.TempDir(), "cleanline.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.store.Close() })
	now := time.Now()
	if _, _, err := e.store.Put(context.Background(), []blocklist.Entry{
		{Number: callerScam, Status: blocklist.StatusConfirmed, Reason: "bank impersonation", Source: "test", Reports: 5, FirstSeen: now, LastSeen: now},
		{Number: callerSuspect, Status: blocklist.StatusReported, Reason: "courier scam", Source: "test", Reports: 1, FirstSeen: now, LastSeen: now},
	}); err != nil {
		t.Fatal(err)
	}
	base := 30000 + int(portBase.Add(1)%60)*400
	cfg := Config{
		Listen:    []Listener{{Network: "udp", Addr: ipCleanline + ":0"}},
		Advertise: ipCleanline,
		Trunks:    []Trunk{{Name: "provider", Sources: []string{ipTrunk}, TrustAssertedIdentity: true}},
		Lines:     []Line{{Name: "home", Numbers: []string{lineNumber}}},
		Media:     MediaConfig{PortMin: base, PortMax: base + 399, Bind: ipCleanline},
		Timers: Timers{NoAnswer: 5 * time.Second, WarningChoice: 2 * time.Second, Bye: 2 * time.Second,
			MediaInactivity: -1, SessionExpires: -1},
	}
	setup := envSetup{cfg: &cfg}
	for _, o := range opts {
		o(&setup)
	}
	if setup.tcp {
		e.trunk = siptest.NewPhoneTCP(t, ipTrunk)
		e.line = siptest.NewPhoneTCP(t, ipLine)
		cfg.Listen = append(cfg.Listen, Listener{Network: "tcp", Addr: ipCleanline + ":0"})
	} else {
		e.trunk = siptest.NewPhone(t, ipTrunk)
		e.line = siptest.NewPhone(t, ipLine)
	}
	if cfg.Trunks[0].Outbound == "" && cfg.Trunks[0].Register == nil {
		cfg.Trunks[0].Outbound = e.trunk.URI("")
	}
	if cfg.Lines[0].Contact == "" && !setup.noContact {
		cfg.Lines[0].Contact = e.line.URI("landline")
	}
	prompts, err := media.DefaultPrompts()
	if err != nil {
		t.Fatal(err)
	}
	if !setup.realPrompts {
		for _, name := range prompts.Names() {
			d := 400 * time.Millisecond
			if name == media.PromptLineBusy {
				d = 800 * time.Millisecond // tells busy from clear by length
			}
			prompts.Set(name, tone(name, d))
		}
	}
	var st blocklist.Store = e.store
	if setup.store != nil {
		st = setup.store
	}
	scfg := screening.Config{Region: "GB", Lines: cfg.ScreeningLines()}
	if setup.screening != nil {
		setup.screening(&scfg)
	}
	e.sc, err = screening.New(st, scfg)
	if err != nil {
		t.Fatal(err)
	}
	level := zap.InfoLevel
	if setup.debugLogs {
		level = zap.DebugLevel
	}
	core, logs := observer.New(level)
	e.logs = logs
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)).Core(), core))
	e.s, err = NewServer(cfg, e.sc, log, append([]Option{WithPrompts(prompts)}, setup.serverOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		e.s.Close()
	})
	return e
}

// lineURI is the Request-URI a trunk dials to reach the line.
func (e *env) lineURI() string {
	if e.trunk.TCP() {
		return fmt.Sprintf("sip:%s@%s;transport=tcp", lineNumber, e.s.Addr("tcp"))
	}
	return fmt.Sprintf("sip:%s@%s", lineNumber, e.s.Addr("udp"))
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// call dials the line from the trunk as caller.
func (e *env) dial(caller string, hdrs ...sip.Header) *siptest.Outgoing {
	e.t.Helper()
	out, err := e.trunk.Dial(ctxT(e.t, 5*time.Second), e.lineURI(), siptest.DialOptions{FromUser: caller, Headers: hdrs})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// connect places an allowed call and answers it at the line.
func (e *env) connect() (*siptest.Outgoing, *siptest.Incoming) {
	e.t.Helper()
	ctx := ctxT(e.t, 5*time.Second)
	out := e.dial(callerOK)
	in, err := e.line.Incoming(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := in.Ring(); err != nil {
		e.t.Fatal(err)
	}
	if err := in.Answer(); err != nil {
		e.t.Fatal(err)
	}
	res, err := out.WaitFinal(ctx)
	if err != nil || res.StatusCode != 200 {
		e.t.Fatalf("caller got %v, %v; want 200", res, err)
	}
	return out, in
}

// waitNoCalls waits until no call is left, and every call's record (the
// log line, the events, the metrics) is written.
func (e *env) waitNoCalls() {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.s.ActiveCalls() != 0 || e.s.reg.dialogs() != 0 || e.s.unrecorded.Load() != 0 {
		if time.Now().After(deadline) {
			e.t.Fatalf("calls still registered: %d calls, %d dialogs, %d without their record",
				e.s.ActiveCalls(), e.s.reg.dialogs(), e.s.unrecorded.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitIdle waits until no call handler or BYE of the server is running.
// It polls a counter: waiting on the WaitGroup itself from a test would
// race (for the race detector) with the Add of the next call's INVITE,
// which the detector cannot see was sent after the wait.
func (e *env) waitIdle(ctx context.Context) error {
	for e.s.busy.Load() != 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d call goroutines still running: %w", e.s.busy.Load(), ctx.Err())
		case <-time.After(5 * time.Millisecond): // poll pace, nothing orders on it
		}
	}
	return nil
}

func siptestOpts(caller string, hdrs ...sip.Header) siptest.DialOptions {
	return siptest.DialOptions{FromUser: caller, Headers: hdrs}
}

// waitRecord waits for the call record (the "call" log line) of a call
// that ended with outcome.
func (e *env) waitRecord(ctx context.Context, outcome string) error {
	for {
		if e.logs.FilterMessage("call").FilterField(zap.String("outcome", outcome)).Len() > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no call record with outcome %q: %w", outcome, ctx.Err())
		case <-time.After(10 * time.Millisecond): // poll pace, nothing orders on it
		}
	}
}

// talkThenHangUp places a normal call from the trunk, checks real RTP
// crosses both ways, and hangs up: cleanline is alive and well.
func talkThenHangUp(t *testing.T, e *env) {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	out, in := e.connect()
	if err := out.RTP.Send(10, 8, 0x11); err != nil {
		t.Fatal(err)
	}
	if err := in.RTP.WaitCount(ctx, 10); err != nil {
		t.Fatalf("line got %d RTP packets from the caller: %v", in.RTP.Count(), err)
	}
	if err := in.RTP.Send(10, 8, 0x22); err != nil {
		t.Fatal(err)
	}
	if err := out.RTP.WaitCount(ctx, 10); err != nil {
		t.Fatalf("caller got %d RTP packets from the line: %v", out.RTP.Count(), err)
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
