package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The example configurations in deploy/ run as shipped (README
// "Household", "Care home"): a test reads the file, replaces only its
// placeholders (addresses, ports, paths, the provider's address: values a
// reader must change anyway) with loopback and temporary ones, and serves
// it. Nothing else of the file is touched, so what the test proves is what
// a reader copies.

// placeholder is one value of a shipped file and what the test puts there.
type placeholder struct{ shipped, test string }

// shipped reads deploy/name, replaces every placeholder (each must occur
// in it, or the file changed under the test), writes the result to dir
// and returns its path.
func shipped(t *testing.T, name, dir string, subs []placeholder) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "deploy", name))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(b)
	for _, s := range subs {
		if !strings.Contains(cfg, s.shipped) {
			t.Fatalf("deploy/%s no longer holds %q: update the test's placeholders", name, s.shipped)
		}
		cfg = strings.ReplaceAll(cfg, s.shipped, s.test)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeSecrets writes each file name → content into dir (0600), as an
// operator installs the password and token files the config names.
func writeSecrets(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// serving is `cleanline serve --config cfg` run in this process until the
// test ends.
type serving struct {
	cfg    string
	base   string // the admin listener's URL
	client *http.Client
	stderr *lockedBuffer
	stop   func() // stops serve as SIGTERM does and checks it exited 0; once
}

// serveFile serves cfg and returns once base/healthz answers 200 through
// client; the test's cleanup stops serve, if the test did not.
func serveFile(t testing.TB, cfg, base string, client *http.Client) *serving {
	t.Helper()
	s := &serving{cfg: cfg, base: base, client: client, stderr: &lockedBuffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", cfg}, &lockedBuffer{}, s.stderr) }()
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case code := <-done:
				if code != exitOK {
					t.Errorf("serve exited %d: %s", code, s.stderr)
				}
			case <-time.After(20 * time.Second):
				t.Error("serve did not stop")
			}
		})
	}
	t.Cleanup(func() {
		s.stop()
		if t.Failed() {
			t.Logf("serve's log:\n%s", s.stderr)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := client.Get(base + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case code := <-done:
			done <- code // for the cleanup
			t.Fatalf("serve exited %d: %s", code, s.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz: %v; serve says %s", err, s.stderr)
		}
		time.Sleep(20 * time.Millisecond) // poll pace, nothing orders on it
	}
}

// get GETs path with token and decodes a 200's JSON body into v; it
// returns the status.
func (s *serving) get(t *testing.T, path, token string, v any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode == http.StatusOK && v != nil {
		if err := json.NewDecoder(res.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	return res.StatusCode
}

// upstreamState is GET /v1/upstream's answer, as much as the tests read.
type upstreamState struct {
	Items []struct {
		Trunk, State, AOR, Contact string
		LastStatus                 int `json:"last_status"`
	} `json:"items"`
}

// waitRegistered polls /v1/upstream until trunk is registered.
func (s *serving) waitRegistered(ctx context.Context, t *testing.T, token, trunk string) upstreamState {
	t.Helper()
	for {
		var st upstreamState
		if code := s.get(t, "/v1/upstream", token, &st); code == http.StatusOK {
			for _, it := range st.Items {
				if it.Trunk == trunk && it.State == "registered" {
					return st
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("trunk %s never registered: %+v", trunk, st)
		case <-time.After(20 * time.Millisecond): // poll pace, nothing orders on it
		}
	}
}

// cliWith runs the CLI as an operator does while serve runs (through its
// API, with the config's cli_token_file).
func cliWith(t *testing.T, cfg string, args ...string) result {
	t.Helper()
	return cli(t, append(args, "--config", cfg)...)
}
