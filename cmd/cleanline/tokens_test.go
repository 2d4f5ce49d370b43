package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cleanline/cleanline/sip/siptest"
)

const (
	opsSecret   = "ops-secret-0123456789abcdef"
	carerSecret = "home-carer-0123456789abcdef"
)

// With tokens, the CLI needs one ($CLEANLINE_TOKEN, or
// admin.cli_token_file), and what it may do is the token's scope: a
// carer of home blocks and trusts for home and ends home's live call
// (BYE on both legs), and may not touch the shared blocklist or another
// line. No secret reaches serve's log.
func TestCLIThroughServiceWithTokens(t *testing.T) {
	dir := t.TempDir()
	opsFile := filepath.Join(dir, "ops.token")
	if err := os.WriteFile(opsFile, []byte(opsSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := startServe(t, "file:"+filepath.Join(dir, "cl.db"), fmt.Sprintf(`    cli_token_file: %q
    tokens:
      - {name: ops, token_file: %q, scope: admin}
      - {name: home-carer, token: %q, scope: carer, lines: [home]}`, opsFile, opsFile, carerSecret), nil)

	// admin.cli_token_file: the operator's token.
	cli(t, "block", "add", "020 7946 0555", "--config", r.cfg).expect(t, exitOK, "added +442079460555")
	t.Setenv(tokenEnv, "not-a-token-anyone-configured")
	cli(t, "block", "list", "--config", r.cfg).expect(t, exitError, "unknown bearer token", "set $CLEANLINE_TOKEN")

	t.Setenv(tokenEnv, carerSecret)
	cli(t, "trust", "add", "home", "020 7946 0111", "--config", r.cfg).expect(t, exitOK, "trusted +442079460111 for line home")
	cli(t, "block", "add", "020 7946 0666", "--line", "home", "--config", r.cfg).expect(t, exitOK, "blocked +442079460666 for line home")
	cli(t, "block", "list", "--line", "home", "--config", r.cfg).expect(t, exitOK, "+442079460666")
	cli(t, "block", "add", "020 7946 0111", "--line", "home", "--config", r.cfg).expect(t, exitError, "is a trusted contact of line home")
	for _, args := range [][]string{
		{"block", "add", "020 7946 0777"},
		{"block", "add", "020 7946 0777", "--line", "flat-2"},
		{"trust", "list", "flat-2"},
		{"protect", "add", "020 7946 0999"},
		{"calls", "live"},
	} {
		cli(t, append(args, "--config", r.cfg)...).expect(t, exitError, `token "home-carer"`, "may not")
	}
	if code, rang := r.call(t, "+442079460666"); code != 603 || rang {
		t.Fatalf("a caller blocked for home: %d, rang %v; want 603", code, rang)
	}

	// The carer ends home's live call: both phones get BYE.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := r.trunk.Dial(ctx, "sip:+442079460123@"+r.sipAddr, siptest.DialOptions{FromUser: "+442079460018"})
	if err != nil {
		t.Fatal(err)
	}
	in, err := r.line.Incoming(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Answer(); err != nil {
		t.Fatal(err)
	}
	if res, err := out.WaitFinal(ctx); err != nil || res.StatusCode != 200 {
		t.Fatalf("call: %v %v", res, err)
	}
	var live struct{ ID, State, Number string }
	for live.State != "connected" {
		res := cli(t, "calls", "live", "--line", "home", "--json", "--config", r.cfg)
		res.expect(t, exitOK)
		live.State = ""
		if res.stdout != "" {
			if err := json.Unmarshal([]byte(strings.SplitN(res.stdout, "\n", 2)[0]), &live); err != nil {
				t.Fatalf("calls live --json: %q: %v", res.stdout, err)
			}
		}
		if ctx.Err() != nil {
			t.Fatalf("no connected call listed: %q", res.stdout)
		}
		if live.State != "connected" {
			time.Sleep(20 * time.Millisecond) // poll pace, nothing orders on it
		}
	}
	if live.Number != "+442079460018" {
		t.Fatalf("live call %+v", live)
	}
	cli(t, "calls", "end", live.ID, "--line", "flat-2", "--config", r.cfg).expect(t, exitError, "may not touch line flat-2")
	cli(t, "calls", "end", live.ID, "--line", "home", "--config", r.cfg).expect(t, exitOK, "ended call "+live.ID)
	for what, ended := range map[string]<-chan struct{}{"trunk": out.Ended(), "line": in.Ended()} {
		select {
		case <-ended:
		case <-ctx.Done():
			t.Fatalf("the %s's leg got no BYE", what)
		}
	}

	r.stop(t)
	for _, s := range []string{opsSecret, carerSecret} {
		if strings.Contains(r.stderr.String(), s) {
			t.Fatalf("a token's secret is in serve's log")
		}
	}
	if !strings.Contains(r.stderr.String(), "home-carer") {
		t.Fatalf("serve's log does not name the token that changed things:\n%s", r.stderr)
	}
}

// serve refuses to open an admin listener others can reach without
// tokens, naming the key.
func TestServeRefusesReachableListenerWithoutTokens(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(cfg, []byte("admin: {listen: \"10.1.2.3:9090\"}\n"), 0o600)
	r := cli(t, "serve", "--config", cfg)
	r.expect(t, exitError, "admin.tokens: required when admin.listen (10.1.2.3:9090) is not a loopback address")
	for _, bad := range []struct{ yaml, want string }{
		{"admin: {tokens: [{name: a, token: short, scope: admin}]}", "admin.tokens[0].token: shorter than 16"},
		{"admin: {tokens: [{name: a, token: 0123456789abcdefgh, scope: carer}]}", "admin.tokens[0].lines: a carer's token needs"},
		{"admin: {tokens: [{name: a, token: 0123456789abcdefgh, token_file: x, scope: admin}]}", "give token or token_file"},
		{"admin: {tokens: [{name: a, token: 0123456789abcdefgh, scope: root}]}", `admin.tokens[0].scope "root"`},
		{"admin: {tls_cert: c.pem}", "admin.tls_cert and admin.tls_key"},
		{"sip: {lines: [{name: home}]}\nadmin: {tokens: [{name: a, token: 0123456789abcdefgh, scope: carer, lines: [flat-9]}]}", `admin.tokens[0].lines[0]: "flat-9" is not in sip.lines`},
	} {
		os.WriteFile(cfg, []byte(bad.yaml+"\n"), 0o600)
		cli(t, "check", "1", "--config", cfg).expect(t, exitError, bad.want)
	}
}

// selfSigned writes a certificate for the name cleanline.test only (not
// the address the CLI dials) and its key: admin.pem and admin.key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	return siptest.Certificate(t, dir, "admin", "cleanline.test")
}

// With admin.tls_cert and tls_key, the listener speaks only HTTPS; a
// client that trusts the certificate gets answers, one that does not, or
// that speaks plain HTTP, none; the CLI trusts the configured
// certificate and works through it.
func TestAdminListenerOverTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(cert)
	pool.AppendCertsFromPEM(pem)
	trusting := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "cleanline.test"}}}
	get := func(r *running, path string) (*http.Response, error) {
		return trusting.Get("https://" + r.admin + path)
	}
	r := startServe(t, "file:"+filepath.Join(dir, "cl.db"), fmt.Sprintf("    tls_cert: %q\n    tls_key: %q", cert, key), trusting)

	res, err := get(r, "/openapi.json")
	if err != nil || res.StatusCode != 200 || res.TLS == nil {
		t.Fatalf("https with the certificate trusted: %v %v", res, err)
	}
	res.Body.Close()
	if res, err := plainGet(r, "/healthz"); err == nil {
		res.Body.Close()
		if res.StatusCode == 200 {
			t.Fatal("plain HTTP answered 200 on a TLS listener")
		}
	}
	stranger := &http.Client{Timeout: 2 * time.Second}
	if _, err := stranger.Get("https://" + r.admin + "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("https without trusting the certificate: %v, want a certificate error", err)
	}
	cli(t, "block", "add", "020 7946 0555", "--config", r.cfg).expect(t, exitOK, "added +442079460555")
	cli(t, "block", "list", "--config", r.cfg).expect(t, exitOK, "+442079460555")
}
