package sip

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip/siptest"
)

// Reload (issue 13): a new configuration for new requests; live calls keep
// theirs until they end.

const annexNumber = "+442079460125" // a line a reload adds

// reload puts in force the running configuration as f changes it, with a
// screener built for its lines, as serve does.
func (e *env) reload(f func(*Config)) error {
	cfg := e.s.routing().cfg
	cfg.Lines, cfg.Listen = slices.Clone(cfg.Lines), slices.Clone(cfg.Listen) // f changes them; Reload copies what it writes itself
	f(&cfg)
	sc, err := screening.New(e.store, screening.Config{Region: "GB", Lines: cfg.ScreeningLines()})
	if err != nil {
		return err
	}
	return e.s.Reload(cfg, sc)
}

// audioCrosses sends RTP each way across a connected call and waits for
// it on the far side: the relay still bridges the two legs.
func audioCrosses(t *testing.T, ctx context.Context, out *siptest.Outgoing, in *siptest.Incoming, fill byte) {
	t.Helper()
	for _, d := range []struct {
		what     string
		from, to *siptest.RTP
		fill     byte
	}{{"caller → line", out.RTP, in.RTP, fill}, {"line → caller", in.RTP, out.RTP, fill + 1}} {
		before := d.to.Count()
		if err := d.from.Send(10, 8, d.fill); err != nil {
			t.Fatal(err)
		}
		if err := d.to.WaitCount(ctx, before+10); err != nil {
			t.Fatalf("%s: %d RTP packets arrived of 10 sent: %v", d.what, d.to.Count()-before, err)
		}
		got := d.to.Packets()[before:]
		if !slices.ContainsFunc(got, func(p siptest.Packet) bool { return len(p.Pkt.Payload) > 0 && p.Pkt.Payload[0] == d.fill }) {
			t.Fatalf("%s: the audio that arrived is not what was sent (fill %#x)", d.what, d.fill)
		}
	}
}

// hangUp ends a connected call from the caller's side: the line gets BYE,
// and nothing of the call is left.
func (e *env) hangUp(ctx context.Context, out *siptest.Outgoing, in *siptest.Incoming) {
	e.t.Helper()
	if err := out.Bye(ctx); err != nil {
		e.t.Fatalf("caller's BYE: %v", err)
	}
	select {
	case <-in.Ended():
	case <-ctx.Done():
		e.t.Fatal("the line never got BYE")
	}
	e.waitNoCalls()
}

// A call in progress (connected, audio both ways) survives a reload that
// adds a line: its audio still crosses afterwards, in both directions,
// and it ends cleanly with BYE; meanwhile the new line takes calls (the
// trunk's INVITE to its number rings it).
func TestReloadAddsLineWhileCallLives(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 20*time.Second)
	out, in := e.connect()
	audioCrosses(t, ctx, out, in, 0x10)

	annex := siptest.NewPhone(t, "127.0.0.5")
	if err := e.reload(func(c *Config) {
		c.Lines = append(c.Lines, Line{Name: "annex", Numbers: []string{annexNumber}, Contact: annex.URI("annex")})
	}); err != nil {
		t.Fatal(err)
	}
	audioCrosses(t, ctx, out, in, 0x20)

	out2, err := e.trunk.Dial(ctx, fmt.Sprintf("sip:%s@%s", annexNumber, e.s.Addr("udp")), siptestOpts(callerOK))
	if err != nil {
		t.Fatal(err)
	}
	in2, err := annex.Incoming(ctx)
	if err != nil {
		t.Fatalf("the new line did not ring: %v", err)
	}
	if err := in2.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out2, 200)
	audioCrosses(t, ctx, out2, in2, 0x30)
	if n := len(e.s.LiveCalls()); n != 2 {
		t.Fatalf("%d live calls, want the old one and the new line's", n)
	}
	audioCrosses(t, ctx, out, in, 0x40)

	if err := out2.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	<-in2.Ended()
	e.hangUp(ctx, out, in)
	if err := e.line.NoIncoming(100 * time.Millisecond); err != nil {
		t.Fatalf("the new line's call rang the old line too: %v", err)
	}
}

// A reload that removes a line: its live call goes on (audio both ways)
// until the line hangs up, and that hang-up, from an address no longer
// configured, is still heard (the trunk gets BYE). New calls to the
// line's number get 404, and once the call has ended a call placed from
// its address is a stranger's (403).
func TestReloadRemovesLineLiveCallContinues(t *testing.T) {
	flat := siptest.NewPhone(t, "127.0.0.5")
	e := newEnv(t, withCfg(func(c *Config) {
		c.Lines = append(c.Lines, Line{Name: "flat", Numbers: []string{annexNumber}, Contact: flat.URI("flat")})
	}))
	ctx := ctxT(t, 20*time.Second)
	flatURI := fmt.Sprintf("sip:%s@%s", annexNumber, e.s.Addr("udp"))
	out, err := e.trunk.Dial(ctx, flatURI, siptestOpts(callerOK))
	if err != nil {
		t.Fatal(err)
	}
	in, err := flat.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 200)
	audioCrosses(t, ctx, out, in, 0x10)

	if err := e.reload(func(c *Config) { c.Lines = c.Lines[:1] }); err != nil {
		t.Fatal(err)
	}
	audioCrosses(t, ctx, out, in, 0x20)
	again, err := e.trunk.Dial(ctx, flatURI, siptestOpts(callerOK))
	if err != nil {
		t.Fatal(err)
	}
	wantFinal(t, again, 404)

	if err := in.Bye(ctx); err != nil {
		t.Fatalf("the removed line's BYE: %v", err)
	}
	if _, err := e.trunk.WaitRequest(ctx, sip.BYE); err != nil {
		t.Fatalf("the trunk got no BYE after the removed line hung up: %v", err)
	}
	<-out.Ended()
	e.waitNoCalls()
	own, err := flat.Dial(ctx, "sip:02079460018@"+e.s.Addr("udp").String(), siptestOpts("flat"))
	if err != nil {
		t.Fatal(err)
	}
	wantFinal(t, own, 403) // the removed line's own call: it is no line now
	talkThenHangUp(t, e)   // the line that stayed still takes calls
}

// A reload that replaces the trunk: the old trunk's live call goes on,
// and its hang-up is heard (the line gets BYE); a new INVITE from the old
// trunk's address is a stranger's (403), the new trunk's rings the line.
func TestReloadReplacesTrunkLiveCallContinues(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 20*time.Second)
	out, in := e.connect()
	newTrunk := siptest.NewPhone(t, "127.0.0.6")
	if err := e.reload(func(c *Config) {
		c.Trunks = []Trunk{{Name: "provider-b", Sources: []string{"127.0.0.6"}, Outbound: newTrunk.URI("")}}
	}); err != nil {
		t.Fatal(err)
	}
	audioCrosses(t, ctx, out, in, 0x10)
	old := e.dial(callerOK)
	wantFinal(t, old, 403)
	e.hangUp(ctx, out, in)

	out2, err := newTrunk.Dial(ctx, fmt.Sprintf("sip:%s@%s", lineNumber, e.s.Addr("udp")), siptestOpts(callerOK))
	if err != nil {
		t.Fatal(err)
	}
	in2, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatalf("the new trunk's call did not ring the line: %v", err)
	}
	if err := in2.Answer(); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out2, 200)
	audioCrosses(t, ctx, out2, in2, 0x20)
	if err := out2.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	<-in2.Ended()
	e.waitNoCalls()
}

// A line's policy changed by a reload applies to the next call: a caller
// rung straight through before is warned after (the line made strict),
// while the call already connected stays connected.
func TestReloadPolicyAppliesToNextCall(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t, 20*time.Second)
	out, in := e.connect()
	if from := in.D.InviteRequest.From(); strings.HasPrefix(from.DisplayName, "Warning") {
		t.Fatalf("before the reload the call was warned: %q", from.DisplayName)
	}
	strict := true
	if err := e.reload(func(c *Config) { c.Lines[0].Policy.Strict = &strict }); err != nil {
		t.Fatal(err)
	}
	out2 := e.dial(callerOK)
	in2, err := e.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if from := in2.D.InviteRequest.From(); !strings.HasPrefix(from.DisplayName, "Warning") {
		t.Fatalf("after the reload the line's INVITE shows %q, want a warning", from.DisplayName)
	}
	if err := in2.Reject(486, "Busy Here"); err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out2, 486)
	audioCrosses(t, ctx, out, in, 0x10)
	e.hangUp(ctx, out, in)
}

// A configuration that is wrong, or that changes what only a restart can,
// is refused whole with an error naming the key, and the running one
// stays in force: calls still ring the line, and the line the refused
// configuration would have added does not ring.
func TestReloadRefusedKeepsRunningConfig(t *testing.T) {
	e := newEnv(t)
	annex := siptest.NewPhone(t, "127.0.0.5")
	addAnnex := func(c *Config) {
		c.Lines = append(c.Lines, Line{Name: "annex", Numbers: []string{annexNumber}, Contact: annex.URI("annex")})
	}
	for _, tc := range []struct {
		name, key string
		change    func(*Config)
	}{
		{"bad contact", "sip.lines[1].contact", func(c *Config) { addAnnex(c); c.Lines[1].Contact = "annex" }},
		{"bad timer", "sip.timers.no_answer", func(c *Config) { addAnnex(c); c.Timers.NoAnswer = -time.Second }},
		{"listener", "sip.listen[0].addr", func(c *Config) { addAnnex(c); c.Listen[0].Addr = "127.0.0.1:5099" }},
		{"listener added", "sip.listen", func(c *Config) {
			addAnnex(c)
			c.Listen = append(c.Listen, Listener{Network: "tcp", Addr: "127.0.0.1:0"})
		}},
		{"media range", "sip.media.port_min", func(c *Config) { addAnnex(c); c.Media.PortMin += 2 }},
		{"limits", "sip.limits.tcp_max", func(c *Config) { addAnnex(c); c.Limits.TCPMax = 8192 }},
		{"advertise", "sip.advertise", func(c *Config) { addAnnex(c); c.Advertise = "127.0.0.9" }},
		{"external", "sip.external.advertise", func(c *Config) { addAnnex(c); c.External.Advertise = "127.0.0.9" }},
		{"bad external", "sip.external.local_nets[0]", func(c *Config) {
			c.External = ExternalConfig{Advertise: "127.0.0.9", LocalNets: []string{"lan"}}
		}},
	} {
		err := e.reload(tc.change)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.key+":") {
			t.Errorf("%s: %v, want a config error naming %s", tc.name, err, tc.key)
		}
	}
	// A screener that does not know a line of the configuration.
	cfg := e.s.routing().cfg
	cfg.Lines = append(slices.Clone(cfg.Lines), Line{Name: "annex", Numbers: []string{annexNumber}, Contact: annex.URI("annex")})
	if err := e.s.Reload(cfg, e.sc); err == nil || !strings.Contains(err.Error(), "sip.lines[1]") {
		t.Errorf("a screener without the new line: %v, want an error naming sip.lines[1]", err)
	}
	if n := len(e.s.routing().cfg.Lines); n != 1 {
		t.Fatalf("%d lines in force after refused reloads, want the running 1", n)
	}
	talkThenHangUp(t, e)
	out, err := e.trunk.Dial(ctxT(t, 5*time.Second), fmt.Sprintf("sip:%s@%s", annexNumber, e.s.Addr("udp")), siptestOpts(callerOK))
	if err != nil {
		t.Fatal(err)
	}
	wantFinal(t, out, 404)
	if err := annex.NoIncoming(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
