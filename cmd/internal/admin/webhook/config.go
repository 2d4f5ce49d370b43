// Package webhook POSTs call events to the systems of the people who look
// after a line (a carer's app, a care home's alarm panel): each event as
// JSON, signed with HMAC-SHA256, retried with exponential backoff a
// bounded number of times, from a bounded queue per webhook that never
// makes a call wait (when full, the event is dropped and counted).
//
// A Dispatcher is a sip.EventSink: serve hands it every call event, and it
// keeps those its webhooks ask for.
package webhook

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/cleanline/cleanline/sip"
)

// Config is one webhook, an item of the configuration's `webhooks:` list.
type Config struct {
	// Name labels the webhook in metrics and logs (default: the URL's host).
	Name string `yaml:"name"`
	// URL receives the POSTs: https:// (or http:// on a trusted network).
	URL string `yaml:"url"`
	// Secret is the HMAC-SHA256 key of the signature, shared with the
	// receiver; SecretFile names a file holding it instead (trailing
	// newline ignored). One of them is required. Never logged.
	Secret     string `yaml:"secret"`
	SecretFile string `yaml:"secret_file"`
	// Lines are the lines whose events are sent (default: every line).
	Lines []string `yaml:"lines"`
	// Events are the events sent: any event type (sip.EventType), and
	// "blocked", a refused event whose outcome is blocked (default:
	// warned, blocked, reported, line_check).
	Events []string `yaml:"events"`
	// Timeout bounds one attempt (default 5s).
	Timeout time.Duration `yaml:"timeout"`
	// Attempts is how many times an event is tried before it is given up
	// (default 5); Backoff the wait before the first retry (default 1s),
	// doubled before each next one, up to MaxBackoff (default 1m).
	Attempts   int           `yaml:"attempts"`
	Backoff    time.Duration `yaml:"backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// Queue is how many events may wait for delivery (default 256), and
	// Workers how many deliveries run at once (default 2): a receiver that
	// hangs holds Workers events and fills the queue; later ones are
	// dropped and counted, and calls go on as ever.
	Queue   int `yaml:"queue"`
	Workers int `yaml:"workers"`
}

// Blocked is the webhook event name of a refused event whose outcome is
// "blocked": a caller the screening blocked.
const Blocked = "blocked"

// DefaultEvents are what a webhook sends when its config names none.
var DefaultEvents = []string{string(sip.EventWarned), Blocked, string(sip.EventReported), string(sip.EventLineCheck)}

// eventNames are the names Events may hold.
func eventNames() []string {
	names := []string{Blocked}
	for _, t := range []sip.EventType{sip.EventScreened, sip.EventWarned, sip.EventChoice, sip.EventConnected,
		sip.EventRefused, sip.EventReported, sip.EventLineCheck, sip.EventBarred, sip.EventEnded, sip.EventCall} {
		names = append(names, string(t))
	}
	return names
}

// withDefaults fills in the defaults; secret is read from SecretFile.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		if u, err := url.Parse(c.URL); err == nil {
			c.Name = u.Host
		}
	}
	if len(c.Events) == 0 {
		c.Events = DefaultEvents
	}
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Attempts <= 0 {
		c.Attempts = 5
	}
	if c.Backoff <= 0 {
		c.Backoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = time.Minute
	}
	if c.Queue <= 0 {
		c.Queue = 256
	}
	if c.Workers <= 0 {
		c.Workers = 2
	}
	return c
}

// errConfig marks a mistake in a webhook's configuration.
var errConfig = errors.New("webhooks")

// Validate checks every webhook of the list against lines (the configured
// lines' names), naming the key of each mistake: "webhooks[1].url: ...".
func Validate(cfgs []Config, lines []string) error {
	var errs []error
	names := map[string]int{}
	for i, c := range cfgs {
		key := func(k string) string { return fmt.Sprintf("webhooks[%d].%s", i, k) }
		bad := func(k, format string, a ...any) {
			errs = append(errs, fmt.Errorf("%s: %s", key(k), fmt.Sprintf(format, a...)))
		}
		u, err := url.Parse(c.URL)
		switch {
		case c.URL == "":
			bad("url", "required")
		case err != nil:
			bad("url", "%v", err)
		case u.Scheme != "https" && u.Scheme != "http" || u.Host == "":
			bad("url", "%q: want https://host/path (or http://)", c.URL)
		case u.User != nil:
			bad("url", "credentials in the URL would be logged with it: sign with secret instead")
		}
		switch {
		case c.Secret == "" && c.SecretFile == "":
			bad("secret", "required (or secret_file): the receiver checks the signature with it")
		case c.Secret != "" && c.SecretFile != "":
			bad("secret", "give secret or secret_file, not both")
		case c.SecretFile != "":
			if _, err := readSecret(c.SecretFile); err != nil {
				bad("secret_file", "%v", err)
			}
		}
		for _, l := range c.Lines {
			if !slices.Contains(lines, l) {
				bad("lines", "line %q is not in sip.lines (%s)", l, strings.Join(lines, ", "))
			}
		}
		known := eventNames()
		for _, e := range c.Events {
			if !slices.Contains(known, e) {
				bad("events", "%q: want some of %s", e, strings.Join(known, ", "))
			}
		}
		for _, d := range []struct {
			k string
			v time.Duration
		}{{"timeout", c.Timeout}, {"backoff", c.Backoff}, {"max_backoff", c.MaxBackoff}} {
			if d.v < 0 {
				bad(d.k, "%s is negative", d.v)
			}
		}
		for _, n := range []struct {
			k string
			v int
		}{{"attempts", c.Attempts}, {"queue", c.Queue}, {"workers", c.Workers}} {
			if n.v < 0 {
				bad(n.k, "%d is negative", n.v)
			}
		}
		name := c.withDefaults().Name
		if j, dup := names[name]; dup {
			bad("name", "%q is also webhooks[%d]'s name: give each its own", name, j)
		}
		names[name] = i
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", errConfig, errors.Join(errs...))
}

func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = []byte(strings.TrimRight(string(b), "\r\n"))
	if len(b) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return b, nil
}
