package sip

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/siptest"
)

// overTLS gives cleanline a TLS listener (the Contact registered over TLS
// names it) and trusts caFile for the servers it dials.
func overTLS(t *testing.T, dir, caFile string) envOption {
	cert, key := siptest.Certificate(t, dir, "cleanline", ipCleanline)
	return withCfg(func(c *Config) {
		c.Listen = append(c.Listen, Listener{Network: "tls", Addr: ipCleanline + ":0", CertFile: cert, KeyFile: key})
		c.TLS.CAFile = caFile
	})
}

// Over TLS the provider proves who it is before it hears anything:
// cleanline registers at a registrar whose certificate chains to
// sip.tls.ca_file and names the host dialled, with a Contact over TLS, and
// keeps the connection with CRLF pings (RFC 5626 §4.4.1).
func TestUpstreamTLSRegisters(t *testing.T) {
	dir := t.TempDir()
	cert, key := siptest.Certificate(t, dir, "provider", ipTrunk)
	reg := siptest.NewRegistrarTLS(t, ipTrunk, cert, key)
	reg.SetAnswer(digestGrant(time.Hour))
	e := upEnv(t, reg.URI(), func(r *Register) { r.KeepAlive = 100 * time.Millisecond }, overTLS(t, dir, cert))
	ctx := ctxT(t, 10*time.Second)
	e.waitUpstream(ctx, "registered", upRegistered)
	got := reg.Received(sip.REGISTER)
	if len(got) != 2 || !hasAuth(got[1]) {
		t.Fatalf("%d REGISTERs; want the challenged one and its answer", len(got))
	}
	for i, g := range got {
		ct := g.Req.Contact().Address
		if tp, _ := ct.UriParams.Get("transport"); tp != "tls" || ct.Port != int(e.s.Addr("tls").Port()) {
			t.Errorf("REGISTER %d: Contact %s; want our TLS listener %s with transport=tls", i, ct.String(), e.s.Addr("tls"))
		}
		if v := g.Req.Via(); !strings.EqualFold(v.Transport, "TLS") {
			t.Errorf("REGISTER %d: Via %s; want TLS", i, v.Value())
		}
	}
	if err := reg.WaitPings(ctx, 2); err != nil {
		t.Fatalf("CRLF keep-alives on the TLS connection: %v (%d)", err, reg.Pings())
	}
	if n := reg.Connections(); n != 1 {
		t.Errorf("%d TLS connections; want the registration's one, kept", n)
	}
}

// An impostor at the provider's address with a certificate of its own,
// or the provider's certificate presented at another address than the one
// dialled, gets a connection and nothing on it: no REGISTER, so neither
// the subscriber's user name nor an answer to a challenge. The
// registration says why and tries again later, as with any failure.
func TestUpstreamTLSRefusesAnotherCertificate(t *testing.T) {
	dir := t.TempDir()
	provider, _ := siptest.Certificate(t, dir, "provider", ipTrunk)
	for _, tc := range []struct {
		name       string
		ip         string
		cert, key  string
		wantReason string
	}{
		{"impostor", ipTrunk, "", "", "certificate signed by unknown authority"},
		{"another host", ipStranger, provider, strings.TrimSuffix(provider, ".pem") + ".key", "not " + ipStranger},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, key := tc.cert, tc.key
			if cert == "" {
				cert, key = siptest.Certificate(t, t.TempDir(), "impostor", tc.ip)
			}
			reg := siptest.NewRegistrarTLS(t, tc.ip, cert, key)
			e := upEnv(t, reg.URI(), func(r *Register) { r.RetryMin, r.RetryMax = 50*time.Millisecond, time.Second }, overTLS(t, dir, provider))
			ctx := ctxT(t, 10*time.Second)
			st := e.waitUpstream(ctx, "failing", func(st UpstreamState) bool { return st.State == UpstreamFailing })
			if st.LastStatus != 0 || !strings.Contains(st.LastReason, tc.wantReason) {
				t.Errorf("state %+v; want failing, saying %q", st, tc.wantReason)
			}
			// Its next attempt fails the same way.
			e.waitUpstream(ctx, "failing twice", func(st UpstreamState) bool { return st.Failures >= 2 })
			if n := reg.Connections(); n < 2 {
				t.Errorf("%d connections reached the registrar; want each attempt's", n)
			}
			if got := reg.Received(sip.REGISTER); len(got) != 0 {
				t.Fatalf("the registrar got %d REGISTERs over an unverified connection", len(got))
			}
		})
	}
}

func TestTLSClientConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := dir + "/ca.txt"
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ file, want string }{
		{dir + "/missing.pem", "no such file"},
		{notPEM, "no PEM certificate in it"},
	} {
		_, err := TLSClient{CAFile: tc.file}.config()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "sip.tls.ca_file:") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error naming sip.tls.ca_file saying %q", tc.file, err, tc.want)
		}
	}
}

// A static trunk reached over TLS (outbound: ...;transport=tls, a care
// home's business trunk) gets the lines' calls only over a connection
// whose certificate checks out against sip.tls.ca_file: the provider's
// gets the INVITE; an impostor's at the same address gets nothing, and
// the line is told the call failed.
func TestTrunkOutboundOverTLS(t *testing.T) {
	dir := t.TempDir()
	provider, providerKey := siptest.Certificate(t, dir, "provider", ipTrunk)
	for _, tc := range []struct {
		name      string
		cert, key string
		reached   bool
	}{
		{"the provider", provider, providerKey, true},
		{"an impostor", "", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, key := tc.cert, tc.key
			if cert == "" {
				cert, key = siptest.Certificate(t, t.TempDir(), "impostor", ipTrunk)
			}
			far := siptest.NewRegistrarTLS(t, ipTrunk, cert, key)
			e := newEnv(t, overTLS(t, dir, provider), withCfg(func(c *Config) { c.Trunks[0].Outbound = far.URI() }))
			ctx := ctxT(t, 10*time.Second)
			call, err := e.line.Dial(ctx, "sip:02079460999@"+e.s.Addr("udp").String(), siptestOpts("landline"))
			if err != nil {
				t.Fatal(err)
			}
			res, err := call.WaitFinal(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got := far.Received(sip.INVITE)
			if tc.reached {
				if res.StatusCode != sip.StatusBusyHere || len(got) != 1 || !strings.EqualFold(got[0].Req.Via().Transport, "TLS") {
					t.Fatalf("the line got %d, the provider %d INVITEs; want its 486 over TLS", res.StatusCode, len(got))
				}
				return
			}
			// ErrUnavailable's 480, as for any far side that cannot be reached.
			if res.StatusCode != sip.StatusTemporarilyUnavailable || len(got) != 0 || far.Connections() == 0 {
				t.Fatalf("the line got %d, the impostor %d INVITEs on %d connections; want 480 and none", res.StatusCode, len(got), far.Connections())
			}
		})
	}
}
