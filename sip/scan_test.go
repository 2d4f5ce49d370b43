package sip

// Scanner and flood abuse from a stranger: sipvicious's svmap (fingerprint)
// and svwar (extension enumeration by INVITE), then a burst of INVITEs.
// Design.md inbound flow 1: a stranger gets 403 and nothing else; no INVITE
// of theirs reaches the line; cleanline stays responsive and keeps nothing
// of the refused requests.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// sipvicious finds a sipvicious tool: Debian's 0.3.3 installs svmap and
// svwar, newer releases sipvicious_svmap and sipvicious_svwar.
func sipvicious(t *testing.T, tool string) string {
	t.Helper()
	for _, name := range []string{"sipvicious_" + tool, tool} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CLEANLINE_SKIP_SIPVICIOUS") == "1" {
		t.Skipf("%s not installed and CLEANLINE_SKIP_SIPVICIOUS=1", tool)
	}
	t.Fatalf("sipvicious %s not found: install it with `apt-get install -y sipvicious` (or set CLEANLINE_SKIP_SIPVICIOUS=1)", tool)
	return ""
}

// runBounded runs a scanner and kills it if it outlives its budget.
func runBounded(t *testing.T, d time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = t.TempDir() // sipvicious keeps session state in ~/.sipvicious; HOME below
	cmd.Env = append(os.Environ(), "HOME="+cmd.Dir)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Logf("%s killed after %s (bounded run)", name, d)
	} else if err != nil {
		t.Logf("%s: %v", name, err)
	}
	return string(out)
}

func TestSipviciousScan(t *testing.T) {
	svmap, svwar := sipvicious(t, "svmap"), sipvicious(t, "svwar")
	e, line := tortureEnv(t)
	// The scanner talks to a tap bound on the stranger's address, which
	// relays to cleanline and keeps every answer: cleanline sees 127.0.0.4.
	scan := newLineTap(t, ipStranger)
	scan.mu.Lock()
	scan.phone = e.s.Addr("udp")
	scan.mu.Unlock()
	target := scan.front.LocalAddr().(*net.UDPAddr).AddrPort()
	port := fmt.Sprint(target.Port())

	out := runBounded(t, 10*time.Second, svmap, "-b", ipStranger, "-p", port, "-t", "0.05", ipStranger)
	t.Logf("svmap:\n%s", out)
	if !strings.Contains(out, target.String()) {
		t.Errorf("svmap did not list cleanline at %s", target)
	}
	// svwar takes the 403 for its random probe extension as a sign it
	// cannot tell extensions apart and keeps retrying: it gets a few
	// seconds, then it is killed.
	for _, method := range []string{"INVITE", "REGISTER"} {
		out = runBounded(t, 3*time.Second, svwar, "-b", ipStranger, "-p", port, "-t", "0.05", "-m", method,
			"-e", "100-150", "--force", "--maximumtime=2", ipStranger)
		t.Logf("svwar -m %s:\n%.600s", method, out)
		if strings.Contains(out, "| reqauth") || strings.Contains(out, "| noauth") {
			t.Errorf("svwar -m %s claims to have found extensions:\n%s", method, out)
		}
	}

	// What cleanline told the scanner.
	scan.mu.Lock()
	replies := append([][]byte(nil), scan.replies...)
	scan.mu.Unlock()
	if len(replies) == 0 {
		t.Fatal("cleanline answered the scanner nothing at all")
	}
	byMethod := map[string]map[int]int{}
	agents := map[string]bool{}
	for _, b := range replies {
		m, err := sip.ParseMessage(b)
		if err != nil {
			t.Errorf("unparsable answer to the scanner: %v\n%s", err, b)
			continue
		}
		res, ok := m.(*sip.Response)
		if !ok || res.CSeq() == nil {
			t.Errorf("cleanline sent the scanner a request:\n%s", b)
			continue
		}
		method := string(res.CSeq().MethodName)
		if byMethod[method] == nil {
			byMethod[method] = map[int]int{}
		}
		byMethod[method][res.StatusCode]++
		for _, h := range []string{"User-Agent", "Server"} {
			if v := res.GetHeader(h); v != nil {
				agents[h+": "+v.Value()] = true
			}
		}
		switch {
		case method == "INVITE" && res.StatusCode != 403 && res.StatusCode != 100:
			t.Errorf("a stranger's INVITE got %d, want 403 (flow 1)", res.StatusCode)
		case method != "INVITE" && res.IsProvisional():
			t.Errorf("a stranger's %s got only %d: want a final answer", method, res.StatusCode)
		}
	}
	t.Logf("cleanline's answers to the scanner by method and status: %v; identifies itself as %v", byMethod, agents)
	if byMethod["INVITE"][403] == 0 {
		t.Errorf("no INVITE of the scan was refused with 403: %v", byMethod)
	}
	for _, r := range line.requests(t) {
		t.Errorf("the scan reached the line: %s %s", r.Method, r.Recipient.String())
	}
	talkThenHangUp(t, e)
}

// TestInviteFloodFromStranger bursts 2,000 INVITEs from an unknown source:
// each is refused, the trunk's call placed right after completes, and once
// the refused transactions have run their RFC 3261 course (the ACKed 403s
// linger Timer I = T4 on UDP) the goroutines and the heap are back to
// where they were: refusing keeps nothing.
func TestInviteFloodFromStranger(t *testing.T) {
	const n = 2000
	e, line := tortureEnv(t)
	dst := e.s.Addr("udp")

	runtime.GC()
	baseG := runtime.NumGoroutine()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	baseHeap := ms.HeapAlloc

	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ipStranger)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetReadBuffer(4 << 20)
	peer := conn.LocalAddr().(*net.UDPAddr).AddrPort()

	// The reader ACKs every 403 (a scanner that does not would only keep
	// each transaction to Timer H, 32 s) and counts them.
	type tally struct{ forbidden, other int }
	done := make(chan tally, 1)
	go func() {
		var got tally
		buf := make([]byte, 65535)
		for {
			_ = conn.SetReadDeadline(time.Now().Add(time.Second))
			k, err := conn.Read(buf)
			if err != nil {
				done <- got
				return
			}
			m, err := sip.ParseMessage(buf[:k])
			res, ok := m.(*sip.Response)
			if err != nil || !ok {
				got.other++
				continue
			}
			switch {
			case res.StatusCode == 403:
				got.forbidden++
				if ack := ackFor(res, dst); ack != nil {
					_, _ = conn.WriteToUDPAddrPort([]byte(ack.String()), dst)
				}
			case res.StatusCode != 100:
				got.other++
			}
		}
	}()
	for i := range n {
		msg := fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;rport;branch=z9hG4bKflood%d\r\n"+
			"From: <sip:%s@%s>;tag=f%d\r\n"+
			"To: <sip:%s@%s>\r\n"+
			"Call-ID: flood%d@%s\r\n"+
			"CSeq: 1 INVITE\r\n"+
			"Contact: <sip:x@%s>\r\n"+
			"Max-Forwards: 70\r\n"+
			"Content-Length: 0\r\n\r\n",
			lineNumber, dst, peer, i, callerOK, ipStranger, i, lineNumber, dst, i, ipStranger, peer)
		if _, err := conn.WriteToUDPAddrPort([]byte(msg), dst); err != nil {
			t.Fatal(err)
		}
	}

	// Right after the burst, the trunk's call goes through, media and all.
	talkThenHangUp(t, e)

	got := <-done
	t.Logf("flood: %d INVITEs sent, %d refused with 403, %d other answers (the rest lost to the socket buffers)", n, got.forbidden, got.other)
	if got.other != 0 {
		t.Errorf("%d answers to the flood were not 403", got.other)
	}
	if got.forbidden < n/2 {
		t.Errorf("only %d of %d INVITEs were answered 403", got.forbidden, n)
	}
	for _, r := range line.requests(t) {
		if r.Method == sip.INVITE && bytes.Contains([]byte(r.String()), []byte(callerOK)) && r.CallID() != nil && strings.HasPrefix(r.CallID().Value(), "flood") {
			t.Errorf("a flood INVITE reached the line")
		}
	}
	if invites := countInvites(line.requests(t)); invites != 1 {
		t.Errorf("the line got %d INVITEs, want 1 (the good call)", invites)
	}

	// Back to baseline: the refused transactions end (Timer I) and leave
	// neither goroutines nor memory behind.
	deadline := time.Now().Add(12 * time.Second)
	for {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		g := runtime.NumGoroutine() - 2*e.s.ports.Warm() // warm pairs' receive loops stay
		if g <= baseG+5 && ms.HeapAlloc < baseHeap+8<<20 {
			t.Logf("back to baseline: %d goroutines (was %d), heap %d KB (was %d KB)", g, baseG, ms.HeapAlloc>>10, baseHeap>>10)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not back to baseline: %d goroutines (was %d), heap %d KB (was %d KB)", g, baseG, ms.HeapAlloc>>10, baseHeap>>10)
		}
		time.Sleep(100 * time.Millisecond) // polling a condition, with a deadline
	}
}

// countInvites counts INVITE transactions: a retransmission (RFC 3261
// §17.1.1.2, Timer A: the line was slow to answer) is the same one.
func countInvites(reqs []*sip.Request) int {
	seen := map[string]bool{}
	for _, r := range reqs {
		if r.Method != sip.INVITE {
			continue
		}
		key := ""
		if v := r.Via(); v != nil {
			key, _ = v.Params.Get("branch")
		}
		if key == "" && r.CallID() != nil {
			key = r.CallID().Value()
		}
		seen[key] = true
	}
	return len(seen)
}
