package sip

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Message waiting (RFC 3842): the provider's voicemail tells the line's
// phone that messages wait with a NOTIFY of the message-summary event,
// which lights the phone's lamp or gives an ATA's dial tone its stutter,
// the sign an elderly person knows. Providers send it unsolicited to the
// contact a subscriber registered (cleanline's, for a registration trunk)
// or to where they route the line's calls. cleanline answers it and sends
// it on to every phone of the line, as the phone would have had it without
// cleanline. Only a trunk's out-of-dialog NOTIFY is passed on, only of
// this event and with its small text body: anything else is refused, and
// a line's phone cannot light another's lamp.

const (
	mwiEvent       = "message-summary"
	mwiContentType = "application/simple-message-summary"
	// mwiMaxBody: a summary is a few short lines (RFC 3842 §5.2), and the
	// NOTIFY passed on must fit one UDP datagram below the path's MTU
	// (RFC 3261 §18.1.1: 1,300 bytes when the MTU is unknown), or sipgo
	// refuses to send it.
	mwiMaxBody = 768
	// mwiInFlight bounds the NOTIFYs being passed on at once: a forged
	// trunk address (UDP) must not make cleanline a NOTIFY amplifier.
	mwiInFlight = 64
	// mwiTimeout bounds each NOTIFY to a phone.
	mwiTimeout = 5 * time.Second
)

// onNotify takes a trunk's message-summary NOTIFY for a line.
func (s *Server) onNotify(req *sip.Request, tx sip.ServerTransaction) {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		s.onOther(req, tx) // no subscription dialogs here: 405 as before
		return
	}
	rt := s.routing()
	if rt.trunkFor(req) == nil {
		s.respondErr(req, tx, fmt.Errorf("%w: NOTIFY from a line's phone", ErrForbidden))
		return
	}
	waiting, err := readMessageSummary(req)
	if err != nil {
		s.respondErr(req, tx, err)
		return
	}
	line := rt.lineCalled(req)
	if line == nil {
		s.respondErr(req, tx, ErrUnknownLine)
		return
	}
	s.mwiSubs.setSummary(line.Name, append([]byte(nil), req.Body()...))
	subs := s.mwiSubs.ofLine(line.Name)
	targets := s.mwiTargets(line, subs)
	select {
	case s.mwiSlots <- struct{}{}:
	default:
		s.respondErr(req, tx, fmt.Errorf("%w: %d voicemail indications in flight", ErrOverloaded, mwiInFlight))
		return
	}
	s.respond(req, tx, sip.StatusOK, "OK", nil)
	s.log.Info("voicemail indication passed to the line", zap.String("line", line.Name), zap.Bool("waiting", waiting),
		zap.Int("phones", len(targets)), zap.Int("subscribed", len(subs)))
	state := "active"
	if h := req.GetHeader("Subscription-State"); h != nil {
		state = h.Value()
	}
	body := append([]byte(nil), req.Body()...)
	go func() {
		defer func() { <-s.mwiSlots }()
		for _, sub := range subs {
			if err := s.notifySub(sub, fmt.Sprintf("active;expires=%d", max(1, int(time.Until(sub.expires).Seconds()))), body); err != nil {
				s.log.Info("voicemail subscription's NOTIFY not taken", zap.String("line", line.Name), zap.Error(err))
			}
		}
		for _, t := range targets {
			if err := s.sendMWI(t, state, body); err != nil {
				s.log.Info("voicemail indication not taken by a phone", zap.String("line", line.Name),
					zap.String("phone", t.req.Recipient.String()), zap.Error(err))
			}
		}
	}()
}

// mwiTarget is one phone of a line: its URI and, for a device behind NAT
// or on TCP/TLS, the flow its registration came from.
type mwiTarget struct {
	req  *sip.Request // the NOTIFY's start: Request-URI and destination
	flow string
}

// mwiTargets are the line's phones that take the unsolicited NOTIFY, as
// lineBranches rings them: its static contact and each registered contact
// (once, when a device registered at the static contact itself), but not
// a phone that subscribed (it has its NOTIFY in its subscription, and may
// refuse another: baresip answers 481).
func (s *Server) mwiTargets(line *Line, subs []*mwiSub) []mwiTarget {
	subscribed := map[string]bool{}
	for _, sub := range subs {
		subscribed[sub.flow] = true
	}
	var out []mwiTarget
	static := ""
	if line.Contact != "" {
		static = contactKey(line.contact)
		// As a flow is written: host:port, the default port filled in.
		if !subscribed[net.JoinHostPort(line.contact.Host, strconv.Itoa(int(contactPort(line.contact))))] {
			out = append(out, mwiTarget{req: sip.NewRequest(sip.NOTIFY, *line.contact.Clone())})
		}
	}
	for _, b := range s.binds.line(line.Name) {
		if !b.viaFlow() && contactKey(b.uri) == static || subscribed[b.Flow.String()] {
			continue
		}
		t := mwiTarget{req: sip.NewRequest(sip.NOTIFY, b.target())}
		if b.viaFlow() {
			t.flow = b.Flow.String()
		}
		out = append(out, t)
	}
	return out
}

// sendMWI sends one phone the unsolicited NOTIFY and waits for its answer.
func (s *Server) sendMWI(t mwiTarget, state string, body []byte) error {
	req := t.req
	if t.flow != "" {
		req.SetDestination(t.flow)
	}
	from := sip.FromHeader{Address: s.faceTo(req).dua.ContactHDR.Address, Params: sip.NewParams()}
	from.Params.Add("tag", sip.GenerateTagN(16))
	req.AppendHeader(&from)
	req.AppendHeader(&sip.ToHeader{Address: *req.Recipient.Clone()})
	_, err := s.notify(req, mwiEvent, state, body, t.flow)
	return err
}

// notify completes req, a NOTIFY (RFC 3842 §4, RFC 6665 §8.1.2: Event
// and Subscription-State, the summary), sends it from our listener, to
// dest when set, and waits for the phone's answer: an error unless 2xx.
func (s *Server) notify(req *sip.Request, event, state string, body []byte, dest string) (*sip.Response, error) {
	req.AppendHeader(sip.NewHeader("Event", event))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	req.AppendHeader(sip.NewHeader("Content-Type", mwiContentType))
	req.SetBody(body)
	if dest != "" {
		req.SetDestination(dest)
	}
	s.fromListener(req)
	ctx, cancel := context.WithTimeout(s.life, mwiTimeout)
	defer cancel()
	res, err := s.faceTo(req).cli.Do(ctx, req)
	if err != nil {
		return nil, err
	}
	if !res.IsSuccess() {
		return res, fmt.Errorf("%d %s", res.StatusCode, res.Reason)
	}
	return res, nil
}

// readMessageSummary checks that req is a message-summary NOTIFY with a
// body cleanline passes on, and reads whether messages wait.
func readMessageSummary(req *sip.Request) (waiting bool, err error) {
	if err := mwiEventOK(req.GetHeader("Event")); err != nil {
		return false, err
	}
	ct := req.ContentType()
	if ct == nil {
		return false, fmt.Errorf("%w: no Content-Type, want %s", ErrUnsupportedMedia, mwiContentType)
	}
	if typ, _, _ := strings.Cut(ct.Value(), ";"); !strings.EqualFold(strings.TrimSpace(typ), mwiContentType) {
		return false, fmt.Errorf("%w: %q, want %s", ErrUnsupportedMedia, typ, mwiContentType)
	}
	return parseMessageSummary(req.Body())
}

// eventPackage is an Event header value's package (RFC 6665 §8.2.1: the
// package, then parameters such as ";id=").
func eventPackage(v string) string {
	pkg, _, _ := strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(pkg))
}

// parseMessageSummary reads the Messages-Waiting line of a summary body
// (RFC 3842 §5.2: mandatory, "yes" or "no"), after checking it is short
// text: what a phone will be sent must be what a phone can take.
func parseMessageSummary(body []byte) (waiting bool, err error) {
	switch {
	case len(body) > mwiMaxBody:
		return false, fmt.Errorf("%w: message summary of %d bytes, want at most %d", ErrMalformed, len(body), mwiMaxBody)
	case !utf8.Valid(body), bytes.IndexByte(body, 0) >= 0:
		return false, fmt.Errorf("%w: message summary is not text", ErrMalformed)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok || !strings.EqualFold(strings.TrimSpace(name), "Messages-Waiting") {
			continue
		}
		switch v := strings.ToLower(strings.TrimSpace(value)); v {
		case "yes", "no":
			return v == "yes", nil
		default:
			return false, fmt.Errorf("%w: Messages-Waiting %q, want yes or no", ErrMalformed, v)
		}
	}
	return false, fmt.Errorf("%w: message summary without Messages-Waiting (RFC 3842 §5.2)", ErrMalformed)
}
