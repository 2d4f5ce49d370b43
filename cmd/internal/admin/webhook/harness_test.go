package webhook

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip"
	"github.com/cleanline/cleanline/sip/media"
	"github.com/cleanline/cleanline/sip/siptest"
)

// A cleanline between a trunk phone and a line phone, over real SIP and
// RTP on loopback (the addresses of sip's own tests), with d as a sink of
// its call events.
const (
	ipCleanline   = "127.0.0.1"
	ipTrunk       = "127.0.0.2"
	ipLine        = "127.0.0.3"
	callerOK      = "+442079460018"
	callerScam    = "+442079460666" // confirmed: blocked
	callerSuspect = "+442079460777" // reported: warned
	lineNumber    = "+442079460123"
)

type callEnv struct {
	t     *testing.T
	s     *sip.Server
	trunk *siptest.Phone
	line  *siptest.Phone
}

func newCallEnv(t *testing.T, d *Dispatcher) *callEnv {
	t.Helper()
	st, err := blocklist.OpenFile(filepath.Join(t.TempDir(), "cleanline.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now()
	if _, _, err := st.Put(context.Background(), []blocklist.Entry{
		{Number: callerScam, Status: blocklist.StatusConfirmed, Source: "test", Reports: 5, FirstSeen: now, LastSeen: now},
		{Number: callerSuspect, Status: blocklist.StatusReported, Source: "test", Reports: 1, FirstSeen: now, LastSeen: now},
	}); err != nil {
		t.Fatal(err)
	}
	e := &callEnv{t: t, trunk: siptest.NewPhone(t, ipTrunk), line: siptest.NewPhone(t, ipLine)}
	cfg := sip.Config{
		Listen:    []sip.Listener{{Network: "udp", Addr: ipCleanline + ":0"}},
		Advertise: ipCleanline,
		Trunks:    []sip.Trunk{{Name: "provider", Sources: []string{ipTrunk}, Outbound: e.trunk.URI("")}},
		Lines:     []sip.Line{{Name: "home", Numbers: []string{lineNumber}, Contact: e.line.URI("landline")}},
		// Ports of their own: sip's tests take 30000-54399, serve's 41000-41099.
		Media: sip.MediaConfig{PortMin: 56000, PortMax: 56399, Bind: ipCleanline},
		Timers: sip.Timers{NoAnswer: 5 * time.Second, WarningChoice: 2 * time.Second, Bye: 2 * time.Second,
			MediaInactivity: -1, SessionExpires: -1},
	}
	sc, err := screening.New(st, screening.Config{Region: "GB", Lines: cfg.ScreeningLines()})
	if err != nil {
		t.Fatal(err)
	}
	prompts, err := media.DefaultPrompts()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range prompts.Names() {
		prompts.Set(name, media.NewPrompt(name, siptest.Sine(440, 400*time.Millisecond)))
	}
	e.s, err = sip.NewServer(cfg, sc, zaptest.NewLogger(t), sip.WithPrompts(prompts), sip.WithEvents("webhooks", d, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.s.Shutdown(ctx)
		e.s.Close()
	})
	return e
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dial calls the line from the trunk as caller and waits for the final
// response; want is its status.
func (e *callEnv) dial(ctx context.Context, caller string) *siptest.Outgoing {
	e.t.Helper()
	out, err := e.trunk.Dial(ctx, "sip:"+lineNumber+"@"+e.s.Addr("udp").String(), siptest.DialOptions{FromUser: caller})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func siptestOpts() siptest.DialOptions { return siptest.DialOptions{FromUser: "landline"} }

func wantFinal(ctx context.Context, t *testing.T, out *siptest.Outgoing, code int) {
	t.Helper()
	res, err := out.WaitFinal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != code {
		t.Fatalf("caller got %d %s, want %d", res.StatusCode, res.Reason, code)
	}
}

// warned places a warned call, answers it at the line and presses digit.
func (e *callEnv) warned(ctx context.Context, digit rune) *siptest.Outgoing {
	e.t.Helper()
	out := e.dial(ctx, callerSuspect)
	in, err := e.line.Incoming(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := in.Answer(); err != nil {
		e.t.Fatal(err)
	}
	if err := in.RTP.WaitCount(ctx, 5); err != nil {
		e.t.Fatalf("the line heard no warning: %v", err)
	}
	if err := in.RTP.SendDTMF(digit, in.TelephoneEventPT()); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// receiver is a webhook receiver on loopback: it checks every POST's
// signature, and answers as status says for the n-th POST (0: 200).
type receiver struct {
	srv    *httptest.Server
	secret []byte
	status func(n int) int
	hang   chan struct{} // when set, every POST waits for it to be closed

	mu    sync.Mutex
	posts []post
	got   chan struct{} // closed and replaced at every POST
}

type post struct {
	header http.Header
	body   []byte
	err    error // the signature check
	status int
}

func newReceiver(t *testing.T, secret string, status func(n int) int) *receiver {
	r := &receiver{secret: []byte(secret), status: status, got: make(chan struct{})}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		if r.hang != nil {
			close(r.hang)
		}
		r.srv.Close()
	})
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	err := Verify(r.secret, req.Header.Get(HeaderTimestamp), req.Header.Get(HeaderSignature), body, time.Now(), 5*time.Minute)
	r.mu.Lock()
	n := len(r.posts)
	code := http.StatusOK
	if r.status != nil && r.status(n) != 0 {
		code = r.status(n)
	}
	if err != nil {
		code = http.StatusUnauthorized
	}
	r.posts = append(r.posts, post{header: req.Header.Clone(), body: body, err: err, status: code})
	close(r.got)
	r.got = make(chan struct{})
	hang := r.hang
	r.mu.Unlock()
	if hang != nil {
		select {
		case <-hang:
		case <-req.Context().Done():
		}
	}
	w.WriteHeader(code)
}

// wait waits until at least n POSTs arrived and returns them.
func (r *receiver) wait(ctx context.Context, t *testing.T, n int) []post {
	t.Helper()
	for {
		r.mu.Lock()
		posts, got := append([]post(nil), r.posts...), r.got
		r.mu.Unlock()
		if len(posts) >= n {
			return posts
		}
		select {
		case <-got:
		case <-ctx.Done():
			t.Fatalf("%d POSTs, want %d", len(posts), n)
		}
	}
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.posts)
}
