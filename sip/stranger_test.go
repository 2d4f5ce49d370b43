package sip

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// TestStrangerGets403WhateverItSends: design flow 1. A stranger's INVITE is
// refused with 403 before anything else reads it, so an in-dialog INVITE
// does not learn whether the dialog exists (481) and a malformed one does
// not learn how we parse (400).
func TestStrangerGets403WhateverItSends(t *testing.T) {
	e := newEnv(t)
	stranger := newRawPeer(t, ipStranger)
	to := net.UDPAddrFromAddrPort(e.s.Addr("udp"))
	invite := func(callID, toTag, contact string) string {
		return fmt.Sprintf("INVITE sip:%s@%s SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\n"+
			"Max-Forwards: 70\r\n"+
			"From: <sip:%s@%s>;tag=%s\r\n"+
			"To: <sip:%s@%s>%s\r\n"+
			"Call-ID: %s\r\n"+
			"CSeq: 2 INVITE\r\n"+
			"%s"+
			"Content-Length: 0\r\n\r\n",
			lineNumber, to, stranger.addr, sip.GenerateTagN(12), callerOK, stranger.addr.Addr(), sip.GenerateTagN(8),
			lineNumber, to, toTag, callID, contact)
	}
	contact := fmt.Sprintf("Contact: <sip:x@%s>\r\n", stranger.addr)
	cases := map[string]func(callID string) string{
		"new dialog":                  func(id string) string { return invite(id, "", contact) },
		"in-dialog, naming no dialog": func(id string) string { return invite(id, ";tag=guess", contact) },
		"malformed: no Contact":       func(id string) string { return invite(id, "", "") },
		"malformed: unknown URI scheme": func(id string) string {
			return strings.Replace(invite(id, "", contact), "sip:"+lineNumber, "nobody:x", 1)
		},
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			id := sip.GenerateTagN(16) + "@stranger"
			if _, err := stranger.pc.WriteTo([]byte(msg(id)), to); err != nil {
				t.Fatal(err)
			}
			// Match on Call-ID: unACKed 403s are retransmitted (RFC 3261 §17.2.1).
			m, err := stranger.take(ctxT(t, 3*time.Second), "answer to "+id, func(m sip.Message) bool {
				r, ok := m.(*sip.Response)
				return ok && r.CallID() != nil && r.CallID().Value() == id
			})
			if err != nil {
				t.Fatal(err)
			}
			if code := m.msg.(*sip.Response).StatusCode; code != sip.StatusForbidden {
				t.Fatalf("stranger got %d, want 403", code)
			}
		})
	}
	if n := e.s.ActiveCalls(); n != 0 {
		t.Fatalf("%d calls after strangers' INVITEs", n)
	}
}

// An INVITE from the trunk is routed by its Request-URI only: one whose
// Request-URI names no line gets 404, whatever its To says, and no line rings.
func TestTrunkInviteRoutedByRequestURIOnly(t *testing.T) {
	e := newEnv(t)
	trunk := newRawPeer(t, ipTrunk)
	to := net.UDPAddrFromAddrPort(e.s.Addr("udp"))
	id := sip.GenerateTagN(16) + "@trunk"
	msg := fmt.Sprintf("INVITE sip:+442079460999@%s SIP/2.0\r\n"+
		"Via: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\n"+
		"Max-Forwards: 70\r\n"+
		"From: <sip:%s@%s>;tag=%s\r\n"+
		"To: <sip:%s@%s>\r\n"+
		"Call-ID: %s\r\n"+
		"CSeq: 1 INVITE\r\n"+
		"Contact: <sip:x@%s>\r\n"+
		"Content-Length: 0\r\n\r\n",
		to, trunk.addr, sip.GenerateTagN(12), callerOK, trunk.addr.Addr(), sip.GenerateTagN(8),
		lineNumber, to, id, trunk.addr)
	if _, err := trunk.pc.WriteTo([]byte(msg), to); err != nil {
		t.Fatal(err)
	}
	m, err := trunk.take(ctxT(t, 3*time.Second), "final answer", func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.CallID() != nil && r.CallID().Value() == id && r.StatusCode >= 200
	})
	if err != nil {
		t.Fatal(err)
	}
	if code := m.msg.(*sip.Response).StatusCode; code != sip.StatusNotFound {
		t.Fatalf("trunk got %d, want 404", code)
	}
	if err := e.line.NoIncoming(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

// A stranger gets the same 403 for every method, in dialog or not, so a
// scanner learns nothing from the answers; a trunk asking for a method we
// do not take gets 405 with Allow (RFC 3261 §8.2.1).
func TestStrangerGetsSame403ForEveryMethod(t *testing.T) {
	e := newEnv(t)
	to := net.UDPAddrFromAddrPort(e.s.Addr("udp"))
	send := func(p *rawPeer, method, toTag string) *sip.Response {
		t.Helper()
		id := sip.GenerateTagN(16) + "@peer"
		msg := fmt.Sprintf("%[1]s sip:%[2]s@%[3]s SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %[4]s;branch=z9hG4bK%[5]s\r\n"+
			"Max-Forwards: 70\r\n"+
			"From: <sip:%[6]s@%[7]s>;tag=%[5]s\r\n"+
			"To: <sip:%[2]s@%[3]s>%[8]s\r\n"+
			"Call-ID: %[9]s\r\n"+
			"CSeq: 1 %[1]s\r\n"+
			"Contact: <sip:x@%[4]s>\r\n"+
			"Content-Length: 0\r\n\r\n",
			method, lineNumber, to, p.addr, sip.GenerateTagN(12), callerOK, p.addr.Addr(), toTag, id)
		if _, err := p.pc.WriteTo([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
		m, err := p.take(ctxT(t, 3*time.Second), method+" answer", func(m sip.Message) bool {
			r, ok := m.(*sip.Response)
			return ok && r.CallID() != nil && r.CallID().Value() == id && r.StatusCode >= 200
		})
		if err != nil {
			t.Fatal(err)
		}
		return m.msg.(*sip.Response)
	}
	stranger := newRawPeer(t, ipStranger)
	for _, method := range []string{"REGISTER", "SUBSCRIBE", "NOTIFY", "MESSAGE", "PUBLISH", "OPTIONS",
		"BYE", "CANCEL", "INFO", "UPDATE", "REFER", "PRACK"} {
		for _, tag := range []string{"", ";tag=guess"} {
			if res := send(stranger, method, tag); res.StatusCode != sip.StatusForbidden || res.Reason != "Forbidden" {
				t.Errorf("stranger's %s (to tag %q): %d %s, want 403 Forbidden", method, tag, res.StatusCode, res.Reason)
			}
		}
	}
	trunk := newRawPeer(t, ipTrunk)
	for _, method := range []string{"REGISTER", "MESSAGE"} {
		res := send(trunk, method, "")
		if res.StatusCode != sip.StatusMethodNotAllowed || res.GetHeader("Allow") == nil {
			t.Errorf("trunk's %s: %d %s (Allow %v), want 405 with Allow", method, res.StatusCode, res.Reason, res.GetHeader("Allow"))
		}
	}
}
