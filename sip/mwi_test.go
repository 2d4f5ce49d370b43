package sip

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/siptest"
)

// Voicemail indications (RFC 3842) over real sockets: the trunk's phone
// sends cleanline a message-summary NOTIFY for the line, and what reaches
// the line's phones, and what the trunk is answered, is asserted.
// `go test -run MWI ./sip/`.

const mwiBody = "Messages-Waiting: yes\r\nMessage-Account: sip:+442079460123@provider.example\r\nVoice-Message: 2/8 (0/0)\r\n"

// mwiNotify is the provider's NOTIFY to user at cleanline.
func (e *env) mwiNotify(user, event, contentType, body string, hdrs ...sip.Header) *sip.Request {
	dst := e.s.Addr("udp")
	req := sip.NewRequest(sip.NOTIFY, sip.Uri{Scheme: "sip", User: user, Host: dst.Addr().String(), Port: int(dst.Port())})
	if event != "" {
		req.AppendHeader(sip.NewHeader("Event", event))
	}
	if contentType != "" {
		req.AppendHeader(sip.NewHeader("Content-Type", contentType))
	}
	req.AppendHeader(sip.NewHeader("Subscription-State", "active"))
	for _, h := range hdrs {
		req.AppendHeader(h)
	}
	req.SetBody([]byte(body))
	return req
}

// The trunk's NOTIFY is answered 200, and every phone of the line (two
// registered devices, one behind NAT through its flow) gets a NOTIFY of
// its own with the event, the state and the summary, from cleanline.
func TestMWIReachesEveryPhoneOfTheLine(t *testing.T) {
	e := newEnv(t, withDevices)
	ctx := ctxT(t, 10*time.Second)
	e.register(e.line, devA, passA)
	natted := siptest.NewPhone(t, ipLine)
	e.registerNATted(natted, devB, passB, "sip:kitchen@10.9.9.10:5060")

	res, err := e.trunk.Do(ctx, e.mwiNotify(lineNumber, "message-summary", mwiContentType, mwiBody))
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("the trunk's NOTIFY: %v, %v; want 200", res, err)
	}
	for name, p := range map[string]*siptest.Phone{"landline": e.line, "kitchen (behind NAT)": natted} {
		got, err := p.WaitRequest(ctx, sip.NOTIFY)
		if err != nil {
			t.Fatalf("%s got no NOTIFY: %v", name, err)
		}
		if ev := got.GetHeader("Event"); ev == nil || ev.Value() != "message-summary" {
			t.Errorf("%s: Event %v", name, ev)
		}
		if st := got.GetHeader("Subscription-State"); st == nil || st.Value() != "active" {
			t.Errorf("%s: Subscription-State %v", name, st)
		}
		if ct := got.ContentType(); ct == nil || ct.Value() != mwiContentType {
			t.Errorf("%s: Content-Type %v", name, ct)
		}
		if string(got.Body()) != mwiBody {
			t.Errorf("%s: body %q, want the provider's summary", name, got.Body())
		}
		if src := got.Source(); src != e.s.Addr("udp").String() {
			t.Errorf("%s: NOTIFY from %s, want cleanline's listener", name, src)
		}
		if got.From().Address.Host != ipCleanline || got.To().Params.Has("tag") {
			t.Errorf("%s: From %s To %s; want cleanline's, out of any dialog", name, got.From().Value(), got.To().Value())
		}
	}
	if r := natted.Requests(); r[0].Recipient.String() != "sip:kitchen@10.9.9.10:5060" {
		t.Errorf("NOTIFY to %s; want the device's Contact, through its flow", r[0].Recipient.String())
	}
	// The longest summary taken still fits the datagram to each phone.
	long := "Messages-Waiting: no\r\n" + strings.Repeat("X", mwiMaxBody-24) + "\r\n"
	if res, err := e.trunk.Do(ctx, e.mwiNotify(lineNumber, "message-summary", mwiContentType, long)); err != nil || res.StatusCode != 200 {
		t.Fatalf("a %d-byte summary: %v, %v; want 200", len(long), res, err)
	}
	if err := e.line.WaitRequests(ctx, sip.NOTIFY, 2); err != nil {
		t.Fatalf("the longest summary did not reach the phone: %v", err)
	}
}

// Debian's SIPp plays the provider's voicemail server with its own
// NOTIFY (sip/testdata/sipp/voicemail_notify.xml): SIPp gets its 200, and
// the line's phone the summary, lamp on.
func TestMWIFromSIPp(t *testing.T) {
	e := newEnv(t)
	err := siptest.RunSIPp(t, siptest.SIPpOptions{Scenario: "testdata/sipp/voicemail_notify.xml", IP: ipTrunk,
		Remote: e.s.Addr("udp").String(), Service: lineNumber})
	if errors.Is(err, siptest.ErrNoSIPp) {
		t.Fatal(err) // make deps installs it
	}
	if err != nil {
		t.Fatalf("SIPp's NOTIFY was not answered 200: %v", err)
	}
	got, err := e.line.WaitRequest(ctxT(t, 5*time.Second), sip.NOTIFY)
	if err != nil {
		t.Fatalf("the line's phone got no NOTIFY: %v", err)
	}
	if waiting, err := parseMessageSummary(got.Body()); err != nil || !waiting || !strings.Contains(string(got.Body()), "Voice-Message: 3/0 (1/0)") {
		t.Errorf("summary %q (waiting %v, %v); want SIPp's, lamp on", got.Body(), waiting, err)
	}
}

// Everything else is refused, with the status that says why, and reaches
// no phone: another event package (489), another body type (415 with
// Accept), a summary without Messages-Waiting (400), a number no line has
// (404), a NOTIFY in a dialog (405), one from the line's own phone (403:
// a phone cannot light another's lamp) and one from a stranger (403).
func TestMWIRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	inDialog := e.mwiNotify(lineNumber, "message-summary", mwiContentType, mwiBody)
	to := sip.ToHeader{Address: inDialog.Recipient, Params: sip.NewParams()}
	to.Params.Add("tag", "x1")
	inDialog.AppendHeader(&to)
	stranger := siptest.NewPhone(t, ipStranger)
	for _, c := range []struct {
		name   string
		from   *siptest.Phone
		req    *sip.Request
		status int
	}{
		{"presence", e.trunk, e.mwiNotify(lineNumber, "presence", mwiContentType, mwiBody), 489},
		{"no Event", e.trunk, e.mwiNotify(lineNumber, "", mwiContentType, mwiBody), 489},
		{"text/plain", e.trunk, e.mwiNotify(lineNumber, "message-summary", "text/plain", mwiBody), 415},
		{"no Messages-Waiting", e.trunk, e.mwiNotify(lineNumber, "message-summary", mwiContentType, "Voice-Message: 2/8\r\n"), 400},
		{"Messages-Waiting maybe", e.trunk, e.mwiNotify(lineNumber, "message-summary", mwiContentType, "Messages-Waiting: maybe\r\n"), 400},
		{"too long", e.trunk, e.mwiNotify(lineNumber, "message-summary", mwiContentType, "Messages-Waiting: yes\r\n"+strings.Repeat("X: y\r\n", 130)), 400},
		{"unknown number", e.trunk, e.mwiNotify("+442079460999", "message-summary", mwiContentType, mwiBody), 404},
		{"in a dialog", e.trunk, inDialog, 405},
		{"from the line", e.line, e.mwiNotify(lineNumber, "message-summary", mwiContentType, mwiBody), 403},
		{"from a stranger", stranger, e.mwiNotify(lineNumber, "message-summary", mwiContentType, mwiBody), 403},
	} {
		res, err := c.from.Do(ctx, c.req)
		if err != nil || res.StatusCode != c.status {
			t.Errorf("%s: %v, %v; want %d", c.name, res, err, c.status)
			continue
		}
		if c.status == 415 {
			if a := res.GetHeader("Accept"); a == nil || a.Value() != mwiContentType {
				t.Errorf("415 with Accept %v; want %s", a, mwiContentType)
			}
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if got, err := e.line.WaitRequest(wctx, sip.NOTIFY); err == nil {
		t.Fatalf("a refused NOTIFY reached the line: %s", got.GetHeader("Event").Value())
	}
}

// The summary reader never panics and says yes or no only for a body with
// a Messages-Waiting line of that value. `go test -fuzz FuzzMessageSummary ./sip/`.
func FuzzMessageSummary(f *testing.F) {
	for _, s := range []string{mwiBody, "Messages-Waiting: no\r\n", "messages-waiting:YES", "Messages-Waiting: maybe", "", "\x00", "Voice-Message: 1/2"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		waiting, err := parseMessageSummary(body)
		if err != nil && waiting {
			t.Fatalf("waiting with an error: %v", err)
		}
		if err == nil && !strings.Contains(strings.ToLower(string(body)), "messages-waiting") {
			t.Fatalf("accepted %q without a Messages-Waiting line", body)
		}
	})
}

// subscribe is the line phone's message-summary SUBSCRIBE to cleanline for
// expires seconds; callID, fromTag and toTag (a refresh) may be empty.
func (e *env) subscribe(p *siptest.Phone, event string, expires int, callID, fromTag, toTag string, cseq uint32) (*sip.Response, error) {
	dst := e.s.Addr("udp")
	aor := sip.Uri{Scheme: "sip", User: lineNumber, Host: dst.Addr().String(), Port: int(dst.Port())}
	req := sip.NewRequest(sip.SUBSCRIBE, aor)
	req.AppendHeader(sip.NewHeader("Event", event))
	req.AppendHeader(sip.NewHeader("Expires", fmt.Sprint(expires)))
	req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "landline", Host: p.IP.String(), Port: int(p.Addr.Port())}})
	if callID != "" {
		from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "landline", Host: p.IP.String()}, Params: sip.NewParams()}
		from.Params.Add("tag", fromTag)
		to := &sip.ToHeader{Address: aor, Params: sip.NewParams()}
		to.Params.Add("tag", toTag)
		cid := sip.CallIDHeader(callID)
		req.AppendHeader(from)
		req.AppendHeader(to)
		req.AppendHeader(&cid)
		req.AppendHeader(&sip.CSeqHeader{SeqNo: cseq, MethodName: sip.SUBSCRIBE})
	}
	return p.Do(ctxT(e.t, 5*time.Second), req)
}

// A phone that subscribes (RFC 6665; baresip's mwi module does, and
// answers an unsolicited NOTIFY 481) gets the current summary at once in
// its subscription's dialog, then the provider's in that dialog (CSeq
// rising) and no unsolicited one; unsubscribing (Expires: 0) gets a last
// NOTIFY, terminated. A subscription shorter than 60 s gets 423 with
// Min-Expires, another event 489, a trunk or a stranger 403, and a refresh
// of a subscription that does not exist 481.
func TestMWISubscription(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 10*time.Second)
	res, err := e.subscribe(e.line, "message-summary", 600, "", "", "", 0)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %v, %v; want 200", res, err)
	}
	ourTag, _ := res.To().Params.Get("tag")
	theirTag, _ := res.From().Params.Get("tag")
	callID := res.CallID().Value()
	if exp := res.GetHeader("Expires"); exp == nil || exp.Value() != "600" || ourTag == "" || res.Contact() == nil {
		t.Fatalf("200 without Expires 600, a To tag or a Contact: %v", res)
	}
	inDialog := func(n int, state, body string) *sip.Request {
		t.Helper()
		if err := e.line.WaitRequests(ctx, sip.NOTIFY, n); err != nil {
			t.Fatalf("NOTIFY %d: %v", n, err)
		}
		var notifies []*sip.Request
		for _, r := range e.line.Requests() {
			if r.Method == sip.NOTIFY {
				notifies = append(notifies, r)
			}
		}
		if len(notifies) != n {
			t.Fatalf("%d NOTIFYs, want %d: one unsolicited besides the subscription's?", len(notifies), n)
		}
		r := notifies[n-1]
		from, _ := r.From().Params.Get("tag")
		to, _ := r.To().Params.Get("tag")
		if r.CallID().Value() != callID || from != ourTag || to != theirTag {
			t.Errorf("NOTIFY %d outside the dialog: Call-ID %s tags %s/%s; want %s %s/%s", n, r.CallID().Value(), from, to, callID, ourTag, theirTag)
		}
		if st := r.GetHeader("Subscription-State"); st == nil || !strings.HasPrefix(st.Value(), state) {
			t.Errorf("NOTIFY %d: Subscription-State %v, want %s", n, st, state)
		}
		if !strings.Contains(string(r.Body()), body) {
			t.Errorf("NOTIFY %d: body %q, want %q", n, r.Body(), body)
		}
		if n > 1 && r.CSeq().SeqNo != notifies[n-2].CSeq().SeqNo+1 {
			t.Errorf("NOTIFY CSeq %d after %d", r.CSeq().SeqNo, notifies[n-2].CSeq().SeqNo)
		}
		return r
	}
	inDialog(1, "active;expires=", "Messages-Waiting: no")

	if res, err := e.trunk.Do(ctx, e.mwiNotify(lineNumber, "message-summary", mwiContentType, mwiBody)); err != nil || res.StatusCode != 200 {
		t.Fatalf("the provider's NOTIFY: %v, %v", res, err)
	}
	inDialog(2, "active;expires=", "Voice-Message: 2/8 (0/0)")

	res, err = e.subscribe(e.line, "message-summary", 0, callID, theirTag, ourTag, res.CSeq().SeqNo+100)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("unsubscribe: %v, %v; want 200", res, err)
	}
	inDialog(3, "terminated", "Voice-Message: 2/8 (0/0)")
	if res, err := e.subscribe(e.line, "message-summary", 600, callID, theirTag, ourTag, 1000); err != nil || res.StatusCode != 481 {
		t.Errorf("refreshing the ended subscription: %v, %v; want 481", res, err)
	}

	for _, c := range []struct {
		name   string
		p      *siptest.Phone
		event  string
		exp    int
		status int
	}{
		{"10 s", e.line, "message-summary", 10, 423},
		{"presence", e.line, "presence", 600, 489},
		{"from the trunk", e.trunk, "message-summary", 600, 403},
		{"from a stranger", siptest.NewPhone(t, ipStranger), "message-summary", 600, 403},
	} {
		res, err := e.subscribe(c.p, c.event, c.exp, "", "", "", 0)
		if err != nil || res.StatusCode != c.status {
			t.Errorf("%s: %v, %v; want %d", c.name, res, err, c.status)
		}
		if c.status == 423 && (res.GetHeader("Min-Expires") == nil || res.GetHeader("Min-Expires").Value() != "60") {
			t.Errorf("423 without Min-Expires: 60")
		}
	}
}
