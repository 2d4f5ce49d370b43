package load

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"sync"
	"time"
)

// FloodConfig configures Flood: requests sent at a fixed rate over UDP,
// each a new transaction (its own Call-ID and branch), never ACKed and
// never retransmitted. It is the attacker of issue 12 §4: what a server
// keeps per request it answered and was never thanked for.
type FloodConfig struct {
	Target   string        // HOST:PORT
	Bind     string        // local IP:PORT to send from ("127.0.0.4:0": a stranger)
	Rate     float64       // requests per second
	Duration time.Duration // how long to send
	Linger   time.Duration // after the last request, keep counting answers this long
	Method   string        // INVITE (default) or OPTIONS...
	To       string        // user part of the Request-URI
	Progress io.Writer     // one line a second while sending; nil: none
}

// FloodReport is what the flood sent and what came back.
type FloodReport struct {
	Sent        int64            `json:"sent"`
	Seconds     float64          `json:"seconds"`     // sending time
	Answered    int64            `json:"answered"`    // requests with at least one final response
	Finals      map[string]int64 `json:"finals"`      // first final responses by status
	Provisional int64            `json:"provisional"` // 1xx received
	// Retransmitted counts final responses beyond the first for the same
	// request: the server's Timer G (RFC 3261 §17.2.1), which only a
	// retained transaction sends.
	Retransmitted int64 `json:"retransmitted"`
	Other         int64 `json:"other"` // unparsable or not ours
}

// Flood sends until cfg.Duration has passed or ctx ends, then counts
// answers for cfg.Linger.
func Flood(ctx context.Context, cfg FloodConfig) (FloodReport, error) {
	if cfg.Rate <= 0 || cfg.Duration <= 0 || cfg.Target == "" {
		return FloodReport{}, fmt.Errorf("%w: flood needs --target, --rate > 0 and --duration > 0", ErrConfig)
	}
	if cfg.Method == "" {
		cfg.Method = "INVITE"
	}
	dst, err := netip.ParseAddrPort(cfg.Target)
	if err != nil {
		return FloodReport{}, fmt.Errorf("%w: --target %q: want IP:PORT", ErrConfig, cfg.Target)
	}
	laddr := &net.UDPAddr{}
	if cfg.Bind != "" {
		if laddr, err = net.ResolveUDPAddr("udp", cfg.Bind); err != nil {
			return FloodReport{}, fmt.Errorf("%w: --bind %q: %w", ErrConfig, cfg.Bind, err)
		}
	}
	conn, err := net.ListenUDP("udp", laddr)
	if err != nil {
		return FloodReport{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	defer conn.Close()
	_ = conn.SetReadBuffer(8 << 20)
	_ = conn.SetWriteBuffer(8 << 20)
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	to := net.UDPAddrFromAddrPort(dst)

	rep := FloodReport{Finals: map[string]int64{}}
	var mu sync.Mutex // guards rep's counters and seen below
	seen := map[string]bool{}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 65535)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			code, id, ok := statusAndCallID(buf[:n])
			mu.Lock()
			switch {
			case !ok:
				rep.Other++
			case code < 200:
				rep.Provisional++
			case seen[id]:
				rep.Retransmitted++
			default:
				seen[id] = true
				rep.Answered++
				rep.Finals[strconv.Itoa(code)]++
			}
			mu.Unlock()
		}
	}()

	prefix := fmt.Sprintf("fl%d", time.Now().UnixNano()%1e9)
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	nextLog := start.Add(time.Second)
	var sent int64
	func() {
		for {
			now := time.Now()
			el := now.Sub(start)
			if el >= cfg.Duration {
				return
			}
			for due := int64(el.Seconds() * cfg.Rate); sent < due; sent++ {
				msg := floodRequest(cfg.Method, cfg.To, local, dst, prefix+strconv.FormatInt(sent, 36))
				_, _ = conn.WriteTo(msg, to) // a full buffer drops it, as a network would
			}
			if cfg.Progress != nil && now.After(nextLog) {
				mu.Lock()
				fmt.Fprintf(cfg.Progress, "\rflood: %s sent %d, answered %d, retransmitted %d ", el.Truncate(time.Second), sent, rep.Answered, rep.Retransmitted)
				mu.Unlock()
				nextLog = nextLog.Add(time.Second)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	rep.Seconds = time.Since(start).Seconds()
	if cfg.Linger > 0 {
		t := time.NewTimer(cfg.Linger)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	conn.Close()
	<-readDone
	if cfg.Progress != nil {
		fmt.Fprintln(cfg.Progress)
	}
	rep.Sent = sent
	return rep, nil
}

// floodRequest is one new request: its own Call-ID, branch and tag.
func floodRequest(method, user string, local, dst netip.AddrPort, id string) []byte {
	return []byte("" +
		method + " sip:" + user + "@" + dst.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local.String() + ";branch=z9hG4bK" + id + "\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:flood@" + local.String() + ">;tag=" + id + "\r\n" +
		"To: <sip:" + user + "@" + dst.String() + ">\r\n" +
		"Call-ID: " + id + "\r\n" +
		"CSeq: 1 " + method + "\r\n" +
		"Contact: <sip:flood@" + local.String() + ">\r\n" +
		"Content-Length: 0\r\n\r\n")
}

// statusAndCallID reads a response's status code and Call-ID without a
// SIP parser: the flood must read thousands a second on a shared core.
func statusAndCallID(b []byte) (int, string, bool) {
	if !bytes.HasPrefix(b, []byte("SIP/2.0 ")) || len(b) < 11 {
		return 0, "", false
	}
	code, err := strconv.Atoi(string(b[8:11]))
	if err != nil {
		return 0, "", false
	}
	for _, name := range [][]byte{[]byte("\r\nCall-ID:"), []byte("\r\ni:")} {
		if i := bytes.Index(b, name); i >= 0 {
			rest := b[i+len(name):]
			if j := bytes.Index(rest, []byte("\r\n")); j >= 0 {
				return code, string(bytes.TrimSpace(rest[:j])), true
			}
		}
	}
	return 0, "", false
}

// WriteTable prints the flood's report in a few lines.
func (r FloodReport) WriteTable(w io.Writer) error {
	codes := make([]string, 0, len(r.Finals))
	for c := range r.Finals {
		codes = append(codes, c)
	}
	sort.Strings(codes)
	var finals bytes.Buffer
	for _, c := range codes {
		fmt.Fprintf(&finals, " %s:%d", c, r.Finals[c])
	}
	_, err := fmt.Fprintf(w, "sent %d in %.1f s (%.0f/s); answered %d (%.1f%%):%s; provisional %d; final responses retransmitted %d; other %d\n",
		r.Sent, r.Seconds, float64(r.Sent)/max(r.Seconds, 1e-9), r.Answered, 100*float64(r.Answered)/float64(max(r.Sent, 1)),
		finals.String(), r.Provisional, r.Retransmitted, r.Other)
	return err
}

// WriteJSON prints the report as one JSON object.
func (r FloodReport) WriteJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(r)
}
