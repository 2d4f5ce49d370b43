package webhook

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap/zaptest"

	"github.com/cleanline/cleanline/sip"
)

const secret = "a shared secret of the carer's system"

func newDispatcher(t *testing.T, reg prometheus.Registerer, cfgs ...Config) *Dispatcher {
	t.Helper()
	d, err := New(cfgs, Options{Lines: []string{"home"}, Registerer: reg, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		d.Close(ctx)
	})
	return d
}

func counter(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// decode checks a POST: signed (the receiver verified it), its headers
// name the event, and its body is a version-1 event.
func decode(t *testing.T, p post) sip.Event {
	t.Helper()
	if p.err != nil {
		t.Fatalf("signature: %v", p.err)
	}
	ev, err := sip.DecodeEvent(p.body)
	if err != nil {
		t.Fatal(err)
	}
	if p.header.Get(HeaderEvent) != string(ev.Type) || p.header.Get(HeaderDelivery) != ev.ID() ||
		p.header.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v for event %s %s", p.header, ev.Type, ev.ID())
	}
	return ev
}

// Over real SIP: a blocked call, a warned call the person accepts, one she
// reports and the line check reach the receiver as signed POSTs of the
// default events (blocked, warned, reported, line_check), nothing else.
func TestWebhookGetsSignedEventsOfRealCalls(t *testing.T) {
	rcv := newReceiver(t, secret, nil)
	d := newDispatcher(t, nil, Config{URL: rcv.srv.URL + "/cleanline", Secret: secret, Workers: 1})
	e := newCallEnv(t, d)
	ctx := ctxT(t, 30*time.Second)

	wantFinal(ctx, t, e.dial(ctx, callerScam), 603)
	ev := decode(t, rcv.wait(ctx, t, 1)[0])
	if ev.Type != sip.EventRefused || ev.Outcome != "blocked" || ev.Status != 603 || ev.Caller != callerScam ||
		ev.Line != "home" || ev.Verdict != "block" {
		t.Fatalf("blocked POST: %+v", ev)
	}

	accepted := e.warned(ctx, '1')
	wantFinal(ctx, t, accepted, 200)
	if err := accepted.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	ev = decode(t, rcv.wait(ctx, t, 2)[1])
	if ev.Type != sip.EventWarned || ev.Caller != callerSuspect || ev.Verdict != "warn" || ev.Direction != "inbound" ||
		len(ev.Reasons) != 1 || ev.Reasons[0] != "blocklist.reported" {
		t.Fatalf("warned POST: %+v", ev)
	}

	// Signed by secret and nothing else: another key, another body or an
	// old timestamp fail.
	p := rcv.wait(ctx, t, 2)[1]
	ts, sig := p.header.Get(HeaderTimestamp), p.header.Get(HeaderSignature)
	if err := Verify([]byte("another secret"), ts, sig, p.body, time.Now(), time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another secret: %v", err)
	}
	forged := []byte(strings.Replace(string(p.body), callerSuspect, callerOK, 1))
	if err := Verify([]byte(secret), ts, sig, forged, time.Now(), time.Minute); !errors.Is(err, ErrBadSignature) {
		t.Errorf("another body: %v", err)
	}
	if err := Verify([]byte(secret), ts, sig, p.body, time.Now().Add(10*time.Minute), 5*time.Minute); !errors.Is(err, ErrStale) {
		t.Errorf("replayed 10 minutes later: %v", err)
	}

	out := e.warned(ctx, '3')
	wantFinal(ctx, t, out, 603)
	ev = decode(t, rcv.wait(ctx, t, 4)[3])
	if ev.Type != sip.EventReported || ev.Reported != callerSuspect {
		t.Fatalf("reported POST: %+v", decode(t, rcv.wait(ctx, t, 4)[3]))
	}

	check, err := e.line.Dial(ctx, "sip:*99@"+e.s.Addr("udp").String(), siptestOpts())
	if err != nil {
		t.Fatal(err)
	}
	wantFinal(ctx, t, check, 200)
	ev = decode(t, rcv.wait(ctx, t, 5)[4])
	if ev.Type != sip.EventLineCheck || ev.Result != "clear" || ev.Direction != "outbound" {
		t.Fatalf("line check POST: %+v", ev)
	}
	// Nothing else came: with one worker, POSTs arrive in the order of
	// the events, and the line check's was the last event asked for. (The
	// reported call's refusal is not "blocked"; choices, connections and
	// records are not asked for.)
	if n := rcv.count(); n != 5 {
		for _, p := range rcv.wait(ctx, t, n) {
			t.Logf("POST %s", p.body)
		}
		t.Fatalf("%d POSTs, want 5", n)
	}
}

// event is a made-up event of line, for tests that need no call.
func event(typ sip.EventType, line string, seq int) sip.Event {
	return sip.Event{V: sip.EventVersion, Type: typ, Time: time.Now(), Call: "c0ffee", Seq: seq, Line: line,
		Direction: "inbound", Caller: callerSuspect}
}

// A receiver that fails twice (503) gets the
// event on the third attempt, same delivery id, each attempt signed anew;
// one that answers 400 is not asked again; one that always fails is asked
// Attempts times and the event is given up. Each counted.
func TestWebhookRetriesWithBackoff(t *testing.T) {
	reg := prometheus.NewRegistry()
	flaky := newReceiver(t, secret, func(n int) int {
		if n < 2 {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	bad := newReceiver(t, secret, func(int) int { return http.StatusBadRequest })
	down := newReceiver(t, secret, func(int) int { return http.StatusBadGateway })
	cfg := func(name, url string) Config {
		return Config{Name: name, URL: url, Secret: secret, Backoff: 50 * time.Millisecond, Attempts: 4, Workers: 1}
	}
	d := newDispatcher(t, reg, cfg("flaky", flaky.srv.URL), cfg("bad", bad.srv.URL), cfg("down", down.srv.URL))
	ctx := ctxT(t, 20*time.Second)
	start := time.Now()
	if err := d.WriteEvents(ctx, []sip.Event{event(sip.EventWarned, "home", 1)}); err != nil {
		t.Fatal(err)
	}
	posts := flaky.wait(ctx, t, 3)
	for i, p := range posts {
		ev := decode(t, p)
		if ev.ID() != "c0ffee-1" {
			t.Errorf("attempt %d delivers %s", i, ev.ID())
		}
	}
	// Backoff 50 ms, then 100 ms, each jittered to at least half.
	if took := time.Since(start); took < 75*time.Millisecond {
		t.Errorf("three attempts in %s: no backoff", took)
	}
	down.wait(ctx, t, 4)
	waitCounter(ctx, t, d.hooks[2].results[ResultFailed], 1)
	waitCounter(ctx, t, d.hooks[0].results[ResultDelivered], 1)
	waitCounter(ctx, t, d.hooks[1].results[ResultRejected], 1)
	for name, want := range map[string]float64{"flaky": 2, "bad": 0, "down": 3} {
		if got := counter(t, hookNamed(t, d, name).retries); got != want {
			t.Errorf("%s: %v retries, want %v", name, got, want)
		}
	}
	if n := bad.count(); n != 1 {
		t.Errorf("a 400 was retried: %d POSTs", n)
	}
	if n := down.count(); n != 4 {
		t.Errorf("a receiver that always fails got %d POSTs, want 4 attempts", n)
	}
}

func hookNamed(t *testing.T, d *Dispatcher, name string) *hook {
	t.Helper()
	for _, h := range d.hooks {
		if h.cfg.Name == name {
			return h
		}
	}
	t.Fatalf("no webhook %q", name)
	return nil
}

func waitCounter(ctx context.Context, t *testing.T, c prometheus.Counter, want float64) {
	t.Helper()
	for counter(t, c) < want {
		select {
		case <-ctx.Done():
			t.Fatalf("counter at %v, want %v", counter(t, c), want)
		case <-time.After(5 * time.Millisecond): // poll pace, nothing orders on it
		}
	}
}

// A receiver that hangs slows no call: blocked calls are refused and a
// warned call connects within their usual time while it holds the one
// worker; what the queue (2) cannot take is dropped and counted; at Close
// the rest is abandoned, and Close returns when told to.
func TestWebhookHangingReceiverNeverSlowsCalls(t *testing.T) {
	rcv := newReceiver(t, secret, nil)
	rcv.hang = make(chan struct{})
	reg := prometheus.NewRegistry()
	d := newDispatcher(t, reg, Config{Name: "carer", URL: rcv.srv.URL, Secret: secret, Queue: 2, Workers: 1,
		Timeout: time.Minute, Events: []string{Blocked, "warned", "connected"}})
	e := newCallEnv(t, d)
	ctx := ctxT(t, 30*time.Second)
	for i := range 6 {
		start := time.Now()
		wantFinal(ctx, t, e.dial(ctx, callerScam), 603)
		if took := time.Since(start); took > time.Second {
			t.Fatalf("blocked call %d took %s while the receiver hangs", i, took)
		}
		if i == 0 {
			rcv.wait(ctx, t, 1) // the worker holds the first; the queue fills from here
		}
	}
	start := time.Now()
	wantFinal(ctx, t, e.warned(ctx, '1'), 200)
	if took := time.Since(start); took > 3*time.Second { // 0.4 s warning, the choice, the answer
		t.Fatalf("warned call connected after %s while the receiver hangs", took)
	}
	h := d.hooks[0]
	// 6 blocked + warned + connected = 8 events: 1 held, 2 queued, 5
	// dropped (connected follows the caller's 200: waited for).
	waitCounter(ctx, t, h.dropped, 5)
	if got := counter(t, h.dropped); got != 5 {
		t.Errorf("dropped %v events, want 5", got)
	}
	if n := rcv.count(); n != 1 {
		t.Errorf("%d POSTs while the first hangs, want 1", n)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	d.Close(cctx)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Close took %s with the receiver hanging", took)
	}
	if got := counter(t, h.results[ResultAbandoned]); got != 3 {
		t.Errorf("abandoned %v, want 3 (the one held, the two queued)", got)
	}
	// Scraped as the dashboard sees them.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, mf := range mfs {
		seen[mf.GetName()] = true
	}
	for _, name := range []string{"cleanline_webhook_deliveries_total", "cleanline_webhook_dropped_total",
		"cleanline_webhook_retries_total", "cleanline_webhook_queued"} {
		if !seen[name] {
			t.Errorf("%s not gathered", name)
		}
	}
}

// Mistakes in the webhooks' configuration are named by key.
func TestWebhookConfigErrorsNameTheKey(t *testing.T) {
	err := Validate([]Config{
		{URL: "ftp://x", Secret: "s"},
		{URL: "https://user:pw@carer.example/h", Secret: "s", SecretFile: "/x"},
		{URL: "https://carer.example/h", Lines: []string{"nowhere"}, Events: []string{"warned", "rung"}, Attempts: -1},
		{URL: "https://carer.example/h", Secret: "s"},
	}, []string{"home"})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`webhooks[0].url: "ftp://x"`, "webhooks[1].url: credentials", "webhooks[1].secret: give secret or secret_file",
		"webhooks[2].secret: required", `webhooks[2].lines: line "nowhere"`, `webhooks[2].events: "rung"`,
		"webhooks[2].attempts: -1", `webhooks[3].name: "carer.example" is also webhooks[2]'s name`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err := Validate([]Config{{URL: "https://carer.example/h", Secret: "s", Lines: []string{"home"}}}, []string{"home"}); err != nil {
		t.Errorf("a good webhook: %v", err)
	}
}

// The signature is HMAC-SHA256 over "timestamp.body", hex: the value
// below is what README's Python and openssl snippets compute.
func TestSignKnownAnswer(t *testing.T) {
	got := Sign([]byte("s3cret"), 1767225600, []byte(`{"v":1,"type":"warned"}`))
	if want := "sha256=50fa2c6e2397b2b3a92c60fb2ac9c0ae7e11bebc4d41e493efd47552faf4da9a"; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	if err := Verify([]byte("s3cret"), "1767225600", got, []byte(`{"v":1,"type":"warned"}`), time.Unix(1767225600, 0), time.Minute); err != nil {
		t.Fatal(err)
	}
}

// FuzzVerify: no header a stranger sends makes Verify panic or accept a
// body it did not sign.
func FuzzVerify(f *testing.F) {
	f.Add("1767225600", "sha256=50fa2c6e2397b2b3a92c60fb2ac9c0ae7e11bebc4d41e493efd47552faf4da9a", []byte(`{"v":1,"type":"warned"}`))
	f.Add("-1", "sha256=", []byte{})
	f.Add("99999999999999999999", "md5=00", []byte("x"))
	f.Fuzz(func(t *testing.T, ts, sig string, body []byte) {
		err := Verify([]byte("s3cret"), ts, sig, body, time.Unix(1767225600, 0), 5*time.Minute)
		if err == nil {
			n, _ := strconv.ParseInt(ts, 10, 64)
			if sig != Sign([]byte("s3cret"), n, body) {
				t.Fatalf("accepted %q %q over %q", ts, sig, body)
			}
		}
	})
}
