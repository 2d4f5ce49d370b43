package sip

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/siptest"
)

// Addresses of the DNS tests: the DNS server, the provider's second SIP
// server, and its web site (the domain's own address).
const (
	ipDNS     = "127.0.0.6"
	ipSecond  = "127.0.0.7"
	ipWebSite = "127.0.0.8"
)

// providerDNS serves provider.test as a provider publishes it: SRV
// records for transport naming its two SIP servers, first and second by
// priority, and an address for the domain itself that is its web site.
func providerDNS(t *testing.T, transport string, first, second netip.AddrPort) *siptest.DNS {
	t.Helper()
	service, proto := srvName(transport)
	name := fmt.Sprintf("_%s._%s.provider.test", service, proto)
	dns, err := siptest.StartDNS(t, ipDNS, siptest.DNSRecords{
		SRV: []siptest.SRV{
			{Name: name, Target: "sip2.provider.test", Port: second.Port(), Priority: 20, Weight: 10},
			{Name: name, Target: "sip1.provider.test", Port: first.Port(), Priority: 10, Weight: 10},
		},
		Hosts: map[string]string{"sip1.provider.test": first.Addr().String(), "sip2.provider.test": second.Addr().String(),
			"provider.test": ipWebSite},
	})
	if err != nil {
		t.Fatal(err) // ErrNoDnsmasq says how to install it
	}
	return dns
}

// A provider named by its domain, as an ATA is given it, is found by its
// SRV records (RFC 3263 §4.2): cleanline registers at the first server by
// priority, not at the domain's own address (the web site), with the
// domain in the Request-URI and the address of record; both servers'
// addresses are the provider's sources, the web site's is not. A name
// with a port is used as given.
func TestUpstreamFindsTheProviderBySRV(t *testing.T) {
	first, second := siptest.NewRegistrar(t, ipTrunk), siptest.NewRegistrar(t, ipSecond)
	dns := providerDNS(t, "udp", first.Addr, second.Addr)
	e := upEnv(t, "sip:provider.test", nil, withServerOpts(WithResolver(dns.Resolver())))
	ctx := ctxT(t, 10*time.Second)
	e.waitUpstream(ctx, "registered", upRegistered)
	got := first.Received(sip.REGISTER)
	if len(got) == 0 || len(second.Received(sip.REGISTER)) != 0 {
		t.Fatalf("REGISTERs at the first server %d, at the second %d; want all at the first", len(got), len(second.Received(sip.REGISTER)))
	}
	if r := got[0].Req; r.Recipient.Host != "provider.test" || r.To().Address.String() != "sip:"+upUser+"@provider.test" {
		t.Errorf("REGISTER %s To %s; want the domain's", r.Recipient.String(), r.To().Address.String())
	}
	for ip, want := range map[string]bool{ipTrunk: true, ipSecond: true, ipWebSite: false} {
		if got := e.s.up.from("provider", netip.MustParseAddr(ip)); got != want {
			t.Errorf("%s a source of the provider's requests: %v; want %v", ip, got, want)
		}
	}

	// sip:provider.test:PORT names the server itself: no SRV.
	third := siptest.NewRegistrar(t, ipWebSite)
	e2 := upEnv(t, fmt.Sprintf("sip:provider.test:%d", third.Addr.Port()), nil, withServerOpts(WithResolver(dns.Resolver())))
	e2.waitUpstream(ctx, "registered with a port given", upRegistered)
	if len(third.Received(sip.REGISTER)) == 0 {
		t.Fatal("the domain's own address with the port given got no REGISTER")
	}
}

// When the server in use goes away, cleanline registers at the next one
// at once (RFC 3263 §4.3), and stays there; the line's calls through the
// registration go to the server it is registered at.
func TestUpstreamFailsOverToTheNextServer(t *testing.T) {
	first, second := siptest.NewRegistrarTCP(t, ipTrunk), siptest.NewRegistrarTCP(t, ipSecond)
	dns := providerDNS(t, "tcp", first.TCPAddr, second.TCPAddr)
	e := upEnv(t, "sip:provider.test;transport=tcp", func(r *Register) {
		r.KeepAlive, r.RetryMin, r.RetryMax = 100*time.Millisecond, 100*time.Millisecond, time.Second
	}, overTCP, withServerOpts(WithResolver(dns.Resolver())))
	ctx := ctxT(t, 20*time.Second)
	st := e.waitUpstream(ctx, "registered", upRegistered)
	if len(first.Received(sip.REGISTER)) == 0 {
		t.Fatal("not registered at the first server")
	}
	if want := fmt.Sprintf("sip1.provider.test:%d", first.TCPAddr.Port()); st.Server != want {
		t.Errorf("server in use %q; want %q", st.Server, want)
	}
	gone := time.Now()
	first.Close()
	bound, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st = e.waitUpstream(bound, "registered at the next server", func(st UpstreamState) bool { return upRegistered(st) && st.Since.After(gone) })
	if want := fmt.Sprintf("sip2.provider.test:%d", second.TCPAddr.Port()); st.Server != want {
		t.Errorf("server in use after the failover %q; want %q", st.Server, want)
	}
	if len(second.Received(sip.REGISTER)) == 0 {
		t.Fatal("registered again, but not at the second server")
	}
	if e.logs.FilterMessageSnippet("trying the next").Len() == 0 {
		t.Error("no log line says the first server failed")
	}
	call, err := e.line.Dial(ctx, fmt.Sprintf("sip:02079460999@%s", e.s.Addr("udp")), siptestOpts(lineNumber))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := call.WaitFinal(ctx); err != nil || res.StatusCode != sip.StatusBusyHere {
		t.Fatalf("the line's call got %v, %v; want the second server's 486", res, err)
	}
	if n := len(second.Received(sip.INVITE)); n != 1 {
		t.Errorf("the second server got %d INVITEs; want the line's call", n)
	}
}
