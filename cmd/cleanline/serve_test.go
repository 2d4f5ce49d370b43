package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/cleanline/cleanline/blocklist/redistest"
)

// serve with admin.listen answers /healthz and exports cleanline's metrics
// next to the Go runtime's, and stops when its context ends.
func TestServeAdminListener(t *testing.T) {
	dir := t.TempDir()
	admin := freeAddr(t, "tcp")
	cfg := filepath.Join(dir, "cleanline.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`store: file:%s
log: {level: warn}
admin: {listen: %q}
sip:
  listen: [{network: udp, addr: "127.0.0.1:0"}]
  trunks: [{name: provider, sources: [127.0.0.2]}]
  lines: [{name: home, contact: "sip:home@127.0.0.3:5060"}]
  media: {bind: 127.0.0.1, port_min: 41000, port_max: 41099}
`, filepath.Join(dir, "cl.db"), admin)), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		var out, errb strings.Builder
		code := run(ctx, []string{"serve", "--config", cfg}, &out, &errb)
		done <- result{code, out.String(), errb.String()}
	}()
	defer func() {
		cancel()
		select {
		case r := <-done:
			r.expect(t, exitOK)
		case <-time.After(15 * time.Second):
			t.Error("serve did not stop")
		}
	}()
	get := func(path string) (int, string, error) {
		res, err := http.Get("http://" + admin + path)
		if err != nil {
			return 0, "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res.StatusCode, string(b), err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, err := get("/healthz")
		if err == nil && code == http.StatusOK {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("serve exited %d: %s", r.code, r.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz: %d, %v", code, err)
		}
		time.Sleep(20 * time.Millisecond) // poll pace, nothing orders on it
	}
	code, body, err := get("/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics: %d, %v", code, err)
	}
	for _, m := range []string{"cleanline_active_calls 0", "# TYPE cleanline_invite_transit_seconds histogram", "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(body, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
	if code, _, err := get("/debug/pprof/cmdline"); err != nil || code != http.StatusOK {
		t.Errorf("/debug/pprof/cmdline: %d, %v", code, err)
	}
}

func TestAdminListenMustBeHostPort(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("admin: {listen: nowhere}\n"), 0o600)
	cli(t, "check", "1", "--config", cfg).expect(t, exitError, "admin.listen")
}

// A store that does not answer never yields "allow": check says which
// store and how to choose another, exit 3.
func TestCheckWithStoreDownIsAnError(t *testing.T) {
	srv := redistest.Start(t)
	store := "redis://" + srv.Addr
	cli(t, "check", "020 7946 0456", "--store", store).expect(t, exitOK, "allow")
	srv.Stop()
	r := cli(t, "check", "020 7946 0456", "--store", store)
	r.expect(t, exitError, "store unavailable", srv.Addr)
	if strings.Contains(r.stdout, "allow") {
		t.Errorf("check printed a verdict with the store down: %s", r.stdout)
	}
}

// /healthz answers 503 with the failing check's words (a dead SIP
// listener), and 200 "ok" again once the check passes.
func TestHealthzReportsFailingCheck(t *testing.T) {
	var failing atomic.Bool
	failing.Store(true)
	check := func() error {
		if failing.Load() {
			return errors.New("sip tcp listener 127.0.0.1:5060: accept loop ended")
		}
		return nil
	}
	adm, err := startAdminHTTP("127.0.0.1:0", newRegistry(), func() bool { return true }, zap.NewNop(), check)
	if err != nil {
		t.Fatal(err)
	}
	defer adm.close()
	get := func() (int, string) {
		t.Helper()
		res, err := http.Get("http://" + adm.ln.Addr().String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, strings.TrimSpace(string(b))
	}
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "accept loop ended") {
		t.Fatalf("failing check: %d %q, want 503 naming the listener", code, body)
	}
	failing.Store(false)
	if code, body := get(); code != http.StatusOK || body != "ok" {
		t.Fatalf("passing check: %d %q, want 200 ok", code, body)
	}
}
