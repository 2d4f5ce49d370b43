package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const demoConfig = "../../deploy/demo.yaml"

func TestLoadDemoConfig(t *testing.T) {
	cfg, err := loadConfig(demoConfig)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.SIP.Lines) == 0 || cfg.Store == "" || cfg.Screening.Region == "" {
		t.Fatalf("demo config decoded to %+v", cfg)
	}
}

// TestLoadConfigErrorFiles loads every testdata/config/bad-*.yaml; the first
// line of each says what the error must contain ("# want: FILE:LINE: ...").
func TestLoadConfigErrorFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/config/bad-*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	t.Chdir("testdata/config")
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(b), "\n")
			want, ok := strings.CutPrefix(first, "# want: ")
			if !ok {
				t.Fatalf("%s: first line is not \"# want: ...\"", name)
			}
			_, err = loadConfig(name)
			if err == nil {
				t.Fatalf("loaded without error; want %s", want)
			}
			if !errors.Is(err, errConfig) || !strings.HasPrefix(err.Error(), "config: ") {
				t.Errorf("error %q is not a config error", err)
			}
			if !strings.Contains(err.Error(), want) {
				t.Fatalf("error\n %s\nlacks\n %s", err, want)
			}
		})
	}
}

// TestConfigErrorsThroughTheCommand: the command prints the key path and
// line, in one line, without Go's types.
func TestConfigErrorsThroughTheCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cl.yaml")
	os.WriteFile(cfg, []byte("store: file:"+filepath.Join(dir, "cl.db")+"\nscreening:\n  regoin: GB\nsip:\n  timers: {no_answer: sixty}\n"), 0o600)
	r := cli(t, "check", "1", "--config", cfg)
	r.expect(t, exitError,
		"cleanline check: config: "+cfg+":3: screening.regoin: unknown key (known keys: region, ",
		cfg+`:5: sip.timers.no_answer: "sixty" is not a duration`)
	if strings.Contains(r.stderr, "main.") || strings.Contains(r.stderr, "time.Duration") || strings.Count(r.stderr, "\n") != 1 {
		t.Fatalf("stderr: %q", r.stderr)
	}
}

// TestMovedKeys: a file using a moved key gets the hint, once the key has
// really left Config.
func TestMovedKeys(t *testing.T) {
	for old, hint := range movedKeys {
		parts := strings.Split(old, ".")
		doc, indent := "", ""
		for i, p := range parts {
			p = strings.TrimSuffix(p, "[]")
			if i == len(parts)-1 {
				doc += indent + p + ": ~\n" // null: valid for any key that exists
				break
			}
			doc += indent + p + ":\n"
			indent += "  "
			if strings.HasSuffix(parts[i], "[]") {
				doc += indent + "- "
				indent += "  "
			}
		}
		_, err := parseConfig("moved.yaml", []byte(doc))
		var ce *configErrors
		if !errors.As(err, &ce) {
			t.Logf("%s is still a key of Config (%v): no hint yet", old, err)
			continue
		}
		// A moved section's hint stands for the keys under it.
		hints := []string{hint}
		for i := range parts[:len(parts)-1] {
			if h, ok := movedKeys[strings.Join(parts[:i+1], ".")]; ok {
				hints = append(hints, h)
			}
		}
		found := false
		for _, h := range hints {
			found = found || strings.Contains(err.Error(), h)
		}
		if !found {
			t.Errorf("%s: error %v lacks the hint %q", old, err, hints)
		}
	}
}

// FuzzLoadConfig: no configuration file makes loading it (and what serve
// then does with its sip section) panic, and decoding errors never speak Go.
func FuzzLoadConfig(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/config/*.yaml")
	seeds = append(seeds, demoConfig)
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parseConfig("fuzz.yaml", data)
		var ce *configErrors
		if errors.As(err, &ce) {
			for _, k := range ce.Errs {
				if strings.Contains(k.Msg, "main.") || strings.Contains(k.Msg, "not found in type") {
					t.Fatalf("error speaks Go: %v", err)
				}
			}
		}
		if err != nil {
			return
		}
		s := cfg.SIP
		s.Defaults()
		if s.Validate() == nil {
			_ = s.ScreeningLines()
		}
	})
}

// TestConfigNATKey: sip.trunks[].nat and sip.lines[].nat reach the SIP
// config; a value that is no boolean names its key.
func TestConfigNATKey(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cl.yaml")
	body := func(nat string) []byte {
		return []byte("store: file:" + filepath.Join(dir, "cl.db") + `
sip:
  trunks: [{name: provider, sources: [127.0.0.2]}]
  lines: [{name: home, contact: "sip:home@127.0.0.3:5060", nat: ` + nat + `}]
`)
	}
	os.WriteFile(cfg, body("true"), 0o600)
	c, err := loadConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !c.SIP.Lines[0].NAT || c.SIP.Trunks[0].NAT {
		t.Fatalf("nat: line %v trunk %v, want true and the default false", c.SIP.Lines[0].NAT, c.SIP.Trunks[0].NAT)
	}
	os.WriteFile(cfg, body("maybe"), 0o600)
	if _, err := loadConfig(cfg); err == nil || !strings.Contains(err.Error(), "sip.lines[0].nat") {
		t.Fatalf("nat: maybe: %v, want an error naming sip.lines[0].nat", err)
	}
}
