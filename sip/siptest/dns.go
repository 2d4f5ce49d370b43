package siptest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrNoDnsmasq is returned by StartDNS when dnsmasq is not installed.
var ErrNoDnsmasq = errors.New("dnsmasq not found: install it with `apt-get install -y dnsmasq-base` (make deps does)")

// SRV is one SRV record (RFC 2782), e.g. Name "_sip._udp.provider.test".
type SRV struct {
	Name             string
	Target           string
	Port             uint16
	Priority, Weight uint16
}

// DNSRecords are what a test's DNS server answers: SRV records, and the
// address of each host name. It answers nothing else and asks nobody.
type DNSRecords struct {
	SRV   []SRV
	Hosts map[string]string // name → IP
}

// DNS is Debian's dnsmasq serving a test's records on a loopback address;
// the test's cleanup stops it.
type DNS struct {
	Addr netip.AddrPort // UDP and TCP

	cmd    *exec.Cmd
	mu     sync.Mutex
	log    []string
	exited chan struct{}
}

// StartDNS starts dnsmasq on a free port of ip with recs, and waits until
// it answers.
func StartDNS(t testing.TB, ip string, recs DNSRecords) (*DNS, error) {
	t.Helper()
	bin, err := lookBin("dnsmasq")
	if err != nil {
		return nil, ErrNoDnsmasq
	}
	d := &DNS{exited: make(chan struct{})}
	if d.Addr, err = FreeSIPPort(ip); err != nil {
		return nil, err
	}
	args := []string{"--keep-in-foreground", "--no-resolv", "--no-hosts", "--no-poll", "--conf-file=/dev/null", "--pid-file=",
		"--bind-interfaces", "--listen-address=" + ip, fmt.Sprintf("--port=%d", d.Addr.Port()), "--log-facility=-", "--log-queries",
		"--host-record=" + readyName + ",127.0.0.1"}
	for _, s := range recs.SRV {
		args = append(args, fmt.Sprintf("--srv-host=%s,%s,%d,%d,%d", s.Name, s.Target, s.Port, s.Priority, s.Weight))
	}
	for name, addr := range recs.Hosts {
		args = append(args, "--host-record="+name+","+addr)
	}
	d.cmd = exec.Command(bin, args...)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := d.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			d.mu.Lock()
			d.log = append(d.log, sc.Text())
			d.mu.Unlock()
		}
		_ = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			t.Logf("dnsmasq's log:\n%s", d.Log())
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		if _, err = d.Resolver().LookupHost(ctx, readyName); err == nil {
			return d, nil
		}
		select {
		case <-d.exited:
			return nil, fmt.Errorf("siptest: dnsmasq exited at start:\n%s", d.Log())
		case <-ctx.Done():
			return nil, fmt.Errorf("siptest: dnsmasq did not answer on %s: %v\n%s", d.Addr, err, d.Log())
		case <-time.After(20 * time.Millisecond): // probe pace
		}
	}
}

// readyName is a name every test server answers, to tell it is up.
const readyName = "ready.siptest"

// Resolver asks this server only.
func (d *DNS) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, network, d.Addr.String())
	}}
}

// Log is what dnsmasq logged (with the queries it answered).
func (d *DNS) Log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.log, "\n")
}

func (d *DNS) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.exited
	}
}
