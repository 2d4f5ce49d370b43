package sip

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Keep-alives between registrations: a NAT in front of cleanline forgets
// an idle mapping within minutes, and the provider's calls to our Contact
// would then find no way in. Over TCP a double CRLF on the registration's
// connection (RFC 5626 §4.4.1, which the registrar answers with one CRLF);
// over UDP an OPTIONS to the first hop, any answer counting. A keep-alive
// that fails means the path (or the provider) went away: register again.

var (
	errNoPong   = errors.New("no CRLF pong within its time")
	errFlowGone = errors.New("the registration's TCP connection is closed")
)

// hold waits until the binding is to be refreshed (wait), keeping the path
// alive meanwhile; it returns early, with the error, when a keep-alive fails.
func (r *upstreamReg) hold(wait time.Duration) error {
	refresh := time.NewTimer(wait)
	defer refresh.Stop()
	var tick <-chan time.Time
	if ka := r.cfg.KeepAlive; ka > 0 && ka < wait {
		t := time.NewTicker(ka)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-r.ctx.Done():
			return nil
		case <-refresh.C:
			return nil
		case <-tick:
			if err := r.keepAlive(); err != nil {
				return err
			}
		}
	}
}

// keepAliveTimeout bounds one keep-alive's answer: RFC 5626 §4.4.1's 10 s
// for a pong, less for a keep-alive sent more often than that, but no less
// than a second.
func (r *upstreamReg) keepAliveTimeout() time.Duration {
	return min(10*time.Second, max(r.cfg.KeepAlive, time.Second))
}

func (r *upstreamReg) keepAlive() error {
	ctx, cancel := context.WithTimeout(r.ctx, r.keepAliveTimeout())
	defer cancel()
	if r.cfg.transport != "udp" {
		return r.ping(ctx)
	}
	return r.options(ctx)
}

// ping sends RFC 5626 §4.4.1's "ping" (CRLF CRLF) on the connection the
// registration went over and waits for the "pong" (CRLF): "If a pong is
// not received within 10 seconds after sending a ping ... the client MUST
// treat the flow as failed".
func (r *upstreamReg) ping(ctx context.Context) error {
	r.mu.Lock()
	flow := r.flow
	r.mu.Unlock()
	conn, _ := r.s.ua.TransportLayer().GetConnection(r.cfg.transport, flow)
	if conn == nil {
		return errFlowGone
	}
	defer conn.TryClose() //nolint:errcheck // drops GetConnection's reference; the pool keeps its own
	w, ok := conn.(io.Writer)
	if !ok {
		return fmt.Errorf("a %T cannot carry a CRLF ping", conn)
	}
	select {
	case <-r.pongs: // a late pong of an earlier ping
	default:
	}
	if _, err := w.Write([]byte("\r\n\r\n")); err != nil {
		return fmt.Errorf("CRLF ping: %w", err)
	}
	select {
	case <-r.pongs:
		return nil
	case <-ctx.Done():
		if r.ctx.Err() != nil {
			return nil // stopping
		}
		return errNoPong
	}
}

// options sends an OPTIONS to the first hop from our UDP listener (so the
// NAT mapping refreshed is the one our Contact's port sits behind); any
// answer shows the path is open.
func (r *upstreamReg) options(ctx context.Context) error {
	req := sip.NewRequest(sip.OPTIONS, *r.cfg.registrar.Clone())
	from := sip.FromHeader{Address: r.cfg.aor(), Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	to := sip.ToHeader{Address: *r.cfg.registrar.Clone()}
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	if pr := r.cfg.proxyRoute(); pr != "" {
		req.AppendHeader(sip.NewHeader("Route", pr))
	}
	req.SetTransport(strings.ToUpper(r.cfg.transport))
	if d := r.dest(); d != "" {
		req.SetDestination(d)
	}
	r.s.fromListener(req)
	if _, err := r.face.upCli.Do(ctx, req); err != nil {
		if r.ctx.Err() != nil {
			return nil // stopping
		}
		return fmt.Errorf("OPTIONS unanswered: %w", err)
	}
	return nil
}

// pong hands a CRLF pong read from remote (a TCP peer) to the registration
// whose connection it came on. It runs on sipgo's read loop, for reads
// that are only CRLFs.
func (u *upstreams) pong(remote net.Addr) {
	if remote == nil {
		return
	}
	from := remote.String()
	for _, r := range u.list() {
		r.mu.Lock()
		match := r.flow == from
		r.mu.Unlock()
		if match {
			select {
			case r.pongs <- struct{}{}:
			default:
			}
		}
	}
}

// isCRLF reports whether data is a keep-alive read: one or two CRLFs
// (RFC 5626 §3.5.1), nothing else.
func isCRLF(data []byte) bool {
	if len(data) == 0 || len(data) > 4 {
		return false
	}
	for _, b := range data {
		if b != '\r' && b != '\n' {
			return false
		}
	}
	return true
}
