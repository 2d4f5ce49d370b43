package siptest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cleanline/cleanline/sip/media"
)

// ErrNoBaresip is returned by StartBaresip when the binary is not installed.
var ErrNoBaresip = errors.New("baresip not found: install it with `apt-get install -y baresip`")

// BaresipOptions configure a baresip landline.
type BaresipOptions struct {
	// IP is the loopback address baresip binds SIP and ctrl_tcp to.
	IP string
	// MediaIP is the address its SDP advertises (net_interface); default
	// IP. baresip binds its RTP sockets to the wildcard address (its
	// stream.c: "we listen on all interfaces") and is symmetric by port: it
	// sends from the port its SDP names. From a wildcard socket Linux sends
	// to a loopback address from that same address, so on this shared
	// loopback its media to cleanline comes from cleanline's own IP,
	// whatever IP it advertises; a test that checks media sources (every
	// e2e test: cleanline takes media only from the SDP's address) sets
	// MediaIP to cleanline's IP, which is then the truth, as a one-address
	// host's SDP would be.
	MediaIP string
	// User is the account's user part (default "landline").
	User string
	// ToneHz is the frequency of the sine baresip sends as its microphone
	// (an aufile source), so that its audio can be told from anyone else's.
	// Default 1000.
	ToneHz float64
	// Quit is baresip's own -t deadline, a safety net should the test's
	// cleanup never run (default 60s).
	Quit time.Duration
	// Registrar, when set (host:port, cleanline's UDP listener), makes the
	// account register there as User with Password (RFC 3261 §10.2:
	// auth_pass, regint=RegInt): a phone that registers, as an ATA does.
	// Empty: it is reached at its static address (regint=0).
	Registrar string
	Password  string
	// RegInt is the registration interval asked for (default 60 s).
	RegInt int
	// AnswerMode is auto (default: answers at once) or manual (rings, and
	// answers on the "accept" command).
	AnswerMode string
	// MediaEnc is the account's media encryption (its srtp module):
	// "srtp-mand" takes and offers only RTP/SAVP with SDES keys, as an ATA
	// set to "SRTP mandatory" does; "" is plain RTP.
	MediaEnc string
}

// Baresip is a Debian baresip 1.0.0 running headless as an auto-answering
// landline: G.711 only, a generated tone as its audio source, ALSA's null
// device as its player and the sndfile filter recording what it sends
// (*-enc.wav) and receives (*-dec.wav) in RecDir. Commands and call events go
// through its ctrl_tcp module.
type Baresip struct {
	t      testing.TB
	Addr   netip.AddrPort // SIP (UDP)
	User   string
	Dir    string // config dir
	RecDir string // sndfile's snd_path

	cmd     *exec.Cmd
	exited  chan struct{}
	ctrl    net.Conn
	ctrlOut *bufio.Reader
	cmdMu   sync.Mutex
	token   int

	mu      sync.Mutex
	output  []string
	events  []BaresipEvent
	replies map[string]chan BaresipReply
	notify  chan struct{}
}

// BaresipEvent is one ctrl_tcp event, e.g. {"type":"CALL_CLOSED", ...}.
type BaresipEvent struct {
	Type      string `json:"type"`
	Class     string `json:"class"`
	Direction string `json:"direction"`
	PeerURI   string `json:"peeruri"`
	ID        string `json:"id"`
	Param     string `json:"param"`
}

// BaresipReply is ctrl_tcp's answer to a command.
type BaresipReply struct {
	OK   bool   `json:"ok"`
	Data string `json:"data"`
}

// StartBaresip writes a config dir in t.TempDir(), starts baresip on a free
// port of o.IP, and returns once it said it is ready and its control socket
// is connected. The test's cleanup kills it and waits for it.
func StartBaresip(t testing.TB, o BaresipOptions) (*Baresip, error) {
	t.Helper()
	bin, err := exec.LookPath("baresip")
	if err != nil {
		return nil, ErrNoBaresip
	}
	if o.User == "" {
		o.User = "landline"
	}
	if o.ToneHz == 0 {
		o.ToneHz = 1000
	}
	if o.Quit == 0 {
		o.Quit = 60 * time.Second
	}
	// Free ports are found by binding and releasing them: a race with
	// another process taking one is possible, so a start that fails to bind
	// is retried with new ports.
	var lastErr error
	for range 3 {
		b, err := startBaresip(t, bin, o)
		if err == nil {
			return b, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func startBaresip(t testing.TB, bin string, o BaresipOptions) (*Baresip, error) {
	dir := t.TempDir()
	b := &Baresip{t: t, User: o.User, Dir: dir, RecDir: filepath.Join(dir, "rec"),
		exited: make(chan struct{}), replies: map[string]chan BaresipReply{}, notify: make(chan struct{})}
	if err := os.Mkdir(b.RecDir, 0o755); err != nil {
		return nil, err
	}
	sipPort, err := freePort(o.IP, true)
	if err != nil {
		return nil, err
	}
	ctrlPort, err := freePort(o.IP, false)
	if err != nil {
		return nil, err
	}
	b.Addr = netip.AddrPortFrom(netip.MustParseAddr(o.IP), uint16(sipPort))

	// 30 s of tone: longer than any test, since aufile in 1.0.0 stops the
	// source at the end of the file.
	pcm := Sine(o.ToneHz, 30*time.Second)
	var wav bytes.Buffer
	if err := media.WriteWAV(&wav, pcm, 8000); err != nil {
		return nil, err
	}
	tonePath := filepath.Join(dir, "tone.wav")
	if err := os.WriteFile(tonePath, wav.Bytes(), 0o644); err != nil {
		return nil, err
	}
	// net_interface pins baresip's SDP address to MediaIP (by default it
	// advertises the host's first interface). RTP ports stay above the
	// ranges the e2e tests give cleanline's relay.
	mediaIP := o.MediaIP
	if mediaIP == "" {
		mediaIP = o.IP
	}
	config := fmt.Sprintf(`poll_method epoll
module_path %[6]s
net_interface %[7]s
sip_listen %[1]s:%[2]d
call_local_timeout 20
audio_source aufile,%[3]s
audio_player alsa,null
audio_alert alsa,null
ausrc_srate 8000
auplay_srate 8000
ausrc_channels 1
auplay_channels 1
rtp_ports 56000-59998
rtp_timeout 0
module g711.so
module aufile.so
module alsa.so
module sndfile.so
module srtp.so
module_tmp account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen %[1]s:%[4]d
snd_path %[5]s
`, o.IP, sipPort, tonePath, ctrlPort, b.RecDir, moduleDir(bin), mediaIP)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o644); err != nil {
		return nil, err
	}
	// regint=0: nothing to register with; the line is reached at its
	// static contact, as cleanline's config says. With a registrar, the
	// account's address-of-record is at it, and it REGISTERs there.
	mode := o.AnswerMode
	if mode == "" {
		mode = "auto"
	}
	enc := ""
	if o.MediaEnc != "" {
		enc = ";mediaenc=" + o.MediaEnc
	}
	account := fmt.Sprintf("<sip:%s@%s>;regint=0;answermode=%s;audio_codecs=PCMA,PCMU%s\n", o.User, b.Addr, mode, enc)
	if o.Registrar != "" {
		regint := o.RegInt
		if regint == 0 {
			regint = 60
		}
		account = fmt.Sprintf("<sip:%s@%s>;auth_pass=%s;regint=%d;answermode=%s;audio_codecs=PCMA,PCMU%s\n",
			o.User, o.Registrar, o.Password, regint, mode, enc)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(account), 0o644); err != nil {
		return nil, err
	}
	for _, f := range []string{"contacts", "current_contact"} {
		_ = os.WriteFile(filepath.Join(dir, f), nil, 0o644)
	}

	args := []string{"-f", dir, "-s", "-t", strconv.Itoa(int(o.Quit.Seconds()))}
	b.cmd = exec.Command(bin, args...)
	if sb, err := exec.LookPath("stdbuf"); err == nil {
		// Its SIP trace goes to a pipe, which stdio buffers in 4 KB blocks:
		// a test waiting for a trace line (Ping, ReceivedRequests) would
		// wait for output that sits in baresip's buffer. Line-buffered, each
		// line is there as soon as it is printed.
		b.cmd = exec.Command(sb, append([]string{"-oL", "-eL", bin}, args...)...)
	}
	b.cmd.Dir = dir
	pr, pw := io.Pipe()
	b.cmd.Stdout, b.cmd.Stderr = pw, pw
	if err := b.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = b.cmd.Wait()
		pw.Close()
		close(b.exited)
	}()
	go b.readOutput(pr)
	t.Cleanup(b.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.WaitOutput(ctx, "baresip is ready."); err != nil {
		b.Stop()
		return nil, fmt.Errorf("baresip did not start: %w\n%s", err, b.Output())
	}
	b.ctrl, err = net.Dial("tcp", net.JoinHostPort(o.IP, strconv.Itoa(ctrlPort)))
	if err != nil {
		b.Stop()
		return nil, fmt.Errorf("baresip ctrl_tcp: %w\n%s", err, b.Output())
	}
	b.ctrlOut = bufio.NewReader(b.ctrl)
	go b.readCtrl()
	return b, nil
}

// moduleDir is where the installed baresip keeps its modules: Debian's
// path, or a source install's next to the binary's prefix.
func moduleDir(bin string) string {
	for _, d := range []string{"/usr/lib/baresip/modules",
		filepath.Join(filepath.Dir(filepath.Dir(bin)), "lib", "baresip", "modules")} {
		if _, err := os.Stat(filepath.Join(d, "g711.so")); err == nil {
			return d
		}
	}
	return "/usr/lib/baresip/modules"
}

func freePort(ip string, udpToo bool) (int, error) {
	l, err := net.Listen("tcp", ip+":0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if udpToo {
		// baresip's sip_listen opens UDP and TCP on the same port.
		c, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		if err != nil {
			return 0, err
		}
		c.Close()
	}
	return port, nil
}

// URI is the SIP URI cleanline's line contact points at.
func (b *Baresip) URI() string { return fmt.Sprintf("sip:%s@%s", b.User, b.Addr) }

// Stop kills baresip and waits for it to be reaped; safe to call twice.
func (b *Baresip) Stop() {
	if b.ctrl != nil {
		b.ctrl.Close()
	}
	select {
	case <-b.exited:
		return
	default:
	}
	_ = b.cmd.Process.Kill()
	select {
	case <-b.exited:
	case <-time.After(5 * time.Second):
		b.t.Errorf("baresip pid %d survived SIGKILL", b.cmd.Process.Pid)
	}
}

// Ping sends baresip an out-of-dialog OPTIONS from a fresh socket on
// from's IP and returns the status code of its answer. Once it answered,
// everything sent to it earlier has been read: its SIP stack is one loop.
func (b *Baresip) Ping(ctx context.Context, from string) (int, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(from), 0)))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	la := c.LocalAddr().String()
	branch := fmt.Sprintf("z9hG4bK-ping-%d", time.Now().UnixNano())
	msg := fmt.Sprintf("OPTIONS %[1]s SIP/2.0\r\nVia: SIP/2.0/UDP %[2]s;branch=%[3]s;rport\r\n"+
		"Max-Forwards: 70\r\nFrom: <sip:ping@%[2]s>;tag=%[3]s\r\nTo: <%[1]s>\r\nCall-ID: %[3]s\r\n"+
		"CSeq: 1 OPTIONS\r\nContact: <sip:ping@%[2]s>\r\nContent-Length: 0\r\n\r\n", b.URI(), la, branch)
	if _, err := c.WriteToUDPAddrPort([]byte(msg), b.Addr); err != nil {
		return 0, err
	}
	buf := make([]byte, 8192)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return 0, fmt.Errorf("baresip: no answer to OPTIONS: %w", err)
		}
		// "SIP/2.0 200 OK": skip provisional answers.
		f := strings.Fields(string(buf[:min(n, 64)]))
		if len(f) >= 2 && f[0] == "SIP/2.0" && strings.Contains(string(buf[:n]), branch) {
			code, _ := strconv.Atoi(f[1])
			if code >= 200 {
				// The trace of both is in baresip's output before the
				// caller compares output from before and after the ping.
				return code, b.waitOutputCount(ctx, "Call-ID: "+branch, 2)
			}
		}
	}
}

// Exited is closed when the process has ended.
func (b *Baresip) Exited() <-chan struct{} { return b.exited }

func (b *Baresip) changed() {
	close(b.notify)
	b.notify = make(chan struct{})
}

func (b *Baresip) readOutput(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		b.mu.Lock()
		b.output = append(b.output, sc.Text())
		b.changed()
		b.mu.Unlock()
	}
}

// readCtrl reads ctrl_tcp's netstrings ("<len>:<json>,"): replies to our
// commands and call events.
func (b *Baresip) readCtrl() {
	for {
		n, err := b.ctrlOut.ReadString(':')
		if err != nil {
			return
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(n, ":")))
		if err != nil || size > 1<<20 {
			return
		}
		msg := make([]byte, size+1)
		if _, err := io.ReadFull(b.ctrlOut, msg); err != nil {
			return
		}
		var m struct {
			Event    bool   `json:"event"`
			Response bool   `json:"response"`
			Token    string `json:"token"`
			BaresipEvent
			BaresipReply
		}
		if json.Unmarshal(msg[:size], &m) != nil {
			continue
		}
		b.mu.Lock()
		switch {
		case m.Event:
			b.events = append(b.events, m.BaresipEvent)
			b.changed()
		case m.Response:
			if ch, ok := b.replies[m.Token]; ok {
				ch <- m.BaresipReply
				delete(b.replies, m.Token)
			}
		}
		b.mu.Unlock()
	}
}

// Command runs a menu command through ctrl_tcp ("hangup", "sndcode 1", ...)
// and returns its reply.
func (b *Baresip) Command(ctx context.Context, command string) (BaresipReply, error) {
	name, params, _ := strings.Cut(command, " ")
	b.cmdMu.Lock()
	b.token++
	tok := strconv.Itoa(b.token)
	b.cmdMu.Unlock()
	ch := make(chan BaresipReply, 1)
	b.mu.Lock()
	b.replies[tok] = ch
	b.mu.Unlock()
	js, _ := json.Marshal(map[string]string{"command": name, "params": params, "token": tok})
	if _, err := fmt.Fprintf(b.ctrl, "%d:%s,", len(js), js); err != nil {
		return BaresipReply{}, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return BaresipReply{}, fmt.Errorf("baresip: no reply to %q: %w", command, ctx.Err())
	}
}

// Output is everything baresip printed so far.
func (b *Baresip) Output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.output, "\n")
}

func (b *Baresip) hasOutput(substr string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.output {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}

// OutputLines returns the number of lines printed so far, for CountOutput.
func (b *Baresip) OutputLines() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.output)
}

// CountOutput is how many lines printed after line from contain substr.
func (b *Baresip) CountOutput(from int, substr string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.output[min(from, len(b.output)):] {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// ReceivedRequests returns the request lines of the SIP requests baresip
// received (from its -s trace) in output lines printed after line from.
func (b *Baresip) ReceivedRequests(from int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	in := "-> " + b.Addr.String()
	lines := b.output[min(from, len(b.output)):]
	for i, l := range lines {
		if strings.HasPrefix(l, "UDP ") && strings.HasSuffix(strings.TrimSpace(l), in) &&
			i+1 < len(lines) && !strings.HasPrefix(lines[i+1], "SIP/2.0 ") {
			out = append(out, lines[i+1])
		}
	}
	return out
}

func (b *Baresip) waitOutputCount(ctx context.Context, substr string, n int) error {
	for {
		if b.CountOutput(0, substr) >= n {
			return nil
		}
		b.mu.Lock()
		ch := b.notify
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("baresip printed %q fewer than %d times: %w", substr, n, ctx.Err())
		}
	}
}

// WaitRecorded waits until the sndfile recording of kind holds at least d
// of audio. baresip reports no audio progress, so this watches the file
// grow (every 20 ms, one packet's worth) until ctx is done.
func (b *Baresip) WaitRecorded(ctx context.Context, kind string, d time.Duration) error {
	want := int64(44 + 2*8000*d.Seconds())
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		files, _ := filepath.Glob(filepath.Join(b.RecDir, "*-"+kind+".wav"))
		for _, f := range files {
			if st, err := os.Stat(f); err == nil && st.Size() >= want {
				return nil
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("baresip: %s recording never reached %s: %w", kind, d, ctx.Err())
		}
	}
}

// WaitOutput waits for a line of output containing substr.
func (b *Baresip) WaitOutput(ctx context.Context, substr string) (string, error) {
	for {
		b.mu.Lock()
		for _, l := range b.output {
			if strings.Contains(l, substr) {
				b.mu.Unlock()
				return l, nil
			}
		}
		ch := b.notify
		b.mu.Unlock()
		select {
		case <-ch:
		case <-b.exited:
			if b.hasOutput(substr) {
				continue
			}
			return "", fmt.Errorf("baresip exited before printing %q", substr)
		case <-ctx.Done():
			return "", fmt.Errorf("baresip never printed %q: %w", substr, ctx.Err())
		}
	}
}

// WaitEvent waits for a ctrl_tcp event of type typ (CALL_INCOMING,
// CALL_ESTABLISHED, CALL_CLOSED, ...).
func (b *Baresip) WaitEvent(ctx context.Context, typ string) (BaresipEvent, error) {
	return b.WaitEventFrom(ctx, 0, typ)
}

// WaitEventFrom waits for an event of type typ among those after the
// first from (len(Events()) before a call began: that call's events).
func (b *Baresip) WaitEventFrom(ctx context.Context, from int, typ string) (BaresipEvent, error) {
	for {
		b.mu.Lock()
		for _, e := range b.events[min(from, len(b.events)):] {
			if e.Type == typ {
				b.mu.Unlock()
				return e, nil
			}
		}
		ch := b.notify
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return BaresipEvent{}, fmt.Errorf("baresip: no %s event: %w", typ, ctx.Err())
		}
	}
}

// Events returns the ctrl_tcp events so far.
func (b *Baresip) Events() []BaresipEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]BaresipEvent(nil), b.events...)
}

// Recording returns the PCM of the one sndfile recording of kind "dec"
// (what baresip received) or "enc" (what it sent). sndfile finalises the
// WAV header only when the call's audio stream closes: read it after the
// call ended.
func (b *Baresip) Recording(kind string) ([]int16, error) {
	files, _ := filepath.Glob(filepath.Join(b.RecDir, "*-"+kind+".wav"))
	if len(files) != 1 {
		return nil, fmt.Errorf("baresip: want one %s recording in %s, found %v", kind, b.RecDir, files)
	}
	p, err := media.LoadPrompt(files[0])
	if err != nil {
		return nil, err
	}
	return p.Samples, nil
}
