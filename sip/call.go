package sip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/media"
)

// side names who is on a leg, whatever its role in SIP.
type side int

const (
	sideNone side = iota
	sideTrunk
	sideLine
)

func (s side) String() string {
	switch s {
	case sideTrunk:
		return "trunk"
	case sideLine:
		return "line"
	}
	return "cleanline"
}

func (s side) media() media.Side {
	if s == sideLine {
		return media.SideLine
	}
	return media.SideTrunk
}

// direction of a call: who sent the INVITE we received.
type direction int

const (
	inbound  direction = iota // trunk → line: screened
	outbound                  // line → trunk (or a feature code)
)

func (d direction) String() string {
	if d == outbound {
		return "outbound"
	}
	return "inbound"
}

// call is one call: the dialog we received (in), the dialog we dialled
// (out, nil for feature codes), the media relay, the verdict, and the
// teardown that runs exactly once.
type call struct {
	s     *Server
	rt    *routing // the configuration the call started with; line and trunk are its
	id    string
	dir   direction
	line  *Line
	trunk *Trunk
	log   *zap.Logger

	in     *sipgo.DialogServerSession
	inTx   sip.ServerTransaction // in's INVITE transaction: refuse answers on it
	inFace *face                 // what in's peer is told (face.go)
	m      *callMedia

	ctx    context.Context // ends at teardown
	cancel context.CancelFunc

	// screening (inbound only); verdict and screened are written under mu
	// (LiveCalls reads them), and read freely by the call's own goroutine.
	scall    screening.Call
	verdict  screening.Verdict
	screened bool
	dialled  string // outbound: what the line dialled; written under mu
	number   string // outbound: that, in E.164, when it is a number; written under mu
	// outbound: the classes of what it dialled, and the one its policy
	// bars ("" when allowed); guarded by mu.
	dialClasses []screening.DialClass
	barred      screening.DialClass
	// received is when the handler got the caller's INVITE (inbound); only
	// the call's own goroutine reads it, for the transit metric.
	received time.Time

	timer   *sessionTimer         // session timer of the received leg, nil if none
	refresh [2]chan *sessionTimer // refreshes by side (media.Side index); nil keeps the timer

	ids []string // dialog IDs in the registry; guarded by registry.mu

	mu       sync.Mutex
	out      *sipgo.DialogClientSession
	outFace  *face  // what out's peer is told: the face of the branch that won
	ringing  bool   // INVITEs to the far side are out, none answered yet
	device   string // the registered device on the line's leg (it answered, or placed the call); "" for the static contact
	devNAT   bool   // that device is behind NAT: its media comes from its signalling's IP (callmedia.go)
	outTimer *sessionTimer
	inUp     bool // our 2xx to in was ACKed: in needs a BYE
	outUp    bool // we ACKed out's 2xx: out needs a BYE
	ended    bool
	outcome  string
	endedBy  side
	warning  bool   // the warning is playing or awaiting the person's choice
	choice   string // the person's choice after the warning (ChoiceConnect...)
	result   string // line check: what the line heard (clear, busy)
	reported string // the number this call reported
	seq      int    // the last event's Seq
	handled  bool   // the handler has said its last word (settle)
	recorded bool   // "ended" and the record are emitted
	start    time.Time
	acked    time.Time // the caller's ACK of our 2xx arrived
	answered time.Time
	stopped  time.Time
}

// Outcomes, as written in call records.
const (
	outcomeBlocked         = "blocked"
	outcomeBarred          = "barred"    // the line dialled a number its policy bars
	outcomeCompleted       = "completed" // answered, then someone hung up
	outcomeCallerCancelled = "caller_cancelled"
	outcomeNoAnswer        = "no_answer"
	outcomeWarnRefused     = "warn_refused" // line hung up during the warning
	outcomeWarnTimeout     = "warn_timeout"
	outcomeWarnReported    = "warn_reported"
	outcomeMediaInactive   = "media_inactive"
	outcomeSessionExpired  = "session_expired"
	outcomeShutdown        = "shutdown"
	outcomeReplaced        = "replaced_by_protected_call" // D4
	outcomeNoAck           = "no_ack"
	outcomeFeature         = "feature"
	outcomeEnded           = "ended_by_operator" // EndCall: an operator or the line's carer
	outcomeDeferred        = "deferred"          // no verdict in time: 503 Retry-After
	outcomeError           = "error"
	// The far side's busy, declined and failed are named after it
	// (farOutcome): "line_busy" on an inbound call, "trunk_busy" on a line's own.
)

// farOutcome names what the far side did (busy, declined, failed) after
// the side it is on; no_answer stays as it is.
func (c *call) farOutcome(what string) string {
	if what == outcomeNoAnswer {
		return what
	}
	return c.outSide().String() + "_" + what
}

func newCallID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// newCall registers a call without media: the received dialog stays
// unbound, so no in-dialog request can reach it, until attachMedia.
func (s *Server) newCall(rt *routing, dir direction, line *Line, trunk *Trunk, in *sipgo.DialogServerSession, tx sip.ServerTransaction, f *face) *call {
	c := &call{s: s, rt: rt, id: newCallID(), dir: dir, line: line, trunk: trunk, in: in, inTx: tx, inFace: f, start: time.Now()}
	c.refresh = [2]chan *sessionTimer{make(chan *sessionTimer, 1), make(chan *sessionTimer, 1)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	fields := []zap.Field{zap.String("call", c.id), zap.String("dir", dir.String()), zap.String("line", line.Name)}
	if trunk != nil {
		fields = append(fields, zap.String("trunk", trunk.Name))
	}
	c.log = s.log.WithLazy(fields...) // encoded only if the call logs at the enabled level
	s.unrecorded.Add(1)
	s.reg.add(c)
	// Whatever ends the received dialog (CANCEL, our final answer, its BYE)
	// ends the call; end is idempotent, so the first cause wins.
	context.AfterFunc(in.Context(), func() { c.end(outcomeCallerCancelled, c.inSide()) })
	return c
}

// attachMedia opens the call's relay, then binds the received dialog, so
// in-dialog handlers always find c.m set (the registry's lock orders the
// two). Inbound calls attach only once screened: a caller refused outright
// costs no relay sockets, and c.m stays nil (end and record allow for it).
// On failure (no ports: 503) the call is ended and refused; false.
func (c *call) attachMedia() bool {
	m, err := c.s.newCallMedia(c)
	if err == nil {
		c.mu.Lock()
		if c.ended {
			err = fmt.Errorf("%w: call ended before its media", ErrShuttingDown)
		} else {
			c.m = m
		}
		c.mu.Unlock()
		if err != nil {
			m.close()
		}
	}
	if err != nil {
		c.log.Warn("call refused", zap.Error(err))
		c.fail(outcomeError, sideNone, err) // not in.Respond: it would wait for the ACK
		return false
	}
	c.s.reg.bind(c.in.ID, c, roleIn, dialogPeers(c.in.InviteRequest.Source(), c.in.InviteRequest.Contact()))
	return true
}

// inSide is who is on the dialog we received.
func (c *call) inSide() side {
	if c.dir == outbound {
		return sideLine
	}
	return sideTrunk
}

// outSide is who is on the dialog we dialled.
func (c *call) outSide() side {
	if c.dir == outbound {
		return sideTrunk
	}
	return sideLine
}

// setOut records the dialled dialog and its face; false if the call
// already ended.
func (c *call) setOut(out *sipgo.DialogClientSession, f *face) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out, c.outFace = out, f
	return !c.ended
}

// face is what sd's peer is told: a dialog stays on the face it began on.
// Before the far side answers, the local face.
func (c *call) face(sd side) *face {
	if sd == c.inSide() {
		return c.inFace
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.outFace == nil {
		return c.s.local
	}
	return c.outFace
}

// setDevice records the registered device on the line's leg.
func (c *call) setDevice(device string, nat bool) {
	c.mu.Lock()
	c.device, c.devNAT = device, nat
	c.mu.Unlock()
}

// up marks a leg established (it will need a BYE). When the call ended
// meanwhile it returns false and the caller must hang that leg up itself.
func (c *call) up(role legRole) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if role == roleIn {
		// Answered when the ACK came, which may be before a BYE that ended
		// the call overtook this goroutine.
		c.answered = c.acked
		if c.answered.IsZero() {
			c.answered = time.Now()
		}
		if c.ended && c.answered.After(c.stopped) {
			c.answered = c.stopped
		}
	}
	if c.ended {
		return false
	}
	if role == roleIn {
		c.inUp = true
	} else {
		c.outUp = true
	}
	return true
}

// ackArrived notes that the caller's ACK of our 2xx came.
func (c *call) ackArrived() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.acked.IsZero() {
		c.acked = time.Now()
	}
}

func (c *call) ackTime() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acked
}

// outcomeNow is the call's outcome so far ("" while it lasts).
func (c *call) outcomeNow() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.outcome
}

func (c *call) isEnded() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

// end tears the call down, once: media first (the relay lets go of its
// sockets, so not one more packet reaches either side, D1/D2), then the registry (every
// later request on either dialog gets 481), then BYE to every established
// leg but the one that ended it, in the background and bounded, so a peer
// that ignores our BYE changes nothing for the other side.
func (c *call) end(outcome string, by side) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	if c.warning && outcome == outcomeCompleted && by == sideLine {
		outcome = outcomeWarnRefused // the line hung up on the warning
	}
	c.outcome, c.endedBy, c.stopped = outcome, by, time.Now()
	byeIn := c.inUp && by != c.inSide()
	byeOut := c.outUp && by != c.outSide()
	out, m, screened := c.out, c.m, c.screened
	c.mu.Unlock()

	c.cancel()
	if m != nil {
		m.close()
	}
	c.s.reg.remove(c)
	if byeIn {
		c.s.goCall(func() { c.byeIn() })
	}
	if byeOut && out != nil {
		c.s.goCall(func() { c.byeOut(out) })
	}
	c.settle(false)
	if screened {
		c.mu.Lock()
		accepted := c.choice == ChoiceConnect // warned, and the person pressed 1
		c.mu.Unlock()
		c.s.goCall(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := c.rt.sc.Conclude(ctx, c.scall, c.verdict, accepted); err != nil {
				c.log.Warn("cooldown not recorded", zap.Error(err))
			}
		})
	}
}

func (c *call) byeIn() {
	ctx, cancel := context.WithTimeout(context.Background(), c.s.byeTimeout())
	defer cancel()
	if err := c.in.Bye(ctx); err != nil {
		c.log.Info("BYE not answered", zap.Stringer("leg", c.inSide()), zap.Error(err))
	}
}

func (c *call) byeOut(out *sipgo.DialogClientSession) {
	ctx, cancel := context.WithTimeout(context.Background(), c.s.byeTimeout())
	defer cancel()
	if err := out.Bye(ctx); err != nil {
		c.log.Info("BYE not answered", zap.Stringer("leg", c.outSide()), zap.Error(err))
	}
}

// fail ends the call with outcome and answers the caller with the status
// err maps to (statusOf): every refusal of a call goes through here.
func (c *call) fail(outcome string, by side, err error, hdrs ...sip.Header) {
	c.end(outcome, by)
	c.refuse(err, hdrs...)
}

// announce refuses the call after telling the caller why: prompt played
// to the side whose INVITE we received, as early media in a 183 with our
// answer (RFC 3960), then the final response err maps to. The blocked
// notice to a trunk's caller and the barred notice to the line both come
// this way.
func (c *call) announce(answer []byte, prompt, outcome string, err error) {
	if perr := c.provisional(sip.StatusSessionInProgress, "Session Progress", answer, sdpType()); perr == nil {
		c.playNamed(c.ctx, c.inSide(), prompt)
	}
	c.fail(outcome, sideNone, err)
}

// refuse sends the final non-2xx err maps to, to the received INVITE,
// unless the caller is already gone (CANCEL: sipgo answered 487 itself).
// It is the handler's last word: the refusal is the call's last event
// before "ended" and the record (settle), which go out before the response.
// It hands the response to the server transaction and returns: RFC 3261
// §17.2.1, the transaction retransmits a non-2xx final response until the
// ACK and absorbs the ACK itself, so nothing of the call waits for it.
// (sipgo's DialogServerSession.Respond would block for the ACK, up to
// 64*T1, and with it the handler and Shutdown.)
func (c *call) refuse(err error, hdrs ...sip.Header) {
	if c.in.Context().Err() != nil {
		return
	}
	code, reason := statusOf(err)
	c.emit(EventRefused, func(ev *Event) { ev.Status, ev.Outcome = code, c.outcomeNow() })
	c.settle(true)
	res := sip.NewResponseFromRequest(c.in.InviteRequest, code, reason, nil)
	for _, h := range append(headersOf(err), hdrs...) {
		res.AppendHeader(h)
	}
	if err := c.inTx.Respond(res); err != nil {
		c.log.Debug("final response not sent", zap.Int("code", code), zap.Error(err))
	}
}
