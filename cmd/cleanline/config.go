package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/cleanline/cleanline/cmd/internal/admin"
	"github.com/cleanline/cleanline/cmd/internal/admin/webhook"
	"github.com/cleanline/cleanline/screening"
	"github.com/cleanline/cleanline/sip"
)

// Config is cleanline's whole configuration file. Every key is documented in
// README.md; deploy/demo.yaml is a working example.
type Config struct {
	// Store selects the data store: "file:PATH" (embedded, one box; the
	// default is file:./cleanline.db), "redis://[user:pass@]host:port[/db]",
	// "redis-sentinel://host:port,host:port/master[/db]" or
	// "redis-cluster://host:port,host:port".
	Store string `yaml:"store"`
	// Screening configures the decision engine.
	Screening ScreeningConfig `yaml:"screening"`
	// Log configures logging.
	Log LogConfig `yaml:"log"`
	// SIP configures the B2BUA that `serve` runs: listeners, trunks, lines,
	// media, timers, feature codes and prompts (see sip.Config).
	SIP sip.Config `yaml:"sip"`
	// Admin configures serve's HTTP listener for operators.
	Admin AdminConfig `yaml:"admin"`
	// Events configures keeping call events in the store (events.go).
	Events EventsConfig `yaml:"events"`
	// Webhooks are the systems each line's call events are POSTed to
	// (package webhook): top level, for one may serve several lines.
	Webhooks []webhook.Config `yaml:"webhooks"`
}

// AdminConfig configures serve's admin listener: the HTTP API under /v1/,
// its OpenAPI document, /metrics, /healthz and /debug/pprof/ (README,
// "Admin API"), and how the CLI reaches it.
type AdminConfig struct {
	// Listen is host:port of the admin listener; empty (the default) opens
	// nothing, and the CLI then always opens the store itself. Anywhere
	// but loopback it needs Tokens.
	Listen string `yaml:"listen"`
	// TLSCert and TLSKey are PEM files: with both, the listener speaks
	// HTTPS only. The CLI trusts exactly this certificate (it reads the
	// same file), so a self-signed one does.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// Tokens are the bearer tokens the API accepts. With none, every
	// route is open to whoever reaches the listener: loopback only.
	Tokens []AdminToken `yaml:"tokens"`
	// CLITokenFile holds the token the CLI sends to the running service
	// when $CLEANLINE_TOKEN is not set.
	CLITokenFile string `yaml:"cli_token_file"`
}

// AdminToken is one bearer token of the admin API.
type AdminToken struct {
	// Name says who, in logs and as the source of what the token writes
	// ("api:NAME"); never the secret. Required, unique.
	Name string `yaml:"name"`
	// Token is the secret itself (16 characters or more); TokenFile a file
	// holding it instead, read when serve starts and at each reload
	// (keep the config readable, the file not). Exactly one of the two.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
	// Scope is admin (everything), read (every GET and /metrics) or carer
	// (the routes of its Lines: their calls, trusted contacts, blocked
	// numbers and reports; nothing of any other line).
	Scope string `yaml:"scope"`
	// Lines are a carer's lines (sip.lines names); only a carer has them.
	Lines []string `yaml:"lines"`
}

// ScreeningConfig configures the screener for every line.
type ScreeningConfig struct {
	// Region is the ISO 3166 region national numbers are read in (default GB).
	Region string `yaml:"region"`
	// Protected lists never-originate numbers beyond the built-in 999 112
	// 101 111 105 119 159, for every line: a call presenting one is
	// spoofed, and a line dialling one first ends its other calls (D4).
	// A line's own (its bank) go in its policy.protected.
	Protected []string `yaml:"protected"`
	// Features are the codes a line dials that cleanline answers itself:
	// line_check (D5, default "*99") and report (default "*57"); "-"
	// disables one.
	Features screening.Features `yaml:"features"`
	// DefaultPolicy is the policy of every line that does not set its own.
	DefaultPolicy screening.Policy `yaml:"default_policy"`
}

// LogConfig configures zap.
type LogConfig struct {
	// Level is debug, info, warn or error (default info for serve, warn for
	// the admin commands).
	Level string `yaml:"level"`
	// Format is console or json (default console).
	Format string `yaml:"format"`
}

// DefaultStore is where the embedded store lives when nothing says otherwise.
const DefaultStore = "file:./cleanline.db"

func defaultConfig() Config {
	return Config{
		Store:     DefaultStore,
		Screening: ScreeningConfig{Region: screening.DefaultRegion, DefaultPolicy: screening.DefaultPolicy()},
		Log:       LogConfig{Format: "console"},
		Events:    EventsConfig{Store: true},
	}
}

// errConfig marks errors in the configuration file.
var errConfig = errors.New("config")

// movedKeys are keys that left the place they once had: a file still using
// one gets the hint instead of a bare "unknown key". A path's list indexes
// are written [] ("sip.lines[].policy.foo"). A key only gets its hint once
// it is really gone from Config; add the old path here when moving one.
var movedKeys = map[string]string{
	"sip.features":           "moved: line_check and report are screening.features; protected numbers go in screening.protected, or a line's policy.protected",
	"sip.features.protected": "moved: list these numbers in screening.protected (or a line's policy.protected)",
}

// loadConfig reads path over the defaults; unknown keys are errors, so a typo
// is reported instead of silently ignored.
func loadConfig(path string) (Config, error) {
	cfg := defaultConfig()
	if path == "" {
		return cfg, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("%w: %w", errConfig, err)
	}
	return parseConfig(path, b)
}

// parseConfig decodes data, the contents of the file name, over the
// defaults and validates the result. Every error names the file, the line
// and the key path: "config: deploy/demo.yaml:12: sip.timers.no_answer:
// "sixty" is not a duration".
func parseConfig(name string, data []byte) (Config, error) {
	cfg := defaultConfig()
	if err := decodeStrict(data, &cfg, movedKeys); err != nil {
		var ce *configErrors
		if errors.As(err, &ce) {
			ce.File = name
		}
		return cfg, fmt.Errorf("%w: %w", errConfig, err)
	}
	if err := cfg.validate(); err != nil {
		return cfg, fmt.Errorf("%w: %s: %w", errConfig, name, err)
	}
	return cfg, nil
}

func (c Config) validate() error {
	if err := c.Admin.validate(c.SIP.Lines); err != nil {
		return err
	}
	if c.Store == "" {
		return errors.New("store: empty; want file:PATH or redis://host:port")
	}
	if _, err := screening.NewNormalizer(c.Screening.Region, 0); err != nil {
		return fmt.Errorf("screening.region: %w", err)
	}
	if err := c.Screening.DefaultPolicy.Validate(); err != nil {
		return fmt.Errorf("screening.default_policy: %w", err)
	}
	switch c.Log.Format {
	case "", "console", "json":
	default:
		return fmt.Errorf("log.format %q: want console or json", c.Log.Format)
	}
	switch c.Log.Level {
	case "", "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log.level %q: want debug, info, warn or error", c.Log.Level)
	}
	if err := c.Events.validate(); err != nil {
		return err
	}
	return webhook.Validate(c.Webhooks, c.lineNames())
}

func (c Config) screeningConfig() screening.Config {
	return screening.Config{
		Region:    c.Screening.Region,
		Protected: c.Screening.Protected,
		Features:  c.Screening.Features,
		Default:   c.Screening.DefaultPolicy,
		Lines:     c.SIP.ScreeningLines(),
	}
}

// adminLines are the configured lines as the admin service sees them.
func (c Config) adminLines() admin.Lines {
	lines := make([]admin.Line, len(c.SIP.Lines))
	for i, l := range c.SIP.Lines {
		lines[i] = admin.Line{Name: l.Name, Numbers: append([]string{}, l.Numbers...)}
		for _, d := range l.Devices {
			lines[i].Devices = append(lines[i].Devices, d.Username)
		}
	}
	return admin.LinesFunc(func() []admin.Line { return lines })
}
