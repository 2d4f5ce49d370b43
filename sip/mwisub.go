package sip

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
	"go.uber.org/zap"
)

// Phones that subscribe for their voicemail light (RFC 3842 over RFC 6665)
// rather than take the provider's unsolicited NOTIFY: baresip does, and
// answers an unsolicited one 481. cleanline is the notifier for its lines:
// it accepts a line phone's message-summary SUBSCRIBE, sends the last
// summary the provider gave for the line at once, and each new one in the
// subscription's dialog. A subscription's NOTIFYs go to the address its
// SUBSCRIBE came from (the phone's flow), never to an address the request
// names, so a forged SUBSCRIBE cannot aim them anywhere else.

const (
	mwiSubMin     = 60 * time.Second   // shorter asked: 423 with Min-Expires (RFC 6665 §4.2.1.1)
	mwiSubMax     = 3600 * time.Second // longer asked: granted this
	mwiSubDefault = 3600 * time.Second // none asked (RFC 3842 §6.1: package default)
	mwiSubPerLine = 16                 // a line's phones subscribe once each; a loop must not grow it
	// mwiNoMessages is the summary before the provider gave one.
	mwiNoMessages = "Messages-Waiting: no\r\n"
)

// mwiSub is one phone's subscription: the dialog, as the notifier holds
// it (RFC 6665 §4.1.2: our tag is the 200's To tag).
type mwiSub struct {
	line      string
	callID    string
	event     string     // the SUBSCRIBE's Event value, id included
	ours      sip.Uri    // our URI in the dialog (the SUBSCRIBE's To)
	ourTag    string     // our tag
	theirs    sip.Uri    // the subscriber's URI (its From)
	theirTag  string     // its tag
	target    sip.Uri    // its Contact: the NOTIFY's Request-URI
	flow      string     // where its SUBSCRIBE came from: where NOTIFYs go
	transport string     // and over what
	cseq      uint32     // our NOTIFYs' CSeq, rising
	expires   time.Time  // when it lapses unless refreshed
	mu        sync.Mutex // orders this dialog's NOTIFYs (their CSeq)
}

// mwiSubs are the lines' subscriptions and the last summary per line.
type mwiSubs struct {
	mu   sync.Mutex
	m    map[string]*mwiSub // by Call-ID, their tag, our tag
	last map[string][]byte  // line → the provider's last summary
}

func newMWISubs() *mwiSubs {
	return &mwiSubs{m: map[string]*mwiSub{}, last: map[string][]byte{}}
}

func mwiSubKey(callID, theirTag, ourTag string) string {
	return callID + "\x00" + theirTag + "\x00" + ourTag
}

// summary is line's last summary, or "no messages" before any.
func (t *mwiSubs) summary(line string) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	if b, ok := t.last[line]; ok {
		return b
	}
	return []byte(mwiNoMessages)
}

func (t *mwiSubs) setSummary(line string, body []byte) {
	t.mu.Lock()
	t.last[line] = body
	t.mu.Unlock()
}

// ofLine are line's live subscriptions.
func (t *mwiSubs) ofLine(line string) []*mwiSub {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	var out []*mwiSub
	for k, sub := range t.m {
		if now.After(sub.expires) {
			delete(t.m, k)
			continue
		}
		if sub.line == line {
			out = append(out, sub)
		}
	}
	return out
}

func (t *mwiSubs) drop(sub *mwiSub) {
	t.mu.Lock()
	delete(t.m, mwiSubKey(sub.callID, sub.theirTag, sub.ourTag))
	t.mu.Unlock()
}

// onSubscribe answers a line phone's SUBSCRIBE to its voicemail summary.
func (s *Server) onSubscribe(req *sip.Request, tx sip.ServerTransaction) {
	rt := s.routing()
	var line *Line
	if _, l, _, ok := s.deviceFrom(rt, req); ok {
		line = l
	} else {
		line = rt.lineFrom(req)
	}
	if line == nil {
		s.respondErr(req, tx, fmt.Errorf("%w: SUBSCRIBE from no line's phone", ErrForbidden))
		return
	}
	ev := req.GetHeader("Event")
	if err := mwiEventOK(ev); err != nil {
		s.respondErr(req, tx, err)
		return
	}
	expires := mwiSubDefault
	if h := req.GetHeader("Expires"); h != nil {
		n, err := strconv.ParseUint(h.Value(), 10, 32)
		if err != nil {
			s.respondErr(req, tx, fmt.Errorf("%w: Expires %q", ErrMalformed, h.Value()))
			return
		}
		expires = min(time.Duration(n)*time.Second, mwiSubMax)
	}
	if expires > 0 && expires < mwiSubMin {
		s.respondErr(req, tx, ErrIntervalTooBrief, sip.NewHeader("Min-Expires", strconv.Itoa(int(mwiSubMin.Seconds()))))
		return
	}
	sub, err := s.mwiSubs.subscribe(req, line, ev.Value(), expires)
	if err != nil {
		s.respondErr(req, tx, err)
		return
	}
	res := sip.NewResponseFromRequest(req, sip.StatusOK, "OK", nil)
	if to := res.To(); to != nil {
		// The dialog's tag is ours, whatever sipgo put there: the
		// NOTIFYs' From carries it, and the phone matches them by it.
		to.Params.Add("tag", sub.ourTag)
	}
	res.AppendHeader(sip.NewHeader("Expires", strconv.Itoa(int(expires.Seconds()))))
	ct := s.faceFrom(req).contact(req.Transport())
	res.AppendHeader(&ct)
	if err := tx.Respond(res); err != nil {
		s.log.Debug("respond failed", zap.Error(err))
	}
	// RFC 6665 §4.2.1.2: a NOTIFY at once, with the current state (and a
	// last one, terminated, for an unsubscription).
	state := fmt.Sprintf("active;expires=%d", int(expires.Seconds()))
	if expires == 0 {
		state = "terminated;reason=timeout"
		s.mwiSubs.drop(sub)
	}
	body := s.mwiSubs.summary(line.Name)
	go func() {
		if err := s.notifySub(sub, state, body); err != nil {
			s.log.Info("voicemail subscription's NOTIFY not taken", zap.String("line", line.Name), zap.Error(err))
		}
	}()
}

// mwiEventOK checks an Event header names message-summary.
func mwiEventOK(ev sip.Header) error {
	if ev == nil {
		return fmt.Errorf("%w: no Event header (RFC 6665 §8.2.1)", ErrBadEvent)
	}
	if pkg := eventPackage(ev.Value()); pkg != mwiEvent {
		return fmt.Errorf("%w: %q", ErrBadEvent, pkg)
	}
	return nil
}

// subscribe makes or refreshes req's subscription (a refresh names our tag
// in To, RFC 6665 §4.1.2.1), for expires from now.
func (t *mwiSubs) subscribe(req *sip.Request, line *Line, event string, expires time.Duration) (*mwiSub, error) {
	from, to, cid := req.From(), req.To(), req.CallID()
	ct := req.Contact()
	if from == nil || to == nil || cid == nil || ct == nil {
		return nil, fmt.Errorf("%w: SUBSCRIBE without From, To, Call-ID or Contact", ErrMalformed)
	}
	theirTag, _ := from.Params.Get("tag")
	t.mu.Lock()
	defer t.mu.Unlock()
	if ourTag, ok := to.Params.Get("tag"); ok {
		sub, found := t.m[mwiSubKey(cid.Value(), theirTag, ourTag)]
		if !found || sub.line != line.Name || time.Now().After(sub.expires) {
			return nil, fmt.Errorf("%w: no such subscription", ErrNoDialog)
		}
		sub.expires = time.Now().Add(expires)
		return sub, nil
	}
	n := 0
	for k, sub := range t.m {
		switch {
		case time.Now().After(sub.expires):
			delete(t.m, k) // lapsed: a phone that resubscribes anew must not grow the map
		case sub.line == line.Name:
			n++
		}
	}
	if n >= mwiSubPerLine {
		return nil, fmt.Errorf("%w: %d voicemail subscriptions on line %s", ErrOverloaded, n, line.Name)
	}
	sub := &mwiSub{line: line.Name, callID: cid.Value(), event: event, ours: *to.Address.Clone(), ourTag: sip.GenerateTagN(16),
		theirs: *from.Address.Clone(), theirTag: theirTag, target: *ct.Address.Clone(), flow: source(req).String(),
		transport: req.Transport(), expires: time.Now().Add(expires)}
	t.m[mwiSubKey(sub.callID, theirTag, sub.ourTag)] = sub
	return sub, nil
}

// notifySub sends sub's NOTIFY in its dialog (RFC 6665 §4.2.2) with state
// and body; a 481 ends the subscription (§4.2.2: the subscriber has none).
func (s *Server) notifySub(sub *mwiSub, state string, body []byte) error {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.cseq++
	req := sip.NewRequest(sip.NOTIFY, *sub.target.Clone())
	from := sip.FromHeader{Address: *sub.ours.Clone(), Params: sip.NewParams()}
	from.Params.Add("tag", sub.ourTag)
	to := sip.ToHeader{Address: *sub.theirs.Clone(), Params: sip.NewParams()}
	if sub.theirTag != "" {
		to.Params.Add("tag", sub.theirTag)
	}
	cid := sip.CallIDHeader(sub.callID)
	req.AppendHeader(&from)
	req.AppendHeader(&to)
	req.AppendHeader(&cid)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: sub.cseq, MethodName: sip.NOTIFY})
	ct := s.faceAt(sub.flow).contact(sub.transport)
	req.AppendHeader(&ct)
	req.SetTransport(sub.transport)
	res, err := s.notify(req, sub.event, state, body, sub.flow)
	if res != nil && res.StatusCode == sip.StatusCallTransactionDoesNotExists {
		s.mwiSubs.drop(sub)
	}
	return err
}
