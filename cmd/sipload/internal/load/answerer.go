package load

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// AnswerConfig configures StartAnswerer.
type AnswerConfig struct {
	Listen    string // ip:port
	Transport string // udp or tcp
	Ring      time.Duration
	RTP       bool
	// Decline answers 603 to these caller numbers (From user), playing a
	// screening peer in tests; normally empty.
	Decline map[string]bool
	// HangupAfter makes us hang up answered calls (BYE) after this; 0
	// waits for the caller's BYE.
	HangupAfter time.Duration
	// Watch is how long each call's RTP port and dialog stay known after it
	// hung up, so anything arriving then is seen and counted as late.
	Watch time.Duration
	// Grace excuses packets already in flight when the call ended: a peer
	// cannot stop what it sent before our BYE reached it.
	Grace time.Duration
	// KeepCalls keeps a record of every call for the report (per-call
	// output); otherwise only calls with late traffic are kept.
	KeepCalls bool
	Progress  io.Writer
	Log       *slog.Logger
}

// Validate checks the configuration without touching the network.
func (c *AnswerConfig) Validate() error {
	var errs []string
	if c.Listen == "" {
		errs = append(errs, "--listen is required")
	}
	if c.Ring < 0 || c.HangupAfter < 0 || c.Watch < 0 || c.Grace < 0 {
		errs = append(errs, "--ring, --hangup-after, --watch and --grace cannot be negative")
	}
	if c.Grace > c.Watch && c.Watch > 0 {
		errs = append(errs, "--grace must not exceed --watch")
	}
	if _, err := checkTransport(c.Transport); err != nil {
		errs = append(errs, strings.TrimPrefix(err.Error(), ErrConfig.Error()+": "))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrConfig, strings.Join(errs, "; "))
	}
	return nil
}

// CallRecord is what the answering line saw of one answered call.
type CallRecord struct {
	CallID       string  `json:"call_id"`
	From         string  `json:"from"`
	InviteUnixNs int64   `json:"invite_unix_ns"` // wall clock when the INVITE reached the handler
	HungUpBy     string  `json:"hung_up_by"`     // "caller", "us" or "shutdown"
	RTPSent      uint64  `json:"rtp_sent"`
	RTPRecv      uint64  `json:"rtp_received"`
	LatePackets  uint64  `json:"late_packets"`
	LateRequests int     `json:"late_requests"`
	FirstLateMs  float64 `json:"first_late_ms,omitempty"` // after hang-up
	Late         bool    `json:"late"`                    // anything at all arrived after hang-up
}

// AnswerReport is the answering line's account of a run.
type AnswerReport struct {
	Listen        string `json:"listen"`
	Invites       int64  `json:"invites"`
	Answered      int64  `json:"answered"`
	Declined      int64  `json:"declined"`
	Cancelled     int64  `json:"cancelled"`
	Failed        int64  `json:"failed"` // no ACK for our 200, or a local error
	ByeReceived   int64  `json:"bye_received"`
	ByeSent       int64  `json:"bye_sent"`
	ByeFailed     int64  `json:"bye_failed"`
	RTPSent       uint64 `json:"rtp_sent"`
	RTPRecv       uint64 `json:"rtp_received"`
	RTPBad        uint64 `json:"rtp_bad"`
	CallsNoRTP    int64  `json:"answered_calls_without_rtp"` // with RTP on: answered calls that received nothing
	LateCalls     int64  `json:"calls_with_late_traffic"`
	LatePackets   uint64 `json:"late_packets"`
	LateRequests  int64  `json:"late_requests"`
	StrayRequests int64  `json:"stray_requests"` // in-dialog requests for dialogs we never had or forgot
	Unfinished    int64  `json:"unfinished_calls"`
	// RTPRoundsSkipped: 20 ms rounds our RTP pacer could not send in time.
	RTPRoundsSkipped uint64 `json:"rtp_rounds_skipped"`
	// RTPStray: packets that arrived for no call we know, e.g. after its
	// watch window (they used to meet a closed port and go unseen).
	RTPStray uint64       `json:"rtp_stray"`
	Calls    []CallRecord `json:"calls,omitempty"`
}

// maxLateKept bounds the late-call records kept without KeepCalls.
const maxLateKept = 1000

type acall struct {
	sess      *sipgo.DialogServerSession
	st        *stream
	from      string
	invitedAt int64        // UnixNano when the INVITE reached our handler
	endedAt   atomic.Int64 // UnixNano; 0 while up
	lateReqs  atomic.Int64
	firstLate atomic.Int64
	byCaller  atomic.Bool
	// mediaMu orders starting our RTP against markEnded stopping it, so a
	// BYE handled before we start never leaves our media running.
	mediaMu sync.Mutex
}

// Answerer is the answering endpoint. Start it with StartAnswerer and stop
// it with Close, which returns the report.
type Answerer struct {
	cfg   AnswerConfig
	ep    *endpoint
	dua   sipgo.DialogUA
	rtp   *rtpMux  // nil without RTP
	calls sync.Map // UAS dialog ID -> *acall, until Watch after hang-up
	wg    sync.WaitGroup
	// shutdown is closed by Close: answered calls hang up, ringing ones
	// are declined with 480.
	shutdown     chan struct{}
	shutdownOnce sync.Once
	// wgMu orders every wg.Add before Close's wg.Wait (sync.WaitGroup's
	// rule): no call starts once shutdown is closed.
	wgMu         sync.Mutex
	stopProgress func()

	mu  sync.Mutex
	rep AnswerReport
	// counters read by the progress line and the report
	invites, answered, declined, cancelled, failed, active atomic.Int64
	byeRecv, byeSent, byeFailed, lateCalls, stray          atomic.Int64
}

// StartAnswerer listens and answers until Close.
func StartAnswerer(cfg AnswerConfig) (*Answerer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.Transport = strings.ToLower(cfg.Transport)
	bind, err := resolveHostPort("--listen", cfg.Listen)
	if err != nil {
		return nil, err
	}
	ep, err := newEndpoint(cfg.Transport, bind, cfg.Log)
	if err != nil {
		return nil, err
	}
	a := &Answerer{cfg: cfg, ep: ep, shutdown: make(chan struct{})}
	a.rep.Listen = cfg.Transport + ":" + ep.addr.String()
	a.dua = sipgo.DialogUA{Client: ep.cli, ContactHDR: ep.contact}
	if cfg.RTP {
		if a.rtp, err = newRTPMux(ep.addr.IP); err != nil {
			ep.close()
			return nil, fmt.Errorf("rtp socket: %w", err)
		}
	}
	ep.srv.OnInvite(a.onInvite)
	ep.srv.OnAck(a.onAck)
	ep.srv.OnBye(a.onBye)
	for _, m := range []sip.RequestMethod{sip.INFO, sip.UPDATE, sip.REFER, sip.NOTIFY, sip.MESSAGE, sip.PRACK, sip.SUBSCRIBE} {
		ep.srv.OnRequest(m, a.onOther)
	}
	ep.start()
	a.stopProgress = a.progress()
	return a, nil
}

// Addr is the SIP address the answerer listens on.
func (a *Answerer) Addr() *net.UDPAddr { return a.ep.addr }

// Close hangs up what is still up, waits (bounded by ctx) for every call's
// watch window to end, stops listening and returns the report.
func (a *Answerer) Close(ctx context.Context) AnswerReport {
	a.wgMu.Lock()
	a.shutdownOnce.Do(func() { close(a.shutdown) })
	a.wgMu.Unlock()
	done := make(chan struct{})
	go func() { a.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	a.stopProgress()
	rep := a.Snapshot()
	rep.Unfinished = a.active.Load()
	if rep.Unfinished == 0 {
		a.ep.close()
		if a.rtp != nil {
			a.rtp.close()
		}
	}
	return rep
}

// Snapshot is the report so far.
func (a *Answerer) Snapshot() AnswerReport {
	a.mu.Lock()
	rep := a.rep
	rep.Calls = append([]CallRecord(nil), a.rep.Calls...)
	a.mu.Unlock()
	rep.Invites, rep.Answered, rep.Declined = a.invites.Load(), a.answered.Load(), a.declined.Load()
	rep.Cancelled, rep.Failed = a.cancelled.Load(), a.failed.Load()
	rep.ByeReceived, rep.ByeSent, rep.ByeFailed = a.byeRecv.Load(), a.byeSent.Load(), a.byeFailed.Load()
	rep.LateCalls, rep.StrayRequests = a.lateCalls.Load(), a.stray.Load()
	if a.rtp != nil {
		rep.RTPRoundsSkipped, rep.RTPStray = a.rtp.skipped.Load(), a.rtp.stray.Load()
	}
	return rep
}

func (a *Answerer) onInvite(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		a.inDialog(req, tx, func(c *acall) {
			// A re-INVITE (session refresh, RFC 4028): answer with our
			// unchanged offer so the call goes on; the ACK is matched in onAck.
			res := sip.NewSDPResponseFromRequest(req, c.sess.InviteResponse.Body())
			res.AppendHeader(&a.ep.contact)
			_ = tx.Respond(res)
		})
		return
	}
	invitedAt := time.Now().UnixNano()
	a.invites.Add(1)
	a.wgMu.Lock()
	select {
	case <-a.shutdown:
		a.wgMu.Unlock()
		a.failed.Add(1)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 480, "Temporarily Unavailable", nil))
		return
	default:
	}
	a.wg.Add(1)
	a.wgMu.Unlock()
	a.active.Add(1)
	defer a.active.Add(-1)
	defer a.wg.Done()
	sess, err := a.dua.ReadInvite(req, tx)
	if err != nil {
		a.failed.Add(1)
		_ = tx.Respond(sip.NewResponseFromRequest(req, 400, "Bad Request", nil))
		return
	}
	defer sess.Close()
	from := ""
	if f := req.From(); f != nil {
		from = f.Address.User
	}
	if a.cfg.Decline[from] {
		// Like a screening hit: refused before the line ever rings.
		a.declined.Add(1)
		_ = sess.Respond(603, "Decline", nil)
		return
	}
	if err := sess.Respond(180, "Ringing", nil); err != nil {
		a.cancelled.Add(1) // the transaction ended already: CANCEL raced us
		return
	}
	if a.cfg.Ring > 0 {
		t := time.NewTimer(a.cfg.Ring)
		select {
		case <-t.C:
		case <-sess.Context().Done(): // CANCEL: the transaction layer sent 487
			t.Stop()
			a.cancelled.Add(1)
			return
		case <-a.shutdown:
			t.Stop()
			_ = sess.Respond(480, "Temporarily Unavailable", nil)
			a.failed.Add(1)
			return
		}
	}
	c := &acall{sess: sess, from: from, invitedAt: invitedAt}
	ip, port, ssrc, pt := a.ep.addr.IP, 9, uint32(0), uint8(0)
	if a.cfg.RTP {
		md, ok := parseSDP(req.Body())
		if !ok {
			// RFC 3261 §21.4.26: 488 when the session description is unusable.
			_ = sess.Respond(488, "Not Acceptable Here", nil)
			a.failed.Add(1)
			return
		}
		// Known before our 200, so the caller's first packet finds it.
		c.st = a.rtp.newStream(md.pt)
		a.rtp.attach(c.st, md)
		port, ssrc, pt = a.rtp.port, c.st.ssrc, md.pt
	}
	a.calls.Store(sess.ID, c)
	// RespondSDP retransmits the 200 until the ACK (RFC 3261 §13.3.1.4).
	// It fails if the caller's BYE is handled before its ACK: sipgo hands
	// each message to its own goroutine, so on a busy machine the BYE can
	// overtake an ACK sent well before it. A BYE in this dialog carries our
	// tag, so the caller had our 200: the call was answered, and is over.
	if err := sess.RespondSDP(buildSDP(ip, port, ssrc, pt)); err != nil && !c.byCaller.Load() {
		a.failed.Add(1)
		a.forget(sess.ID, c)
		return
	}
	a.answered.Add(1)
	if c.st != nil {
		c.mediaMu.Lock()
		if c.endedAt.Load() == 0 {
			a.rtp.start(c.st)
		}
		c.mediaMu.Unlock()
	}
	var hangup <-chan time.Time
	if a.cfg.HangupAfter > 0 {
		t := time.NewTimer(a.cfg.HangupAfter)
		defer t.Stop()
		hangup = t.C
	}
	by := "caller"
	select {
	case <-sess.Context().Done(): // their BYE: onBye already marked the end
	case <-hangup:
		by = "us"
	case <-a.shutdown:
		by = "shutdown"
	}
	if c.byCaller.Load() {
		// Their BYE is in hand (onBye answers it and then ends the
		// dialog), even if our timer or Close woke us first: a BYE of ours
		// would cross it and wait out Timer F for a caller that may have
		// gone.
		by = "caller"
	}
	if by != "caller" {
		// Stop our media before the BYE, and count from the BYE on.
		a.markEnded(c)
		ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
		a.byeSent.Add(1)
		if err := sess.Bye(ctx); err != nil {
			a.byeFailed.Add(1)
		}
		cancel()
	}
	a.watch(c, by)
}

// markEnded stops our media and starts counting late traffic. Idempotent.
func (a *Answerer) markEnded(c *acall) {
	c.mediaMu.Lock()
	defer c.mediaMu.Unlock()
	now := time.Now().UnixNano()
	if !c.endedAt.CompareAndSwap(0, now) {
		return
	}
	if c.st != nil {
		a.rtp.remove(c.st)
		c.st.watchFrom.Store(now + a.cfg.Grace.Nanoseconds())
	}
}

// watch keeps the ended call's port and dialog for Watch, then records it.
// It runs on the INVITE handler's goroutine: sipgo gives each request its
// own, and the handler returning is what lets the transaction go.
func (a *Answerer) watch(c *acall, by string) {
	if a.cfg.Watch > 0 {
		t := time.NewTimer(a.cfg.Watch)
		<-t.C
	}
	rec := CallRecord{CallID: c.sess.InviteRequest.CallID().Value(), From: c.from, InviteUnixNs: c.invitedAt, HungUpBy: by,
		LateRequests: int(c.lateReqs.Load())}
	if c.st != nil {
		a.rtp.release(c.st) // the counts are final from here
		rec.RTPSent, rec.RTPRecv, rec.LatePackets = c.st.sent.Load(), c.st.recv.Load(), c.st.late.Load()
		if f := c.st.firstLate.Load(); f != 0 {
			c.firstLate.CompareAndSwap(0, f)
		}
	}
	if f, e := c.firstLate.Load(), c.endedAt.Load(); f != 0 && e != 0 {
		rec.FirstLateMs = float64(f-e) / 1e6
	}
	rec.Late = rec.LatePackets > 0 || rec.LateRequests > 0
	a.forget(c.sess.ID, c)
	a.mu.Lock()
	defer a.mu.Unlock()
	r := &a.rep
	r.RTPSent += rec.RTPSent
	r.RTPRecv += rec.RTPRecv
	if c.st != nil {
		r.RTPBad += c.st.bad.Load()
		if rec.RTPRecv == 0 {
			r.CallsNoRTP++
		}
	}
	r.LatePackets += rec.LatePackets
	r.LateRequests += int64(rec.LateRequests)
	if rec.Late {
		a.lateCalls.Add(1)
	}
	if a.cfg.KeepCalls || (rec.Late && len(r.Calls) < maxLateKept) {
		r.Calls = append(r.Calls, rec)
	}
}

func (a *Answerer) forget(id string, c *acall) {
	a.calls.CompareAndDelete(id, c)
	if c.st != nil {
		a.rtp.release(c.st) // idempotent
	}
}

// inDialog routes an in-dialog request: to fn while the call is up; 481
// (RFC 3261 §12.2.2) once it has ended, counted as late, or when we never
// had it, counted as stray.
func (a *Answerer) inDialog(req *sip.Request, tx sip.ServerTransaction, fn func(*acall)) {
	id, err := sip.DialogIDFromRequestUAS(req)
	var c *acall
	if err == nil {
		if v, ok := a.calls.Load(id); ok {
			c = v.(*acall)
		}
	}
	switch {
	case c == nil:
		a.stray.Add(1)
	case c.endedAt.Load() != 0:
		if c.lateReqs.Add(1) == 1 {
			c.firstLate.CompareAndSwap(0, time.Now().UnixNano())
		}
	default:
		fn(c)
		return
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
}

func (a *Answerer) onAck(req *sip.Request, tx sip.ServerTransaction) {
	id, err := sip.DialogIDFromRequestUAS(req)
	if err != nil {
		return
	}
	if v, ok := a.calls.Load(id); ok {
		_ = v.(*acall).sess.ReadAck(req, tx) // a stale ACK changes nothing
	}
}

func (a *Answerer) onBye(req *sip.Request, tx sip.ServerTransaction) {
	a.inDialog(req, tx, func(c *acall) {
		a.byeRecv.Add(1)
		c.byCaller.Store(true)
		a.markEnded(c)
		if err := c.sess.ReadBye(req, tx); err != nil && !errors.Is(err, sip.ErrTransactionTerminated) {
			a.byeFailed.Add(1)
		}
	})
}

func (a *Answerer) onOther(req *sip.Request, tx sip.ServerTransaction) {
	a.inDialog(req, tx, func(c *acall) {
		_ = tx.Respond(sip.NewResponseFromRequest(req, 200, "OK", nil))
	})
}

func (a *Answerer) progress() func() {
	if a.cfg.Progress == nil {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			n := a.invites.Load()
			if n == last && a.active.Load() == 0 {
				continue // idle: say nothing rather than scroll
			}
			fmt.Fprintf(a.cfg.Progress, "sipload answer: invites %d (+%d/s) active %d answered %d declined %d cancelled %d failed %d late-calls %d stray %d\n",
				n, n-last, a.active.Load(), a.answered.Load(), a.declined.Load(), a.cancelled.Load(), a.failed.Load(),
				a.lateCalls.Load(), a.stray.Load())
			last = n
		}
	}()
	return func() { close(stop); <-done }
}
