package sip

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cleanline/cleanline/screening"
)

// Live calls, as an operator or a line's carer sees them (issue 13), and
// ending one from outside the call: the seam cmd/internal/admin reaches
// the B2BUA through.

// ErrNoSuchCall: no live call has that ID (it ended, or never was). Not a
// SIP refusal: no peer ever gets it, so it has no status in statusOf.
var ErrNoSuchCall = errors.New("sip: no such call")

// The states a live call shows, in the order a call goes through them.
const (
	// CallScreening: an inbound call being screened.
	CallScreening = "screening"
	// CallSetup: screened (or a line's own call), the far side not yet dialled.
	CallSetup = "setup"
	// CallAnnouncing: a notice plays before the refusal (blocked, barred).
	CallAnnouncing = "announcing"
	// CallRinging: the far side has our INVITE and has not answered.
	CallRinging = "ringing"
	// CallWarning: the line answered a warned call and hears the warning;
	// the caller hears ringing until the person presses 1.
	CallWarning = "warning"
	// CallConnecting: the far side answered; the caller's leg is being answered.
	CallConnecting = "connecting"
	// CallConnected: both legs are up and bridged.
	CallConnected = "connected"
	// CallFeature: a feature code cleanline answered itself (line check, report).
	CallFeature = "feature"
)

// LiveCall is a call in progress.
type LiveCall struct {
	ID        string // cleanline's call ID, as in the call record's "call" field
	Direction string // "inbound" (trunk → line) or "outbound" (the line's own)
	Line      string
	Trunk     string // the trunk an inbound call came from
	// Caller is who placed the call as presented: the From URI, as text.
	// Empty for an inbound caller who asked to be withheld (Privacy: id).
	Caller   string
	Withheld bool
	// Number is the caller's E.164 number as screening read it: empty
	// before screening, for an outbound call, or when there is none.
	Number string
	// Dialled is what the line dialled (outbound).
	Dialled string
	// Action and Reasons are the screening verdict (inbound, once screened).
	Action  string
	Reasons []string
	State   string    // CallScreening ... CallFeature
	Since   time.Time // the INVITE's arrival
	// Answered is when the caller's leg was answered; zero until then.
	Answered time.Time
}

// LiveCalls lists the calls in progress, oldest first.
func (s *Server) LiveCalls() []LiveCall {
	calls := s.reg.all()
	out := make([]LiveCall, 0, len(calls))
	for _, c := range calls {
		if lc, ok := c.live(); ok {
			out = append(out, lc)
		}
	}
	slices.SortFunc(out, func(a, b LiveCall) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}

// EndCall ends the live call id exactly as a hang-up does (D1): call.end
// closes the relay at once, so not one more packet crosses, removes the
// call from the registry (later requests on either dialog get 481) and
// sends BYE to every established leg; as neither side asked, that is both.
// A call not yet answered gets the refusal a call ended while ringing gets
// (as D4 and shutdown end calls). ErrNoSuchCall when id is not live.
func (s *Server) EndCall(id string) error {
	for _, c := range s.reg.all() {
		if c.id == id {
			c.log.Info("call ended from outside it")
			c.end(outcomeEnded, sideNone)
			return nil
		}
	}
	return fmt.Errorf("%w: %q", ErrNoSuchCall, id)
}

// live is what LiveCalls shows of c; false once it has ended.
func (c *call) live() (LiveCall, bool) {
	lc := LiveCall{ID: c.id, Direction: c.dir.String(), Line: c.line.Name, Since: c.start}
	// The INVITE we received is parsed once and never changed: its headers
	// may be read from here.
	req := c.in.InviteRequest
	switch c.dir {
	case inbound:
		lc.Trunk = c.trunk.Name
		if lc.Withheld = privacyID(req); !lc.Withheld {
			lc.Caller = callerID(req.From())
		}
	case outbound:
		lc.Caller = callerID(req.From())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return LiveCall{}, false
	}
	lc.Answered = c.answered
	lc.Dialled = c.dialled
	if c.screened {
		lc.Number = c.verdict.Number
		lc.Action = c.verdict.Action.String()
		lc.Reasons = make([]string, len(c.verdict.Reasons))
		for i, r := range c.verdict.Reasons {
			lc.Reasons[i] = string(r)
		}
	}
	lc.State = c.stateLocked()
	return lc, true
}

// stateLocked derives the call's state from its legs; c.mu is held.
func (c *call) stateLocked() string {
	switch {
	case c.inUp && c.dir == outbound && c.out == nil:
		return CallFeature // answered by cleanline itself, no far side
	case c.inUp:
		return CallConnected
	case c.outUp && c.dir == inbound && c.verdict.Action == screening.Warn:
		return CallWarning
	case c.outUp:
		return CallConnecting
	case c.out != nil:
		return CallRinging
	case c.dir == inbound && !c.screened:
		return CallScreening
	case c.m != nil && (c.barred != "" || c.dir == inbound && c.verdict.Action == screening.Block):
		return CallAnnouncing
	}
	return CallSetup
}
