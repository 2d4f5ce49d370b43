package siptest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// ErrNoKamailio is returned by StartKamailio when Kamailio is not installed.
var ErrNoKamailio = errors.New("kamailio not found: install it with `apt-get install -y kamailio` (make deps does)")

// ErrNoKamailioTLS is returned by StartKamailio for a TLS provider when
// Kamailio's tls module is not installed.
var ErrNoKamailioTLS = errors.New("kamailio's tls module not found: install it with `apt-get install -y kamailio-tls-modules` (make deps does)")

// kamailioModules is where Debian installs Kamailio's modules.
const kamailioModules = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"

// Kamailio plays a provider from Debian's Kamailio: a registrar with
// digest authentication (auth_db over db_text), usrloc in memory, and a
// proxy that routes a call to a registered subscriber (lookup("location"))
// and challenges the subscriber's own calls (proxy_authorize) before
// sending them to the far end. It listens on UDP and TCP on one loopback
// port (and on TLS on another, with KamailioOptions.TLSCert), keeps them
// across Restart, and logs to stderr, which it keeps.
type Kamailio struct {
	t       testing.TB
	bin     string
	dir     string
	cfg     string
	ctl     string
	Addr    netip.AddrPort // UDP and TCP
	TLSAddr netip.AddrPort // TLS, with KamailioOptions.TLSCert

	mu     sync.Mutex
	lines  []LogLine
	notify chan struct{}
	cmd    *exec.Cmd
	exited chan struct{}
}

// LogLine is a line Kamailio logged, and when it was read.
type LogLine struct {
	At   time.Time
	Text string
}

// KamailioOptions are the provider's side of the test.
type KamailioOptions struct {
	IP         string // where Kamailio listens (the trunk's loopback address)
	Username   string // the subscriber, at domain IP
	Password   string
	Subscriber string // the IP the subscriber's own calls come from (cleanline)
	FarEnd     string // where the subscriber's calls go: sip:IP:port
	MinExpires int    // registrar's min_expires (default 60)
	// TLSCert and TLSKey, when set, make it listen on TLS too (Debian's
	// kamailio-tls-modules), presenting that certificate; it checks none.
	TLSCert, TLSKey string
}

var kamailioCfg = template.Must(template.New("cfg").Parse(`#!KAMAILIO
# A provider for cleanline's tests (sip/siptest/kamailio.go): registrar
# with digest (auth_db, db_text), and a proxy for calls both ways.
debug=2
log_stderror=yes
children=2
tcp_children=2
dns=no
rev_dns=no
auto_aliases=no
mpath="{{.Modules}}"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "db_text.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
loadmodule "ctl.so"
{{if .TLSCert}}
enable_tls=yes
loadmodule "tls.so"
modparam("tls", "certificate", "{{.TLSCert}}")
modparam("tls", "private_key", "{{.TLSKey}}")
modparam("tls", "tls_method", "TLSv1.2+")
modparam("tls", "verify_certificate", 0)
modparam("tls", "require_certificate", 0)
{{end}}
modparam("auth_db", "db_url", "text://{{.DB}}")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "load_credentials", "")
modparam("registrar", "min_expires", {{.MinExpires}})
# Below it, 423 Interval Too Brief with Min-Expires (RFC 3261 §10.3 step 7),
# not a silent raise.
modparam("registrar", "min_expires_mode", 1)
modparam("ctl", "binrpc", "unix:{{.Ctl}}")
modparam("rr", "enable_full_lr", 1)

request_route {
	if (!mf_process_maxfwd_header("10")) {
		sl_send_reply("483", "Too Many Hops");
		exit;
	}
	# Keep-alives to the registrar itself.
	if (is_method("OPTIONS") && $rU == $null) {
		sl_send_reply("200", "Keepalive");
		exit;
	}
	if (is_method("REGISTER")) {
		if (!www_authorize("$td", "subscriber")) {
			xlog("L_NOTICE", "upstream-test: REGISTER challenged cseq=$cs expires=$hdr(Expires)\n");
			www_challenge("$td", "0");
			exit;
		}
		consume_credentials();
		# save() answers the REGISTER itself, its refusals too (423 with
		# Min-Expires); a second final answer here would race the first.
		if (!save("location")) {
			xlog("L_NOTICE", "upstream-test: REGISTER refused by save cseq=$cs\n");
			exit;
		}
		xlog("L_NOTICE", "upstream-test: REGISTER saved aor=$tu contact=$ct expires=$hdr(Expires)\n");
		exit;
	}
	if (has_totag()) {
		if (loose_route()) {
			t_relay();
			exit;
		}
		if (is_method("ACK")) {
			if (t_check_trans()) {
				t_relay();
			}
			exit;
		}
		sl_send_reply("404", "Not here");
		exit;
	}
	if (is_method("CANCEL")) {
		if (t_check_trans()) {
			t_relay();
		}
		exit;
	}
	if (!is_method("INVITE")) {
		sl_send_reply("405", "Method Not Allowed");
		exit;
	}
	record_route();
	if ($si == "{{.Subscriber}}") {
		# The subscriber's own call: its credentials, then the far end.
		if (!proxy_authorize("$fd", "subscriber")) {
			xlog("L_NOTICE", "upstream-test: INVITE challenged cseq=$cs\n");
			proxy_challenge("$fd", "0");
			exit;
		}
		if ($au != $fU) {
			sl_send_reply("403", "Not Your Identity");
			exit;
		}
		consume_credentials();
		xlog("L_NOTICE", "upstream-test: INVITE authenticated user=$au cseq=$cs ruri=$ru\n");
		$du = "{{.FarEnd}}";
		t_relay();
		exit;
	}
	# A call to the subscriber, wherever it registered.
	if (!lookup("location")) {
		xlog("L_NOTICE", "upstream-test: INVITE to $rU: not registered\n");
		sl_send_reply("404", "Not Registered");
		exit;
	}
	xlog("L_NOTICE", "upstream-test: INVITE to the subscriber at $ru\n");
	t_relay();
}
`))

// StartKamailio writes the configuration and credentials into a temporary
// directory, starts Kamailio on a free port of o.IP, and waits until it
// answers; the test's cleanup stops it.
func StartKamailio(t testing.TB, o KamailioOptions) (*Kamailio, error) {
	t.Helper()
	bin, err := lookBin("kamailio")
	if err != nil {
		return nil, ErrNoKamailio
	}
	if o.TLSCert != "" {
		if _, err := os.Stat(filepath.Join(kamailioModules, "tls.so")); err != nil {
			return nil, ErrNoKamailioTLS
		}
	}
	if o.MinExpires == 0 {
		o.MinExpires = 60
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "db")
	if err := os.MkdirAll(db, 0o700); err != nil {
		return nil, err
	}
	// db_text tables: the version table auth_db checks, and the subscriber.
	if err := os.WriteFile(filepath.Join(db, "version"), []byte("id(int,auto) table_name(string) table_version(int) \n0:subscriber:7\n0:location:9\n"), 0o600); err != nil {
		return nil, err
	}
	sub := fmt.Sprintf("id(int,auto) username(string) domain(string) password(string) ha1(string,null) ha1b(string,null) \n1:%s:%s:%s:::\n", o.Username, o.IP, o.Password)
	if err := os.WriteFile(filepath.Join(db, "subscriber"), []byte(sub), 0o600); err != nil {
		return nil, err
	}
	k := &Kamailio{t: t, bin: bin, dir: dir, cfg: filepath.Join(dir, "kamailio.cfg"), ctl: filepath.Join(dir, "ctl"), notify: make(chan struct{})}
	f, err := os.Create(k.cfg)
	if err != nil {
		return nil, err
	}
	err = kamailioCfg.Execute(f, map[string]any{"DB": db, "Ctl": k.ctl, "Subscriber": o.Subscriber, "FarEnd": o.FarEnd, "MinExpires": o.MinExpires,
		"TLSCert": o.TLSCert, "TLSKey": o.TLSKey, "Modules": kamailioModules})
	f.Close()
	if err != nil {
		return nil, err
	}
	if k.Addr, err = FreeSIPPort(o.IP); err != nil {
		return nil, err
	}
	if o.TLSCert != "" {
		if k.TLSAddr, err = FreeSIPPort(o.IP); err != nil {
			return nil, err
		}
	}
	t.Cleanup(func() {
		k.Stop()
		if t.Failed() {
			t.Logf("kamailio's log (last 400 lines):\n%s", k.tail(400))
		}
	})
	if err := k.Start(); err != nil {
		return nil, err
	}
	return k, nil
}

func lookBin(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := "/usr/sbin/" + name
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}

// FreeSIPPort finds a port of ip free for both UDP and TCP (a SIP
// listener of both, as Kamailio's and cleanline's are).
func FreeSIPPort(ip string) (netip.AddrPort, error) {
	for range 20 {
		ln, err := net.Listen("tcp", ip+":0")
		if err != nil {
			return netip.AddrPort{}, err
		}
		ap := ln.Addr().(*net.TCPAddr).AddrPort()
		pc, err := net.ListenPacket("udp", ap.String())
		ln.Close()
		if err == nil {
			pc.Close()
			return ap, nil
		}
	}
	return netip.AddrPort{}, errors.New("siptest: no port free for both UDP and TCP")
}

// URI is Kamailio's SIP URI over transport ("udp", "tcp", "tls").
func (k *Kamailio) URI(transport string) string {
	switch transport {
	case "tcp":
		return fmt.Sprintf("sip:%s;transport=tcp", k.Addr)
	case "tls":
		return fmt.Sprintf("sip:%s;transport=tls", k.TLSAddr)
	}
	return fmt.Sprintf("sip:%s", k.Addr)
}

// Start starts Kamailio (again) and waits until it answers an OPTIONS.
func (k *Kamailio) Start() error {
	run := filepath.Join(k.dir, "run")
	if err := os.MkdirAll(run, 0o700); err != nil {
		return err
	}
	args := []string{"-DD", "-E", "-f", k.cfg, "-Y", run, "-P", filepath.Join(run, "kamailio.pid"),
		"-l", "udp:" + k.Addr.String(), "-l", "tcp:" + k.Addr.String(), "-m", "64", "-M", "8", "-w", k.dir}
	if k.TLSAddr.IsValid() {
		args = append(args, "-l", "tls:"+k.TLSAddr.String())
	}
	cmd := exec.Command(k.bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its children are stopped with it
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	cmd.Stdout = nil
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			k.mu.Lock()
			k.lines = append(k.lines, LogLine{At: time.Now(), Text: sc.Text()})
			close(k.notify)
			k.notify = make(chan struct{})
			k.mu.Unlock()
		}
		_ = cmd.Wait()
		close(exited)
	}()
	k.mu.Lock()
	k.cmd, k.exited = cmd, exited
	k.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if probe(k.Addr) == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("siptest: kamailio exited at start:\n%s", k.tail(30))
		case <-ctx.Done():
			k.Stop()
			return fmt.Errorf("siptest: kamailio did not answer OPTIONS on %s:\n%s", k.Addr, k.tail(30))
		case <-time.After(50 * time.Millisecond): // probe pace
		}
	}
}

// probe sends one OPTIONS over UDP and waits briefly for a 200.
func probe(to netip.AddrPort) error {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		return err
	}
	defer c.Close()
	la := c.LocalAddr().String()
	msg := fmt.Sprintf("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s;branch=z9hG4bK%d\r\nFrom: <sip:probe@%s>;tag=p\r\nTo: <sip:%s>\r\n"+
		"Call-ID: probe-%d\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n", to, la, time.Now().UnixNano(), la, to, time.Now().UnixNano())
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
		return fmt.Errorf("answered %q", strings.SplitN(string(buf[:n]), "\r\n", 2)[0])
	}
	return nil
}

// Stop ends Kamailio (SIGTERM, which ends its children; SIGKILL to its
// process group if it lingers) and waits for it.
func (k *Kamailio) Stop() {
	k.mu.Lock()
	cmd, exited := k.cmd, k.exited
	k.cmd = nil
	k.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// WaitLog waits until n lines containing s have been logged since the
// first start, and returns them.
func (k *Kamailio) WaitLog(ctx context.Context, s string, n int) ([]LogLine, error) {
	for {
		got := k.Logged(s)
		k.mu.Lock()
		ch := k.notify
		k.mu.Unlock()
		if len(got) >= n {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("siptest: kamailio logged %q %d times of %d: %w\n%s", s, len(got), n, ctx.Err(), k.tail(20))
		case <-ch:
		}
	}
}

// Logged are the lines logged so far that contain s.
func (k *Kamailio) Logged(s string) []LogLine {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []LogLine
	for _, l := range k.lines {
		if strings.Contains(l.Text, s) {
			out = append(out, l)
		}
	}
	return out
}

func (k *Kamailio) tail(n int) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	for _, l := range k.lines[max(0, len(k.lines)-n):] {
		b.WriteString(l.Text + "\n")
	}
	return b.String()
}

// Location is Kamailio's location table (kamcmd ul.dump over its ctl socket).
func (k *Kamailio) Location(ctx context.Context) (string, error) {
	bin, err := lookBin("kamcmd")
	if err != nil {
		return "", fmt.Errorf("kamcmd not found (package kamailio): %w", err)
	}
	out, err := exec.CommandContext(ctx, bin, "-s", "unix:"+k.ctl, "ul.dump").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("kamcmd ul.dump: %w: %s", err, out)
	}
	return string(out), nil
}
