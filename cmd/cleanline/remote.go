package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/cmd/internal/admin/api"
)

// The CLI's way to the running service: when the config names
// admin.listen and a cleanline serve answers there, every command goes
// through its API (the embedded store is one process's, and even on Redis
// the service is the one place that decides). Nothing listening there:
// the command opens the store itself, as it always has.

// tokenEnv holds the token the CLI sends; admin.cli_token_file otherwise.
const tokenEnv = "CLEANLINE_TOKEN"

// runningService is the API of the cleanline serve answering at
// admin.listen; nil when the config names none or nothing listens there.
func (e *env) runningService(ctx context.Context) (admin.API, error) {
	a := e.cfg.Admin
	if a.Listen == "" {
		return nil, nil
	}
	base, hc, err := adminClient(a)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, base+"/healthz", nil)
	if err != nil {
		return nil, err
	}
	res, err := hc.Do(req)
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return nil, nil // nobody there: no service running
	}
	if err != nil {
		return nil, fmt.Errorf("a service listens at %s (admin.listen) but did not answer: %w", base, err)
	}
	res.Body.Close()
	// 200, or 503 while it shuts down or a SIP listener is sick: either
	// way it is there, and holds the store.
	token, err := cliToken(a)
	if err != nil {
		return nil, err
	}
	return api.NewClient(base, token, hc), nil
}

// cliToken is $CLEANLINE_TOKEN, else admin.cli_token_file's content.
func cliToken(a AdminConfig) (string, error) {
	if t := strings.TrimSpace(os.Getenv(tokenEnv)); t != "" {
		return t, nil
	}
	if a.CLITokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(a.CLITokenFile)
	if err != nil {
		return "", fmt.Errorf("%w: admin.cli_token_file: %w", errConfig, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// adminClient is the base URL of admin.listen as this machine reaches it
// (an unspecified address is reached on loopback), and an HTTP client for
// it: over TLS when admin.tls_cert is set, trusting that certificate.
func adminClient(a AdminConfig) (string, *http.Client, error) {
	host, port, err := net.SplitHostPort(a.Listen)
	if err != nil {
		return "", nil, fmt.Errorf("%w: admin.listen %q: %w", errConfig, a.Listen, err)
	}
	if ip, err := netip.ParseAddr(host); host == "" || err == nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if err == nil && ip.Is6() {
			host = "::1"
		}
	}
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 0, // an import answers when it is done
		MaxIdleConns:          4,
		IdleConnTimeout:       30 * time.Second,
	}
	scheme := "http"
	if a.TLSCert != "" {
		scheme = "https"
		if tr.TLSClientConfig, err = pinnedTLS(a.TLSCert, host); err != nil {
			return "", nil, err
		}
	}
	return scheme + "://" + net.JoinHostPort(host, port), &http.Client{Transport: tr}, nil
}

// pinnedTLS trusts the certificates in certFile, the listener's own: the
// CLI runs next to the service and reads its configuration, so it checks
// that it speaks to that service, by name when the certificate names the
// address dialled, else by the certificate's own first name.
func pinnedTLS(certFile, host string) (*tls.Config, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("%w: admin.tls_cert: %w", errConfig, err)
	}
	pool := x509.NewCertPool()
	var leaf *x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: admin.tls_cert: %w", errConfig, err)
		}
		if leaf == nil {
			leaf = c
		}
		pool.AddCert(c)
	}
	if leaf == nil {
		return nil, fmt.Errorf("%w: admin.tls_cert %s: no PEM certificate", errConfig, certFile)
	}
	name := host
	if leaf.VerifyHostname(host) != nil {
		switch {
		case len(leaf.DNSNames) > 0:
			name = leaf.DNSNames[0]
		case len(leaf.IPAddresses) > 0:
			name = leaf.IPAddresses[0].String()
		}
	}
	return &tls.Config{RootCAs: pool, ServerName: name, MinVersion: tls.VersionTLS12}, nil
}
