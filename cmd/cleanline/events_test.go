package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/blocklist/redistest"
	"github.com/cleanline/cleanline/cmd/internal/admin/webhook"
	"github.com/cleanline/cleanline/sip"
	"github.com/cleanline/cleanline/sip/siptest"
)

const (
	evScam    = "+442079460666"
	evSuspect = "+442079460777"
	evLine    = "+442079460123"
)

// served is a `cleanline serve` running in this process (serveFile), with
// the addresses serveConfig gave it.
type served struct {
	*serving
	admin string // its admin listener
	sip   string // its UDP SIP listener
}

// serveConfig runs serve with the config (its sip: and admin: keys are
// added) until the test ends, and returns once /healthz answers.
// Trunks, when given, are more entries of sip.trunks (YAML flow maps).
func serveConfig(t *testing.T, config string, line *siptest.Phone, trunks ...string) *served {
	t.Helper()
	s := &served{admin: freeAddr(t, "tcp"), sip: freeAddr(t, "udp")}
	cfg := filepath.Join(t.TempDir(), "cleanline.yaml")
	config += fmt.Sprintf(`
log: {level: warn}
admin: {listen: %q}
sip:
  listen: [{network: udp, addr: %q}, {network: tcp, addr: %q}]
  trunks: [{name: provider, sources: [127.0.0.2], trust_asserted_identity: true}%s]
  lines: [{name: home, numbers: [%q], contact: %q}]
  media: {bind: 127.0.0.1, port_min: 57000, port_max: 57199}
  timers: {warning_choice: 5s}
`, s.admin, s.sip, freeAddr(t, "tcp"), strings.Join(append([]string{""}, trunks...), ", "), evLine, line.URI("landline"))
	if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s.serving = serveFile(t, cfg, "http://"+s.admin, http.DefaultClient)
	return s
}

// hookReceiver is the carer's system: it keeps the POSTs whose signature
// is right, and refuses the others.
type hookReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	events []sip.Event
	bad    []error
}

func newHookReceiver(t *testing.T, secret string) *hookReceiver {
	h := &hookReceiver{}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		defer h.mu.Unlock()
		err := webhook.Verify([]byte(secret), r.Header.Get(webhook.HeaderTimestamp), r.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute)
		var ev sip.Event
		if err == nil {
			ev, err = sip.DecodeEvent(body)
		}
		if err != nil {
			h.bad = append(h.bad, err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		h.events = append(h.events, ev)
	}))
	t.Cleanup(h.srv.Close)
	return h
}

// waitType waits for a POST of an event of typ and returns it.
func (h *hookReceiver) waitType(ctx context.Context, t *testing.T, typ sip.EventType) sip.Event {
	t.Helper()
	for {
		h.mu.Lock()
		for _, ev := range h.events {
			if ev.Type == typ {
				h.mu.Unlock()
				return ev
			}
		}
		bad := h.bad
		h.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("a POST failed its check: %v", bad)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no %s POST", typ)
		case <-time.After(10 * time.Millisecond): // poll pace, nothing orders on it
		}
	}
}

// readUntil reads q's records (one page) until want of them are there.
func readUntil(ctx context.Context, t *testing.T, l blocklist.EventLog, q blocklist.EventQuery, want int) []sip.Event {
	t.Helper()
	for {
		p, err := l.Events(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Records) >= want {
			evs := make([]sip.Event, len(p.Records))
			for i, r := range p.Records {
				if evs[i], err = sip.DecodeEvent(r.Data); err != nil {
					t.Fatal(err)
				}
				if r.Type != string(evs[i].Type) || r.Line != evs[i].Line || r.Call != evs[i].Call {
					t.Fatalf("record %+v indexes event %+v wrongly", r, evs[i])
				}
			}
			return evs
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d records for %+v, want %d", len(p.Records), q, want)
		case <-time.After(20 * time.Millisecond): // poll pace, nothing orders on it
		}
	}
}

// On both stores, a running serve keeps every call's events and records
// in the store, where they are read back by line and by caller while it
// runs (the embedded store's file is serve's, its events are not), and
// POSTs the warned and the blocked call, signed, to the line's webhook.
func TestServeKeepsAndSendsCallEvents(t *testing.T) {
	srv := redistest.Start(t)
	for _, store := range []struct{ name, url string }{
		{"embedded", "file:" + filepath.Join(t.TempDir(), "cl.db")},
		{"redis", "redis://" + srv.Addr},
	} {
		t.Run(store.name, func(t *testing.T) {
			cli(t, "block", "add", evScam, "--store", store.url).expect(t, exitOK)
			cli(t, "block", "add", evSuspect, "--reported", "--store", store.url).expect(t, exitOK)
			hook := newHookReceiver(t, "carer's secret")
			trunk, line := siptest.NewPhone(t, "127.0.0.2"), siptest.NewPhone(t, "127.0.0.3")
			s := serveConfig(t, fmt.Sprintf(`store: %s
events: {file_mb: 1, files: 2, max: 1000}
webhooks: [{name: carer, url: %q, secret: "carer's secret", lines: [home]}]
`, store.url, hook.srv.URL), line)
			ctx := ctxT(t, 30*time.Second)
			lineURI := "sip:" + evLine + "@" + s.sip

			blocked, err := trunk.Dial(ctx, lineURI, siptest.DialOptions{FromUser: evScam})
			if err != nil {
				t.Fatal(err)
			}
			if res, err := blocked.WaitFinal(ctx); err != nil || res.StatusCode != 603 {
				t.Fatalf("blocked caller got %v %v", res, err)
			}
			warned, err := trunk.Dial(ctx, lineURI, siptest.DialOptions{FromUser: evSuspect})
			if err != nil {
				t.Fatal(err)
			}
			in, err := line.Incoming(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := in.Answer(); err != nil {
				t.Fatal(err)
			}
			if err := in.RTP.WaitCount(ctx, 5); err != nil {
				t.Fatalf("no warning: %v", err)
			}
			if err := in.RTP.SendDTMF('1', in.TelephoneEventPT()); err != nil {
				t.Fatal(err)
			}
			if res, err := warned.WaitFinal(ctx); err != nil || res.StatusCode != 200 {
				t.Fatalf("warned caller got %v %v", res, err)
			}
			if err := in.Bye(ctx); err != nil {
				t.Fatal(err)
			}

			if ev := hook.waitType(ctx, t, sip.EventWarned); ev.Caller != evSuspect || ev.Line != "home" || ev.Verdict != "warn" {
				t.Errorf("warned POST %+v", ev)
			}
			if ev := hook.waitType(ctx, t, sip.EventRefused); ev.Caller != evScam || ev.Outcome != "blocked" || ev.Status != 603 {
				t.Errorf("blocked POST %+v", ev)
			}

			l, closeLog, err := openEventReader(ctx, store.url, EventsConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer closeLog()
			recs := readUntil(ctx, t, l, blocklist.EventQuery{Line: "home", Types: []string{"call"}}, 2)
			if len(recs) != 2 || recs[0].Caller != evSuspect || recs[0].Outcome != "completed" || recs[0].Choice != sip.ChoiceConnect ||
				recs[1].Caller != evScam || recs[1].Outcome != "blocked" {
				t.Fatalf("the line's call records, newest first: %+v", recs)
			}
			evs := readUntil(ctx, t, l, blocklist.EventQuery{Caller: evSuspect}, 6)
			slices.Reverse(evs)
			var types []sip.EventType
			for _, ev := range evs {
				types = append(types, ev.Type)
			}
			want := []sip.EventType{sip.EventScreened, sip.EventWarned, sip.EventChoice, sip.EventConnected, sip.EventEnded, sip.EventCall}
			if !slices.Equal(types, want) {
				t.Fatalf("the warned caller's events: %v, want %v", types, want)
			}
			if scam := readUntil(ctx, t, l, blocklist.EventQuery{Caller: evScam}, 4); len(scam) != 4 || scam[3].Type != sip.EventScreened {
				t.Fatalf("the blocked caller's events: %+v", scam)
			}
			// cleanline calls: through the running service's API, then
			// from the store itself once serve has stopped.
			calls := cli(t, "calls", "--line", "home", "--config", s.cfg)
			calls.expect(t, exitOK, evSuspect+" warn completed connect", evScam+" block blocked")
			if i, j := strings.Index(calls.stdout, evSuspect), strings.Index(calls.stdout, evScam); i > j {
				t.Errorf("calls not newest first:\n%s", calls.stdout)
			}
			one := cli(t, "calls", "--caller", "020 7946 0666", "--config", s.cfg) // evScam, as people write it
			one.expect(t, exitOK, evScam)
			if strings.Contains(one.stdout, evSuspect) {
				t.Errorf("calls --caller %s lists another caller:\n%s", evScam, one.stdout)
			}
			s.stop()
			cli(t, "calls", "--line", "home", "--limit", "1", "--store", store.url).expect(t, exitOK, evSuspect+" warn completed connect")
			// Still there once serve has stopped.
			if after := readUntil(ctx, t, l, blocklist.EventQuery{Line: "home"}, 10); len(after) != 10 {
				t.Fatalf("%d events after serve stopped, want 10", len(after))
			}
		})
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
