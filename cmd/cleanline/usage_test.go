package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"regexp"
	"runtime/debug"
	"sort"
	"strings"
	"testing"
)

// commandFlags runs every command with -h and returns the flags its FlagSet
// defines, by command.
func commandFlags(t *testing.T) map[string][]*flag.Flag {
	t.Helper()
	out := map[string][]*flag.Flag{}
	for name, fn := range commands() {
		var seen *flag.FlagSet
		e := &env{name: name, stdout: io.Discard, stderr: io.Discard, sawFlags: func(fs *flag.FlagSet) { seen = fs }}
		err := fn(context.Background(), e, []string{"-h"})
		e.close()
		if !errors.Is(err, errHelp) || seen == nil {
			t.Fatalf("%s -h: %v; the command did not parse its flags with env.flags and parse", name, err)
		}
		seen.VisitAll(func(f *flag.Flag) { out[name] = append(out[name], f) })
	}
	return out
}

var flagRE = regexp.MustCompile(`--[a-z][a-z-]*`)

// usageSections splits the usage text: each command's synopsis lines, each
// command's block under "Flags of one command", and the flags for every
// command.
func usageSections(t *testing.T) (synopsis, block map[string][]string, global []string) {
	t.Helper()
	synopsis, block = map[string][]string{}, map[string][]string{}
	section, cur := "", ""
	for _, l := range strings.Split(usage, "\n") {
		switch {
		case l == "":
			section = ""
			continue
		case !strings.HasPrefix(l, " "):
			section = l
			continue
		}
		f := strings.Fields(l)
		switch section {
		case "Usage:":
			if len(f) < 2 || f[0] != "cleanline" {
				t.Fatalf("usage line %q does not start with cleanline COMMAND", l)
			}
			synopsis[f[1]] = append(synopsis[f[1]], l)
		case "Flags of one command:":
			if !strings.HasPrefix(l, "   ") {
				cur = f[0]
			}
			block[cur] = append(block[cur], l)
		case "Flags for every command (before or after the arguments):":
			global = append(global, l)
		}
	}
	if len(synopsis) == 0 || len(block) == 0 || len(global) == 0 {
		t.Fatalf("usage sections not found: %d synopses, %d blocks, %d global lines", len(synopsis), len(block), len(global))
	}
	return synopsis, block, global
}

// TestUsageListsEveryFlag: `cleanline help` names every command and every
// flag of every command's FlagSet, with its default, and no flag that does
// not exist.
func TestUsageListsEveryFlag(t *testing.T) {
	synopsis, block, global := usageSections(t)
	globalText := strings.Join(global, "\n")
	for name, flags := range commandFlags(t) {
		if len(synopsis[name]) == 0 {
			t.Errorf("usage has no line for cleanline %s", name)
		}
		syn := strings.Join(synopsis[name], "\n")
		defined := map[string]bool{}
		for _, f := range flags {
			defined[f.Name] = true
			if f.Name == "config" || f.Name == "store" {
				if !strings.Contains(globalText, "--"+f.Name+" ") {
					t.Errorf("--%s is not among the flags for every command", f.Name)
				}
				continue
			}
			if !regexp.MustCompile(`--` + f.Name + `\b`).MatchString(syn) {
				t.Errorf("%s --%s is not on the command's usage line:\n%s", name, f.Name, syn)
			}
			var line string
			for _, l := range block[name] {
				if regexp.MustCompile(`--` + f.Name + `\b`).MatchString(l) {
					line = l
				}
			}
			if line == "" {
				t.Errorf("%s --%s is not explained under \"Flags of one command\"", name, f.Name)
				continue
			}
			if d := f.DefValue; d != "" && d != "false" && !strings.Contains(line, "(default "+d+")") && !strings.Contains(line, `(default "`+d+`")`) {
				t.Errorf("%s --%s: the usage does not say its default %q:\n%s", name, f.Name, d, line)
			}
		}
		for _, l := range append(synopsis[name], block[name]...) {
			for _, m := range flagRE.FindAllString(l, -1) {
				if !defined[strings.TrimPrefix(m, "--")] {
					t.Errorf("the usage gives %s %s, which it does not define:\n%s", name, m, l)
				}
			}
		}
	}
	var names []string
	for name := range synopsis {
		names = append(names, name)
	}
	sort.Strings(names)
	cmds := commands()
	for _, name := range names {
		if _, ok := cmds[name]; !ok && name != "help" && name != "version" {
			t.Errorf("the usage names cleanline %s, which is no command", name)
		}
	}
	for name := range block {
		if _, ok := cmds[name]; !ok {
			t.Errorf("the usage explains flags of %s, which is no command", name)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	cli(t, "help").expect(t, exitOK, "Usage:", "--grace", "--cpuprofile", "--memprofile")
	cli(t, "--help").expect(t, exitOK, "Usage:")
	for _, args := range [][]string{{"check", "-h"}, {"serve", "--help"}, {"trust", "add", "x", "-h"}} {
		r := cli(t, args...)
		r.expect(t, exitOK)
		if r.stdout != usage || r.stderr != "" {
			t.Fatalf("%v: stdout %q, stderr %q", args, r.stdout, r.stderr)
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}, {"--store", "file:x.db", "--version"}} {
		r := cli(t, args...)
		r.expect(t, exitOK)
		if r.stdout != version()+"\n" || !strings.HasPrefix(r.stdout, "cleanline ") {
			t.Fatalf("%v printed %q", args, r.stdout)
		}
	}
	cli(t, "version", "now").expect(t, exitUsage, "version takes no arguments")
}

func TestFormatVersion(t *testing.T) {
	for _, c := range []struct {
		bi   *debug.BuildInfo
		want string
	}{
		{nil, "cleanline (devel)"},
		{&debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Path: "github.com/cleanline/cleanline", Version: "(devel)"}},
			"cleanline (devel), go1.26.0"},
		{&debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: ""}}, "cleanline (devel), go1.26.0"},
		{&debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "477bcee0123456789abcdef0123456789abcdef0"},
			{Key: "vcs.time", Value: "2025-06-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}},
			"cleanline v1.2.3, revision 477bcee0123456789abcdef0123456789abcdef0 of 2025-06-01T10:00:00Z, modified, go1.26.0"},
		{&debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "false"}}},
			"cleanline (devel), revision abc"},
	} {
		if got := formatVersion(c.bi); got != c.want {
			t.Errorf("got  %q\nwant %q", got, c.want)
		}
	}
}
