package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/cmd/internal/admin/api"
	"github.com/cleanline/cleanline/cmd/internal/admin/web"
)

// adminHTTP is serve's admin listener: one listener, one mux (package api)
// for the API, its document, metrics, health, profiles and the carer's
// page (package web).
type adminHTTP struct {
	srv *http.Server
	ln  net.Listener
}

// newRegistry is the registry serve's metrics go to: cleanline's own plus
// the Go runtime's and the process's (RSS, descriptors, CPU).
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// adminSetup is what the admin listener serves.
type adminSetup struct {
	addr    string
	tls     *tls.Config // nil: plain HTTP
	api     admin.API   // nil: the API's routes answer "unavailable", and there is no carer's page
	tokens  []api.Token
	keys    *api.Keyring // when set, instead of tokens: the tokens a reload replaces
	reg     *prometheus.Registry
	healthy func() bool
	checks  []func() error
	log     *zap.Logger
}

// startAdminHTTP listens on addr with metrics, health and profiles, and no
// tokens (a loopback listener); serve uses listenAdmin.
func startAdminHTTP(addr string, reg *prometheus.Registry, healthy func() bool, log *zap.Logger, checks ...func() error) (*adminHTTP, error) {
	return listenAdmin(adminSetup{addr: addr, reg: reg, healthy: healthy, checks: checks, log: log})
}

// listenAdmin listens now, so a port in use fails serve at start rather
// than in a log line later. /healthz answers 503 while healthy is false
// (shutting down) or a check fails (sip.Server.Healthy: a SIP listener no
// longer accepts), with the check's error as the body.
func listenAdmin(s adminSetup) (*adminHTTP, error) {
	health := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !s.healthy() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		for _, check := range s.checks {
			if err := check(); err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	cfg := api.Config{API: s.api, Tokens: s.tokens, Keyring: s.keys, Log: s.log.Named("admin"), Handlers: api.Handlers{
		Health:  health,
		Metrics: promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg}),
	}}
	if s.api != nil {
		// The carer's page, on the same listener, signing in with the
		// API's own token check.
		cfg.Pages = func(tokens api.Tokens) (http.Handler, error) {
			return web.New(web.Config{API: s.api, Tokens: tokens, Secure: s.tls != nil, Log: s.log.Named("carer")})
		}
	}
	h, err := api.NewHandler(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: admin.tokens: %w", errConfig, err)
	}
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		return nil, fmt.Errorf("%w: admin.listen: %w", errConfig, err)
	}
	scheme := "http"
	if s.tls != nil {
		ln, scheme = tls.NewListener(ln, s.tls), "https"
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: zap.NewStdLog(s.log.Named("admin"))}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin listener stopped", zap.Error(err))
		}
	}()
	s.log.Info("admin listening", zap.String("url", scheme+"://"+ln.Addr().String()), zap.Int("tokens", len(s.tokens)))
	return &adminHTTP{ln: ln, srv: srv}, nil
}

// close stops the listener, letting a request in flight finish briefly.
func (a *adminHTTP) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = a.srv.Shutdown(ctx)
}
