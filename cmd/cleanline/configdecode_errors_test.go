package main

// What decodeStrict says of a wrong file; configdecode_test.go holds the
// fixture types and what it decodes from a right one.

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// TestDecodeStrictErrors: one case per error class; each names the key path
// and line, never a Go type.
func TestDecodeStrictErrors(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		want      []keyError
	}{
		{"unknown key", "timers:\n  no_anwser: 5s\n",
			[]keyError{{2, "timers.no_anwser", "unknown key (known keys: no_answer, bye)"}}},
		{"unknown top-level key lists inline keys", "regoin: GB\n",
			[]keyError{{1, "regoin", "unknown key (known keys: region, level, note, store, timers, lines, media, policy, prompts, ports, pair, action, shout, any)"}}},
		{"yaml:\"-\" is not a key", "Skipped: x\n",
			[]keyError{{1, "Skipped", "unknown key (known keys: region, level, note, store, timers, lines, media, policy, prompts, ports, pair, action, shout, any)"}}},
		{"moved key inside a list", "lines:\n  - name: a\n  - name: b\n    policy_action: block\n",
			[]keyError{{4, "lines[1].policy_action", "moved: say lines[].policy.withheld"}}},
		{"an unexported field is not a key", "hidden: x\n",
			[]keyError{{1, "hidden", "unknown key (known keys: region, level, note, store, timers, lines, media, policy, prompts, ports, pair, action, shout, any)"}}},
		{"moved key under an unknown section", "gone:\n  a: 1\n  deep: 2\n", []keyError{
			{1, "gone", "unknown key (known keys: region, level, note, store, timers, lines, media, policy, prompts, ports, pair, action, shout, any)"},
			{3, "gone.deep", "moved: deep is policy.deep now"}}},
		{"duration", "timers:\n  no_answer: sixty\n",
			[]keyError{{2, "timers.no_answer", `"sixty" is not a duration (e.g. 60s, 5m or 1h30m)`}}},
		{"duration without unit", "timers: {bye: 60}\n",
			[]keyError{{1, "timers.bye", `"60" is not a duration: give a unit, e.g. 60s, 5m or 1h30m`}}},
		{"duration from a list", "timers: {bye: [1]}\n",
			[]keyError{{1, "timers.bye", "want a duration, got a list"}}},
		{"integer", "media:\n  port_min: abc\n",
			[]keyError{{2, "media.port_min", `"abc" is not an integer`}}},
		{"fraction is not an integer", "media: {port_max: 1.5}\n",
			[]keyError{{1, "media.port_max", `"1.5" is not an integer`}}},
		{"integer out of range", "media: {small: 300}\n",
			[]keyError{{1, "media.small", `"300" is out of range`}}},
		{"negative unsigned", "media: {count: -1}\n",
			[]keyError{{1, "media.count", `"-1" is not an integer >= 0`}}},
		{"number", "media: {ratio: half}\n",
			[]keyError{{1, "media.ratio", `"half" is not a number`}}},
		{"boolean", "media: {enabled: maybe}\n",
			[]keyError{{1, "media.enabled", `"maybe" is not a boolean (true or false)`}}},
		{"want a list", "lines:\n  - name: home\n    numbers: \"+4420\"\n",
			[]keyError{{3, "lines[0].numbers", "want a list, got a string"}}},
		{"want a mapping", "timers: [1, 2]\n",
			[]keyError{{1, "timers", "want a mapping, got a list"}}},
		{"want a mapping at the top", "- a\n",
			[]keyError{{1, "", "want a mapping, got a list"}}},
		{"want a string", "store: {a: b}\n",
			[]keyError{{1, "store", "want a string, got a mapping"}}},
		{"map of wrong values", "prompts: {warning: [a]}\n",
			[]keyError{{1, "prompts.warning", "want a string, got a list"}}},
		{"map key of the wrong type", "ports: {x: a}\n",
			[]keyError{{1, "ports.x", `"x" is not an integer`}}},
		{"quoted map key in the path", "prompts: {\"a b\": [a]}\n",
			[]keyError{{1, `prompts["a b"]`, "want a string, got a list"}}},
		{"array length", "pair: [1, 2, 3]\n",
			[]keyError{{1, "pair", "want a list of 2, got 3"}}},
		{"TextUnmarshaler error", "action: maybe\n",
			[]keyError{{1, "action", `bad screening policy: action "maybe": want allow, warn or block`}}},
		{"TextUnmarshaler from a mapping", "action: {a: b}\n",
			[]keyError{{1, "action", "want a single value, got a mapping"}}},
		{"pointer to a TextUnmarshaler", "policy: {withheld: sometimes}\n",
			[]keyError{{1, "policy.withheld", `bad screening policy: action "sometimes": want allow, warn or block`}}},
		{"Unmarshaler error", "shout: \"\"\n",
			[]keyError{{1, "shout", "empty: want a word"}}},
		{"Unmarshaler's own type error", "shout: [a]\n",
			[]keyError{{1, "shout", "want a string, got a list"}}},
		{"key given twice", "store: a\ntimers: {}\nstore: b\n",
			[]keyError{{3, "store", "given twice (first on line 1)"}}},
		{"map key given twice", "prompts: {a: x, a: y}\n",
			[]keyError{{1, "prompts.a", "given twice (first on line 1)"}}},
		{"key not a word", "? [a]\n: b\n",
			[]keyError{{1, "", "want a key name, got a list"}}},
		{"alias cycle through a merge", "timers: &t {bye: 1s, <<: *t}\n",
			[]keyError{{1, `timers["<<"]`, "alias *t refers to the value that contains it"}}},
		{"merge of a scalar", "timers: {<<: 5}\n",
			[]keyError{{1, "timers[\"<<\"]", "want a mapping, or a list of mappings, to merge; got an integer"}}},
		{"unknown key brought by a merge", "x: &b {nope: 1}\ntimers: {<<: *b}\n", []keyError{
			{1, "x", "unknown key (known keys: region, level, note, store, timers, lines, media, policy, prompts, ports, pair, action, shout, any)"},
			{1, "timers.nope", "unknown key (known keys: no_answer, bye)"}}},
		{"syntax", "store: a\n  b: [\n",
			[]keyError{{2, "", "not valid YAML: mapping values are not allowed in this context"}}},
		{"second document", "store: a\n---\nstore: b\n",
			[]keyError{{2, "", "a second YAML document starts here; a configuration file holds one (remove the ---)"}}},
		{"every mistake, in line order", "media: {port_min: a}\ntimers: {bye: b}\nzz: 1\n", []keyError{
			{1, "media.port_min", `"a" is not an integer`},
			{2, "timers.bye", `"b" is not a duration (e.g. 60s, 5m or 1h30m)`},
			{3, "zz", "unknown key (known keys: region, level, note, store, timers, lines, media, policy, prompts, ports, pair, action, shout, any)"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := decodeT(t, c.doc)
			var ce *configErrors
			if !errors.As(err, &ce) {
				t.Fatalf("decodeStrict(%q) = %v, want errors %v", c.doc, err, c.want)
			}
			if !reflect.DeepEqual(ce.Errs, c.want) {
				t.Fatalf("decodeStrict(%q) errors\n got %#v\nwant %#v", c.doc, ce.Errs, c.want)
			}
			for _, k := range ce.Errs {
				for _, goism := range []string{"main.", "time.Duration", "!!", "unmarshal", "not found in type"} {
					if strings.Contains(k.Msg, goism) {
						t.Errorf("%q speaks Go (%q)", k.Msg, goism)
					}
				}
			}
		})
	}
}

func TestDecodeStrictMovedHint(t *testing.T) {
	type features struct {
		LineCheck string `yaml:"line_check"`
	}
	var c struct {
		Features features `yaml:"features"`
	}
	err := decodeStrict([]byte("features:\n  line_check: '*99'\n  protected: [1]\n"), &c, testMoved)
	var ce *configErrors
	if !errors.As(err, &ce) || len(ce.Errs) != 1 || ce.Errs[0] != (keyError{3, "features.protected", "moved: list these numbers in policy.protected"}) {
		t.Fatalf("got %v", err)
	}
	if c.Features.LineCheck != "*99" {
		t.Fatalf("the rest of the section was not decoded: %+v", c)
	}
}

func TestDecodeStrictMessageFormat(t *testing.T) {
	e := &configErrors{File: "deploy/demo.yaml", Errs: []keyError{
		{12, "sip.timers.no_answer", `"sixty" is not a duration`},
		{0, "", "a document"},
	}}
	if got, want := e.Error(), `deploy/demo.yaml:12: sip.timers.no_answer: "sixty" is not a duration; deploy/demo.yaml: a document`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	e.File = ""
	if got, want := e.Error(), `line 12: sip.timers.no_answer: "sixty" is not a duration; a document`; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	var doc strings.Builder
	for i := 0; i < 15; i++ {
		fmt.Fprintf(&doc, "k%d: 1\n", i)
	}
	_, err := decodeT(t, doc.String())
	if err == nil || !strings.HasSuffix(err.Error(), "; and 5 more") || strings.Count(err.Error(), "unknown key") != 10 {
		t.Fatalf("15 errors print as %v", err)
	}
}
