package sip

import (
	"bytes"
	"container/list"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/sip/limit"
)

// What a flood costs (issue 12 §4): a stranger's requests are counted per
// source before sipgo parses them, and a source over sip.limits'
// rate_per_source is banned (dropped unread); what is answered keeps no
// state beyond sip.limits.retained_transactions.

// errBanned closes a TCP or TLS connection from a banned source: sipgo's
// stream reader ends the connection on a read-filter error.
var errBanned = errors.New("sip: source banned for flooding")

// readFilter sees every datagram (and every chunk of a TCP or TLS stream)
// before sipgo parses it, on the listener's read loop, so a banned source
// costs a map lookup. Trunks and lines are exempt (limit.Rates' Exempt):
// their address is in the config, and a flood forged from it must not lock
// them out; their floods are bounded by the retained-transaction cap.
func (s *Server) readFilter(info sip.TransportReadProps, data []byte) ([]byte, error) {
	src := addrOf(info.RemoteAddr)
	n := 1
	if !strings.EqualFold(info.Transport, "udp") && isCRLF(data) {
		s.up.pong(info.RemoteAddr) // a registration's keep-alive answered (upstream_keepalive.go)
	}
	if !strings.EqualFold(info.Transport, "udp") {
		// A stream read may hold several messages, each ended by an empty
		// line (RFC 3261 §7.5): count those, not the reads.
		n = max(1, bytes.Count(data, []byte("\r\n\r\n")))
	}
	if s.rates.TakeN(src, n) == limit.Pass {
		return data, nil
	}
	s.metrics.rateDropped.WithLabelValues(strings.ToLower(info.Transport)).Inc()
	if strings.EqualFold(info.Transport, "udp") {
		// A filter error would end sipgo's UDP read loop: nil drops it.
		return nil, nil
	}
	return nil, errBanned
}

// onBan logs each ban once (never each dropped packet).
func (s *Server) onBan(src netip.Addr, until time.Time) {
	s.metrics.bans.Inc()
	l := s.cfg.Limits
	s.log.Warn("source banned: over its request rate", zap.Stringer("source", src),
		zap.Float64("rate_per_source", l.RatePerSource), zap.Int("burst_per_source", l.BurstPerSource),
		zap.Duration("ban_for", l.BanFor), zap.Time("until", until))
}

func addrOf(a net.Addr) netip.Addr {
	switch a := a.(type) {
	case *net.UDPAddr:
		return a.AddrPort().Addr().Unmap()
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// answerStateless answers a stranger's request and keeps nothing of it:
// RFC 3261 §8.2.7, a stateless UAS "does not retransmit responses" and
// ignores ACK. Its retransmitted request is a new one and gets the same
// answer; no 403 waits 32 s for an ACK (Timer H) or a retransmission
// (Timer J), which is what a flood of them cost.
func (s *Server) answerStateless(req *sip.Request, tx sip.ServerTransaction, err error) {
	if !req.IsAck() {
		s.respondErr(req, tx, err)
	}
	tx.Terminate()
}

// answered records what a handler sent on its transaction: whether a
// final response went out, and whether it was a 2xx (an INVITE's is the
// dialog's to retransmit, RFC 6026, and is not retained).
type answered struct {
	sip.ServerTransaction
	final, ok atomic.Bool
}

func (t *answered) Respond(res *sip.Response) error {
	err := t.ServerTransaction.Respond(res)
	if !res.IsProvisional() {
		t.final.Store(true)
		if res.IsSuccess() {
			t.ok.Store(true)
		}
	}
	return err
}

// retained bounds the server transactions sipgo keeps after their final
// response over UDP: an INVITE's non-2xx waits for its ACK, retransmitted
// (Timer G) until Timer H, 32 s (RFC 3261 §17.2.1); any other request's
// final response absorbs retransmissions until Timer J, 32 s (§17.2.2).
// Beyond max, the oldest is terminated: it stops retransmitting and
// forgets the request. What that costs is in BENCHMARKS.md ("Issue 12:
// floods"): a final response lost beyond the cap is not sent again until
// the caller retransmits its request, which is then a new request.
type retained struct {
	max int // <= 0: no cap

	mu   sync.Mutex
	txs  list.List // of sip.ServerTransaction, oldest first
	shed atomic.Int64
}

// keep retains tx (already answered with a final response, kept by sipgo
// for its timers) and ends the oldest beyond the cap.
func (r *retained) keep(tx sip.ServerTransaction) {
	if r.max <= 0 {
		return
	}
	r.mu.Lock()
	e := r.txs.PushBack(tx)
	var over []sip.ServerTransaction
	for r.txs.Len() > r.max {
		over = append(over, r.txs.Remove(r.txs.Front()).(sip.ServerTransaction))
	}
	r.mu.Unlock()
	// sipgo calls this from the transaction's delete, after its own lock:
	// only ours is taken here. Removing an element twice is a no-op.
	forget := func(string, error) {
		r.mu.Lock()
		r.txs.Remove(e)
		r.mu.Unlock()
	}
	if !tx.OnTerminate(forget) {
		forget("", nil)
	}
	for _, old := range over {
		select {
		case <-old.Done():
		default:
			r.shed.Add(1)
			old.Terminate() // outside r.mu: it calls forget
		}
	}
}

// len is the number of transactions retained now.
func (r *retained) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.txs.Len()
}

// retain hands a handled request's transaction to s.kept when sipgo will
// keep it for its timers: over UDP, answered with a final response other
// than an INVITE's 2xx, by the handler or (487) by sipgo on a CANCEL.
func (s *Server) retain(req *sip.Request, tx *answered) {
	if sip.IsReliable(req.Transport()) || (req.IsInvite() && tx.ok.Load()) {
		return
	}
	if !tx.final.Load() && !(req.IsInvite() && errors.Is(tx.Err(), sip.ErrTransactionCanceled)) {
		return
	}
	select {
	case <-tx.Done():
		return
	default:
	}
	s.kept.keep(tx.ServerTransaction)
}
