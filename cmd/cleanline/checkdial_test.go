package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckDial: check --dial answers "may this line dial X" from the
// config's policies (screening.default_policy.dial, a line's policy.dial),
// as serve would: bar exits 2, allow 0.
func TestCheckDial(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cl.yaml")
	os.WriteFile(cfg, []byte(`store: file:`+filepath.Join(dir, "cl.db")+`
screening:
  default_policy:
    dial: {personal: true}
sip:
  lines:
    - name: home
    - name: grandma
      policy:
        dial: {international: true}
`), 0o600)
	for _, c := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"0909 123 4567", "--line", "home"}, exitBlock,
			"bar +449091234567 premium_rate\n  why: line home may not dial premium_rate (its policy's dial.premium_rate is false)\n"},
		{[]string{"118", "118", "--line", "grandma"}, exitBlock, "bar +44118118 premium_rate\n"},
		{[]string{"+1 212 555 0100", "--line", "home"}, exitBlock, "bar +12125550100 international\n"},
		{[]string{"001 212 555 0100", "--line", "grandma"}, exitOK, "allow +12125550100 international\n"},
		{[]string{"00881 612345678", "--line", "grandma"}, exitBlock, "bar +881612345678 satellite,international\n"},
		{[]string{"999", "--line", "home"}, exitOK, "allow +44999 emergency,protected\n"},
		{[]string{"101"}, exitOK, "allow +44101 protected\n"},
		{[]string{"070 1234 5678", "--line", "home"}, exitOK, "allow +447012345678 personal\n"}, // default_policy allows it
		{[]string{"020 7946 0018", "--line", "home"}, exitOK, "allow +442079460018 \n"},
		{[]string{"*99", "--line", "home"}, exitOK, "allow - feature.line_check\n"},
		{[]string{"*21*09012345678#", "--line", "home"}, exitBlock, "bar - service_code\n"},
		{[]string{"nobody", "--line", "home"}, exitBlock, "bar - not_a_number\n  why: not a phone number"},
		{[]string{"09012345678", "--line", "home", "--json"}, exitBlock,
			`{"input":"09012345678","line":"home","action":"bar","number":"+449012345678","emergency":false,"protected":false,"trusted":false,"classes":["premium_rate"],"barred":"premium_rate"}` + "\n"},
	} {
		r := cli(t, append([]string{"check", "--dial", "--config", cfg}, c.args...)...)
		r.expect(t, c.code)
		if !strings.HasPrefix(r.stdout, c.out) || r.stderr != "" {
			t.Errorf("check --dial %v: stdout %q, stderr %q; want %q", c.args, r.stdout, r.stderr, c.out)
		}
	}
	// A trusted contact of the line may be dialled whatever its class.
	cli(t, "trust", "add", "home", "+1 416 555 0123", "--config", cfg).expect(t, exitOK)
	cli(t, "check", "--dial", "001 416 555 0123", "--line", "home", "--config", cfg).expect(t, exitOK, "allow +14165550123 trusted,international\n")
	cli(t, "check", "--dial", "--international", "999", "--config", cfg).expect(t, exitUsage, "--international is about calls to the line")
	cli(t, "check", "--dial", "999", "--line", "nosuch", "--config", cfg).expect(t, exitError, `line "nosuch" is not in the config`)
}
