package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/cleanline/cleanline/cmd/internal/admin/api"
	"github.com/cleanline/cleanline/sip"
)

// The admin section: checked when the file is loaded (validate), and
// turned into what serve and the CLI use (tokens, TLS, the address).

func (a AdminConfig) validate(lines []sip.Line) error {
	if a.Listen != "" {
		if _, _, err := net.SplitHostPort(a.Listen); err != nil {
			return fmt.Errorf("admin.listen %q: want host:port: %w", a.Listen, err)
		}
		if len(a.Tokens) == 0 && !loopback(a.Listen) {
			return fmt.Errorf("admin.tokens: required when admin.listen (%s) is not a loopback address: "+
				"without tokens anyone who reaches it could change the blocklist", a.Listen)
		}
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return errors.New("admin.tls_cert and admin.tls_key: give both, or neither")
	}
	names := map[string]bool{}
	for i, t := range a.Tokens {
		key := fmt.Sprintf("admin.tokens[%d]", i)
		switch {
		case t.Name == "":
			return fmt.Errorf("%s.name: empty", key)
		case names[t.Name]:
			return fmt.Errorf("%s.name: %q used twice", key, t.Name)
		case (t.Token == "") == (t.TokenFile == ""):
			return fmt.Errorf("%s: give token or token_file, not both or neither", key)
		case t.Token != "" && len(t.Token) < api.MinSecret:
			return fmt.Errorf("%s.token: shorter than %d characters", key, api.MinSecret)
		}
		names[t.Name] = true
		switch api.Scope(t.Scope) {
		case api.ScopeCarer:
			if len(t.Lines) == 0 {
				return fmt.Errorf("%s.lines: a carer's token needs the lines it looks after", key)
			}
		case api.ScopeAdmin, api.ScopeRead:
			if len(t.Lines) > 0 {
				return fmt.Errorf("%s.lines: only a carer's token has lines (this one's scope is %s)", key, t.Scope)
			}
		default:
			return fmt.Errorf("%s.scope %q: want admin, read or carer", key, t.Scope)
		}
		for j, l := range t.Lines {
			if len(lines) > 0 && !slices.ContainsFunc(lines, func(sl sip.Line) bool { return sl.Name == l }) {
				return fmt.Errorf("%s.lines[%d]: %q is not in sip.lines", key, j, l)
			}
		}
	}
	return nil
}

// loopback says whether host:port can only be reached from this machine.
func loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// apiTokens are the tokens serve's API accepts, token files read.
func (a AdminConfig) apiTokens() ([]api.Token, error) {
	out := make([]api.Token, len(a.Tokens))
	for i, t := range a.Tokens {
		secret := t.Token
		if t.TokenFile != "" {
			b, err := os.ReadFile(t.TokenFile)
			if err != nil {
				return nil, fmt.Errorf("%w: admin.tokens[%d].token_file: %w", errConfig, i, err)
			}
			secret = strings.TrimSpace(string(b))
		}
		out[i] = api.Token{Name: t.Name, Secret: secret, Scope: api.Scope(t.Scope), Lines: t.Lines}
		if err := out[i].Validate(); err != nil {
			return nil, fmt.Errorf("%w: admin.tokens[%d]: %w", errConfig, i, err)
		}
	}
	return out, nil
}

// serverTLS is the listener's TLS configuration; nil without tls_cert.
func (a AdminConfig) serverTLS() (*tls.Config, error) {
	if a.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(a.TLSCert, a.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("%w: admin.tls_cert, admin.tls_key: %w", errConfig, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
