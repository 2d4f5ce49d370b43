package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cleanline/cleanline/sip/siptest"
)

// A cleanline serve run in this process by run(), with a trunk's phone
// (127.0.0.2) and a line's (127.0.0.3) around it, as the daemon runs.

// lockedBuffer is serve's stderr, read while serve writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type running struct {
	*serving
	admin   string // admin.listen
	sipAddr string // the UDP SIP listener
	trunk   *siptest.Phone
	line    *siptest.Phone
}

var mediaBlock atomic.Int32

// freeAddr is a loopback address nothing listens on now, over network.
func freeAddr(t testing.TB, network string) string {
	t.Helper()
	if network == "tcp" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().String()
	}
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// startServe writes a config for store with admin (the YAML of the admin
// section's other keys, indented by four) and serves it until the test
// ends; it returns once /healthz answers through client (nil: plain HTTP;
// otherwise HTTPS, as a client that trusts the admin listener's
// certificate).
func startServe(t testing.TB, store, adminExtra string, client *http.Client) *running {
	t.Helper()
	r := &running{admin: freeAddr(t, "tcp"), sipAddr: freeAddr(t, "udp")}
	r.trunk, r.line = siptest.NewPhone(t, "127.0.0.2"), siptest.NewPhone(t, "127.0.0.3")
	base := 41200 + int(mediaBlock.Add(1)%20)*100
	cfg := filepath.Join(t.TempDir(), "cleanline.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`store: %s
log: {level: info}
admin:
    listen: %q
%s
sip:
  listen: [{network: udp, addr: %q}]
  trunks: [{name: provider, sources: [127.0.0.2]}]
  lines:
    - {name: home, numbers: ["+442079460123"], contact: %q}
    - {name: flat-2, numbers: ["+442079460124"], contact: "sip:flat2@127.0.0.5:5060"}
  media: {bind: 127.0.0.1, port_min: %d, port_max: %d}
  timers: {media_inactivity: -1s, session_expires: -1s}
`, store, r.admin, adminExtra, r.sipAddr, r.line.URI("landline"), base, base+99)), 0o600); err != nil {
		t.Fatal(err)
	}
	url := "https://" + r.admin
	if client == nil {
		client, url = &http.Client{Timeout: 2 * time.Second}, "http://"+r.admin
	}
	r.serving = serveFile(t, cfg, url, client)
	return r
}

// plainGet is GET over plain HTTP.
func plainGet(r *running, path string) (*http.Response, error) {
	c := http.Client{Timeout: 2 * time.Second}
	return c.Get("http://" + r.admin + path)
}

// stop ends serve and waits for it: exit 0.
func (r *running) stop(testing.TB) { r.serving.stop() }

// call places a call from the trunk's phone as caller to the home line
// and returns the caller's final status; answered calls are hung up. The
// line answers whatever rings it; rang says whether it did.
func (r *running) call(t *testing.T, caller string) (status int, rang bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := r.trunk.Dial(ctx, "sip:+442079460123@"+r.sipAddr, siptest.DialOptions{FromUser: caller})
	if err != nil {
		t.Fatal(err)
	}
	type final struct {
		code int
		err  error
	}
	fin := make(chan final, 1)
	go func() {
		res, err := out.WaitFinal(ctx)
		if err != nil {
			fin <- final{0, err}
			return
		}
		fin <- final{res.StatusCode, nil}
	}()
	for {
		select {
		case f := <-fin:
			if f.err != nil {
				t.Fatalf("call from %s: %v", caller, f.err)
			}
			if f.code == http.StatusOK {
				if err := out.Bye(ctx); err != nil {
					t.Fatal(err)
				}
			}
			return f.code, rang
		default:
		}
		ictx, icancel := context.WithTimeout(ctx, 50*time.Millisecond)
		in, err := r.line.Incoming(ictx)
		icancel()
		if err == nil {
			rang = true
			if err := in.Answer(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
