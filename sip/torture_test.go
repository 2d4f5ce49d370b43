package sip

// RFC 4475 torture messages thrown at a running cleanline from a stranger
// and from the trunk, over UDP and TCP. The messages are data files under
// testdata/torture/{valid,invalid}; each is sent as it is on the wire (CRLF
// line ends, literal bytes), after filling in these placeholders:
//
//	$PEER       the sender's own address (top Via, Contact): responses come back to it
//	$TRANSPORT  UDP or TCP, in the top Via
//	$CLEANLINE  cleanline's address on that transport
//	$LINE       the line's number; $CALLER a dialable, unlisted caller
//	$CALLID     unique per send, so the four sends of a file are four transactions
//
// What must hold (ARCHITECTURE.md, inbound flow 1): no input crashes or hangs the
// service; every message is answered with a final response of the expected
// kind, or dropped; nothing reaches the line except a valid INVITE from the
// trunk; and a normal call with real RTP works afterwards.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// dropped in an expectation means "no response at all".
const dropped = 0

// tortureCase is what one data file must produce. stranger and trunk list
// the acceptable answers (the final status, or dropped); ringsLine says the
// trunk's copy is a call the line must see (once per transport).
type tortureCase struct {
	stranger, trunk []int
	ringsLine       bool
	udpOnly         bool // meaningful on datagrams only
	why             string
}

var (
	refused   = []int{403}                // flow 1: a stranger's INVITE or OPTIONS
	badReq    = []int{400, dropped}       // malformed: 400, or not even parsed
	badOrDeny = []int{400, 403, dropped}  // malformed from a stranger: either refusal will do
	noMethod  = []int{405, 501}           // a method cleanline does not implement
	noAnswer  = []int{dropped}            // a response nobody asked for is dropped
	optsOK    = []int{200}                // the trunk's keep-alive
	optsBad   = []int{200, 400, dropped}  // OPTIONS that are only odd, not harmful
	optsRefus = []int{400, 403, dropped}  // odd OPTIONS from a stranger
	unknown   = []int{404, 400, 416, 603} // a trunk INVITE for nobody we serve
	anyRefuse = []int{400, 403, 405, 501} // a stranger's odd non-INVITE
	verBad    = []int{400, 505, dropped}  // SIP/7.0
	mfZero    = []int{200, 483}           // Max-Forwards 0 at the UAS: answering is allowed
	reqExt    = []int{200, 420}           // Require of unknown extensions on OPTIONS
	strInDlg  = []int{400, 403, 481}      // a stranger's in-dialog INVITE: refused either way
	trkInDlg  = []int{400, 481}           // a re-INVITE for a dialog we never had
	regs      = []int{405, 403, 400, 501} // REGISTER: cleanline is no registrar
	lineBusy  = []int{486}                // the line refuses the torture call
	unsupTyp  = []int{415, 488, 400, 603} // a body we cannot use
)

var tortureCases = map[string]tortureCase{
	// 3.1.1 valid messages.
	"valid/wsinv":      {stranger: strInDlg, trunk: trkInDlg, why: "To has a tag: an in-dialog INVITE for a dialog we never had; sipgo refuses its non-RFC 3261 branch with 400"},
	"valid/wsinv-line": {stranger: refused, trunk: lineBusy, ringsLine: true, why: "wsinv's folding, short forms, unknown headers and Route, as a new call to the line (with ;tag= unspaced: sipgo reads \"tag = x\" as a parameter named \"tag \")"},
	"valid/intmeth":    {stranger: refused, trunk: noMethod},
	"valid/esc01":      {stranger: refused, trunk: unknown},
	"valid/escnull":    {stranger: regs, trunk: regs},
	"valid/esc02":      {stranger: refused, trunk: noMethod, why: "RE%47IST%45R is not REGISTER"},
	"valid/lwsdisp":    {stranger: refused, trunk: optsOK},
	"valid/longreq":    {stranger: bigUDP(refused), trunk: bigUDP(unknown), why: "over UDP the answer repeats 34 Vias and exceeds sipgo's MTU-200 limit, so it is not sent"},
	"valid/dblreq":     {stranger: regs, trunk: regs, udpOnly: true, why: "the INVITE after the REGISTER in the same datagram is ignored (RFC 3261 §18.3)"},
	"valid/semiuri":    {stranger: refused, trunk: optsOK},
	"valid/transports": {stranger: refused, trunk: optsOK},
	"valid/unreason":   {stranger: noAnswer, trunk: noAnswer},
	"valid/noreason":   {stranger: noAnswer, trunk: noAnswer},
	"valid/inv2543":    {stranger: badOrDeny, trunk: unknown, why: "no From tag: refused as malformed before the source check"},
	"valid/novelsc":    {stranger: optsRefus, trunk: []int{200, 416, dropped}, why: "sipgo cannot parse soap.beep:// and drops it"},
	"valid/bext01":     {stranger: refused, trunk: reqExt},
	"valid/invut":      {stranger: refused, trunk: unsupTyp},
	"valid/zeromf":     {stranger: refused, trunk: mfZero},
	"valid/sdp01":      {stranger: refused, trunk: unknown},

	// 3.1.2 invalid messages, most of them aimed at the line from a dialable
	// caller, so that being lenient would ring it.
	"invalid/badinv01":          {stranger: badOrDeny, trunk: badReq},
	"invalid/clerr":             {stranger: badOrDeny, trunk: badReq},
	"invalid/ncl":               {stranger: badOrDeny, trunk: badReq},
	"invalid/scalar02":          {stranger: append([]int{dropped}, regs...), trunk: append([]int{dropped}, regs...)},
	"invalid/scalarlg":          {stranger: badOrDeny, trunk: badReq},
	"invalid/quotbal":           {stranger: badOrDeny, trunk: badReq},
	"invalid/ltgtruri":          {stranger: badOrDeny, trunk: badReq},
	"invalid/lwsruri":           {stranger: badOrDeny, trunk: badReq},
	"invalid/lwsstart":          {stranger: badOrDeny, trunk: badReq},
	"invalid/trws":              {stranger: optsRefus, trunk: optsBad},
	"invalid/escruri":           {stranger: badOrDeny, trunk: badReq},
	"invalid/baddate":           {stranger: badOrDeny, trunk: badReq},
	"invalid/regbadct":          {stranger: append([]int{dropped}, regs...), trunk: append([]int{dropped}, regs...)},
	"invalid/badaspec":          {stranger: optsRefus, trunk: optsBad},
	"invalid/baddn":             {stranger: optsRefus, trunk: optsBad},
	"invalid/badvers":           {stranger: append([]int{403}, verBad...), trunk: append([]int{200}, verBad...), why: "sipgo ignores the version; an OPTIONS is harmless"},
	"invalid/mismatch01":        {stranger: badOrDeny, trunk: optsBad, why: "an OPTIONS whose CSeq says INVITE is still only a keep-alive"},
	"invalid/mismatch01-invite": {stranger: badOrDeny, trunk: badReq},
	"invalid/mismatch02":        {stranger: append([]int{dropped}, anyRefuse...), trunk: append([]int{dropped}, anyRefuse...)},
	"invalid/bigcode":           {stranger: noAnswer, trunk: noAnswer},
	"invalid/badbranch":         {stranger: optsRefus, trunk: optsBad},
	"invalid/insuf":             {stranger: badOrDeny, trunk: badReq},
	"invalid/multi01":           {stranger: badOrDeny, trunk: badReq},
	"invalid/mcl01":             {stranger: optsRefus, trunk: optsBad},
	"invalid/unkscm":            {stranger: []int{416, 403, 400}, trunk: []int{416}, why: "RFC 3261 §8.2.2.1; never route on To instead"},
	"invalid/starcontact":       {stranger: badOrDeny, trunk: badReq},
}

// bigUDP adds "dropped" for a message whose answer is too big for UDP.
func bigUDP(want []int) []int { return append([]int{dropped}, want...) }

// lineTap stands where the line's Contact points and relays to the real
// line phone, recording every datagram cleanline sends the line: the
// phone's own bookkeeping only sees the methods it handles.
type lineTap struct {
	front, back *net.UDPConn // front faces cleanline, back faces the phone
	wg          sync.WaitGroup

	mu      sync.Mutex
	phone   netip.AddrPort // set once the phone exists
	peer    netip.AddrPort // cleanline, as last seen
	got     [][]byte       // what reached the front
	replies [][]byte       // what came back through the back
}

func newLineTap(t *testing.T, ip string) *lineTap {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tp := &lineTap{front: listen(), back: listen()}
	tp.wg.Add(2)
	go tp.relay(tp.front, func(b []byte, from netip.AddrPort) {
		tp.mu.Lock()
		tp.peer = from
		tp.got = append(tp.got, bytes.Clone(b))
		phone := tp.phone
		tp.mu.Unlock()
		_, _ = tp.back.WriteToUDPAddrPort(withRport(b), phone)
	})
	go tp.relay(tp.back, func(b []byte, _ netip.AddrPort) {
		tp.mu.Lock()
		tp.replies = append(tp.replies, bytes.Clone(b))
		peer := tp.peer
		tp.mu.Unlock()
		_, _ = tp.front.WriteToUDPAddrPort(b, peer)
	})
	t.Cleanup(func() {
		tp.front.Close()
		tp.back.Close()
		tp.wg.Wait()
	})
	return tp
}

// withRport asks for responses at the packet's source (RFC 3581): the
// phone answers the tap, not the Via's port at the tap's IP.
func withRport(b []byte) []byte {
	i := bytes.Index(b, []byte("\r\nVia: "))
	if i < 0 || bytes.HasPrefix(b, []byte("SIP/2.0 ")) {
		return b
	}
	end := i + 2 + bytes.Index(b[i+2:], []byte("\r\n"))
	return slices.Concat(b[:end], []byte(";rport"), b[end:])
}

func (tp *lineTap) relay(c *net.UDPConn, fn func([]byte, netip.AddrPort)) {
	defer tp.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		fn(buf[:n], from)
	}
}

// URI is the line Contact that routes through the tap.
func (tp *lineTap) URI() string {
	return fmt.Sprintf("sip:landline@%s", tp.front.LocalAddr().(*net.UDPAddr).AddrPort())
}

// requests are the requests cleanline sent the line so far.
func (tp *lineTap) requests(t *testing.T) []*sip.Request {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	var out []*sip.Request
	for _, b := range tp.got {
		m, err := sip.ParseMessage(b)
		if err != nil {
			t.Errorf("cleanline sent the line something unparsable: %v\n%s", err, b)
			continue
		}
		if r, ok := m.(*sip.Request); ok {
			out = append(out, r)
		}
	}
	return out
}

// tortureEnv is newEnv with a TCP listener too and the line behind a tap.
// The tap learns the phone's address once newEnv has made the phone. The
// stranger is not rate limited here: these tests look at what each of its
// messages gets (the bans are TestFlood*'s).
func tortureEnv(t *testing.T) (*env, *lineTap) {
	tap := newLineTap(t, ipLine)
	e := newEnv(t, withCfg(func(c *Config) {
		c.Limits.RatePerSource = -1
		c.Listen = append(c.Listen, Listener{Network: "tcp", Addr: ipCleanline + ":0"})
		c.Lines[0].Contact = tap.URI()
	}))
	tap.mu.Lock()
	tap.phone = e.line.Addr
	tap.mu.Unlock()
	return e, tap
}

type tortureMsg struct {
	name string // "valid/wsinv"
	data []byte
}

func loadTorture(t *testing.T) []tortureMsg {
	t.Helper()
	var msgs []tortureMsg
	for _, kind := range []string{"valid", "invalid"} {
		files, err := filepath.Glob(filepath.Join("testdata", "torture", kind, "*.dat"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, tortureMsg{name: kind + "/" + strings.TrimSuffix(filepath.Base(f), ".dat"), data: b})
		}
	}
	if len(msgs) < 40 {
		t.Fatalf("only %d torture messages found under testdata/torture", len(msgs))
	}
	return msgs
}

var callSeq atomic.Int64

func fill(msg []byte, transport string, peer, cleanline netip.AddrPort) []byte {
	r := strings.NewReplacer(
		"$PEER", peer.String(),
		"$TRANSPORT", transport,
		"$CLEANLINE", cleanline.String(),
		"$LINE", lineNumber,
		"$CALLER", callerOK,
		"$CALLID", "t"+strconv.FormatInt(callSeq.Add(1), 36),
	)
	return []byte(r.Replace(string(msg)))
}

// rawExchange sends one message as it is from srcIP and returns the status
// codes of the responses it got, in order, until a final response or
// silence. A non-2xx final response to an INVITE is ACKed (RFC 3261
// §17.1.1.3), so that cleanline's transaction ends as it would with a real
// peer; a 2xx is a test failure (the line never answers here).
func rawExchange(t errorfer, network, srcIP string, dst netip.AddrPort, msg []byte, quiet time.Duration) []int {
	var (
		conn net.Conn
		read func() (sip.Message, error)
		err  error
	)
	d := net.Dialer{Timeout: 2 * time.Second}
	switch network {
	case "udp":
		d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(srcIP)}
		conn, err = d.Dial("udp", dst.String())
		if err != nil {
			t.Errorf("%v", err)
			return nil
		}
		buf := make([]byte, 65535)
		read = func() (sip.Message, error) {
			n, err := conn.Read(buf)
			if err != nil {
				return nil, err
			}
			return sip.ParseMessage(buf[:n])
		}
	case "tcp":
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(srcIP)}
		conn, err = d.Dial("tcp", dst.String())
		if err != nil {
			t.Errorf("%v", err)
			return nil
		}
		br := bufio.NewReader(conn)
		read = func() (sip.Message, error) { return readStreamMsg(br) }
	}
	defer conn.Close()
	peer := netip.MustParseAddrPort(conn.LocalAddr().String())
	wire := fill(msg, strings.ToUpper(network), peer, dst)
	if _, err := conn.Write(wire); err != nil {
		t.Errorf("%v", err)
		return nil
	}
	var codes []int
	for {
		// Each response must come within quiet of the last one: a final
		// response is due at once (cleanline screens in well under that).
		_ = conn.SetReadDeadline(time.Now().Add(quiet))
		m, err := read()
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, io.EOF):
			return codes
		case err != nil:
			t.Errorf("unparsable reply on %s: %v", network, err)
			return codes
		}
		res, ok := m.(*sip.Response)
		if !ok {
			t.Errorf("cleanline sent the sender a request:\n%s", m)
			continue
		}
		codes = append(codes, res.StatusCode)
		if res.IsProvisional() {
			continue
		}
		if cs := res.CSeq(); cs != nil && cs.MethodName == sip.INVITE && bytes.HasPrefix(msg, []byte("INVITE ")) {
			if res.IsSuccess() {
				t.Errorf("a torture INVITE was answered 200:\n%s", res)
				return codes
			}
			if ack := ackFor(res, dst); ack != nil {
				if _, err := conn.Write([]byte(ack.String())); err != nil {
					t.Errorf("ACK: %v", err)
				}
			}
		}
		return codes
	}
}

// errorfer is what rawExchange reports through: a *testing.T, or an
// errLog when it runs on a goroutine of its own.
type errorfer interface {
	Errorf(format string, args ...any)
}

type errLog []string

func (l *errLog) Errorf(format string, args ...any) { *l = append(*l, fmt.Sprintf(format, args...)) }

// ackFor builds the hop-by-hop ACK of a non-2xx final response: same Via
// branch, From, Call-ID, CSeq number, and the To (with tag) of the response.
// The Request-URI is cleanline's address: sipgo re-serialises a torture
// To such as "<sip:x@host >" with the space, which would not parse back.
func ackFor(res *sip.Response, dst netip.AddrPort) *sip.Request {
	if res.Via() == nil || res.From() == nil || res.To() == nil || res.CallID() == nil || res.CSeq() == nil {
		return nil // cannot be matched to a transaction anyway
	}
	ack := sip.NewRequest(sip.ACK, sip.Uri{Scheme: "sip", Host: dst.Addr().String(), Port: int(dst.Port())})
	ack.AppendHeader(sip.HeaderClone(res.Via()))
	ack.AppendHeader(sip.HeaderClone(res.From()))
	ack.AppendHeader(sip.HeaderClone(res.To()))
	ack.AppendHeader(sip.HeaderClone(res.CallID()))
	ack.AppendHeader(&sip.CSeqHeader{SeqNo: res.CSeq().SeqNo, MethodName: sip.ACK})
	mf := sip.MaxForwardsHeader(70)
	ack.AppendHeader(&mf)
	ack.SetBody(nil)
	return ack
}

// readStreamMsg reads one message from a SIP stream (RFC 3261 §18.3:
// headers up to an empty line, then Content-Length bytes).
func readStreamMsg(br *bufio.Reader) (sip.Message, error) {
	var head bytes.Buffer
	cl := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return nil, err
		}
		if head.Len() == 0 && strings.TrimSpace(line) == "" {
			continue // keep-alive CRLFs
		}
		head.WriteString(line)
		if strings.TrimSpace(line) == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			if k = strings.ToLower(strings.TrimSpace(k)); k == "content-length" || k == "l" {
				cl, _ = strconv.Atoi(strings.TrimSpace(v))
			}
		}
	}
	body := make([]byte, cl)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	return sip.ParseMessage(append(head.Bytes(), body...))
}

// finalOf reduces a response sequence to what the expectation speaks of:
// the final status, or dropped. Only 100 and 18x may come before it.
func finalOf(t *testing.T, codes []int) int {
	t.Helper()
	if len(codes) == 0 {
		return dropped
	}
	for _, c := range codes[:len(codes)-1] {
		if c >= 200 || (c != 100 && c != 180 && c != 183) {
			t.Errorf("responses %v: unexpected %d before the final one", codes, c)
		}
	}
	last := codes[len(codes)-1]
	if last < 200 {
		t.Errorf("responses %v: no final response (a provisional answer left hanging)", codes)
	}
	return last
}

func TestTortureMessages(t *testing.T) {
	e, tap := tortureEnv(t)
	msgs := loadTorture(t)

	// The line refuses every call that reaches it during the torture, and
	// keeps the INVITEs so that what was copied into them can be checked.
	var (
		rangMu sync.Mutex
		rang   []*sip.Request
	)
	lineCtx, stopLine := context.WithCancel(context.Background())
	lineDone := make(chan struct{})
	go func() {
		defer close(lineDone)
		for {
			in, err := e.line.Incoming(lineCtx)
			if err != nil {
				return
			}
			rangMu.Lock()
			rang = append(rang, in.Req)
			rangMu.Unlock()
			_ = in.Reject(486, "Busy Here")
		}
	}()

	// Every send runs at once on its own socket (waiting out the silence of
	// dropped messages one by one would take minutes); the subtests then
	// judge the outcomes.
	type send struct {
		name, network, src string
		want               []int
		why                string
		codes              []int
		errs               errLog
	}
	var sends []*send
	wantRings := 0
	for _, m := range msgs {
		tc, ok := tortureCases[m.name]
		if !ok {
			t.Errorf("%s: no expectation in tortureCases", m.name)
			continue
		}
		for _, network := range []string{"udp", "tcp"} {
			if network == "tcp" && tc.udpOnly {
				continue
			}
			if tc.ringsLine {
				wantRings++
			}
			sends = append(sends,
				&send{name: m.name, network: network, src: "stranger", want: tc.stranger, why: tc.why},
				&send{name: m.name, network: network, src: "trunk", want: tc.trunk, why: tc.why})
		}
	}
	data := map[string][]byte{}
	for _, m := range msgs {
		data[m.name] = m.data
	}
	var wg sync.WaitGroup
	for _, sd := range sends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ip := map[string]string{"stranger": ipStranger, "trunk": ipTrunk}[sd.src]
			sd.codes = rawExchange(&sd.errs, sd.network, ip, e.s.Addr(sd.network), data[sd.name], 700*time.Millisecond)
		}()
	}
	wg.Wait()
	for _, sd := range sends {
		t.Run(sd.name+"/"+sd.network+"/"+sd.src, func(t *testing.T) {
			for _, msg := range sd.errs {
				t.Error(msg)
			}
			got := finalOf(t, sd.codes)
			if got >= 500 && got < 600 && got != 505 && got != 501 {
				t.Errorf("%d: a server error is a bug in cleanline (a recovered panic answers 500)", got)
			}
			if !slices.Contains(sd.want, got) {
				t.Errorf("got %v (final %d), want one of %v (dropped=0). %s", sd.codes, got, sd.want, sd.why)
			}
		})
	}
	stopLine()
	<-lineDone

	// Nothing but the trunk's valid INVITEs reached the line: an INVITE per
	// such send, and the ACKs of the line's 486.
	invites := 0
	for _, r := range tap.requests(t) {
		switch r.Method {
		case sip.INVITE:
			invites++
		case sip.ACK:
		default:
			t.Errorf("cleanline sent the line a %s:\n%s", r.Method, r)
		}
	}
	if invites != wantRings {
		t.Errorf("the line got %d INVITEs, want %d (the trunk's valid ones)", invites, wantRings)
	}
	for _, r := range rang {
		// The B2BUA builds the line's INVITE from scratch: none of the
		// caller's junk is passed on.
		for _, junk := range []string{"NewFangledHeader", "UnknownHeaderWithUnusualValue", "services.example.com", "spindle", "Quoted string"} {
			if strings.Contains(r.String(), junk) {
				t.Errorf("the line's INVITE carries the caller's %q:\n%s", junk, r)
			}
		}
	}
	if reqs := e.line.Requests(); len(reqs) != 0 {
		t.Errorf("the line got %d in-dialog requests, e.g. %s", len(reqs), reqs[0].Method)
	}
	e.waitNoCalls()
	talkThenHangUp(t, e)
}
