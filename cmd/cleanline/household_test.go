package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	cl "github.com/cleanline/cleanline/sip"
	"github.com/cleanline/cleanline/sip/media"
	"github.com/cleanline/cleanline/sip/siptest"
)

// deploy/household.yaml end to end (issue 14's "Done when"): Debian's
// Kamailio plays the provider (a registrar with digest authentication and
// a proxy: sip/siptest/kamailio.go), Debian's baresip the household's ATA
// registering to cleanline with its password, and a siptest phone the
// provider's other subscribers (the callers, and whoever the ATA dials).

const (
	hhSubscriber = "02079460321"           // deploy/household.yaml's register.username
	hhProviderPw = "the provider's secret" // what the ATA had, now in provider.password
	hhATA        = "hallway-ata"           // its device
	hhATAPw      = "ata-password-1234"
	hhToken      = "household-token-0123456789"
	hhCarerToken = "carer-token-0123456789abcdef"
	hhFriend     = "02079460888"
	hhScam       = "02079460666"
	hhOrdinary   = "02079460999"
	hhBank       = "03001234567" // the line's policy.protected
	hhPremium    = "09098790123"
	hhIPFar      = "127.0.0.5" // the provider's other subscribers
	hhIPATA      = "127.0.0.3" // the household's LAN
	hhToneATA    = 1000.0      // baresip's microphone
	hhToneFar    = 440.0       // the far end's
	hhIPProvider = "127.0.0.2" // Kamailio
	hhIPBox      = "127.0.0.1" // cleanline
)

func needBaresip(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("baresip"); err != nil {
		if os.Getenv("CLEANLINE_SKIP_BARESIP") == "1" {
			t.Skip("CLEANLINE_SKIP_BARESIP=1")
		}
		t.Fatal(siptest.ErrNoBaresip)
	}
}

// house is deploy/household.yaml served, with its peers.
type house struct {
	*serving
	sip netip.AddrPort    // cleanline's SIP listener, the ATA's registrar
	k   *siptest.Kamailio // the provider
	ata *siptest.Baresip  // registered to cleanline
	far *siptest.Phone    // the provider's other subscribers
}

// household serves deploy/household.yaml against Kamailio on 127.0.0.2,
// and returns once cleanline is registered to it and the ATA to cleanline.
func household(t *testing.T, ctx context.Context) *house {
	t.Helper()
	needBaresip(t)
	far := siptest.NewPhone(t, hhIPFar)
	k, err := siptest.StartKamailio(t, siptest.KamailioOptions{IP: hhIPProvider, Username: hhSubscriber, Password: hhProviderPw,
		Subscriber: hhIPBox, FarEnd: far.URI("")})
	if err != nil {
		t.Fatal(err) // ErrNoKamailio says how to install it
	}
	dir := t.TempDir()
	writeSecrets(t, dir, map[string]string{"provider.password": hhProviderPw, "ata.password": hhATAPw,
		"household.token": hhToken, "carer.token": hhCarerToken})
	listen, err := siptest.FreeSIPPort(hhIPBox)
	if err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t, "tcp")
	base := 43000 + int(mediaBlock.Add(1)%20)*100
	cfg := shipped(t, "household.yaml", dir, []placeholder{
		{"0.0.0.0:5060", listen.String()},                    // sip.listen
		{"advertise: 192.168.1.20", "advertise: " + hhIPBox}, // the box's LAN address
		{"sip.provider.example", k.Addr.String()},            // the provider's registrar
		{"bind: 0.0.0.0", "bind: " + hhIPBox},
		{"port_min: 20000", "port_min: " + strconv.Itoa(base)},
		{"port_max: 20199", "port_max: " + strconv.Itoa(base+99)},
		{"127.0.0.1:9090", admin},
		{"/etc/cleanline/", dir + "/"},
		{"/var/lib/cleanline/", dir + "/"},
	})
	s := serveFile(t, cfg, "http://"+admin, &http.Client{Timeout: 5 * time.Second})

	// cleanline registers to the provider as the subscriber.
	st := s.waitRegistered(ctx, t, hhToken, "provider")
	if it := st.Items[0]; it.AOR != "sip:"+hhSubscriber+"@"+hhIPProvider || !strings.HasPrefix(it.Contact, "sip:home@"+hhIPBox) {
		t.Errorf("registration %+v: want the subscriber's address of record, the line's contact", it)
	}
	if _, err := k.WaitLog(ctx, "REGISTER saved aor=sip:"+hhSubscriber+"@"+hhIPProvider, 1); err != nil {
		t.Fatal(err)
	}

	// The ATA registers to cleanline with its own password.
	ata, err := siptest.StartBaresip(t, siptest.BaresipOptions{IP: hhIPATA, MediaIP: hhIPBox, ToneHz: hhToneATA, User: hhATA,
		Registrar: listen.String(), Password: hhATAPw, RegInt: 600}) // no refresh within the test: see the restart
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ata.Stop()
		if t.Failed() {
			t.Logf("the ATA's output:\n%s\nKamailio:\n%v", ata.Output(), k.Logged("upstream-test"))
		}
	})
	if _, err := ata.WaitOutput(ctx, "} 200 OK ("); err != nil {
		t.Fatalf("the ATA never registered: %v", err)
	}
	return &house{serving: s, sip: listen, k: k, ata: ata, far: far}
}

// dial makes the ATA call user (at its registrar, cleanline).
func (h *house) dial(t *testing.T, ctx context.Context, user string) {
	t.Helper()
	if r, err := h.ata.Command(ctx, "dial sip:"+user+"@"+h.sip.String()); err != nil || !r.OK {
		t.Fatalf("the ATA's dial %s: %+v, %v", user, r, err)
	}
}

// g711 is the G.711 payload type an SDP agreed first (PCMA if none).
func g711(si *media.SessionInfo) uint8 {
	if si != nil {
		for _, c := range si.Codecs {
			if c.PT == media.PayloadTypePCMA || c.PT == media.PayloadTypePCMU {
				return c.PT
			}
		}
	}
	return media.PayloadTypePCMA
}

// talk sends the far end's tone to the ATA for a second while checking
// that what comes back is the ATA's tone.
func talk(t *testing.T, ctx context.Context, r *siptest.RTP, pt uint8) {
	t.Helper()
	sent := make(chan error, 1)
	go func() { sent <- r.SendPCM(ctx, siptest.Sine(hhToneFar, time.Second), pt) }()
	if err := r.WaitCount(ctx, 60); err != nil {
		t.Fatalf("the far end got %d RTP packets from the ATA: %v", r.Count(), err)
	}
	pcm := r.Audio()
	if ok, ratio := siptest.ToneDominates(pcm[min(len(pcm), 800):], hhToneATA, []float64{hhToneFar, 800, 1200}, 10); !ok {
		t.Fatalf("the far end's audio is not the ATA's %.0f Hz tone (ratio %.1f)", hhToneATA, ratio)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

// records reads line's call records through the API with token until n
// are there, newest first.
func records(ctx context.Context, t *testing.T, s *serving, token, line string, n int) []cl.Event {
	t.Helper()
	for {
		var page struct {
			Items []json.RawMessage `json:"items"`
		}
		if code := s.get(t, "/v1/lines/"+line+"/calls?limit=100", token, &page); code != http.StatusOK {
			t.Fatalf("GET %s's calls: %d", line, code)
		}
		if len(page.Items) >= n {
			evs := make([]cl.Event, len(page.Items))
			for i, raw := range page.Items {
				var err error
				if evs[i], err = cl.DecodeEvent(raw); err != nil {
					t.Fatal(err)
				}
			}
			return evs
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d call records of %s, want %d", len(page.Items), line, n)
		case <-time.After(20 * time.Millisecond): // poll pace, nothing orders on it
		}
	}
}

// TestHouseholdConfig: the household's ATA registers to cleanline,
// cleanline to the provider; calls both ways are screened, and D1, D2,
// D4, D5 and the barred classes hold for the ATA.
func TestHouseholdConfig(t *testing.T) {
	ctx := ctxT(t, 50*time.Second)
	h := household(t, ctx)
	ata, far := h.ata, h.far
	subscriber := "sip:" + hhSubscriber + "@" + h.k.Addr.String()

	// A caller the household blocked: through Kamailio to the
	// registration, refused with 603; the ATA never rings.
	cliWith(t, h.cfg, "block", "add", hhScam).expect(t, exitOK, "added +442079460666")
	out, err := far.Dial(ctx, subscriber, siptest.DialOptions{FromUser: hhScam})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 603 {
		t.Fatalf("the blocked caller got %v, %v; want 603", res, err)
	}

	// An allowed caller rings the ATA, which answers at once; audio
	// crosses both ways; the ATA hangs up: the caller gets BYE through
	// Kamailio (D1), and nothing it sends afterwards reaches the ATA (D2).
	out, err = far.Dial(ctx, subscriber, siptest.DialOptions{FromUser: hhFriend})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("the friend got %v, %v; want the ATA's 200", res, err)
	}
	if ev, err := ata.WaitEvent(ctx, "CALL_ESTABLISHED"); err != nil || !strings.Contains(ev.PeerURI, "+442079460888@") {
		t.Fatalf("the ATA's call: %+v, %v; want the friend's (+442079460888)", ev, err)
	}
	if invites := requestsOf(ata.ReceivedRequests(0), "INVITE"); invites != 1 {
		t.Fatalf("the ATA got %d INVITEs; want the friend's only, never the blocked caller's", invites)
	}
	talk(t, ctx, out.RTP, g711(out.Answer))
	if r, err := ata.Command(ctx, "hangup"); err != nil || !r.OK {
		t.Fatalf("the ATA's hangup: %+v, %v", r, err)
	}
	select {
	case <-out.Ended():
	case <-ctx.Done():
		t.Fatal("D1: the caller never got BYE after the ATA hung up")
	}
	if _, err := ata.WaitEvent(ctx, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	heard, err := ata.Recording("dec")
	if err != nil {
		t.Fatal(err)
	}
	if ok, r := siptest.ToneDominates(heard[min(len(heard), 1600):], hhToneFar, []float64{hhToneATA, 800, 1200}, 10); !ok {
		t.Errorf("the ATA did not hear the caller's %.0f Hz (ratio %.1f)", hhToneFar, r)
	}
	lines := ata.OutputLines()
	if res, err := out.ReInvite(ctx, media.SendRecv); err != nil || res.StatusCode != 481 {
		t.Fatalf("D2: the caller's re-INVITE after the hang-up got %v, %v; want 481", res, err)
	}
	_ = out.RTP.SendPCM(ctx, siptest.Sine(hhToneFar, 200*time.Millisecond), g711(out.Answer))
	if code, err := ata.Ping(ctx, hhIPFar); err != nil || code != 200 {
		t.Fatalf("OPTIONS probe to the ATA: %d, %v", code, err)
	}
	if got := ata.ReceivedRequests(lines); len(got) != 1 || !strings.HasPrefix(got[0], "OPTIONS ") {
		t.Fatalf("D2: the ATA received %q after its hang-up, want only the probe", got)
	}

	// The ATA's own call to an ordinary number: it proves its password to
	// cleanline (407), cleanline answers Kamailio's challenge with the
	// subscriber's, the far end answers, audio crosses, the far end hangs up.
	mark := len(ata.Events())
	h.dial(t, ctx, hhOrdinary)
	farIn, err := far.Incoming(ctx)
	if err != nil {
		t.Fatalf("the ATA's call never reached the far end: %v", err)
	}
	if farIn.Req.Recipient.User != hhOrdinary || farIn.Req.From().Address.User != hhSubscriber {
		t.Errorf("the far end got %s from %s; want the number dialled, from the subscriber", farIn.Req.Recipient.String(), farIn.Req.From().Address.String())
	}
	if _, err := h.k.WaitLog(ctx, "INVITE authenticated user="+hhSubscriber, 1); err != nil {
		t.Fatal(err)
	}
	if err := farIn.Answer(); err != nil {
		t.Fatal(err)
	}
	if _, err := ata.WaitEventFrom(ctx, mark, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	talk(t, ctx, farIn.RTP, g711(farIn.Offer))
	if err := farIn.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ata.WaitEventFrom(ctx, mark, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}

	// D4: a call is up on the ATA (a fraudster's, held open); the ATA
	// dials the bank: cleanline ends that call on both sides, then the
	// bank's call goes out.
	mark = len(ata.Events())
	held, err := far.Dial(ctx, subscriber, siptest.DialOptions{FromUser: hhFriend})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := held.WaitFinal(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("the held call got %v, %v", res, err)
	}
	if _, err := ata.WaitEventFrom(ctx, mark, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	mark = len(ata.Events())
	h.dial(t, ctx, hhBank)
	bankIn, err := far.Incoming(ctx)
	if err != nil {
		t.Fatalf("the bank's call never went out: %v", err)
	}
	if bankIn.Req.Recipient.User != hhBank {
		t.Errorf("the bank's call went to %s", bankIn.Req.Recipient.String())
	}
	select {
	case <-held.Ended():
	case <-ctx.Done():
		t.Fatal("D4: the held call's caller never got BYE")
	}
	if _, err := ata.WaitEventFrom(ctx, mark, "CALL_CLOSED"); err != nil {
		t.Fatalf("D4: the held call never closed on the ATA: %v", err)
	}
	if err := bankIn.Answer(); err != nil {
		t.Fatal(err)
	}
	if _, err := ata.WaitEventFrom(ctx, mark, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	mark = len(ata.Events())
	if err := bankIn.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ata.WaitEventFrom(ctx, mark, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}

	// D5: the line-check code is answered by cleanline ("your line is
	// clear"); a premium-rate number is barred. Neither reaches the
	// provider.
	invites := len(h.k.Logged("INVITE challenged"))
	mark = len(ata.Events())
	h.dial(t, ctx, "*99")
	if _, err := ata.WaitEventFrom(ctx, mark, "CALL_ESTABLISHED"); err != nil {
		t.Fatalf("D5: the line check was not answered: %v", err)
	}
	if _, err := ata.WaitEventFrom(ctx, mark, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	mark = len(ata.Events())
	h.dial(t, ctx, hhPremium)
	closed, err := ata.WaitEventFrom(ctx, mark, "CALL_CLOSED")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(closed.Param, "403") {
		t.Errorf("the premium-rate call closed with %q; want 403 Number barred", closed.Param)
	}
	if n := len(h.k.Logged("INVITE challenged")); n != invites {
		t.Errorf("%d calls reached the provider for the line check and the barred number", n-invites)
	}

	// The call records, as the household's carer reads them: the blocked
	// caller, the friend, the ATA's call, the held call ended by D4, the
	// bank, the line check and the barred number.
	recs := records(ctx, t, h.serving, hhCarerToken, "home", 7)
	got := map[string]string{}
	for _, ev := range recs {
		key := ev.Caller
		if ev.Direction == "outbound" {
			key = ev.Dialled
		}
		got[key] += ev.Outcome + " "
		if ev.Dialled == "*99" && ev.Result != "clear" {
			t.Errorf("D5 said %q, want clear", ev.Result)
		}
	}
	for who, outcome := range map[string]string{"+442079460666": "blocked ", "+442079460888": "completed replaced_by_protected_call ",
		hhOrdinary: "completed ", hhBank: "completed ", "*99": "feature ", hhPremium: "barred "} {
		if got[who] != outcome && got[who] != reverseWords(outcome) {
			t.Errorf("records of %s: %q, want %q", who, got[who], outcome)
		}
	}
	cliWith(t, h.cfg, "calls", "--line", "home").expect(t, exitOK, "+442079460666 block blocked", "dialled:"+hhPremium+" - barred")
	// What the household checks after setting it up (README "Household").
	cliWith(t, h.cfg, "lines").expect(t, exitOK, "home numbers=+442079460321",
		" devices="+hhATA+" registered="+hhATA+"@"+ata.Addr.String()+"/udp(until ")
	cliWith(t, h.cfg, "upstream").expect(t, exitOK, "provider registered sip:"+hhSubscriber+"@"+hhIPProvider+" contact=sip:home@"+h.sip.String()+" since ")
	if code := h.get(t, "/v1/upstream", hhCarerToken, nil); code != http.StatusForbidden {
		t.Errorf("the carer's token read the provider's registration: %d", code)
	}

	// The box restarts (an upgrade, a power cut): cleanline removes its
	// binding at the provider as it stops and registers again as it
	// starts; the ATA's registration, kept in bindings_file, rings at once
	// (the ATA refreshes only every 10 minutes).
	registers := ata.CountOutput(0, "REGISTER sip:") // its trace of what it sent
	if registers == 0 {
		t.Fatal("no REGISTER in the ATA's SIP trace")
	}
	h.stop()
	if loc, err := h.k.Location(ctx); err != nil || strings.Contains(loc, "AoR: "+hhSubscriber) {
		t.Fatalf("after the stop Kamailio still has the subscriber (%v):\n%s", err, loc)
	}
	again := serveFile(t, h.cfg, h.base, h.client)
	again.waitRegistered(ctx, t, hhToken, "provider")
	mark = len(ata.Events())
	out, err = far.Dial(ctx, subscriber, siptest.DialOptions{FromUser: hhFriend})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("after the restart the friend got %v, %v; want the ATA's 200", res, err)
	}
	if _, err := ata.WaitEventFrom(ctx, mark, "CALL_ESTABLISHED"); err != nil {
		t.Fatal(err)
	}
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ata.WaitEventFrom(ctx, mark, "CALL_CLOSED"); err != nil {
		t.Fatal(err)
	}
	if n := ata.CountOutput(0, "REGISTER sip:"); n != registers {
		t.Errorf("the ATA registered again (%d REGISTERs, %d before): the call did not prove bindings_file", n, registers)
	}
}

// requestsOf counts the request lines of method.
func requestsOf(lines []string, method string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, method+" ") {
			n++
		}
	}
	return n
}

// reverseWords is "b a " for "a b ": records come newest first.
func reverseWords(s string) string {
	w := strings.Fields(s)
	slices.Reverse(w)
	return strings.Join(w, " ") + " "
}
