package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cleanline/cleanline/blocklist"
	"github.com/cleanline/cleanline/screening"
)

// The systemd unit and the example configuration in deploy/systemd.

const unitFile = "../../deploy/systemd/cleanline.service"

// unitKeys are the unit's Key=Value lines, by key (a key given twice has
// both values, in order).
func unitKeys(t *testing.T, text string) map[string][]string {
	t.Helper()
	keys := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "[") {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("unit line %q is no Key=Value", l)
		}
		keys[k] = append(keys[k], v)
	}
	return keys
}

// systemd-analyze verify passes on the unit, without one warning, with
// ExecStart pointing at a cleanline built by this test (verify checks that
// the executable exists); and the unit keeps what issue 13 asks of it.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("no systemd-analyze (Debian: apt-get install systemd)")
	}
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	keys := unitKeys(t, unit)
	for k, want := range map[string]string{
		"Type": "notify", "ExecReload": "/bin/kill -HUP $MAINPID", "Restart": "on-failure",
		"ExecStart":       "/usr/local/bin/cleanline serve --config /etc/cleanline/cleanline.yaml",
		"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet": "", "User": "cleanline",
		"StateDirectory": "cleanline", "LimitNOFILE": "16384",
	} {
		if v := keys[k]; len(v) != 1 || v[0] != want {
			t.Errorf("unit %s=%q, want %q", k, v, want)
		}
	}
	if _, ok := keys["AmbientCapabilities"]; ok {
		t.Error("unit grants capabilities: serve binds no privileged port")
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "cleanline")
	build := exec.Command("go", "build", "-o", bin, ".") // go test puts its go first in PATH
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	path := filepath.Join(dir, "cleanline.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/cleanline", bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(analyze, "verify", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	if err != nil || out.Len() > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out.String())
	}
	// The test can fail: verify does warn, of a key it does not know.
	bad := filepath.Join(dir, "cleanline-bad.service")
	if err := os.WriteFile(bad, []byte(strings.Replace(unit, "Type=notify", "Type=notify\nReadyness=1", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, _ := exec.Command(analyze, "verify", bad).CombinedOutput(); !strings.Contains(string(got), "Readyness") {
		t.Fatalf("verify said nothing of an unknown key: %q", got)
	}
}

// The example configuration loads as serve loads it (strict keys, the
// sip section, the screener), and agrees with the unit: its store is in
// the unit's StateDirectory, and the unit starts serve with its path.
func TestSystemdExampleConfigLoads(t *testing.T) {
	cfg, err := loadConfig("../../deploy/systemd/cleanline.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store != "file:/var/lib/cleanline/cleanline.db" {
		t.Errorf("store %q, want the unit's StateDirectory /var/lib/cleanline", cfg.Store)
	}
	sipCfg := cfg.SIP
	sipCfg.Defaults()
	if err := sipCfg.Validate(); err != nil {
		t.Fatal(err)
	}
	st, err := blocklist.OpenFile(filepath.Join(t.TempDir(), "cl.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := screening.New(st, cfg.screeningConfig()); err != nil {
		t.Fatal(err)
	}
	if !loopback(cfg.Admin.Listen) || len(cfg.Admin.Tokens) == 0 {
		t.Errorf("admin.listen %q with %d tokens: want loopback, with tokens", cfg.Admin.Listen, len(cfg.Admin.Tokens))
	}
}
