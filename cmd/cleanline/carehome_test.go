package main

import (
	"crypto/tls"
	"crypto/x509"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	cl "github.com/cleanline/cleanline/sip"
	"github.com/cleanline/cleanline/sip/siptest"
)

// deploy/care-home.yaml as shipped: the provider's trunk (a siptest phone
// on 127.0.0.2, by source address), residents' phones registering to
// cleanline (siptest phones, two on room-2), the carer's page and API
// over HTTPS with a token per family, and the home's care system
// receiving signed webhooks.

const (
	chRoom1    = "+442079460401"
	chRoom2    = "+442079460402"
	chCaller   = "+442079460777" // an ordinary caller: warned on strict lines
	chCaller1  = "+442079460555" // room-1's caller
	chSecret   = "the care system's shared secret"
	chFamily1  = "room-1-family-token-0123456789"
	chNurses   = "nurses-token-0123456789abcdef"
	chPassword = "phone-password-"
)

// chPhones are the residents' phones: device, line, address.
var chPhones = []struct{ device, line, ip string }{
	{"room1-phone", "room-1", "127.0.0.3"},
	{"room2-desk", "room-2", "127.0.0.6"},
	{"room2-cordless", "room-2", "127.0.0.7"},
	{"room3-phone", "room-3", "127.0.0.8"},
}

// TestCareHomeConfig: every resident's phone registers; a call to room-2
// rings both its phones, the desk phone answers and hears the warning
// (strict), the cordless is CANCELled and hears nothing more; the care
// system gets the warned event, signed; a withheld caller is refused
// without ringing; room-1's family token sees room-1's calls and no
// other, through the API and on the carer's page.
func TestCareHomeConfig(t *testing.T) {
	ctx := ctxT(t, 50*time.Second)
	dir := t.TempDir()
	secrets := map[string]string{"webhook.secret": chSecret, "ops.token": "ops-token-0123456789abcdef",
		"nurses.token": chNurses, "room-1-family.token": chFamily1,
		"room-2-family.token": "room-2-family-token-0123456789", "room-3-family.token": "room-3-family-token-0123456789"}
	for _, p := range chPhones {
		secrets[p.device+".password"] = chPassword + p.device
	}
	writeSecrets(t, dir, secrets)
	cert, _ := selfSigned(t, dir) // admin.pem, admin.key: the names the file gives
	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Timeout: 5 * time.Second, Jar: jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "cleanline.test"}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	trunk := siptest.NewPhone(t, "127.0.0.2")
	hook := newHookReceiver(t, chSecret)
	listen, err := siptest.FreeSIPPort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	admin := freeAddr(t, "tcp")
	base := 43000 + int(mediaBlock.Add(1)%20)*100
	cfg := shipped(t, "care-home.yaml", dir, []placeholder{
		{"0.0.0.0:5060", listen.String()},
		{"advertise: 10.20.0.5", "advertise: 127.0.0.1"},
		{"203.0.113.10:5060", trunk.Addr.String()}, // the provider's SBC: where the home's calls go...
		{"203.0.113.10", "127.0.0.2"},              // ...and where its calls come from
		{"bind: 0.0.0.0", "bind: 127.0.0.1"},
		{"port_min: 20000", "port_min: " + strconv.Itoa(base)},
		{"port_max: 20999", "port_max: " + strconv.Itoa(base+99)},
		{"10.30.0.5:9443", admin},
		{"https://care-system.carehome.example/hooks/cleanline", hook.srv.URL + "/hooks/cleanline"},
		{"/etc/cleanline/", dir + "/"},
		{"/var/lib/cleanline/", dir + "/"},
	})
	s := serveFile(t, cfg, "https://"+admin, client)

	// Every resident's phone registers with its own password.
	phones := map[string]*siptest.Phone{}
	for _, p := range chPhones {
		ph := siptest.NewPhone(t, p.ip)
		res, err := ph.Register(ctx, siptest.RegisterOptions{Registrar: listen, User: p.device, Password: chPassword + p.device, Expires: 600})
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("%s's REGISTER: %v, %v", p.device, res, err)
		}
		phones[p.device] = ph
	}

	lines := cliWith(t, cfg, "lines")
	lines.expect(t, exitOK, "room-2 numbers=+442079460402 withheld=block strict=true")
	for _, p := range chPhones {
		if want := p.device + "@" + phones[p.device].Addr.String() + "/udp(until "; !strings.Contains(lines.stdout, want) {
			t.Errorf("cleanline lines does not show %s registered:\n%s", p.device, lines.stdout)
		}
	}

	// room-2 rings on both phones; the desk phone answers and hears the
	// warning (every line is strict); the cordless is CANCELled.
	out, err := trunk.Dial(ctx, "sip:"+chRoom2+"@"+listen.String(), siptest.DialOptions{FromUser: chCaller})
	if err != nil {
		t.Fatal(err)
	}
	desk, err := phones["room2-desk"].Incoming(ctx)
	if err != nil {
		t.Fatalf("room-2's desk phone never rang: %v", err)
	}
	cordless, err := phones["room2-cordless"].Incoming(ctx)
	if err != nil {
		t.Fatalf("room-2's cordless never rang: %v", err)
	}
	for _, in := range []*siptest.Incoming{desk, cordless} {
		if err := in.Ring(); err != nil {
			t.Fatal(err)
		}
	}
	if err := desk.Answer(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cordless.Ended():
		if !cordless.Cancelled() {
			t.Fatal("the cordless's call ended otherwise than by CANCEL")
		}
	case <-ctx.Done():
		t.Fatal("the cordless was never CANCELled")
	}
	if err := desk.RTP.WaitCount(ctx, 25); err != nil {
		t.Fatalf("the desk phone heard no warning: %v", err)
	}
	ev := hook.waitType(ctx, t, cl.EventWarned) // signed: hookReceiver checks it
	if ev.Line != "room-2" || ev.Caller != chCaller || ev.Verdict != "warn" || !slices.Contains(ev.Reasons, "policy.strict") {
		t.Errorf("the care system's warned event: %+v", ev)
	}
	if err := desk.RTP.SendDTMF('1', desk.TelephoneEventPT()); err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("the caller, once the resident pressed 1: %v, %v", res, err)
	}
	before := desk.RTP.Count()
	if err := out.RTP.Send(10, 8, 0x5a); err != nil {
		t.Fatal(err)
	}
	if err := desk.RTP.WaitCount(ctx, before+10); err != nil {
		t.Fatalf("the caller's audio never reached the desk phone: %v", err)
	}
	if err := out.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-desk.Ended():
	case <-ctx.Done():
		t.Fatal("the desk phone never got BYE")
	}
	for _, r := range phones["room2-cordless"].Requests() {
		if r.Method != sip.CANCEL && r.Method != sip.ACK {
			t.Errorf("the cancelled cordless received %s", r.Method)
		}
	}

	// room-1: a withheld caller is refused and the phone never rings; an
	// ordinary caller is warned and the resident hangs up.
	withheld, err := trunk.Dial(ctx, "sip:"+chRoom1+"@"+listen.String(), siptest.DialOptions{FromUser: "anonymous",
		Headers: []sip.Header{sip.NewHeader("Privacy", "id")}})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := withheld.WaitFinal(ctx); err != nil || res.StatusCode != 603 {
		t.Fatalf("the withheld caller got %v, %v; want 603", res, err)
	}
	out, err = trunk.Dial(ctx, "sip:"+chRoom1+"@"+listen.String(), siptest.DialOptions{FromUser: chCaller1})
	if err != nil {
		t.Fatal(err)
	}
	in, err := phones["room1-phone"].Incoming(ctx)
	if err != nil {
		t.Fatalf("room-1's phone never rang: %v", err)
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	if err := in.RTP.WaitCount(ctx, 25); err != nil {
		t.Fatalf("room-1 heard no warning: %v", err)
	}
	if err := in.Bye(ctx); err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode < 400 {
		t.Fatalf("the refused caller got %v, %v; want a refusal", res, err)
	}

	// room-1's family sees room-1's calls only; the nurses see room-2's.
	recs := records(ctx, t, s, chFamily1, "room-1", 2)
	for _, r := range recs {
		if r.Line != "room-1" {
			t.Errorf("room-1's family sees a call of %s", r.Line)
		}
	}
	if recs[0].Caller != chCaller1 || recs[0].Outcome != "warn_refused" || recs[1].Outcome != "blocked" || !recs[1].Privacy {
		t.Errorf("room-1's calls, newest first: %+v", recs)
	}
	for _, path := range []string{"/v1/lines/room-2/calls", "/v1/calls", "/v1/calls/live", "/v1/blocklist"} {
		if code := s.get(t, path, chFamily1, nil); code != http.StatusForbidden {
			t.Errorf("GET %s with room-1's family token: %d, want 403", path, code)
		}
	}
	if r2 := records(ctx, t, s, chNurses, "room-2", 1); r2[0].Caller != chCaller || r2[0].Outcome != "completed" || r2[0].Choice != cl.ChoiceConnect {
		t.Errorf("room-2's call as the nurses see it: %+v", r2[0])
	}
	carerPage(t, s, chFamily1)
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// carerPage signs in to the carer's page with room-1's family token (as
// a browser does: the form's token, then the session cookie) and checks
// that room-1's page shows its caller and room-2's page is refused.
func carerPage(t *testing.T, s *serving, token string) {
	t.Helper()
	page := func(method, path string, form url.Values) (int, string) {
		req, err := http.NewRequest(method, s.base+path, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		res, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatal(err)
		}
		return res.StatusCode, html.UnescapeString(string(b)) // html/template writes + as &#43;
	}
	code, body := page(http.MethodGet, "/carer/", nil)
	m := csrfInput.FindStringSubmatch(body)
	if code != http.StatusOK || m == nil {
		t.Fatalf("the sign-in page: %d\n%s", code, body)
	}
	if code, body = page(http.MethodPost, "/carer/signin", url.Values{"csrf": {m[1]}, "token": {token}}); code != http.StatusSeeOther {
		t.Fatalf("signing in: %d\n%s", code, body)
	}
	if code, body = page(http.MethodGet, "/carer/lines/room-1", nil); code != http.StatusOK || !strings.Contains(body, chCaller1) || strings.Contains(body, chCaller) {
		t.Errorf("room-1's page for its family: %d, shows %s: %t, shows room-2's caller: %t", code, chCaller1,
			strings.Contains(body, chCaller1), strings.Contains(body, chCaller))
	}
	if code, body = page(http.MethodGet, "/carer/lines/room-2", nil); code != http.StatusForbidden || strings.Contains(body, chCaller) {
		t.Errorf("room-2's page for room-1's family: %d, shows its caller: %t", code, strings.Contains(body, chCaller))
	}
}
