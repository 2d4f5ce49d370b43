package sip

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"github.com/cleanline/cleanline/sip/media"
)

func testAuth() *LineAuth {
	la := &LineAuth{Username: "landline", Password: "correct horse"}
	if err := la.validate("sip.lines[0].auth"); err != nil {
		panic(err)
	}
	return la
}

// answer builds the Proxy-Authorization a client computes for chal.
func answer(t *testing.T, chal string, method, uri, user, pass string) string {
	t.Helper()
	c, err := digest.ParseChallenge(chal)
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(c, digest.Options{Method: method, URI: uri, Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	return cred.String()
}

func TestDigestVerify(t *testing.T) {
	a, la := newAuthenticator(), testAuth()
	now := time.Now()
	a.now = func() time.Time { return now }
	chals := a.challenges(sip.INVITE, la.Algorithms, false)
	if len(chals) != 2 || !strings.Contains(chals[0].Value(), "SHA-256") || !strings.Contains(chals[1].Value(), "MD5") {
		t.Fatalf("challenges %v: want SHA-256 first, then MD5 (RFC 8760)", chals)
	}
	req := func(auth string) *sip.Request {
		r := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "02079460018", Host: "127.0.0.1"})
		if auth != "" {
			r.AppendHeader(sip.NewHeader("Proxy-Authorization", auth))
		}
		return r
	}
	uri := "sip:02079460018@127.0.0.1"
	for i, c := range chals {
		if _, err := a.verify(req(answer(t, c.Value(), "INVITE", uri, "landline", "correct horse")), la); err != nil {
			t.Errorf("challenge %d answered right: %v", i, err)
		}
	}
	for name, auth := range map[string]string{
		"none":            "",
		"wrong password":  answer(t, chals[0].Value(), "INVITE", uri, "landline", "wrong"),
		"wrong user":      answer(t, chals[0].Value(), "INVITE", uri, "other", "correct horse"),
		"other method":    answer(t, chals[0].Value(), "REGISTER", uri, "landline", "correct horse"),
		"another's nonce": answer(t, newAuthenticator().challenges(sip.INVITE, la.Algorithms, false)[0].Value(), "INVITE", uri, "landline", "correct horse"),
		"garbage":         "Digest garbage",
	} {
		if _, err := a.verify(req(auth), la); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Replays and answers moved to another Request-URI (RFC 3261 §22.4).
	once := answer(t, chals[0].Value(), "INVITE", uri, "landline", "correct horse")
	if _, err := a.verify(req(once), la); err != nil {
		t.Fatalf("fresh answer: %v", err)
	}
	if _, err := a.verify(req(once), la); err == nil || !strings.Contains(err.Error(), "replayed") {
		t.Errorf("replayed answer: %v, want refused as a replay", err)
	}
	other := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "09098790000", Host: "127.0.0.1"})
	other.AppendHeader(sip.NewHeader("Proxy-Authorization", answer(t, chals[0].Value(), "INVITE", uri, "landline", "correct horse")))
	if _, err := a.verify(other, la); err == nil || !strings.Contains(err.Error(), "not the Request-URI") {
		t.Errorf("answer for another URI: %v, want refused", err)
	}
	md5Only := &LineAuth{Username: "landline", Password: "correct horse", Algorithms: []string{"SHA-256"}}
	if _, err := a.verify(req(answer(t, chals[1].Value(), "INVITE", uri, "landline", "correct horse")), md5Only); err == nil {
		t.Error("MD5 answer accepted where only SHA-256 is offered")
	}
	later := answer(t, chals[0].Value(), "INVITE", uri, "landline", "correct horse")
	now = now.Add(nonceLife + time.Second)
	if stale, err := a.verify(req(later), la); err == nil || !stale {
		t.Errorf("expired nonce: stale %v, err %v; want a stale refusal", stale, err)
	}
	if err := (&LineAuth{Username: "x"}).validate("k"); err == nil {
		t.Error("no password accepted")
	}
	if err := (&LineAuth{Username: "x", Password: "y", Algorithms: []string{"SHA-1"}}).validate("k"); err == nil || !strings.Contains(err.Error(), "k.algorithms[0]") {
		t.Errorf("bad algorithm: %v", err)
	}
}

// A line with credentials: a forged INVITE from its address (no
// credentials, or wrong ones) gets 407 and never reaches the trunk; the
// device that knows the password is challenged and its call goes out.
func TestLineMustAuthenticateItsCalls(t *testing.T) {
	e := newEnv(t, withCfg(func(c *Config) {
		c.Lines[0].Auth = &LineAuth{Username: "landline", Password: "correct horse"}
	}))
	ctx := ctxT(t, 10*time.Second)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ua, err := sipgo.NewUA(sipgo.WithUserAgentHostname(ipLine),
		sipgo.WithUserAgentTransactionLayerOptions(sip.WithTransactionLayerLogger(quiet)),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(quiet)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ua.Close() })
	cli, err := sipgo.NewClient(ua, sipgo.WithClientHostname(ipLine), sipgo.WithClientConnectionAddr(ipLine+":0"), sipgo.WithClientLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	invite := func() *sip.Request {
		target := sip.Uri{Scheme: "sip", User: "02079460018", Host: e.s.Addr("udp").Addr().String(), Port: int(e.s.Addr("udp").Port())}
		req := sip.NewRequest(sip.INVITE, target)
		req.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "landline", Host: ipLine, Port: 5099}})
		req.AppendHeader(sdpType())
		req.SetBody([]byte(fmt.Sprintf("v=0\r\no=- 1 1 IN IP4 %[1]s\r\ns=-\r\nc=IN IP4 %[1]s\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n", ipLine)))
		return req
	}
	req := invite()
	res, err := cli.Do(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != sip.StatusProxyAuthRequired || len(res.GetHeaders("Proxy-Authenticate")) != 2 {
		t.Fatalf("unauthenticated INVITE: %d with %d challenges; want 407 with SHA-256 and MD5", res.StatusCode, len(res.GetHeaders("Proxy-Authenticate")))
	}
	if err := e.trunk.NoIncoming(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	bad, err := cli.DoDigestAuth(ctx, req, res, sipgo.DigestAuth{Username: "landline", Password: "guess"})
	if err != nil || bad.StatusCode != sip.StatusProxyAuthRequired {
		t.Fatalf("wrong password: %v, %v; want 407", bad, err)
	}
	if err := e.trunk.NoIncoming(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	req = invite()
	res, err = cli.Do(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *sip.Response, 1)
	go func() {
		r, err := cli.DoDigestAuth(context.Background(), req, res, sipgo.DigestAuth{Username: "landline", Password: "correct horse"})
		if err != nil {
			t.Error(err)
		}
		done <- r
	}()
	in, err := e.trunk.Incoming(ctx)
	if err != nil {
		t.Fatalf("authenticated call never reached the trunk: %v", err)
	}
	if in.Req.Recipient.User != "02079460018" {
		t.Errorf("trunk got %s", in.Req.Recipient.User)
	}
	_ = in.Reject(486, "Busy Here")
	select {
	case r := <-done:
		if r == nil || r.StatusCode != sip.StatusBusyHere {
			t.Fatalf("line got %v; want the trunk's 486", r)
		}
	case <-ctx.Done():
		t.Fatal("no final answer")
	}
	e.waitNoCalls()
}

// An attacker who captured one authenticated INVITE of the line cannot
// use it again: replayed from the line's address as a new call, it gets
// 407; its Proxy-Authorization put on an INVITE to another number (a
// premium-rate one) gets 407. Only the original reached the trunk.
func TestCapturedLineCredentialsCannotBeReplayed(t *testing.T) {
	e := newEnv(t, withCfg(func(c *Config) {
		c.Lines[0].Auth = &LineAuth{Username: "landline", Password: "correct horse"}
	}))
	ctx := ctxT(t, 10*time.Second)
	line := newRawPeer(t, ipLine)
	to := net.UDPAddrFromAddrPort(e.s.Addr("udp"))
	body, err := media.BuildOffer(netip.AddrPortFrom(line.addr.Addr(), 40000), media.CodecPCMA)
	if err != nil {
		t.Fatal(err)
	}
	// invite sends a new INVITE (its own Call-ID and branch) for number.
	invite := func(number, auth string) string {
		callID := sip.GenerateTagN(16) + "@line"
		target := fmt.Sprintf("sip:%s@%s", number, e.s.Addr("udp"))
		hdr := ""
		if auth != "" {
			hdr = "Proxy-Authorization: " + auth + "\r\n"
		}
		line.send(to, mustParse(t, fmt.Sprintf("INVITE %s SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP %s;branch=z9hG4bK%s\r\n"+
			"Max-Forwards: 70\r\n"+
			"From: <sip:%s@%s>;tag=%s\r\n"+
			"To: <%s>\r\n"+
			"Call-ID: %s\r\n"+
			"CSeq: 1 INVITE\r\n"+
			"Contact: <sip:landline@%s>\r\n%s"+
			"Content-Type: application/sdp\r\n"+
			"Content-Length: %d\r\n\r\n%s",
			target, line.addr, sip.GenerateTagN(12), lineNumber, ipLine, sip.GenerateTagN(8),
			target, callID, line.addr, hdr, len(body), body)))
		return callID
	}
	final := func(callID string) int {
		t.Helper()
		m, err := line.take(ctx, "final answer to "+callID, func(m sip.Message) bool {
			r, ok := m.(*sip.Response)
			return ok && r.CallID().Value() == callID && r.StatusCode >= 200
		})
		if err != nil {
			t.Fatal(err)
		}
		return m.msg.(*sip.Response).StatusCode
	}
	const number = "02079460018"
	id := invite(number, "")
	m, err := line.take(ctx, "407", func(m sip.Message) bool {
		r, ok := m.(*sip.Response)
		return ok && r.CallID().Value() == id && r.StatusCode == 407
	})
	if err != nil {
		t.Fatal(err)
	}
	chal, err := digest.ParseChallenge(m.msg.(*sip.Response).GetHeader("Proxy-Authenticate").Value())
	if err != nil {
		t.Fatal(err)
	}
	cred, err := digest.Digest(chal, digest.Options{Method: "INVITE", URI: fmt.Sprintf("sip:%s@%s", number, e.s.Addr("udp")),
		Username: "landline", Password: "correct horse", Count: 1, Cnonce: "0a4f113b"})
	if err != nil {
		t.Fatal(err)
	}
	invite(number, cred.String())
	in, err := e.trunk.Incoming(ctx)
	if err != nil {
		t.Fatalf("the device's authenticated call never reached the trunk: %v", err)
	}
	_ = in.Reject(486, "Busy Here")

	if code := final(invite(number, cred.String())); code != 407 {
		t.Errorf("replayed INVITE: %d, want 407", code)
	}
	if code := final(invite("09098790000", cred.String())); code != 407 {
		t.Errorf("captured answer on another Request-URI: %d, want 407", code)
	}
	if err := e.trunk.NoIncoming(300 * time.Millisecond); err != nil {
		t.Fatalf("a replay reached the trunk: %v", err)
	}
}

func mustParse(t *testing.T, s string) sip.Message {
	t.Helper()
	m, err := sip.ParseMessage([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
