package limit

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const emfileChild = "LIMIT_TEST_EMFILE_CHILD"

// The real thing: a process whose descriptors run out (RLIMIT_NOFILE
// lowered to 40) while connections pile up gets EMFILE from accept; the
// Listener backs off, and once the connections close it accepts again and
// serves a new one. Without it (a server loop returning on the first
// error, as sipgo's does) the listener stays dead.
func TestAcceptSurvivesRealEMFILE(t *testing.T) {
	if os.Getenv(emfileChild) == "1" {
		emfileServer()
		return
	}
	if testing.Short() {
		t.Skip("spawns a process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAcceptSurvivesRealEMFILE$", "-test.v=false")
	cmd.Env = append(os.Environ(), emfileChild+"=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(prefix string) string {
		t.Helper()
		timeout := time.After(5 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("child ended before %q", prefix)
				}
				if rest, ok := strings.CutPrefix(l, prefix); ok {
					return rest
				}
			case <-timeout:
				t.Fatalf("no %q from the child in 5 s", prefix)
			}
		}
	}
	addr := next("addr ")
	var conns []net.Conn
	for range 80 {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break // the backlog is full: enough
		}
		conns = append(conns, c)
	}
	t.Logf("%d connections open", len(conns))
	errText := next("accept error ")
	if !strings.Contains(errText, "too many open files") {
		t.Fatalf("accept error %q, want EMFILE", errText)
	}
	for _, c := range conns {
		c.Close()
	}
	start := time.Now()
	var c net.Conn
	for time.Since(start) < 5*time.Second {
		if c, err = net.DialTimeout("tcp", addr, time.Second); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("dial after the flood: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || got != "pong\n" {
		t.Fatalf("answer after EMFILE: %q, %v", got, err)
	}
	t.Logf("served again %s after the connections closed", time.Since(start).Round(time.Millisecond))
}

// emfileServer is the child: it serves "ping" → "pong" on a Listener with
// 40 descriptors, holding every connection until its peer closes it, and
// reports its address and accept errors on stdout until stdin closes.
func emfileServer() {
	lim := syscall.Rlimit{Cur: 40, Max: 40}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Println("setrlimit", err)
		os.Exit(2)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen", err)
		os.Exit(2)
	}
	reported := false
	l := Listen(inner, Config{OnAcceptError: func(err error) {
		if !reported {
			reported = true
			fmt.Println("accept error", err)
		}
	}})
	fmt.Println("addr", inner.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Println("accept returned", err)
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			r := bufio.NewReader(c)
			for {
				line, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if line == "ping\n" {
					c.Write([]byte("pong\n"))
				}
			}
		}()
	}
}
