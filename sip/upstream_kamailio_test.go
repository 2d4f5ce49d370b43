package sip

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/siptest"
)

// The provider played by Debian's Kamailio (siptest.StartKamailio): a
// registrar with digest authentication (auth_db on db_text, usrloc), a
// proxy that routes a call to the subscriber by lookup("location"), and
// challenges the subscriber's own calls (proxy_authorize).

// ipFar is the provider's other subscribers: the caller of the line, and
// the far end of the line's own calls.
const ipFar = "127.0.0.5"

// kamEnv starts Kamailio knowing upUser's password, a far-end phone, and
// cleanline registering at Kamailio over transport with password; f
// changes the registration's configuration.
func kamEnv(t *testing.T, transport, password string, f func(*Register)) (*env, *siptest.Kamailio, *siptest.Phone) {
	t.Helper()
	far := siptest.NewPhone(t, ipFar)
	ko := siptest.KamailioOptions{IP: ipTrunk, Username: upUser, Password: upPass, Subscriber: ipCleanline, FarEnd: far.URI("")}
	var opts []envOption
	switch transport {
	case "tcp":
		opts = append(opts, overTCP)
	case "tls":
		dir := t.TempDir()
		ko.TLSCert, ko.TLSKey = siptest.Certificate(t, dir, "provider", ipTrunk)
		opts = append(opts, overTLS(t, dir, ko.TLSCert))
	}
	k, err := siptest.StartKamailio(t, ko)
	if err != nil {
		t.Fatal(err) // ErrNoKamailio says how to install it
	}
	e := upEnv(t, k.URI(transport), func(r *Register) {
		r.Password = password
		r.KeepAlive, r.RetryMin, r.RetryMax = 300*time.Millisecond, 200*time.Millisecond, time.Second
		if f != nil {
			f(r)
		}
	}, opts...)
	return e, k, far
}

// subscriberURI is how the provider's side dials the subscriber.
func subscriberURI(k *siptest.Kamailio) string { return fmt.Sprintf("sip:%s@%s", upUser, k.Addr) }

// cseqIn reads "cseq=N" from a line Kamailio logged.
func cseqIn(t *testing.T, l siptest.LogLine) int {
	t.Helper()
	_, rest, _ := strings.Cut(l.Text, "cseq=")
	var n int
	if _, err := fmt.Sscanf(rest, "%d", &n); err != nil {
		t.Fatalf("no cseq in %q", l.Text)
	}
	return n
}

// cleanline registers at Kamailio (its 423 honoured: asked 30 s, it wants
// 60), so the location table holds the line's contact; a call the
// provider's side places to the subscriber reaches cleanline through the
// registration and is screened (a scam caller 603, an allowed one rings the
// line); the line's own call is challenged by Kamailio, answered with the
// subscriber's credentials once, and reaches the far end; at shutdown the
// binding is removed.
func TestUpstreamKamailioRegistersAndCallsBothWays(t *testing.T) {
	e, k, far := kamEnv(t, "udp", upPass, func(r *Register) { r.Expires = 30 * time.Second })
	ctx := ctxT(t, 30*time.Second)
	st := e.waitUpstream(ctx, "registered", upRegistered)
	if until := time.Until(st.Expires); until < 50*time.Second || until > 60*time.Second {
		t.Errorf("binding lapses in %s; want Kamailio's min_expires, 60 s", until)
	}
	saved, err := k.WaitLog(ctx, "REGISTER saved aor=sip:"+upUser+"@"+ipTrunk, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(saved[0].Text, "expires=60") || e.logs.FilterMessageSnippet("(423)").Len() != 1 {
		t.Errorf("Kamailio saved %q; want 60 s asked for after its 423", saved[0].Text)
	}
	loc, err := k.Location(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(loc, "AoR: "+upUser) || !strings.Contains(loc, st.Contact) {
		t.Fatalf("Kamailio's location table lacks %s for %s:\n%s", st.Contact, upUser, loc)
	}

	// The provider's side calls the subscriber: screened as a trunk call.
	out, err := far.Dial(ctx, subscriberURI(k), siptestOpts(callerScam))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 603 {
		t.Fatalf("scam caller through Kamailio got %v, %v; want 603", res, err)
	}
	providerCallsTheLine(t, ctx, e, k, far, 0x31)
	lineCallsOut(t, ctx, e, k, far, 0x41)

	// Shutdown removes the binding.
	if err := e.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if loc, err = k.Location(ctx); err != nil || strings.Contains(loc, st.Contact) {
		t.Fatalf("after shutdown Kamailio still has %s (%v):\n%s", st.Contact, err, loc)
	}
}

// Over TLS, against Kamailio's tls module with a certificate cleanline
// trusts (sip.tls.ca_file): registered with a TLS Contact, the provider's
// call reaches the line, the line's own call is challenged and connects,
// audio crosses both ways in both (the same steps as over UDP).
func TestUpstreamKamailioTLS(t *testing.T) {
	e, k, far := kamEnv(t, "tls", upPass, nil)
	ctx := ctxT(t, 30*time.Second)
	st := e.waitUpstream(ctx, "registered", upRegistered)
	if !strings.Contains(st.Contact, "transport=tls") {
		t.Errorf("contact %s; want our TLS listener", st.Contact)
	}
	loc, err := k.Location(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(loc, "AoR: "+upUser) || !strings.Contains(loc, "transport=tls") {
		t.Fatalf("Kamailio's location table lacks the TLS contact for %s:\n%s", upUser, loc)
	}
	providerCallsTheLine(t, ctx, e, k, far, 0x51)
	lineCallsOut(t, ctx, e, k, far, 0x61)
}

// Kamailio restarted: its location table is gone. cleanline notices by its
// keep-alive (OPTIONS on UDP, CRLF on TCP and TLS), says failing, and registers
// again within its retry bound once Kamailio is back; the provider's calls
// reach the line again.
func TestUpstreamKamailioRestart(t *testing.T) {
	for _, transport := range []string{"udp", "tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			e, k, far := kamEnv(t, transport, upPass, nil)
			ctx := ctxT(t, 40*time.Second)
			e.waitUpstream(ctx, "registered", upRegistered)
			k.Stop()
			st := e.waitUpstream(ctx, "failing once Kamailio stopped", func(st UpstreamState) bool { return st.State == UpstreamFailing })
			t.Logf("while Kamailio was down: %s %d %s", st.State, st.LastStatus, st.LastReason)
			// Taken before Start: cleanline may register again before Start
			// has seen Kamailio answer its own probe (a TLS listener up
			// before the next UDP probe, under load), and a registration
			// after this instant is a new one all the same.
			back := time.Now()
			if err := k.Start(); err != nil {
				t.Fatal(err)
			}
			// retry_max (1 s), or a UDP REGISTER's retransmission (T2, 4 s),
			// with room for a loaded machine and Kamailio's start.
			bound, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			st = e.waitUpstream(bound, "registered again", func(st UpstreamState) bool { return upRegistered(st) && st.Since.After(back) })
			t.Logf("registered again %s after Kamailio was started", st.Since.Sub(back).Round(time.Millisecond))
			out, err := far.Dial(ctx, subscriberURI(k), siptestOpts(callerOK))
			if err != nil {
				t.Fatal(err)
			}
			in, err := e.line.Incoming(ctx)
			if err != nil {
				t.Fatalf("no call through the new registration: %v\n%v", err, k.Logged("upstream-test"))
			}
			if err := in.Reject(486, "Busy Here"); err != nil {
				t.Fatal(err)
			}
			if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 486 {
				t.Fatalf("caller got %v, %v; want the line's 486", res, err)
			}
		})
	}
}

// A wrong password: Kamailio challenges the answer again; cleanline says
// so plainly, its state is failing with 401, and its attempts are a long
// backoff apart (retry_max, from its upper half), as Kamailio sees them.
func TestUpstreamKamailioWrongPassword(t *testing.T) {
	e, k, _ := kamEnv(t, "udp", "not the password", func(r *Register) { r.RetryMax = 2 * time.Second })
	ctx := ctxT(t, 20*time.Second)
	st := e.waitUpstream(ctx, "failing", func(st UpstreamState) bool { return st.State == UpstreamFailing })
	if st.LastStatus != sip.StatusUnauthorized {
		t.Errorf("state %+v; want failing with 401", st)
	}
	if n := e.logs.FilterMessageSnippet("provider refused the subscriber's credentials").Len(); n < 1 {
		t.Errorf("no log line says the credentials were refused")
	}
	// Each attempt is two REGISTERs Kamailio challenges.
	got, err := k.WaitLog(ctx, "REGISTER challenged", 4)
	if err != nil {
		t.Fatal(err)
	}
	if gap := got[2].At.Sub(got[1].At); gap < time.Second {
		t.Errorf("attempts %s apart at Kamailio; want at least retry_max/2 = 1s", gap)
	}
	if len(k.Logged("REGISTER saved")) != 0 {
		t.Fatal("Kamailio saved a binding for a wrong password")
	}
	if loc, err := k.Location(ctx); err != nil || strings.Contains(loc, "AoR: "+upUser) {
		t.Fatalf("location (%v):\n%s", err, loc)
	}
}

// providerCallsTheLine has the provider's side call the subscriber: an
// allowed caller rings the line through the registration, the line
// answers, audio crosses both ways (fill marks it), the caller hangs up.
func providerCallsTheLine(t *testing.T, ctx context.Context, e *env, k *siptest.Kamailio, far *siptest.Phone, fill byte) {
	t.Helper()
	out, err := far.Dial(ctx, subscriberURI(k), siptestOpts(callerOK))
	if err != nil {
		t.Fatal(err)
	}
	in, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatalf("the allowed caller never rang the line: %v\n%v", err, k.Logged("upstream-test"))
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("allowed caller got %v, %v; want 200", res, err)
	}
	audioCrosses(t, ctx, out, in, fill)
	e.hangUp(ctx, out, in)
}

// lineCallsOut has the line call out through the registration: Kamailio
// challenges it once, it is authenticated as the subscriber, reaches the
// far end with the number dialled, audio crosses both ways, and the
// line's BYE reaches the far end.
func lineCallsOut(t *testing.T, ctx context.Context, e *env, k *siptest.Kamailio, far *siptest.Phone, fill byte) {
	t.Helper()
	dialled, err := e.line.Dial(ctx, fmt.Sprintf("sip:02079460999@%s", e.s.Addr("udp")), siptestOpts(lineNumber))
	if err != nil {
		t.Fatal(err)
	}
	farIn, err := far.Incoming(ctx)
	if err != nil {
		t.Fatalf("the line's call never reached the far end: %v\n%v", err, k.Logged("upstream-test"))
	}
	if farIn.Req.Recipient.User != "02079460999" || farIn.Req.From().Address.User != upUser {
		t.Errorf("far end got Request-URI %s From %s; want the number dialled, from the subscriber", farIn.Req.Recipient.String(), farIn.Req.From().Address.String())
	}
	// Kamailio's log is read as it comes: wait for the lines.
	authed, err := k.WaitLog(ctx, "INVITE authenticated user="+upUser, 1)
	if err != nil {
		t.Fatal(err)
	}
	challenged := k.Logged("INVITE challenged")
	if len(challenged) != 1 || len(authed) != 1 || cseqIn(t, authed[0]) != cseqIn(t, challenged[0])+1 {
		t.Fatalf("Kamailio: challenged %v, authenticated %v; want one each, CSeq up by one", challenged, authed)
	}
	if err := farIn.Answer(); err != nil {
		t.Fatal(err)
	}
	if res, err := dialled.WaitFinal(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("the line's call got %v, %v; want 200", res, err)
	}
	audioCrosses(t, ctx, dialled, farIn, fill)
	if err := dialled.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-farIn.Ended():
	case <-ctx.Done():
		t.Fatal("the far end never got BYE through Kamailio")
	}
	e.waitNoCalls()
}

// A household whose provider takes TLS and SRTP, as an ATA set to both
// would use it: cleanline registers at Kamailio over TLS, and the line's
// call (plain RTP from the phone) goes out through it as RTP/SAVP to a far
// end that takes only SRTP (Debian's baresip, srtp-mand); the far end
// answers with its key and the audio crosses both ways, encrypted on the
// provider's side and plain to the line; the far end hears the line's
// tone, the line the far end's.
func TestUpstreamKamailioTLSAndSRTP(t *testing.T) {
	// The far end is the number the line dials (baresip answers only its
	// own user).
	b := startBaresipAt(t, ipFar, func(o *siptest.BaresipOptions) { o.MediaEnc, o.User = "srtp-mand", "02079460999" })
	dir := t.TempDir()
	ko := siptest.KamailioOptions{IP: ipTrunk, Username: upUser, Password: upPass, Subscriber: ipCleanline, FarEnd: b.URI()}
	ko.TLSCert, ko.TLSKey = siptest.Certificate(t, dir, "provider", ipTrunk)
	k, err := siptest.StartKamailio(t, ko)
	if err != nil {
		t.Fatal(err)
	}
	e := upEnv(t, k.URI("tls"), func(r *Register) { r.KeepAlive = -1 }, overTLS(t, dir, ko.TLSCert),
		withCfg(func(c *Config) { c.Trunks[0].SRTP = true }))
	ctx := ctxT(t, 30*time.Second)
	e.waitUpstream(ctx, "registered", upRegistered)

	out, err := e.line.Dial(ctx, fmt.Sprintf("sip:02079460999@%s", e.s.Addr("udp")), siptestOpts(lineNumber))
	if err != nil {
		t.Fatal(err)
	}
	answeredByBaresip(t, ctx, out, b)
	if out.Answer == nil || out.Answer.SRTP {
		t.Fatalf("the line's answer is %+v; want plain RTP on its leg", out.Answer)
	}
	talkWithBaresipThenHangUp(t, ctx, e, out, b, 2*time.Second)
	heardByBaresip(t, b)
	rec := e.logs.FilterMessage("call").All()
	if len(rec) != 1 {
		t.Fatalf("%d call records", len(rec))
	}
	if f := rec[0].ContextMap(); f["trunk_srtp"] != true || f["line_srtp"] != false || f["srtp_failed"] != uint64(0) {
		t.Errorf("call record: trunk_srtp %v line_srtp %v srtp_failed %v; want true, false, 0", f["trunk_srtp"], f["line_srtp"], f["srtp_failed"])
	}
}
