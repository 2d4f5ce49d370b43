package siptest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// ErrNoSIPp is returned by RunSIPp when SIPp is not installed.
var ErrNoSIPp = errors.New("sipp not found: install it with `apt-get install -y sip-tester` (make deps does)")

// SIPpOptions are one run of Debian's SIPp (sip-tester) as a peer nobody
// here wrote: a provider's server sending a scenario to cleanline.
type SIPpOptions struct {
	Scenario string        // the scenario file (SIPp's XML)
	IP       string        // the loopback address SIPp sends from (a trunk's)
	Remote   string        // cleanline's host:port
	Service  string        // [service] in the scenario: the user part of the Request-URI
	Timeout  time.Duration // the whole run (default 15 s)
	Calls    int           // scenarios run (default 1)
}

// RunSIPp runs the scenario to its end and returns nil when every call of
// it succeeded (SIPp's exit status 0), else an error carrying SIPp's
// error log. The process is stopped with the test's context.
func RunSIPp(t testing.TB, o SIPpOptions) error {
	t.Helper()
	bin, err := lookBin("sipp")
	if err != nil {
		return ErrNoSIPp
	}
	scen, err := filepath.Abs(o.Scenario)
	if err != nil {
		return err
	}
	dir := t.TempDir() // SIPp writes its logs where it runs
	port, err := FreeSIPPort(o.IP)
	if err != nil {
		return err
	}
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Second
	}
	if o.Calls == 0 {
		o.Calls = 1
	}
	errFile := filepath.Join(dir, "errors.log")
	args := []string{o.Remote, "-sf", scen, "-s", o.Service, "-i", o.IP, "-p", strconv.Itoa(int(port.Port())),
		"-m", strconv.Itoa(o.Calls), "-timeout", fmt.Sprintf("%ds", int(o.Timeout.Seconds())), "-timeout_error",
		"-nostdin", "-trace_err", "-error_file", errFile}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout+5*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(errFile)
		return fmt.Errorf("siptest: sipp: %w\nerrors:\n%s\nscreen (tail):\n%s", err, log, tail(out, 2000))
	}
	return nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
