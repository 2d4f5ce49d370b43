package sip

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cleanline/cleanline/sip/siptest"
)

// The provider's calls to the registration, the lines' calls through it,
// and the keep-alives that hold the path open.

// The provider's INVITEs to the registered contact, from the registrar's
// address, are screened as trunk calls: a scam caller gets 603, an
// allowed one rings the line. A stranger who knows the contact URI gets
// the stranger's 403, and the line never rings.
func TestUpstreamCallsToTheContactAreScreened(t *testing.T) {
	reg := siptest.NewRegistrar(t, ipTrunk)
	reg.SetAnswer(digestGrant(time.Hour))
	e := upEnv(t, reg.URI(), nil)
	ctx := ctxT(t, 15*time.Second)
	st := e.waitUpstream(ctx, "registered", upRegistered)
	contact := st.Contact // what the provider's INVITEs carry as Request-URI

	out, err := e.trunk.Dial(ctx, contact, siptestOpts(callerScam))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 603 {
		t.Fatalf("scam caller got %v, %v; want 603", res, err)
	}
	out, err = e.trunk.Dial(ctx, contact, siptestOpts(callerOK))
	if err != nil {
		t.Fatal(err)
	}
	in, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(in.Req.From().Address.String(), "2079460018") {
		t.Errorf("the line sees From %s; want the caller's number", in.Req.From().Address.String())
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("allowed caller got %v, %v; want 200", res, err)
	}
	e.hangUp(ctx, out, in)

	stranger := siptest.NewPhone(t, ipStranger)
	out, err = stranger.Dial(ctx, contact, siptestOpts(callerOK))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 403 {
		t.Fatalf("stranger dialling the contact got %v, %v; want 403", res, err)
	}
	if err := e.line.NoIncoming(300 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
}

// The line's own call goes to the provider as the subscriber (From its
// address of record, along the Service-Route), answers the provider's 407
// once with the subscriber's credentials (CSeq up by one, same Call-ID);
// a second challenge fails the call with 503 and goes no further, unless
// it says stale=true: that one is answered too, once.
func TestUpstreamLineCallAnswersTheChallengeOnce(t *testing.T) {
	proxy := siptest.NewPhone(t, ipTrunk) // the provider's proxy, named by its Service-Route
	reg := siptest.NewRegistrar(t, ipTrunk)
	reg.SetAnswer(digestGrant(time.Hour, sip.NewHeader("Service-Route", fmt.Sprintf("<sip:%s;lr>", proxy.Addr))))
	e := upEnv(t, reg.URI(), nil)
	ctx := ctxT(t, 20*time.Second)
	e.waitUpstream(ctx, "registered", upRegistered)
	for _, tc := range []struct {
		name      string
		twice     bool
		stale     bool
		wantFinal int
	}{{"credentials accepted", false, false, 200}, {"credentials refused", true, false, 503}, {"stale nonce", false, true, 200}} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := e.line.Dial(ctx, fmt.Sprintf("sip:02079460999@%s", e.s.Addr("udp")), siptestOpts(lineNumber))
			if err != nil {
				t.Fatal(err)
			}
			in1, err := proxy.Incoming(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r1 := in1.Req
			if r1.GetHeader("Proxy-Authorization") != nil || r1.GetHeader("P-Asserted-Identity") != nil {
				t.Errorf("first INVITE carries credentials or P-Asserted-Identity")
			}
			if from := r1.From().Address; from.User != upUser || from.Host != ipTrunk {
				t.Errorf("From %s; want the address of record sip:%s@%s", from.String(), upUser, ipTrunk)
			}
			if r1.Recipient.User != "02079460999" || r1.Recipient.Host != ipTrunk || r1.Recipient.Port != int(reg.Addr.Port()) {
				t.Errorf("Request-URI %s; want the number dialled at the provider's domain", r1.Recipient.String())
			}
			if rt := r1.GetHeader("Route"); rt == nil || !strings.Contains(rt.Value(), proxy.Addr.String()) {
				t.Errorf("Route %v; want the Service-Route", rt)
			}
			chal := siptest.Challenge(r1, "provider.example", true).GetHeader("Proxy-Authenticate")
			if err := in1.D.Respond(407, "Proxy Authentication Required", nil, chal); err != nil {
				t.Fatal(err)
			}
			in2, err := proxy.Incoming(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r2 := in2.Req
			if ok, _ := siptest.Authorized(r2, upUser, upPass); !ok {
				t.Errorf("second INVITE does not prove the subscriber's password: %v", r2.GetHeader("Proxy-Authorization"))
			}
			if r2.CSeq().SeqNo != r1.CSeq().SeqNo+1 || r2.CallID().Value() != r1.CallID().Value() {
				t.Errorf("second INVITE CSeq %d Call-ID %s; want %d and %s", r2.CSeq().SeqNo, r2.CallID().Value(), r1.CSeq().SeqNo+1, r1.CallID().Value())
			}
			switch {
			case tc.twice:
				chal := siptest.Challenge(r2, "provider.example", true).GetHeader("Proxy-Authenticate")
				if err := in2.D.Respond(407, "Proxy Authentication Required", nil, chal); err != nil {
					t.Fatal(err)
				}
			case tc.stale:
				chal := siptest.StaleChallenge(r2, "provider.example", true).GetHeader("Proxy-Authenticate")
				if err := in2.D.Respond(407, "Proxy Authentication Required", nil, chal); err != nil {
					t.Fatal(err)
				}
				if in2, err = proxy.Incoming(ctx); err != nil {
					t.Fatalf("the stale nonce was not answered: %v", err)
				}
				if ok, _ := siptest.Authorized(in2.Req, upUser, upPass); !ok || in2.Req.CSeq().SeqNo != r1.CSeq().SeqNo+2 {
					t.Errorf("third INVITE: CSeq %d, proves the password %v; want %d, true", in2.Req.CSeq().SeqNo, ok, r1.CSeq().SeqNo+2)
				}
				fallthrough
			default:
				if err := in2.Answer(); err != nil {
					t.Fatal(err)
				}
			}
			res, err := out.WaitFinal(ctx)
			if err != nil || res.StatusCode != tc.wantFinal {
				t.Fatalf("line got %v, %v; want %d", res, err, tc.wantFinal)
			}
			if tc.twice {
				if res.Reason != "Provider Refused Our Credentials" {
					t.Errorf("reason %q", res.Reason)
				}
				if err := proxy.NoIncoming(500 * time.Millisecond); err != nil {
					t.Fatalf("a third INVITE: %v", err)
				}
				if err := e.waitRecord(ctx, "trunk_auth_failed"); err != nil {
					t.Fatal(err)
				}
				return
			}
			e.hangUp(ctx, out, in2)
		})
	}
}

// Over UDP an OPTIONS to the registrar every keepalive interval, from our
// listener; one left unanswered registers again at once.
func TestUpstreamKeepAliveOptionsOverUDP(t *testing.T) {
	reg := siptest.NewRegistrar(t, ipTrunk)
	reg.SetAnswer(digestGrant(time.Hour))
	e := upEnv(t, reg.URI(), func(r *Register) { r.KeepAlive = 200 * time.Millisecond },
		withServerOpts(WithMetrics(prometheus.NewRegistry())))
	ctx := ctxT(t, 15*time.Second)
	e.waitUpstream(ctx, "registered", upRegistered)
	opts, err := reg.Wait(ctx, sip.OPTIONS, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range opts {
		if o.Req.Source() != e.s.Addr("udp").String() || o.Req.From().Address.User != upUser {
			t.Errorf("OPTIONS %d from %s as %s; want our listener, the subscriber", i, o.Req.Source(), o.Req.From().Address.String())
		}
		if i > 0 && o.At.Sub(opts[i-1].At) < 150*time.Millisecond {
			t.Errorf("OPTIONS %d only %s after the one before", i, o.At.Sub(opts[i-1].At))
		}
	}
	if n := len(reg.Received(sip.REGISTER)); n != 2 {
		t.Fatalf("%d REGISTERs while keep-alives were answered; want the first 2 only", n)
	}
	reg.SetOptions(-1)
	if _, err := reg.Wait(ctx, sip.REGISTER, 4); err != nil {
		t.Fatalf("no new registration after an unanswered keep-alive: %v", err)
	}
	e.waitUpstream(ctx, "registered again", func(st UpstreamState) bool { return upRegistered(st) && st.Failures == 0 })
	if v := testutil.ToFloat64(e.s.metrics.up.keepAliveFailures.WithLabelValues("provider")); v < 1 {
		t.Errorf("cleanline_upstream_keepalive_failures_total = %v", v)
	}
}

// Over TCP a CRLF ping (RFC 5626 §4.4.1) on the registration's
// connection, which the registrar answers; when the connection goes (a
// provider's restart), cleanline registers again on a new one.
func TestUpstreamKeepAliveCRLFOverTCP(t *testing.T) {
	reg := siptest.NewRegistrarTCP(t, ipTrunk)
	reg.SetAnswer(digestGrant(time.Hour))
	e := upEnv(t, reg.URI(), func(r *Register) { r.KeepAlive = 200 * time.Millisecond }, overTCP)
	ctx := ctxT(t, 15*time.Second)
	st := e.waitUpstream(ctx, "registered", upRegistered)
	if !strings.HasSuffix(st.Contact, ";transport=tcp") || !strings.Contains(st.Contact, e.s.Addr("tcp").String()) {
		t.Errorf("contact %s; want our TCP listener %s", st.Contact, e.s.Addr("tcp"))
	}
	if err := reg.WaitPings(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if n := len(reg.Received(sip.REGISTER)); n != 2 || len(reg.Received(sip.OPTIONS)) != 0 {
		t.Fatalf("%d REGISTERs, %d OPTIONS while pings were answered; want 2 and none", n, len(reg.Received(sip.OPTIONS)))
	}
	reg.DropConnections()
	if _, err := reg.Wait(ctx, sip.REGISTER, 4); err != nil {
		t.Fatalf("no new registration after the connection dropped: %v", err)
	}
	e.waitUpstream(ctx, "registered again", func(st UpstreamState) bool { return upRegistered(st) && st.Failures == 0 })
	pings := reg.Pings()
	if err := reg.WaitPings(ctx, pings+2); err != nil {
		t.Fatalf("no pings on the new connection: %v", err)
	}
}

// A reload that changes the registration un-REGISTERs the old binding,
// then registers the new one on a new Call-ID; one that leaves it as it
// is sends nothing; removing it un-REGISTERs.
func TestUpstreamReloadReconciles(t *testing.T) {
	reg := siptest.NewRegistrar(t, ipTrunk)
	reg.SetAnswer(digestGrant(time.Hour))
	e := upEnv(t, reg.URI(), nil)
	ctx := ctxT(t, 15*time.Second)
	e.waitUpstream(ctx, "registered", upRegistered)
	setRegister := func(f func(*Trunk)) error {
		return e.reload(func(c *Config) {
			c.Trunks = slices.Clone(c.Trunks)
			f(&c.Trunks[0])
		})
	}
	if err := setRegister(func(*Trunk) {}); err != nil {
		t.Fatal(err)
	}
	if err := setRegister(func(t *Trunk) { r := *t.Register; r.Expires = 30 * time.Minute; t.Register = &r }); err != nil {
		t.Fatal(err)
	}
	got, err := reg.Wait(ctx, sip.REGISTER, 6)
	if err != nil {
		t.Fatal(err)
	}
	if exp := got[3].Req.GetHeader("Expires").Value(); exp != "0" || got[3].Req.CallID().Value() != got[0].Req.CallID().Value() {
		t.Errorf("after the change: Expires %s on Call-ID %s; want the old binding removed first", exp, got[3].Req.CallID().Value())
	}
	if exp := got[5].Req.GetHeader("Expires").Value(); exp != "1800" || got[5].Req.CallID().Value() == got[0].Req.CallID().Value() {
		t.Errorf("then Expires %s on Call-ID %s; want 1800 on a new one", exp, got[5].Req.CallID().Value())
	}
	st := e.waitUpstream(ctx, "registered anew", func(st UpstreamState) bool { return upRegistered(st) && time.Until(st.Expires) > 20*time.Minute })
	if st.Trunk != "provider" {
		t.Errorf("state %+v", st)
	}
	if err := setRegister(func(t *Trunk) { t.Register, t.Sources = nil, []string{ipTrunk} }); err != nil {
		t.Fatal(err)
	}
	got, err = reg.Wait(ctx, sip.REGISTER, 8)
	if err != nil {
		t.Fatal(err)
	}
	if exp := got[7].Req.GetHeader("Expires").Value(); exp != "0" {
		t.Errorf("after the registration was removed: Expires %s; want 0", exp)
	}
	for len(e.s.Upstream()) != 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("registrations left: %+v", e.s.Upstream())
		case <-time.After(10 * time.Millisecond): // poll pace
		}
	}
}
