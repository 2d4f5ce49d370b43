package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/cmd/internal/admin/api"
	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip"
)

// serveCommand returns the serve subcommand.
func serveCommand() (func(context.Context, *env, []string) error, bool) { return cmdServe, true }

// cmdServe runs the B2BUA until ctx ends (SIGINT/SIGTERM), then stops taking
// calls and ends every call with BYE on both legs; a second signal, or the
// --grace deadline, abandons what is left. SIGHUP reloads the configuration
// (reload.go).
func cmdServe(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	grace := fs.Duration("grace", 10*time.Second, "how long shutdown waits for calls to end")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile (go tool pprof) to this file until shutdown")
	memprofile := fs.String("memprofile", "", "write a heap profile to this file at shutdown")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("serve takes no arguments")
	}
	hup := make(chan os.Signal, 1) // from now on SIGHUP reloads, never kills
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := e.setup(ctx); err != nil {
		return err
	}
	// Profiles answer "where does the time go under load" on the real
	// binary (deploy/bench/run.sh profile), without a debug listener.
	if *cpuprofile != "" {
		stop, err := startCPUProfile(*cpuprofile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if *memprofile != "" {
		defer writeHeapProfile(e, *memprofile)
	}
	if e.cfg.Log.Level == "" {
		if e.log, err = newLogger("info", e.cfg.Log.Format, e.stderr); err != nil {
			return err
		}
	}
	// sipgo also logs through slog's package default (sip.DefaultLogger
	// falls back to slog.Default()), outside the loggers sip.NewServer
	// hands it. Route that into our zap logs, at its own level but never
	// above Warn: sipgo's Errors are about peers' input, not our health.
	// The default is restored when serve returns.
	prevSlog := slog.Default()
	slog.SetDefault(slog.New(sip.NewSlogHandler(e.log.Named("sipgo"), zapcore.WarnLevel)))
	defer slog.SetDefault(prevSlog)
	sipCfg := e.cfg.SIP
	sipCfg.Defaults()
	if err := sipCfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	sc, err := screening.New(e.store, e.cfg.screeningConfig())
	if err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	reg := newRegistry()
	sinks, events, stopSinks, err := e.eventSinks(reg)
	defer stopSinks() // after srv.Close, which hands them the last records
	if err != nil {
		return err
	}
	srv, err := sip.NewServer(sipCfg, sc, e.log, append([]sip.Option{sip.WithMetrics(reg)}, sinks...)...)
	if err != nil {
		return err
	}
	defer srv.Close()
	rl := e.newReloader(srv, reg)
	if e.cfg.Admin.Listen != "" {
		adm, err := e.startAdmin(ctx, sc, srv, reg, rl, events)
		if err != nil {
			return err
		}
		defer adm.close()
	}
	if err := srv.Start(); err != nil {
		return err
	}
	notify(e.log, "READY=1\nSTATUS=serving") // SIP and admin listeners are up
	rl.watch(ctx, hup)
	notify(e.log, "STOPPING=1\nSTATUS=ending calls")

	e.log.Info("shutting down", zap.Int("calls", srv.ActiveCalls()), zap.Duration("grace", *grace))
	sctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	again := make(chan os.Signal, 1)
	signal.Notify(again, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(again)
	go func() {
		select {
		case <-again:
			e.log.Warn("second signal: abandoning calls")
			cancel()
		case <-sctx.Done():
		}
	}()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.Canceled) {
		e.log.Warn("shutdown incomplete", zap.Error(err))
	}
	return nil
}

// startAdmin opens the admin listener: the admin service over serve's own
// store, screener and B2BUA, behind the configured tokens, so that every
// command works while serve holds the store (issue 13).
func (e *env) startAdmin(ctx context.Context, sc *screening.Screener, srv *sip.Server, reg *prometheus.Registry, rl *reloader, events blocklist.EventLog) (*adminHTTP, error) {
	tokens, err := e.cfg.Admin.apiTokens()
	if err != nil {
		return nil, err
	}
	if rl.keys, err = api.NewKeyring(tokens); err != nil {
		return nil, fmt.Errorf("%w: admin.tokens: %w", errConfig, err)
	}
	tlsCfg, err := e.cfg.Admin.serverTLS()
	if err != nil {
		return nil, err
	}
	deps := admin.Deps{Store: e.store, Screener: sc, Lines: rl.adminLines(), Calls: srv, Reloader: rl, Upstream: srv,
		Registrations: srv}
	if events != nil {
		deps.Events = callRecords{events}
	}
	if rl.svc, err = admin.New(deps); err != nil {
		return nil, err
	}
	return listenAdmin(adminSetup{addr: e.cfg.Admin.Listen, tls: tlsCfg, api: rl.svc, tokens: tokens, keys: rl.keys, reg: reg,
		healthy: func() bool { return ctx.Err() == nil }, checks: []func() error{srv.Healthy}, log: e.log})
}
