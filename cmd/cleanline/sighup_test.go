package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cleanline/cleanline/sip/siptest"
)

// serve as systemd runs it: a process of its own, told to reload with a
// real SIGHUP, telling its readiness to a NOTIFY_SOCKET.

// reloadChild, set in a child's environment, makes the test binary run
// `cleanline serve` with that config as main does (see TestMain).
const reloadChild = "CLEANLINE_TEST_RELOAD_CONFIG"

// runReloadChild is main, for a child: SIGINT and SIGTERM stop serve.
func runReloadChild(cfg string) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, []string{"serve", "--config", cfg}, os.Stdout, os.Stderr)
}

// notifySocket is a NOTIFY_SOCKET (a unixgram socket in a temp dir) as
// systemd listens on; messages arrive on its channel.
type notifySocket struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	// A socket path must fit sun_path (108 bytes): a short temp dir.
	dir, err := os.MkdirTemp("", "cln")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifySocket{path: filepath.Join(dir, "notify"), msgs: make(chan string, 64)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	return n
}

// next is the next message; it must start with want (RELOADING=1...).
func (n *notifySocket) next(t *testing.T, want string) string {
	t.Helper()
	select {
	case m := <-n.msgs:
		if !strings.HasPrefix(m, want) {
			t.Fatalf("sd_notify sent %q, want %s first", m, want)
		}
		return m
	case <-time.After(15 * time.Second):
		t.Fatalf("sd_notify: no %s within 15s", want)
	}
	return ""
}

// child is serve in a process of its own.
type child struct {
	cmd    *exec.Cmd
	cfg    string
	admin  string
	sip    string
	stderr *lockedBuffer
	exited chan error
}

// startChild runs serve on cfgText (its store, admin and SIP addresses
// filled in by the %s, %q, %q verbs) with NOTIFY_SOCKET set to n.
func startChild(t *testing.T, n *notifySocket, cfgText func(store, admin, sipAddr string) string) *child {
	t.Helper()
	dir := t.TempDir()
	c := &child{cfg: filepath.Join(dir, "cleanline.yaml"), admin: freeAddr(t, "tcp"), sip: freeAddr(t, "udp"),
		stderr: &lockedBuffer{}, exited: make(chan error, 1)}
	if err := os.WriteFile(c.cfg, []byte(cfgText("file:"+filepath.Join(dir, "cl.db"), c.admin, c.sip)), 0o600); err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(os.Args[0], "-test.run=^$")
	c.cmd.Env = append(os.Environ(), reloadChild+"="+c.cfg, "NOTIFY_SOCKET="+n.path)
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.exited <- c.cmd.Wait() }()
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			c.cmd.Process.Kill()
			<-c.exited
		}
	})
	return c
}

// waitLog waits until serve's stderr, copied from its pipe as it comes,
// holds a line with every one of want.
func (c *child) waitLog(t *testing.T, want ...string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		for _, l := range strings.Split(c.stderr.String(), "\n") {
			if !slices.ContainsFunc(want, func(w string) bool { return !strings.Contains(l, w) }) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve logged no line with %q: %s", want, c.stderr)
		}
		time.Sleep(10 * time.Millisecond) // poll pace, nothing orders on it
	}
}

func (c *child) signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := c.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

func (c *child) metrics(t *testing.T) string {
	t.Helper()
	res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + c.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// rings places a call from trunk to number, which phone answers if it
// rings; the caller hangs up. It returns the caller's final status.
func rings(t *testing.T, trunk, phone *siptest.Phone, sipAddr, number string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := trunk.Dial(ctx, "sip:"+number+"@"+sipAddr, siptest.DialOptions{FromUser: "+442079460018"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		if in, err := phone.Incoming(ctx); err == nil {
			_ = in.Answer()
		}
	}()
	res, err := out.WaitFinal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode == http.StatusOK {
		if err := out.Bye(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return res.StatusCode
}

// SIGHUP reloads serve, a process of its own as systemd runs it: a
// typo'd key is refused with the key-named error (logged and counted)
// and the old configuration still routes calls; a good file adds a line
// while a call is in progress, whose audio still crosses after it, and the
// new line takes calls. systemd hears READY=1 once serve listens,
// RELOADING=1 then READY=1 around each reload (refused or not), and
// STOPPING=1 at SIGTERM, after which serve exits 0.
func TestSIGHUPReloadsAndNotifiesSystemd(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	trunk, line, annex := siptest.NewPhone(t, "127.0.0.2"), siptest.NewPhone(t, "127.0.0.3"), siptest.NewPhone(t, "127.0.0.6")
	n := listenNotify(t)
	lines := fmt.Sprintf("    - {name: home, numbers: [\"+442079460123\"], contact: %q}\n", line.URI("landline"))
	config := func(store, admin, sipAddr string) string {
		return fmt.Sprintf(`store: %s
log: {level: info}
admin: {listen: %q}
sip:
  listen: [{network: udp, addr: %q}]
  trunks: [{name: provider, sources: [127.0.0.2]}]
  lines:
%s  media: {bind: 127.0.0.1, port_min: 43200, port_max: 43299}
  timers: {media_inactivity: -1s, session_expires: -1s}
`, store, admin, sipAddr, lines)
	}
	c := startChild(t, n, config)
	if m := n.next(t, "READY=1"); !strings.Contains(m, "STATUS=") {
		t.Fatalf("READY=1 without a STATUS: %q", m)
	}
	// READY=1 means listening: the admin listener answers and a call
	// rings at once, no polling.
	if res, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + c.admin + "/healthz"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("/healthz right after READY=1: %v %v", res, err)
	} else {
		res.Body.Close()
	}
	if code := rings(t, trunk, line, c.sip, "+442079460123"); code != http.StatusOK {
		t.Fatalf("a call to home after READY=1: %d", code)
	}

	good, err := os.ReadFile(c.cfg)
	if err != nil {
		t.Fatal(err)
	}
	typo := strings.Replace(string(good), "  lines:\n", fmt.Sprintf("  lines:\n    - {name: annex, numbres: [%q], contact: %q}\n", annexNumber, annex.URI("annex")), 1)
	if err := os.WriteFile(c.cfg, []byte(typo), 0o600); err != nil {
		t.Fatal(err)
	}
	c.signal(t, syscall.SIGHUP)
	n.next(t, "RELOADING=1")
	if m := n.next(t, "READY=1"); !strings.Contains(m, "refused") {
		t.Fatalf("READY=1 after a refused reload does not say so: %q", m)
	}
	c.waitLog(t, "configuration refused", "sip.lines[0].numbres: unknown key")
	m := c.metrics(t)
	if refused := metric(t, m, `cleanline_config_reloads_total{result="refused"}`); refused != 1 {
		t.Fatalf("refused reloads %v, want 1", refused)
	}
	if code := rings(t, trunk, line, c.sip, "+442079460123"); code != http.StatusOK {
		t.Fatalf("a call to home after the refused reload: %d", code)
	}

	// A call in progress, then a good file that adds the annex line.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := &running{trunk: trunk, sipAddr: c.sip}
	out, in := r.connect(t, ctx, "+442079460123", line)
	audioCrosses(t, ctx, out, in)
	added := strings.Replace(string(good), "  lines:\n", "  lines:\n"+annexLine(annex), 1)
	if err := os.WriteFile(c.cfg, []byte(added), 0o600); err != nil {
		t.Fatal(err)
	}
	c.signal(t, syscall.SIGHUP)
	if m := n.next(t, "RELOADING=1"); !strings.Contains(m, "MONOTONIC_USEC=") {
		t.Fatalf("RELOADING=1 without MONOTONIC_USEC: %q", m)
	}
	if m := n.next(t, "READY=1"); strings.Contains(m, "refused") {
		t.Fatalf("the good file was refused: %q\n%s", m, c.stderr)
	}
	audioCrosses(t, ctx, out, in)
	if code := rings(t, trunk, annex, c.sip, annexNumber); code != http.StatusOK {
		t.Fatalf("a call to the added line: %d", code)
	}
	audioCrosses(t, ctx, out, in)
	hangUp(t, ctx, out, in)
	if ok := metric(t, c.metrics(t), `cleanline_config_reloads_total{result="ok"}`); ok != 1 {
		t.Fatalf("successful reloads %v, want 1", ok)
	}

	c.signal(t, syscall.SIGTERM)
	n.next(t, "STOPPING=1")
	select {
	case err := <-c.exited:
		if err != nil {
			t.Fatalf("serve exited: %v\n%s", err, c.stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop at SIGTERM")
	}
}
