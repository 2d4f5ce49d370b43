package sip

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleanline/cleanline/sip/siptest"
)

// sipvicious against the registrar, from a stranger's address: svcrack
// guessing a device's password from a wordlist that holds it, and svwar
// enumerating usernames. `go test -run 'Svcrack|Svwar' ./sip/`.

// wordlist writes words to a file, one a line.
func wordlist(t *testing.T, words ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "words.txt")
	if err := os.WriteFile(path, []byte(strings.Join(words, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// crack runs svcrack from the stranger's address against e's registrar
// for username with the wordlist, and returns its output.
func crack(t *testing.T, e *env, username, words string) string {
	t.Helper()
	svcrack := sipvicious(t, "svcrack")
	return runBounded(t, 30*time.Second, svcrack, "-b", ipStranger, "-p", fmt.Sprint(e.s.Addr("udp").Port()),
		"-u", username, "-d", words, "-t", "0.05", "--maximumtime=3", ipCleanline)
}

// svcrack's wordlist holds the device's password, ninth. With the lockout
// as good as off it finds it (the test could fail); with auth_failures 5
// it is locked out before the ninth word and finds nothing, while the
// device keeps registering from its own address all along.
func TestSvcrackFindsNoPasswordWhileTheDeviceRegisters(t *testing.T) {
	words := wordlist(t, "123456", "password", "landline", "qwerty", "letmein", "000000", "111111", "secret",
		barePassA, "dragon", "monkey", "sunshine")
	t.Run("control: no lockout", func(t *testing.T) {
		e := newEnv(t, withBaresipDevices, withCfg(func(c *Config) { c.Limits.AuthFailures = 1000 }))
		out := crack(t, e, bareA, words)
		t.Logf("svcrack:\n%s", out)
		if !strings.Contains(out, barePassA) {
			t.Fatal("svcrack did not find the password even without the lockout: this test proves nothing")
		}
	})

	e := newEnv(t, withBaresipDevices, withCfg(func(c *Config) {
		c.Limits.AuthFailures, c.Limits.AuthLockout = 5, 10*time.Minute
	}))
	// The device refreshes its registration throughout the attack.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx := ctxT(t, time.Minute)
		for {
			res, err := e.line.Register(ctx, siptest.RegisterOptions{Registrar: e.s.Addr("udp"), User: bareA, Password: barePassA, Expires: 60})
			mu.Lock()
			if err != nil {
				codes[0]++
			} else {
				codes[res.StatusCode]++
			}
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond): // the device's pace, not a synchronisation
			}
		}
	}()
	out := crack(t, e, bareA, words)
	close(stop)
	wg.Wait()
	t.Logf("svcrack:\n%s", out)
	if strings.Contains(out, barePassA) {
		t.Fatal("svcrack found the password")
	}
	if n := value(t, e.s.metrics.authLockouts); n != 1 {
		t.Errorf("cleanline_auth_lockouts_total = %v, want 1", n)
	}
	if n := value(t, e.s.metrics.authFailures.WithLabelValues("REGISTER")); n < 6 {
		t.Errorf("cleanline_auth_failures_total{method=REGISTER} = %v: svcrack's wrong words were not counted", n)
	}
	for _, b := range e.s.binds.line("home") {
		if b.Flow.Addr().String() == ipStranger {
			t.Fatalf("svcrack got a binding: %+v", b)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("the device's registrations during the attack, by status: %v", codes)
	if codes[200] < 3 || len(codes) != 1 {
		t.Errorf("the device's registrations during the attack: %v, want every one 200", codes)
	}
}

// svwar tries to tell usernames apart by REGISTER. Without --force it
// gives up at once (an unknown username is challenged); with it, a
// device's username gets the same answer as its random probe's, and it
// reports none.
func TestSvwarRevealsNoExtension(t *testing.T) {
	svwar := sipvicious(t, "svwar")
	e := newEnv(t, withBaresipDevices)
	port := fmt.Sprint(e.s.Addr("udp").Port())
	names := wordlist(t, "100", "101", "admin", bareA, "office", bareB, "reception", "200", lineNumber, "home")
	out := runBounded(t, 10*time.Second, svwar, "-b", ipStranger, "-p", port, "-m", "REGISTER", "-d", names, "-t", "0.05", ipCleanline)
	t.Logf("svwar:\n%s", out)
	if !strings.Contains(out, "authentication request for an unknown extension") {
		t.Errorf("svwar did not stop at its first probe")
	}
	// svwar compares each name's answer with its random probe's, and stops
	// at the first that is the same ("unknown response"): one run for
	// each name a device or line has, first in its list.
	for _, n := range []string{bareA, bareB, lineNumber, "home"} {
		out = runBounded(t, 15*time.Second, svwar, "-b", ipStranger, "-p", port, "-m", "REGISTER", "-d", wordlist(t, n, "100"),
			"--force", "-t", "0.05", "--maximumtime=3", ipCleanline)
		t.Logf("svwar --force, %s first:\n%s", n, out)
		if strings.Contains(out, "| "+n) || strings.Contains(out, "reqauth") || strings.Contains(out, "noauth") || strings.Contains(out, "weird") {
			t.Errorf("svwar --force told %s apart:\n%s", n, out)
		}
		if !strings.Contains(out, "found nothing") {
			t.Errorf("svwar --force did not end with nothing found:\n%s", out)
		}
	}
	if n := value(t, e.s.metrics.authLockouts); n != 0 {
		t.Errorf("an enumeration without answers locked the scanner out (%v): only wrong answers count", n)
	}
}
