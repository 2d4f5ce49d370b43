package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// serveChild, set in a child's environment, makes the test binary run
// `cleanline serve` with that config under a descriptor limit of
// serveChildFiles (see TestMain).
const (
	serveChild      = "CLEANLINE_TEST_SERVE_CONFIG"
	serveChildFiles = 128
)

// runServeChild is the child: serve with few descriptors until killed.
func runServeChild(cfg string) int {
	lim := syscall.Rlimit{Cur: serveChildFiles, Max: serveChildFiles}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintln(os.Stderr, "setrlimit:", err)
		return 2
	}
	return run(context.Background(), []string{"serve", "--config", cfg}, os.Stdout, os.Stderr)
}

// The whole daemon runs out of descriptors: strangers open more TCP
// connections than the process may hold (the limits set off, as an
// operator who set them too high would). Accept fails with EMFILE, which
// before sip/limit ended sipgo's TCP accept loop for good. Once the
// connections close, SIP over TCP answers again within seconds, and the
// accept errors were counted.
func TestServeSurvivesDescriptorExhaustion(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a process")
	}
	dir := t.TempDir()
	admin, sipAddr := freeAddr(t, "tcp"), freeAddr(t, "tcp")
	cfg := filepath.Join(dir, "cleanline.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`store: file:%s
log: {level: error}
admin: {listen: %q}
sip:
  listen: [{network: udp, addr: "127.0.0.1:0"}, {network: tcp, addr: %q}]
  trunks: [{name: provider, sources: [127.0.0.2]}]
  lines: [{name: home, contact: "sip:home@127.0.0.3:5060"}]
  media: {bind: 127.0.0.1, port_min: 41100, port_max: 41199}
  limits: {tcp_per_source: -1, tcp_max: -1, tcp_idle_timeout: 1m}
`, filepath.Join(dir, "cl.db"), admin, sipAddr)), 0o600)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveChild+"="+cfg)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	get := func(path string) (int, string, error) {
		c := http.Client{Timeout: 2 * time.Second}
		res, err := c.Get("http://" + admin + path)
		if err != nil {
			return 0, "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res.StatusCode, string(b), err
	}
	waitFor := func(what string, d time.Duration, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(d)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within %s", what, d)
			}
			time.Sleep(50 * time.Millisecond) // poll pace, nothing orders on it
		}
	}
	waitFor("serve healthy", 10*time.Second, func() bool { code, _, err := get("/healthz"); return err == nil && code == 200 })

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.4")}, Timeout: time.Second}
	for range 2 * serveChildFiles {
		c, err := d.Dial("tcp", sipAddr)
		if err != nil {
			break // the backlog is full too
		}
		conns = append(conns, c)
	}
	t.Logf("%d connections open against a limit of %d descriptors", len(conns), serveChildFiles)
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	ended := time.Now()

	var status string
	waitFor("an answer over TCP after the flood", 5*time.Second, func() bool {
		c, err := d.Dial("tcp", sipAddr)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		la := c.LocalAddr().String()
		fmt.Fprintf(c, "OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/TCP %s;branch=z9hG4bKemfile%d\r\nMax-Forwards: 70\r\n"+
			"From: <sip:probe@127.0.0.4>;tag=p\r\nTo: <sip:%s>\r\nCall-ID: emfile%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
			sipAddr, la, time.Now().UnixNano(), sipAddr, time.Now().UnixNano())
		line, err := bufio.NewReader(c).ReadString('\n')
		status = strings.TrimSpace(line)
		return err == nil
	})
	if !strings.HasPrefix(status, "SIP/2.0 403") {
		t.Fatalf("stranger's OPTIONS after the flood: %q, want 403", status)
	}
	t.Logf("SIP over TCP answered %s after the flood ended", time.Since(ended).Round(time.Millisecond))
	waitFor("/healthz ok after the flood", 5*time.Second, func() bool { code, _, err := get("/healthz"); return err == nil && code == 200 })
	_, body, err := get("/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^cleanline_tcp_accept_errors_total\{transport="tcp"\} (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no accept errors counted: the flood did not exhaust descriptors, the test proves nothing")
	}
	if n, _ := strconv.ParseFloat(m[1], 64); n < 1 {
		t.Fatalf("accept errors %s", m[1])
	}
	t.Logf("accept errors survived: %s", m[1])
}
