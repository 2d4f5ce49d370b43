package sip

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/media"
	"github.com/cleanline/cleanline/sip/siptest"
)

// ipExternal is where peers outside the LAN reach cleanline in the
// external-face tests: the router's public address in production, another
// loopback address here, which reaches cleanline's 0.0.0.0 sockets only
// inside the test's own network namespace.
const ipExternal = "127.0.0.9"

// ipRoaming is a device of the line registering from outside the LAN (a
// softphone on a mobile).
const ipRoaming = "127.0.0.5"

// inNetns runs the calling test again in a network namespace of its own
// (unshare -n), whose only interface is a loopback: there cleanline can
// bind 0.0.0.0, as a box reached at two addresses does, and be reached at
// any 127/8 address, while nothing outside the namespace can reach it.
// Its routes make the box's packets to the peers outside the LAN (ipTrunk,
// ipStranger, ipRoaming) leave from ipExternal, as a box's second interface (or its
// router's NAT) does: a peer sees answers come from where it sent.
// It reports whether the caller is that run; in the parent it waits for
// the child and fails with its output if the child failed.
func inNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv("CLEANLINE_TEST_NETNS") == t.Name() {
		return true
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace (unshare -n); CI runs as root")
	}
	ctx := ctxT(t, 2*time.Minute)
	setup := "ip link set lo up"
	for _, peer := range []string{ipTrunk, ipStranger, ipRoaming} {
		setup += " && ip route add local " + peer + "/32 dev lo src " + ipExternal + " table local"
	}
	cmd := exec.CommandContext(ctx, "unshare", "--net", "--", "sh", "-c", setup+` && exec "$0" "$@"`,
		os.Args[0], "-test.run", "^"+t.Name()+"$", "-test.count", "1", "-test.v", "-test.timeout", "110s")
	cmd.Env = append(os.Environ(), "CLEANLINE_TEST_NETNS="+t.Name())
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("in its own network namespace: %v\n%s", err, out)
	}
	return false
}

// withExternal makes cleanline a box reached at two addresses: it binds
// 0.0.0.0; the line's phone (ipLine) is on its LAN and reaches it at
// ipCleanline; every other peer reaches it at ipExternal.
func withExternal(c *Config) {
	c.Listen = []Listener{{Network: "udp", Addr: "0.0.0.0:0"}}
	c.Advertise = ipCleanline
	c.Media.Bind = "0.0.0.0"
	c.External = ExternalConfig{Advertise: ipExternal, LocalNets: []string{ipLine + "/32"}}
}

// sentBy is the host a request's top Via names, and its Contact's host.
func sentBy(r *sip.Request) (via, contact string) {
	if v := r.Via(); v != nil {
		via = v.Host
	}
	if ct := r.Contact(); ct != nil {
		contact = ct.Address.Host
	}
	return via, contact
}

// sdpAddr is the connection address of body's audio.
func sdpAddr(t *testing.T, body []byte) string {
	t.Helper()
	si, err := media.ParseSDP(body)
	if err != nil {
		t.Fatalf("SDP: %v\n%s", err, body)
	}
	return si.RTP.Addr().String()
}

// A box between a LAN and the provider tells each peer the address that
// peer reaches it at: the phone on the LAN its LAN address, the provider
// outside the router's public one, in Via, Contact and SDP, for both
// directions and for the registration. Both calls carry audio both ways
// and end with the far side's BYE, sent where we said: a provider told
// the LAN address could not hang up, and a phone told the public one
// would need a hairpin its router may not do.
func TestExternalFace(t *testing.T) {
	if !inNetns(t) {
		return
	}
	e := newEnv(t, withCfg(withExternal))
	port := e.s.Addr("udp").Port()
	ctx := ctxT(t, 20*time.Second)

	// The provider's call reaches the public address.
	out, err := e.trunk.Dial(ctx, "sip:"+lineNumber+"@"+netip.AddrPortFrom(netip.MustParseAddr(ipExternal), port).String(), siptestOpts(callerOK))
	if err != nil {
		t.Fatal(err)
	}
	in, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if via, ct := sentBy(in.Req); via != ipCleanline || ct != ipCleanline {
		t.Errorf("the phone's INVITE: Via %s, Contact %s; want the LAN address %s", via, ct, ipCleanline)
	}
	if a := sdpAddr(t, in.Req.Body()); a != ipCleanline {
		t.Errorf("the phone's offer: c=%s; want %s", a, ipCleanline)
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	res, err := out.WaitFinal(ctx)
	if err != nil || res.StatusCode != sip.StatusOK {
		t.Fatalf("provider got %v, %v; want 200", res, err)
	}
	if ct := res.Contact(); ct == nil || ct.Address.Host != ipExternal || ct.Address.Port != int(port) {
		t.Errorf("our 200's Contact %v; want %s:%d", ct, ipExternal, port)
	}
	if a := sdpAddr(t, res.Body()); a != ipExternal {
		t.Errorf("our answer to the provider: c=%s; want %s", a, ipExternal)
	}
	audioBothWays(t, ctx, out.RTP, in.RTP)
	// In the dialog, the provider's re-INVITE (hold and back) is answered
	// on the face the dialog began on.
	if res, err := out.ReInvite(ctx, media.SendRecv); err != nil || res.StatusCode != sip.StatusOK {
		t.Fatalf("re-INVITE: %v, %v", res, err)
	} else if ct := res.Contact(); ct == nil || ct.Address.Host != ipExternal || sdpAddr(t, res.Body()) != ipExternal {
		t.Errorf("re-INVITE's 200: Contact %v, c=%s; want %s", ct, sdpAddr(t, res.Body()), ipExternal)
	}
	if err := out.Bye(ctx); err != nil {
		t.Fatalf("the provider's BYE, to our public Contact: %v", err)
	}
	select {
	case <-in.Ended():
	case <-ctx.Done():
		t.Fatal("the phone never got the BYE (D1)")
	}
	e.waitNoCalls()

	// The phone's own call goes out to the provider.
	call, err := e.line.Dial(ctx, "sip:02079460018@"+netip.AddrPortFrom(netip.MustParseAddr(ipCleanline), port).String(), siptestOpts("landline"))
	if err != nil {
		t.Fatal(err)
	}
	tin, err := e.trunk.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if via, ct := sentBy(tin.Req); via != ipExternal || ct != ipExternal {
		t.Errorf("the provider's INVITE: Via %s, Contact %s; want the public address %s", via, ct, ipExternal)
	}
	if a := sdpAddr(t, tin.Req.Body()); a != ipExternal {
		t.Errorf("the provider's offer: c=%s; want %s", a, ipExternal)
	}
	if pai := tin.Req.GetHeader("P-Asserted-Identity"); pai == nil || !strings.Contains(pai.Value(), "@"+ipExternal+">") {
		t.Errorf("P-Asserted-Identity %v; want our public host", pai)
	}
	if err := tin.Answer(); err != nil {
		t.Fatal(err)
	}
	res, err = call.WaitFinal(ctx)
	if err != nil || res.StatusCode != sip.StatusOK {
		t.Fatalf("phone got %v, %v; want 200", res, err)
	}
	if ct := res.Contact(); ct == nil || ct.Address.Host != ipCleanline {
		t.Errorf("the phone's 200: Contact %v; want %s", ct, ipCleanline)
	}
	if a := sdpAddr(t, res.Body()); a != ipCleanline {
		t.Errorf("the phone's answer: c=%s; want %s", a, ipCleanline)
	}
	audioBothWays(t, ctx, call.RTP, tin.RTP)
	if err := tin.Bye(ctx); err != nil {
		t.Fatalf("the provider's BYE, to our public Contact: %v", err)
	}
	select {
	case <-call.Ended():
	case <-ctx.Done():
		t.Fatal("the phone never got the BYE")
	}
	e.waitNoCalls()
}

// A line whose devices are on both sides rings each at the address it
// can reach: the phone on the LAN is offered the LAN address, the
// softphone outside the public one, each in its own branch; the one that
// answers keeps its face for the rest of the call.
func TestExternalFaceForks(t *testing.T) {
	if !inNetns(t) {
		return
	}
	e := newEnv(t, withDevices, withCfg(withExternal))
	port := e.s.Addr("udp").Port()
	ctx := ctxT(t, 20*time.Second)
	lan, roaming := e.line, siptest.NewPhone(t, ipRoaming)
	for _, d := range []struct {
		p          *siptest.Phone
		user, pass string
		at         string
	}{{lan, devA, passA, ipCleanline}, {roaming, devB, passB, ipExternal}} {
		o := e.regOpts(d.user, d.pass, 20)
		o.Registrar = netip.AddrPortFrom(netip.MustParseAddr(d.at), port)
		if res, err := d.p.Register(ctx, o); err != nil || res.StatusCode != sip.StatusOK {
			t.Fatalf("%s's REGISTER at %s: %v, %v", d.user, d.at, res, err)
		}
	}
	out, err := e.trunk.Dial(ctx, "sip:"+lineNumber+"@"+netip.AddrPortFrom(netip.MustParseAddr(ipExternal), port).String(), siptestOpts(callerOK))
	if err != nil {
		t.Fatal(err)
	}
	inLAN, inRoaming := ringing(t, ctx, lan, roaming)
	for _, c := range []struct {
		in   *siptest.Incoming
		want string
	}{{inLAN, ipCleanline}, {inRoaming, ipExternal}} {
		via, ct := sentBy(c.in.Req)
		if a := sdpAddr(t, c.in.Req.Body()); via != c.want || ct != c.want || a != c.want {
			t.Errorf("INVITE to %s: Via %s, Contact %s, c=%s; want %s", c.in.Req.Recipient.Host, via, ct, a, c.want)
		}
	}
	if err := inRoaming.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, sip.StatusOK)
	cancelled(t, ctx, inLAN, "the LAN phone (lost the race)")
	audioBothWays(t, ctx, out.RTP, inRoaming.RTP)
	if err := inRoaming.Bye(ctx); err != nil {
		t.Fatalf("the softphone's BYE, to our public Contact: %v", err)
	}
	select {
	case <-out.Ended():
	case <-ctx.Done():
		t.Fatal("the caller never got the BYE")
	}
	e.waitNoCalls()
}

// Registering at a provider outside the LAN, cleanline gives the public
// address as its Contact and in its Via.
func TestExternalFaceRegisters(t *testing.T) {
	if !inNetns(t) {
		return
	}
	reg := siptest.NewRegistrar(t, ipStranger)
	reg.SetAnswer(digestGrant(time.Hour))
	e := upEnv(t, reg.URI(), nil, withCfg(withExternal))
	got, err := reg.Wait(ctxT(t, 10*time.Second), sip.REGISTER, 2)
	if err != nil {
		t.Fatal(err)
	}
	for i, g := range got {
		if via, ct := sentBy(g.Req); via != ipExternal || ct != ipExternal || g.Req.Contact().Address.Port != int(e.s.Addr("udp").Port()) {
			t.Errorf("REGISTER %d: Via %s, Contact %s; want %s:%d", i, via, g.Req.Contact().Address.String(), ipExternal, e.s.Addr("udp").Port())
		}
	}
}

// audioBothWays sends RTP each way between a and b and waits for it.
func audioBothWays(t *testing.T, ctx context.Context, a, b *siptest.RTP) {
	t.Helper()
	if err := a.Send(10, 8, 0x11); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitCount(ctx, 10); err != nil {
		t.Fatalf("%d RTP packets arrived one way: %v", b.Count(), err)
	}
	if err := b.Send(10, 8, 0x22); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitCount(ctx, 10); err != nil {
		t.Fatalf("%d RTP packets arrived the other way: %v", a.Count(), err)
	}
}

// Which peer is told which face: the LAN's networks (by default the
// private, loopback and link-local ones) get the local face; every other
// address, and a host name, the external one. Without sip.external every
// peer gets the one face.
func TestFaceOf(t *testing.T) {
	cfg := Config{Advertise: "192.168.1.20", External: ExternalConfig{Advertise: "198.51.100.7"}}
	if err := cfg.External.validate(); err != nil {
		t.Fatal(err)
	}
	local, external := &face{name: "local"}, &face{name: "external"}
	s := &Server{cfg: cfg, local: local, external: external}
	for addr, want := range map[string]*face{
		"192.168.1.50:5060":     local,
		"10.1.2.3":              local,
		"172.31.0.1:5080":       local,
		"127.0.0.1:5060":        local,
		"[fd00::1]:5060":        local,
		"[::ffff:10.0.0.7]:506": local,
		"169.254.1.1":           local,
		"203.0.113.10:5060":     external,
		"172.32.0.1":            external,
		"[2001:db8::1]:5060":    external,
		"sip.provider.example":  external,
		"":                      external,
	} {
		if got := s.faceAt(addr); got != want {
			t.Errorf("%q: %s face; want %s", addr, got.name, want.name)
		}
	}
	one := &Server{cfg: Config{}, local: local}
	if got := one.faceAt("203.0.113.10:5060"); got != local {
		t.Errorf("without sip.external: %s face", got.name)
	}
}

func TestExternalConfigErrors(t *testing.T) {
	for _, c := range []struct {
		x    ExternalConfig
		want string
	}{
		{ExternalConfig{Media: "198.51.100.7"}, "sip.external.advertise"},
		{ExternalConfig{LocalNets: []string{"10.0.0.0/8"}}, "sip.external.advertise"},
		{ExternalConfig{Advertise: "router.example"}, "sip.external.media"},
		{ExternalConfig{Advertise: "198.51.100.7", Media: "router.example"}, "sip.external.media"},
		{ExternalConfig{Advertise: "198.51.100.7:5060"}, "sip.external.advertise"},
		{ExternalConfig{Advertise: "198.51.100.7", LocalNets: []string{"192.168.1.0"}}, "sip.external.local_nets[0]"},
	} {
		err := c.x.validate()
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), c.want+":") {
			t.Errorf("%+v: %v; want an error naming %s", c.x, err, c.want)
		}
	}
	for _, x := range []ExternalConfig{
		{},
		{Advertise: "198.51.100.7"},
		{Advertise: "router.example", Media: "198.51.100.7", LocalNets: []string{"192.168.1.0/24"}},
		{Advertise: "2001:db8::7"},
	} {
		if err := x.validate(); err != nil {
			t.Errorf("%+v: %v", x, err)
		}
	}
}
