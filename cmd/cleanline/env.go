package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/screening"
)

// env is what every command shares: output, configuration, store, logger.
type env struct {
	name           string
	stdout, stderr io.Writer

	configPath string
	storeURL   string
	cfg        Config
	store      blocklist.Admin
	log        *zap.Logger
	code       int // exit status a command chose (check's verdict)

	// sawFlags, when set, is called with a command's FlagSet when the
	// command is asked for help (-h): tests list every command's flags so.
	sawFlags func(*flag.FlagSet)
}

// errHelp: the command was asked for help (-h, --help); run prints the usage.
var errHelp = errors.New("help requested")

// usageError is a mistake in how the command was typed.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// flags returns a FlagSet with the flags every command takes.
func (e *env) flags() *flag.FlagSet {
	fs := flag.NewFlagSet(e.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&e.configPath, "config", os.Getenv("CLEANLINE_CONFIG"), "configuration file")
	fs.StringVar(&e.storeURL, "store", "", "store URL")
	fs.Usage = func() {
		if e.sawFlags != nil {
			e.sawFlags(fs)
		}
	}
	return fs
}

// flagGiven says whether the command line set the flag (to any value,
// the default included).
func flagGiven(fs *flag.FlagSet, name string) bool {
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == name })
	return given
}

// parse accepts flags before, between and after positional arguments, as
// people type them ("cleanline check 020 7946 0123 --json"); "--" ends flags.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, usageError{fmt.Sprintf("%v", err)}
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, tail...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// number joins positional words into one number, so that a number typed with
// spaces and no quotes ("block add 020 7946 0123") is read as typed.
func number(words []string) string { return strings.Join(words, " ") }

// setup loads the configuration and opens the store.
func (e *env) setup(ctx context.Context) error {
	if err := e.loadConfig(); err != nil {
		return err
	}
	var err error
	e.store, err = openStore(ctx, e.cfg.Store)
	return err
}

// loadConfig loads the configuration (--store replacing its store) and
// makes the logger.
func (e *env) loadConfig() error {
	cfg, err := loadConfig(e.configPath)
	if err != nil {
		return err
	}
	if e.storeURL != "" {
		cfg.Store = e.storeURL
	}
	e.cfg = cfg
	level := cfg.Log.Level
	if level == "" {
		level = "warn"
	}
	e.log, err = newLogger(level, cfg.Log.Format, e.stderr)
	return err
}

// api is what an operator's command asks: the running service's HTTP API
// when one answers at admin.listen (so the command works while serve holds
// the store), else a Service over the store, opened here. --store always
// opens that store itself.
func (e *env) api(ctx context.Context) (admin.API, error) {
	if err := e.loadConfig(); err != nil {
		return nil, err
	}
	if e.storeURL == "" {
		c, err := e.runningService(ctx)
		if c != nil || err != nil {
			return c, err
		}
	}
	var err error
	if e.store, err = openStore(ctx, e.cfg.Store); err != nil {
		return nil, e.lockedHint(err)
	}
	sc, err := screening.New(e.store, e.cfg.screeningConfig())
	if err != nil {
		return nil, err
	}
	deps := admin.Deps{Store: e.store, Screener: sc, Lines: e.cfg.adminLines()}
	if e.cfg.Events.Store {
		// The call records serve kept: read, never written, here.
		if log, err := openEventLog(e.store, e.cfg.Events.logOptions(true)); err == nil {
			deps.Events = callRecords{log}
		}
	}
	return admin.New(deps)
}

// lockedHint says how to reach an embedded store another process holds:
// through that cleanline serve's admin listener.
func (e *env) lockedHint(err error) error {
	if !errors.Is(err, blocklist.ErrUnavailable) || !strings.HasPrefix(e.cfg.Store, "file:") || !strings.Contains(err.Error(), "locked") {
		return err
	}
	switch {
	case e.cfg.Admin.Listen == "":
		return fmt.Errorf("%w; if cleanline serve holds it, set admin.listen in the config (its and this command's) so that commands go through it", err)
	case e.storeURL != "":
		return fmt.Errorf("%w; leave out --store so that the command goes through the service at admin.listen", err)
	}
	return err
}

func (e *env) close() {
	if e.store != nil {
		e.store.Close()
	}
	if e.log != nil {
		_ = e.log.Sync()
	}
}

// exit prints err as one line and maps it to an exit status.
func (e *env) exit(err error) int {
	var u usageError
	switch {
	case err == nil:
		return e.code
	case errors.Is(err, errHelp):
		fmt.Fprint(e.stdout, usage)
		return exitOK
	case errors.As(err, &u):
		fmt.Fprintf(e.stderr, "cleanline %s: %v (run cleanline help)\n", e.name, err)
		return exitUsage
	default:
		// One line, even for errors that arrive in several (YAML's).
		msg := strings.Join(strings.Fields(err.Error()), " ")
		if errors.Is(err, admin.ErrUnauthenticated) {
			msg += fmt.Sprintf(" (the running service wants a token: set $%s, or admin.cli_token_file)", tokenEnv)
		}
		fmt.Fprintf(e.stderr, "cleanline %s: %s\n", e.name, msg)
		return exitError
	}
}

func newLogger(level, format string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("%w: log.level: %w", errConfig, err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if strings.EqualFold(format, "json") {
		enc = zapcore.NewJSONEncoder(ec)
	} else {
		enc = zapcore.NewConsoleEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), nil
}
