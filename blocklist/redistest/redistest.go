// Package redistest runs a real redis-server for tests: standalone, as a
// one-node Redis Cluster, or as a master watched by a real Sentinel, on free
// loopback ports, stopped by t.Cleanup.
//
// There is no fallback and no skip: a test that needs Redis and cannot get it
// fails and says how to install it.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// NotFoundMessage is the failure when redis-server is not on PATH.
const NotFoundMessage = "redis-server not found: install it with `apt-get install -y redis-server`"

// startTimeout bounds how long a server may take to answer PING.
const startTimeout = 10 * time.Second

// Server is one running redis-server process.
type Server struct {
	Addr     string // 127.0.0.1:port
	Cluster  bool   // started with cluster-enabled yes
	Sentinel bool   // a Sentinel, not a data server

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has been reaped
	out    *lockedBuffer
	once   sync.Once
}

// Start runs a standalone redis-server with no persistence.
func Start(t testing.TB) *Server {
	t.Helper()
	return start(t, modeStandalone, nil)
}

// StartCluster runs a one-node Redis Cluster owning all 16384 slots, so the
// cluster client path (MOVED handling, CROSSSLOT rules) is exercised for real.
func StartCluster(t testing.TB) *Server {
	t.Helper()
	s := start(t, modeCluster, nil)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if _, err := s.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", "0", "16383"); err != nil {
		t.Fatalf("redistest: CLUSTER ADDSLOTSRANGE on %s: %v", s.Addr, err)
	}
	for {
		info, err := s.Do(ctx, "CLUSTER", "INFO")
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return s
		}
		if ctx.Err() != nil {
			t.Fatalf("redistest: cluster on %s not ok within %s: %v %q", s.Addr, startTimeout, err, info)
		}
		pause(ctx, 10*time.Millisecond)
	}
}

type mode int

const (
	modeStandalone mode = iota
	modeCluster
	modeSentinel
)

// start runs one redis-server. sentinelConf, for modeSentinel, returns the
// config for a Sentinel listening on port with working directory dir.
func start(t testing.TB, m mode, sentinelConf func(port int, dir string) string) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal(NotFoundMessage)
	}
	dir := t.TempDir()
	// A free port can be taken between our probe and the server's bind; the
	// server then exits at once and we try another port.
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			t.Fatalf("redistest: no free loopback port: %v", err)
		}
		var args []string
		if m == modeSentinel {
			// Sentinel takes its settings from a file it can rewrite (it
			// records what it learns there), so not from the command line.
			conf := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", port))
			if err := os.WriteFile(conf, []byte(sentinelConf(port, dir)), 0o600); err != nil {
				t.Fatalf("redistest: %v", err)
			}
			args = []string{conf, "--sentinel"}
		} else {
			args = []string{
				"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
				"--save", "", "--appendonly", "no", "--dir", dir,
				"--protected-mode", "yes", "--loglevel", "warning",
			}
		}
		if m == modeCluster {
			args = append(args, "--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", port)))
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			Cluster: m == modeCluster, Sentinel: m == modeSentinel,
			exited: make(chan struct{}), out: &lockedBuffer{}}
		s.cmd = exec.Command(bin, args...)
		s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
		killWithParent(s.cmd)
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("redistest: start %s: %v", bin, err)
		}
		go func() { _ = s.cmd.Wait(); close(s.exited) }()
		t.Cleanup(s.Stop)
		if lastErr = s.waitReady(); lastErr == nil {
			return s
		}
		s.Stop()
	}
	t.Fatalf("redistest: redis-server did not start: %v", lastErr)
	return nil
}

// SentinelServer is a data server (the master) and one real Sentinel that
// monitors it, so the client's Sentinel path (ask the Sentinel, then dial
// the master it names) runs for real.
type SentinelServer struct {
	Master     *Server
	Sentinel   *Server // Addr is what a client is given
	MasterName string  // "mymaster"
}

// URL is the redis-sentinel:// URL a client is configured with.
func (s *SentinelServer) URL() string {
	return "redis-sentinel://" + s.Sentinel.Addr + "/" + s.MasterName
}

// StartSentinel runs a master and a Sentinel with quorum 1 on free loopback
// ports and returns once the Sentinel names the master. Both are stopped by
// t.Cleanup, the Sentinel first so it never sees the master die.
func StartSentinel(t testing.TB) *SentinelServer {
	t.Helper()
	const name = "mymaster"
	master := start(t, modeStandalone, nil)
	_, mport, _ := net.SplitHostPort(master.Addr)
	sentinel := start(t, modeSentinel, func(port int, dir string) string {
		return fmt.Sprintf("port %d\nbind 127.0.0.1\nprotected-mode yes\ndir %s\nloglevel warning\n"+
			"sentinel monitor %s 127.0.0.1 %s 1\n", port, dir, name, mport)
	})
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	want := "127.0.0.1\n" + mport
	for {
		got, err := sentinel.Do(ctx, "SENTINEL", "get-master-addr-by-name", name)
		if err == nil && got == want {
			return &SentinelServer{Master: master, Sentinel: sentinel, MasterName: name}
		}
		if ctx.Err() != nil {
			t.Fatalf("redistest: Sentinel on %s does not name master %s within %s: %q, %v; log: %s",
				sentinel.Addr, master.Addr, startTimeout, got, err, sentinel.out.String())
		}
		pause(ctx, 10*time.Millisecond)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("redis-server on %s exited: %s", s.Addr, s.out.String())
		default:
		}
		pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
		reply, err := s.Do(pctx, "PING")
		pcancel()
		if err == nil && reply == "PONG" {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("redis-server on %s did not answer PING within %s: %v", s.Addr, startTimeout, err)
		}
		pause(ctx, 5*time.Millisecond)
	}
}

// pause waits d between polls of a condition; the condition, not the pause,
// is what the caller synchronises on.
func pause(ctx context.Context, d time.Duration) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
	case <-ctx.Done():
	}
}

// Stop kills the server and waits until it has exited. It is idempotent;
// tests call it to simulate the store going down.
func (s *Server) Stop() {
	s.once.Do(func() {
		if s.cmd.Process != nil {
			_ = s.cmd.Process.Kill()
		}
		<-s.exited
	})
}

// FlushAll empties the server between tests sharing it.
func (s *Server) FlushAll(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Do(ctx, "FLUSHALL"); err != nil {
		t.Fatalf("redistest: FLUSHALL on %s: %v", s.Addr, err)
	}
}

// Do sends one command on a fresh connection and returns a simple or bulk
// string reply (arrays are returned joined by newlines). It exists so this
// package needs no Redis client and never shares one with the code under test.
func (s *Server) Do(ctx context.Context, args ...string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var req bytes.Buffer
	fmt.Fprintf(&req, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&req, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := conn.Write(req.Bytes()); err != nil {
		return "", err
	}
	return readReply(bufio.NewReader(conn))
}

func readReply(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", errors.New("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", errors.New(line[1:])
	case '$':
		n, err := strconv.Atoi(line[1:])
		if err != nil || n < 0 {
			return "", err
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(line[1:])
		if err != nil {
			return "", err
		}
		parts := make([]string, 0, max(n, 0))
		for i := 0; i < n; i++ {
			p, err := readReply(r)
			if err != nil {
				return "", err
			}
			parts = append(parts, p)
		}
		return strings.Join(parts, "\n"), nil
	}
	return "", fmt.Errorf("unexpected reply %q", line)
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
