package sip

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/cleanline/cleanline/sip/media"
	"github.com/cleanline/cleanline/sip/siptest"
)

// Debian's baresip as the household's phones, registering to cleanline
// with a password as an ATA registers to its provider (issue 14).

const bareA, barePassA, bareB, barePassB = "landline", "bare-secret-1", "kitchen", "bare-secret-2"

// withBaresipDevices gives the line two registering devices and no
// static contact. MD5 only: baresip 1.0 (libre) gives up on a REGISTER
// whose challenges include SHA-256 ("Register: Function not implemented")
// instead of answering the MD5 one, so no device may be offered SHA-256
// (the challenge is the same for every username: registrar.go).
func withBaresipDevices(s *envSetup) {
	s.noContact = true
	md5 := []string{"MD5"}
	s.cfg.Lines[0].Devices = []LineAuth{{Username: bareA, Password: barePassA, Algorithms: md5}, {Username: bareB, Password: barePassB, Algorithms: md5}}
	s.cfg.Registrar = RegistrarConfig{MinExpires: 30 * time.Second, MaxExpires: time.Hour, DefaultExpires: time.Hour}
}

// ipDevice2 is a second device's address: a source locked out for wrong
// passwords (baresip retries a wrong one at once, on every fresh
// challenge, until it is) is locked out for every username.
const ipDevice2 = "127.0.0.5"

// registeringBaresip starts baresip on ip as user with password,
// registering to e's cleanline, answering in mode (auto or manual).
func registeringBaresip(t *testing.T, e *env, ip, user, password, mode string) *siptest.Baresip {
	t.Helper()
	if _, err := exec.LookPath("baresip"); err != nil {
		if os.Getenv("CLEANLINE_SKIP_BARESIP") == "1" {
			t.Skip("CLEANLINE_SKIP_BARESIP=1")
		}
		t.Fatal(siptest.ErrNoBaresip)
	}
	b, err := siptest.StartBaresip(t, siptest.BaresipOptions{IP: ip, MediaIP: ipCleanline, ToneHz: bareToneHz, User: user,
		Registrar: e.s.Addr("udp").String(), Password: password, AnswerMode: mode})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Stop()
		if t.Failed() {
			t.Logf("baresip %s output:\n%s", user, b.Output())
		}
	})
	return b
}

// registered waits for baresip to say its registration was accepted (its
// REGISTER_OK event may come before the test's control connection).
func registered(t *testing.T, ctx context.Context, b *siptest.Baresip) {
	t.Helper()
	if _, err := b.WaitOutput(ctx, "} 200 OK ("); err != nil {
		t.Fatalf("baresip %s never registered: %v", b.User, err)
	}
}

// A wrong password gets 401 and no binding; the right one registers; a
// call from the trunk then rings baresip, audio flows both ways, and the
// trunk's hang-up reaches it. D1/D2 as for a static line: baresip hangs
// up, the trunk gets BYE, and nothing the trunk does afterwards reaches it.
func TestBaresipRegistersWithItsPassword(t *testing.T) {
	e := newEnv(t, withBaresipDevices)
	ctx := ctxT(t, 30*time.Second)

	wrong := registeringBaresip(t, e, ipLine, bareA, "not-the-password", "auto")
	for value(t, e.s.metrics.authFailures.WithLabelValues("REGISTER")) < 1 {
		select {
		case <-ctx.Done():
			t.Fatal("baresip with a wrong password never answered the challenge")
		case <-time.After(10 * time.Millisecond): // poll pace
		}
	}
	if _, err := wrong.WaitOutput(ctx, "401 Unauthorized"); err != nil {
		t.Fatal(err)
	}
	if n := len(e.s.binds.line("home")); n != 0 {
		t.Fatalf("%d bindings after a wrong password", n)
	}
	wrong.Stop()

	b := registeringBaresip(t, e, ipDevice2, bareA, barePassA, "auto")
	registered(t, ctx, b)
	if got := e.s.binds.line("home"); len(got) != 1 || got[0].Flow != b.Addr || got[0].Device != bareA {
		t.Fatalf("bindings %+v, want baresip's at %s", got, b.Addr)
	}

	out := e.dial(callerOK)
	answeredByBaresip(t, ctx, out, b)
	talkWithBaresipThenHangUp(t, ctx, e, out, b, time.Second)

	// D1/D2: baresip hangs up the next call.
	mark := len(b.Events())
	out = e.dial(callerOK)
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("second call: %v, %v", res, err)
	}
	heardTone(t, ctx, out, bareToneHz)
	if r, err := b.Command(ctx, "hangup"); err != nil || !r.OK {
		t.Fatalf("baresip hangup: %+v, %v", r, err)
	}
	if _, err := e.trunk.WaitRequest(ctx, sip.BYE); err != nil {
		t.Fatalf("trunk never got BYE after baresip hung up: %v", err)
	}
	e.waitNoCalls()
	lines := b.OutputLines()
	res, err := out.ReInvite(ctx, media.SendRecv)
	if err != nil || res.StatusCode != 481 {
		t.Fatalf("re-INVITE after the hang-up: %v, %v; want 481", res, err)
	}
	_ = out.RTP.SendPCM(ctx, siptest.Sine(trunkToneHz, 200*time.Millisecond), codecPT(out))
	if code, err := b.Ping(ctx, ipTrunk); err != nil || code != 200 {
		t.Fatalf("OPTIONS probe to baresip: %d, %v", code, err)
	}
	if got := b.ReceivedRequests(lines); len(got) != 1 || !strings.HasPrefix(got[0], "OPTIONS ") {
		t.Fatalf("baresip received %q after its hang-up, want only the probe", got)
	}
	if n := len(b.Events()); n <= mark {
		t.Fatal("no events for the second call")
	}
}

// Two baresips register to one line: an inbound call rings both, the one
// that answers at once is connected, the other (ringing, manual answer)
// gets CANCEL and nothing more.
func TestBaresipForkOneAnswersTheOtherIsCancelled(t *testing.T) {
	e := newEnv(t, withBaresipDevices)
	ctx := ctxT(t, 30*time.Second)
	auto := registeringBaresip(t, e, ipLine, bareA, barePassA, "auto")
	manual := registeringBaresip(t, e, ipDevice2, bareB, barePassB, "manual")
	registered(t, ctx, auto)
	registered(t, ctx, manual)
	if n := len(e.s.binds.line("home")); n != 2 {
		t.Fatalf("%d bindings, want both baresips'", n)
	}
	out := e.dial(callerOK)
	if _, err := manual.WaitEvent(ctx, "CALL_INCOMING"); err != nil {
		t.Fatalf("the second phone never rang: %v", err)
	}
	answeredByBaresip(t, ctx, out, auto)
	if _, err := manual.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatalf("the ringing phone's call never closed: %v", err)
	}
	heardTone(t, ctx, out, bareToneHz)
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := auto.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	e.waitNoCalls()
	if code, err := manual.Ping(ctx, ipTrunk); err != nil || code != 200 {
		t.Fatalf("OPTIONS probe: %d, %v", code, err)
	}
	var methods []string
	for _, l := range manual.ReceivedRequests(0) {
		methods = append(methods, strings.Fields(l)[0])
	}
	if !slices.Contains(methods, "CANCEL") || slices.Contains(methods, "BYE") {
		t.Fatalf("the ringing phone received %v: want its INVITE CANCELled, no BYE", methods)
	}
	for _, m := range methods {
		switch m {
		case "INVITE", "CANCEL", "ACK", "OPTIONS": // the INVITE, its CANCEL, the 487's ACK, the probe
		default:
			t.Errorf("the ringing phone received %s", m)
		}
	}
}
