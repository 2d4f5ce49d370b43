package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/cmd/internal/admin/api"
	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip"
)

// Reload and lifecycle (issue 13). SIGHUP, POST /v1/reload and `cleanline
// reload` all come to reloader.Reload: it re-reads the file serve was
// started with, checks all of it as start-up does, and only then puts it
// in force, everywhere at once (sip.Server.Reload, the admin service's
// screener and lines, the API's tokens). A file that is wrong, or that
// changes what only a restart applies, is refused whole, with the error
// naming the key; the running configuration stays. Live calls keep the
// configuration they started with. serve tells systemd where it stands
// (sd_notify: READY, RELOADING, STOPPING).

// reloader is serve's one way to reload.
type reloader struct {
	path     string // the config file serve was started with ("" : none, the defaults)
	storeURL string // --store, which replaces the file's store as at start
	store    blocklist.Store
	srv      *sip.Server
	log      *zap.Logger

	// Set by startAdmin when there is an admin listener.
	svc  *admin.Service
	keys *api.Keyring

	lines atomic.Pointer[[]admin.Line] // the admin service's lines

	mu  sync.Mutex // one reload at a time
	cur Config     // in force; guarded by mu

	reloads     *prometheus.CounterVec
	lastOK      prometheus.Gauge
	lastSuccess prometheus.Gauge
}

func (e *env) newReloader(srv *sip.Server, reg prometheus.Registerer) *reloader {
	r := &reloader{path: e.configPath, storeURL: e.storeURL, store: e.store, srv: srv, log: e.log.Named("reload"), cur: e.cfg,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cleanline_config_reloads_total",
			Help: "Configuration reloads (SIGHUP, POST /v1/reload, cleanline reload), by result: ok, or refused (the running configuration stayed in force).",
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanline_config_last_reload_successful",
			Help: "1 when the last configuration reload (or the start) succeeded, 0 when it was refused.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cleanline_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration in force was loaded (start or reload), in Unix seconds.",
		}),
	}
	r.reloads.WithLabelValues("ok")
	r.reloads.WithLabelValues("refused")
	r.lastOK.Set(1)
	r.lastSuccess.SetToCurrentTime()
	reg.MustRegister(r.reloads, r.lastOK, r.lastSuccess)
	lines := e.cfg.adminLines().Lines()
	r.lines.Store(&lines)
	return r
}

// adminLines are the configured lines in force, for the admin service.
func (r *reloader) adminLines() admin.Lines {
	return admin.LinesFunc(func() []admin.Line { return *r.lines.Load() })
}

// watch reloads at every SIGHUP (hup) until ctx ends.
func (r *reloader) watch(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			r.log.Info("SIGHUP: reloading the configuration", zap.String("config", r.path))
			_ = r.Reload(ctx) // logged and counted there
		}
	}
}

// Reload implements admin.Reloader.
func (r *reloader) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// systemd: reloading, until READY=1 (whatever the outcome: the service
	// runs on, with the old configuration or the new one).
	notify(r.log, "RELOADING=1\nSTATUS=reloading "+r.path+"\nMONOTONIC_USEC="+monotonicUsec())
	err := r.reload()
	if err != nil {
		r.reloads.WithLabelValues("refused").Inc()
		r.lastOK.Set(0)
		r.log.Error("configuration refused; the running configuration stays in force", zap.String("config", r.path), zap.Error(err))
		notify(r.log, "READY=1\nSTATUS=serving; the last reload was refused: "+oneLine(err.Error()))
		return err
	}
	r.reloads.WithLabelValues("ok").Inc()
	r.lastOK.Set(1)
	r.lastSuccess.SetToCurrentTime()
	r.log.Info("configuration reloaded", zap.String("config", r.path), zap.Int("lines", len(r.cur.SIP.Lines)),
		zap.Int("trunks", len(r.cur.SIP.Trunks)), zap.Int("tokens", len(r.cur.Admin.Tokens)))
	notify(r.log, "READY=1\nSTATUS=serving; reloaded at "+time.Now().Format(time.RFC3339))
	return nil
}

// reload reads and checks the whole file before it changes anything; the
// steps after sip.Server.Reload cannot fail.
func (r *reloader) reload() error {
	cfg, err := loadConfig(r.path)
	if err != nil {
		return err
	}
	if r.storeURL != "" {
		cfg.Store = r.storeURL
	}
	if err := r.restartOnly(cfg); err != nil {
		return err
	}
	sipCfg := cfg.SIP
	sipCfg.Defaults()
	if err := sipCfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	sc, err := screening.New(r.store, cfg.screeningConfig())
	if err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	var tokens []api.Token
	if r.keys != nil {
		if tokens, err = cfg.Admin.apiTokens(); err != nil {
			return err
		}
		if _, err := api.NewKeyring(tokens); err != nil {
			return fmt.Errorf("%w: admin.tokens: %w", errConfig, err)
		}
	}
	if err := r.srv.Reload(sipCfg, sc); err != nil {
		return fmt.Errorf("%w: %w", errConfig, err)
	}
	if r.keys != nil {
		_ = r.keys.Set(tokens) // checked above
	}
	if r.svc != nil {
		r.svc.SetScreener(sc)
	}
	lines := cfg.adminLines().Lines()
	r.lines.Store(&lines)
	r.cur = cfg
	return nil
}

// restartOnly refuses a change to what serve opened at start: the store,
// the admin listener and its certificate, the logger. (sip.Server.Reload
// refuses its own: listeners, media, limits.)
func (r *reloader) restartOnly(next Config) error {
	cur := r.cur
	for _, k := range []struct{ key, was, now string }{
		{"store", cur.Store, next.Store},
		{"admin.listen", cur.Admin.Listen, next.Admin.Listen},
		{"admin.tls_cert", cur.Admin.TLSCert, next.Admin.TLSCert},
		{"admin.tls_key", cur.Admin.TLSKey, next.Admin.TLSKey},
		{"log.level", cur.Log.Level, next.Log.Level},
		{"log.format", cur.Log.Format, next.Log.Format},
	} {
		if k.was != k.now {
			return fmt.Errorf("%w: %s: %s: %q → %q: only a restart applies this change; the running configuration stays in force",
				errConfig, r.path, k.key, k.was, k.now)
		}
	}
	return nil
}

// notify tells systemd (sd_notify(3)) where serve stands, when it runs
// serve as a Type=notify service ($NOTIFY_SOCKET); otherwise nothing.
func notify(log *zap.Logger, state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("sd_notify failed", zap.String("state", strings.SplitN(state, "\n", 2)[0]), zap.Error(err))
	}
}

// monotonicUsec is CLOCK_MONOTONIC in µs, which systemd wants with
// RELOADING=1 to order reloads (sd_notify(3), MONOTONIC_USEC).
func monotonicUsec() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "0"
	}
	return fmt.Sprint(ts.Nano() / 1000)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// cmdReload asks the running service to reload its configuration file,
// through its admin API like every other command; with no service there
// is nothing to reload, and it says so.
func cmdReload(ctx context.Context, e *env, args []string) error {
	fs := e.flags()
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("reload takes no arguments")
	}
	if e.storeURL != "" {
		return usagef("reload: --store does not apply: the running service reloads its own configuration file")
	}
	if err := e.loadConfig(); err != nil {
		return err
	}
	if e.cfg.Admin.Listen == "" {
		return fmt.Errorf("%w: reload: the config sets no admin.listen, so no running service can be reached; "+
			"send cleanline serve SIGHUP instead (systemctl reload cleanline)", admin.ErrUnavailable)
	}
	a, err := e.runningService(ctx)
	if err != nil {
		return err
	}
	if a == nil {
		return fmt.Errorf("%w: reload: no cleanline serve answers at admin.listen (%s): nothing to reload", admin.ErrUnavailable, e.cfg.Admin.Listen)
	}
	if _, err := a.Reload(ctx, admin.ReloadIn{}); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, "reloaded")
	return nil
}
