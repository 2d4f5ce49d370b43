package load

import (
	"context"
	"encoding/json"
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

// CallConfig configures RunCalls. Zero values are filled by the command's
// defaults, not here; Validate says what is wrong.
type CallConfig struct {
	Target        string // host:port of the SIP peer
	Transport     string // udp or tcp
	Bind          string // local ip:port; empty: the source address the kernel routes to Target from
	To            string // Request-URI user (the line called)
	Steps         []float64
	StepDuration  time.Duration
	Hold          time.Duration // answered calls are hung up by us after this
	AnswerTimeout time.Duration // no final response by then: CANCEL, counted as timed out
	MaxConcurrent int
	RTP           bool
	Numbers       *Numbers
	// LateRTP and LateInfo make the caller misbehave like the fraudster the
	// product defends against: keep sending RTP for LateRTP after the call
	// ended, and send an INFO in the ended dialog. Against a peer that
	// keeps its promise the answering line sees none of it.
	LateRTP  time.Duration
	LateInfo bool
	// CallsOut, when set, gets one JSON line per call (CallSent): the
	// caller number and the wall-clock time its INVITE was sent, which,
	// joined with an answering sipload's --calls-out on the same host,
	// gives each INVITE's transit through whatever sits between.
	CallsOut io.Writer
	// StopAbove stops stepping after a step whose failure ratio exceeds it
	// (0.01 for "more than 1% failed"); 0 runs every step.
	StopAbove    float64
	ProbeTimeout time.Duration // 0: no OPTIONS probe before the run
	Progress     io.Writer     // live line once a second; nil: none
	Log          *slog.Logger  // sipgo's own log; nil: discarded
}

// Validate checks the configuration without touching the network.
func (c *CallConfig) Validate() error {
	var errs []string
	if c.Target == "" {
		errs = append(errs, "--target is required")
	}
	if len(c.Steps) == 0 {
		errs = append(errs, "give --rate or --steps")
	}
	for _, r := range c.Steps {
		if r <= 0 || r > 100000 {
			errs = append(errs, fmt.Sprintf("rate %g must be in (0, 100000]", r))
		}
	}
	if c.StepDuration <= 0 {
		errs = append(errs, "--duration/--step-duration must be positive")
	}
	if c.Hold < 0 || c.LateRTP < 0 {
		errs = append(errs, "--hold and --late-rtp cannot be negative")
	}
	if c.AnswerTimeout <= 0 {
		errs = append(errs, "--answer-timeout must be positive")
	}
	if c.MaxConcurrent <= 0 {
		errs = append(errs, "--max-concurrent must be positive")
	}
	if c.StopAbove < 0 || c.StopAbove >= 1 {
		errs = append(errs, "--stop-above must be in [0, 1)")
	}
	if c.Numbers == nil {
		errs = append(errs, "no caller numbers")
	}
	if c.To == "" || strings.ContainsAny(c.To, "@:;<> \t\r\n") {
		errs = append(errs, fmt.Sprintf("--to %q is not a SIP user part", c.To))
	}
	if _, err := checkTransport(c.Transport); err != nil {
		errs = append(errs, strings.TrimPrefix(err.Error(), ErrConfig.Error()+": "))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %s", ErrConfig, strings.Join(errs, "; "))
	}
	return nil
}

// Report is the outcome of RunCalls: one row per step run.
type Report struct {
	Target      string       `json:"target"`
	Transport   string       `json:"transport"`
	Hold        float64      `json:"hold_seconds"`
	RTP         bool         `json:"rtp"`
	Steps       []StepResult `json:"steps"`
	Interrupted bool         `json:"interrupted"`
	Unfinished  int          `json:"unfinished_calls"` // still in flight when we gave up waiting
	// RTPRoundsSkipped: 20 ms rounds the RTP pacer could not send in time
	// (more than 100 ms late): nonzero means this machine could not offer
	// the full packet rate.
	RTPRoundsSkipped uint64 `json:"rtp_rounds_skipped"`
	// RTPStray: packets that arrived for no call we know, e.g. before the
	// 200 OK that says where a call's media comes from.
	RTPStray uint64 `json:"rtp_stray"`
}

type caller struct {
	cfg    CallConfig
	ep     *endpoint
	dua    sipgo.DialogUA
	target *net.UDPAddr
	rtp    *rtpMux // nil without --rtp
	live   live
	active atomic.Int64
	// dialogs maps the dialog ID of each answered call to its session, so
	// a BYE from the far end (RFC 3261 §15.1.2) finds it.
	dialogs sync.Map
	outMu   sync.Mutex // CallsOut
}

// RunCalls places calls step by step and returns the table. It returns an
// error only when the run could not start (bad configuration, unreachable
// target); an interrupted run (ctx cancelled) returns the steps so far.
func RunCalls(ctx context.Context, cfg CallConfig) (Report, error) {
	rep := Report{Target: cfg.Target, Transport: cfg.Transport, Hold: cfg.Hold.Seconds(), RTP: cfg.RTP}
	if err := cfg.Validate(); err != nil {
		return rep, err
	}
	cfg.Transport = strings.ToLower(cfg.Transport)
	target, err := resolveHostPort("--target", cfg.Target)
	if err != nil {
		return rep, err
	}
	if target.Port == 0 {
		target.Port = 5060
	}
	bind, err := bindFor(cfg.Bind, target)
	if err != nil {
		return rep, err
	}
	ep, err := newEndpoint(cfg.Transport, bind, cfg.Log)
	if err != nil {
		return rep, err
	}
	defer ep.close()
	c := &caller{cfg: cfg, ep: ep, target: target}
	c.dua = sipgo.DialogUA{Client: ep.cli, ContactHDR: ep.contact}
	ep.srv.OnBye(c.onBye)
	ep.start()
	if cfg.ProbeTimeout > 0 {
		pctx, cancel := context.WithTimeout(ctx, cfg.ProbeTimeout)
		err := ep.probe(pctx, target)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				rep.Interrupted = true
				return rep, nil
			}
			return rep, err
		}
	}
	if cfg.RTP {
		if c.rtp, err = newRTPMux(ep.addr.IP); err != nil {
			return rep, fmt.Errorf("rtp socket: %w", err)
		}
		defer c.rtp.close()
	}
	stopProgress := c.progress()
	defer stopProgress()
	for i, rate := range cfg.Steps {
		res, unfinished, interrupted := c.runStep(ctx, i, rate)
		rep.Steps = append(rep.Steps, res)
		rep.Unfinished += unfinished
		if interrupted {
			rep.Interrupted = true
			break
		}
		if cfg.StopAbove > 0 && res.FailureRatio > cfg.StopAbove {
			break
		}
	}
	if c.rtp != nil {
		rep.RTPRoundsSkipped, rep.RTPStray = c.rtp.skipped.Load(), c.rtp.stray.Load()
	}
	return rep, nil
}

// bindFor picks the local address: the flag when given, else the source
// address the kernel would use towards target (a connected UDP socket sends
// nothing, it only routes).
func bindFor(flag string, target *net.UDPAddr) (*net.UDPAddr, error) {
	if flag != "" {
		return resolveHostPort("--bind", flag)
	}
	c, err := net.DialUDP("udp", nil, target)
	if err != nil {
		return nil, fmt.Errorf("%w: no route to %s: %w", ErrUnreachable, target, err)
	}
	defer c.Close()
	return &net.UDPAddr{IP: c.LocalAddr().(*net.UDPAddr).IP}, nil
}

// runStep launches calls at rate for StepDuration from one pacing loop,
// then waits for them to finish so that each row measures only its own
// calls. The pacing loop is the only goroutine drawing numbers.
func (c *caller) runStep(ctx context.Context, idx int, rate float64) (StepResult, int, bool) {
	st := &step{rate: rate, start: time.Now()}
	callsCtx, cancelCalls := context.WithCancel(context.Background())
	defer cancelCalls()
	var wg sync.WaitGroup
	interrupted := false
	// A 2 ms tick keeps the schedule within 2 ms of ideal at any rate while
	// waking the loop only 500 times a second; calls due in one tick leave
	// together.
	tick := time.NewTicker(2 * time.Millisecond)
	end := st.start.Add(c.cfg.StepDuration)
	launched := 0
loop:
	for {
		select {
		case <-ctx.Done():
			interrupted = true
			break loop
		case now := <-tick.C:
			if now.After(end) {
				now = end
			}
			due := int(now.Sub(st.start).Seconds() * rate)
			for ; launched < due; launched++ {
				if c.active.Load() >= int64(c.cfg.MaxConcurrent) {
					st.mu.Lock()
					st.capped++
					st.mu.Unlock()
					continue
				}
				num, blocked := c.cfg.Numbers.Draw()
				c.active.Add(1)
				c.live.launched.Add(1)
				st.mu.Lock()
				st.launched++
				st.mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.active.Add(-1)
					r := c.call(callsCtx, num, blocked)
					st.add(r)
					c.writeCall(r)
				}()
			}
			if !now.Before(end) {
				break loop
			}
		}
	}
	tick.Stop()
	st.duration = time.Since(st.start)
	if interrupted {
		st.duration = time.Since(st.start)
	}
	if idx >= 0 && c.cfg.Progress != nil {
		fmt.Fprintf(c.cfg.Progress, "sipload: step %d (%g/s) placed %d calls in %.1fs; waiting for them to end\n",
			idx+1, rate, launched, st.duration.Seconds())
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// Every call ends by itself within this bound: the answer timeout, the
	// 64*T1 a CANCEL may wait for its 487 (RFC 3261 §9.1), the hold, the
	// late window and a BYE transaction (Timer F = 64*T1, §17.1.2.2).
	bound := c.cfg.AnswerTimeout + 64*sip.T1 + c.cfg.Hold + c.cfg.LateRTP + 64*sip.T1
	deadline := time.NewTimer(bound)
	defer deadline.Stop()
	unfinished := 0
	select {
	case <-done:
	case <-ctx.Done():
		interrupted = true
		cancelCalls() // hang up answered calls now, abandon ringing ones
		grace := time.NewTimer(3 * time.Second)
		select {
		case <-done:
		case <-grace.C:
			unfinished = int(c.active.Load())
		}
		grace.Stop()
	case <-deadline.C:
		unfinished = int(c.active.Load())
	}
	res := st.result()
	res.Interrupted = interrupted
	return res, unfinished, interrupted
}

// CallSent is one line of sipload call --calls-out.
type CallSent struct {
	From       string `json:"from"`
	SentUnixNs int64  `json:"invite_unix_ns"` // wall clock when the INVITE was handed to the transport
	Outcome    string `json:"outcome"`
	Code       int    `json:"code,omitempty"`
	PDDNs      int64  `json:"pdd_ns,omitempty"`
	FinalNs    int64  `json:"final_ns,omitempty"`
}

var outcomeNames = [...]string{OutcomeAnswered: "answered", OutcomeDeclined: "declined", OutcomeFailed: "failed",
	OutcomeTimedOut: "timed_out", OutcomeError: "error"}

// writeCall writes r to CallsOut, one JSON object a line.
func (c *caller) writeCall(r CallResult) {
	if c.cfg.CallsOut == nil || r.SentUnixNs == 0 {
		return
	}
	b, err := json.Marshal(CallSent{From: r.From, SentUnixNs: r.SentUnixNs, Outcome: outcomeNames[r.Outcome],
		Code: r.Code, PDDNs: int64(r.PDD), FinalNs: int64(r.Final)})
	if err != nil {
		return
	}
	c.outMu.Lock()
	_, _ = c.cfg.CallsOut.Write(append(b, '\n'))
	c.outMu.Unlock()
}

// errAnswerTimeout is the cause given to a call's context when
// --answer-timeout expires after a provisional response.
var errAnswerTimeout = errors.New("answer timeout")

// call places one call and reports it. It never panics and never blocks
// past the bound runStep waits for.
func (c *caller) call(callsCtx context.Context, from string, blocked bool) (r CallResult) {
	r.Blocked = blocked
	var st *stream
	sdpIP := c.ep.addr.IP
	port, ssrc := 9, uint32(0) // RFC 3264 §5.1 allows a port that will not receive; discard
	if c.cfg.RTP {
		st = c.rtp.newStream(0)
		port, ssrc = c.rtp.port, st.ssrc
		defer func() {
			c.rtp.release(st)
			r.RTPSent, r.RTPRecv, r.RTPBad = st.sent.Load(), st.recv.Load(), st.bad.Load()
		}()
	}
	req := sip.NewRequest(sip.INVITE, c.ep.uri(c.cfg.To, c.target))
	req.SetTransport(strings.ToUpper(c.cfg.Transport))
	fromH := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: from, Host: sdpIP.String()}, Params: sip.NewParams()}
	fromH.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(fromH)
	req.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: c.cfg.To, Host: c.target.IP.String()}})
	req.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	req.SetBody(buildSDP(sdpIP, port, ssrc, 0, 8))

	// The answer timeout and an interrupt both end the wait. Before any
	// provisional response a CANCEL must not be sent (RFC 3261 §9.1), so
	// then we force sipgo to give up instead of waiting out Timer B.
	ansCtx, cancelAns := context.WithCancelCause(context.Background())
	defer cancelAns(nil)
	var gotProvisional, timedOut atomic.Bool
	giveUp := func(cause error) {
		if gotProvisional.Load() {
			cancelAns(cause)
		} else {
			cancelAns(sipgo.WaitAnswerForceCancelErr)
		}
	}
	tm := time.AfterFunc(c.cfg.AnswerTimeout, func() { timedOut.Store(true); giveUp(errAnswerTimeout) })
	defer tm.Stop()
	stopWatch := context.AfterFunc(callsCtx, func() { giveUp(context.Canceled) })
	defer stopWatch()

	t0 := time.Now()
	r.From, r.SentUnixNs = from, t0.UnixNano()
	sess, err := c.dua.WriteInvite(ansCtx, req)
	if err != nil {
		r.Outcome = OutcomeError
		c.live.errors.Add(1)
		return r
	}
	defer sess.Close()
	err = sess.WaitAnswer(ansCtx, sipgo.AnswerOptions{OnResponse: func(res *sip.Response) error {
		switch {
		case res.StatusCode == 180 || res.StatusCode == 183:
			if r.PDD == 0 {
				r.PDD = time.Since(t0)
			}
			gotProvisional.Store(true)
		case res.StatusCode > 100 && res.StatusCode < 200:
			gotProvisional.Store(true)
		case res.StatusCode >= 200:
			r.Final = time.Since(t0)
		}
		if st != nil && res.IsProvisional() && len(res.Body()) > 0 {
			// Early media (183 with SDP, e.g. an announcement) comes from
			// the address in that SDP: count it on this call.
			if md, ok := parseSDP(res.Body()); ok {
				c.rtp.attach(st, md)
			}
		}
		return nil
	}})
	tm.Stop()
	stopWatch()
	if err != nil {
		var dr *sipgo.ErrDialogResponse
		switch {
		case errors.As(err, &dr):
			r.Code = dr.Res.StatusCode
			if r.Code == 603 {
				r.Outcome = OutcomeDeclined
				c.live.declined.Add(1)
			} else {
				r.Outcome = OutcomeFailed
				c.live.failed.Add(1)
			}
		case timedOut.Load() || errors.Is(err, sip.ErrTransactionTimeout):
			r.Outcome = OutcomeTimedOut
			c.live.timedOut.Add(1)
		default:
			r.Outcome = OutcomeError
			c.live.errors.Add(1)
		}
		return r
	}
	r.Outcome, r.Code = OutcomeAnswered, sess.InviteResponse.StatusCode
	c.live.answered.Add(1)
	c.dialogs.Store(sess.ID, sess)
	defer c.dialogs.Delete(sess.ID)
	if st != nil {
		// Known before our ACK, after which a line starts sending.
		if md, ok := parseSDP(sess.InviteResponse.Body()); ok {
			c.rtp.attach(st, md)
		}
	}
	if err := sess.Ack(context.Background()); err != nil {
		return r // HangupOK stays false: a dialog we could not confirm
	}
	if st != nil {
		c.rtp.start(st) // a no-op when the answer gave no usable address
	}

	hold := time.NewTimer(c.cfg.Hold)
	select {
	case <-hold.C:
	case <-sess.Context().Done(): // the far end hung up (onBye)
	case <-callsCtx.Done():
	}
	hold.Stop()
	if st != nil && c.cfg.LateRTP == 0 {
		c.rtp.remove(st) // a well-behaved caller stops its media before BYE
	}
	if sess.LoadState() == sip.DialogStateEnded {
		r.HangupOK = true // their BYE, answered 200 by onBye
	} else {
		r.HangupSent = true
		byeCtx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
		tb := time.Now()
		err := sess.Bye(byeCtx)
		cancel()
		r.Hangup = time.Since(tb)
		r.HangupOK = err == nil
	}
	c.misbehave(sess, st)
	return r
}

// misbehave is the fraudster's tail: RTP for LateRTP more and an INFO in a
// dialog that is over. It waits for the INFO's response so a test knows
// the request has been handled when RunCalls returns.
func (c *caller) misbehave(sess *sipgo.DialogClientSession, st *stream) {
	if c.cfg.LateInfo {
		info := sip.NewRequest(sip.INFO, sess.InviteRequest.Recipient)
		if ct := sess.InviteResponse.Contact(); ct != nil {
			info.Recipient = *ct.Address.Clone()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 64*sip.T1)
		_, _ = sess.Do(ctx, info)
		cancel()
	}
	if st != nil && c.cfg.LateRTP > 0 {
		t := time.NewTimer(c.cfg.LateRTP)
		<-t.C
		c.rtp.remove(st)
	}
}

// onBye ends the dialog the far end hangs up, or answers 481 (RFC 3261
// §15.1.2: a BYE that does not match an existing dialog gets 481).
func (c *caller) onBye(req *sip.Request, tx sip.ServerTransaction) {
	id, err := sip.DialogIDFromRequestUAC(req)
	if err == nil {
		if v, ok := c.dialogs.Load(id); ok {
			_ = v.(*sipgo.DialogClientSession).ReadBye(req, tx)
			return
		}
	}
	_ = tx.Respond(sip.NewResponseFromRequest(req, 481, "Call/Transaction Does Not Exist", nil))
}

// progress prints the live line once a second until stopped.
func (c *caller) progress() func() {
	if c.cfg.Progress == nil {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	start := time.Now()
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
			l := &c.live
			n := l.launched.Load()
			fmt.Fprintf(c.cfg.Progress, "sipload: %4.0fs placed %d (+%d/s) active %d answered %d declined %d failed %d timeout %d error %d\n",
				time.Since(start).Seconds(), n, n-last, c.active.Load(), l.answered.Load(), l.declined.Load(),
				l.failed.Load(), l.timedOut.Load(), l.errors.Load())
			last = n
		}
	}()
	return func() { close(stop); <-done }
}
