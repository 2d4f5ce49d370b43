package main

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/cleanline/cleanline/screening"
)

// The decoder's tests use their own types, so that they hold whatever
// Config looks like this week. This file checks what it decodes;
// configdecode_errors_test.go what it says of a wrong file.

type dTimers struct {
	NoAnswer time.Duration `yaml:"no_answer"`
	Bye      time.Duration `yaml:"bye"`
}

type dLine struct {
	Name    string    `yaml:"name"`
	Numbers []string  `yaml:"numbers"`
	Policy  yaml.Node `yaml:"policy"`
}

// dPolicy is like a per-line policy: pointers say "given".
type dPolicy struct {
	Withheld  *screening.Action `yaml:"withheld"`
	Threshold *int              `yaml:"threshold"`
	Protected []string          `yaml:"protected"`
}

type dMedia struct {
	PortMin int     `yaml:"port_min"`
	PortMax int     `yaml:"port_max"`
	Small   int8    `yaml:"small"`
	Count   uint    `yaml:"count"`
	Ratio   float64 `yaml:"ratio"`
	Enabled bool    `yaml:"enabled"`
}

type dBase struct {
	Region string `yaml:"region"`
	Level  string // untagged: key "level", as yaml.v3 does
}

// upper is a yaml.Unmarshaler.
type upper string

func (u *upper) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	if s == "" {
		return errors.New("empty: want a word")
	}
	*u = upper(strings.ToUpper(s))
	return nil
}

type dConfig struct {
	dBase   `yaml:",inline"`
	Extra   *dExtra           `yaml:",inline"`
	Store   string            `yaml:"store"`
	Timers  dTimers           `yaml:"timers"`
	Lines   []dLine           `yaml:"lines"`
	Media   dMedia            `yaml:"media"`
	Policy  *dPolicy          `yaml:"policy"`
	Prompts map[string]string `yaml:"prompts"`
	Ports   map[int]string    `yaml:"ports"`
	Pair    [2]int            `yaml:"pair"`
	Action  screening.Action  `yaml:"action"`
	Shout   upper             `yaml:"shout"`
	Any     any               `yaml:"any"`
	Skipped string            `yaml:"-"`
	hidden  string
}

type dExtra struct {
	Note string `yaml:"note"`
}

type dOpen struct {
	Name string         `yaml:"name"`
	Rest map[string]int `yaml:",inline"`
}

var testMoved = map[string]string{
	"features.protected":    "moved: list these numbers in policy.protected",
	"lines[].policy_action": "moved: say lines[].policy.withheld",
	"gone.deep":             "moved: deep is policy.deep now",
}

func dDefaults() dConfig {
	th := 3
	return dConfig{
		Store:   "file:x.db",
		Timers:  dTimers{NoAnswer: 60 * time.Second, Bye: 5 * time.Second},
		Media:   dMedia{PortMin: 20000, PortMax: 20999},
		Policy:  &dPolicy{Threshold: &th},
		Prompts: map[string]string{"warning": "w.wav"},
		Action:  screening.Warn,
		hidden:  "not a key: stays",
	}
}

func decodeT(t *testing.T, doc string) (dConfig, error) {
	t.Helper()
	c := dDefaults()
	err := decodeStrict([]byte(doc), &c, testMoved)
	if err != nil {
		var ce *configErrors
		if !errors.As(err, &ce) {
			t.Fatalf("error %v is %T, not *configErrors", err, err)
		}
	}
	return c, err
}

// TestDecodeStrictOverDefaults: values fill over what the struct holds, as
// yaml.v3 does.
func TestDecodeStrictOverDefaults(t *testing.T) {
	c, err := decodeT(t, `
region: GB
level: info
note: inline through a nil pointer
timers: {bye: 2s}
lines:
  - name: home
    numbers: ["+442079460123"]
    policy: &p {withheld: block}
  - name: office
    policy: *p
policy: {withheld: allow}
prompts: {blocked: b.wav}
ports: {5060: sip}
pair: [1, 0x10]
action: block
shout: hello
any: {a: [1, two]}
media: {port_max: 1e3, enabled: yes, count: 7, ratio: 2}
`)
	if err != nil {
		t.Fatal(err)
	}
	allow := screening.Allow
	th := 3
	want := dDefaults()
	want.Region, want.Level = "GB", "info"
	want.Extra = &dExtra{Note: "inline through a nil pointer"}
	want.Timers.Bye = 2 * time.Second
	want.Policy = &dPolicy{Withheld: &allow, Threshold: &th}
	want.Prompts["blocked"] = "b.wav"
	want.Ports = map[int]string{5060: "sip"}
	want.Pair = [2]int{1, 16}
	want.Action = screening.Block
	want.Shout = "HELLO"
	want.Any = map[string]any{"a": []any{1, "two"}}
	want.Media = dMedia{PortMin: 20000, PortMax: 1000, Enabled: true, Count: 7, Ratio: 2}
	pol, lines := c.Lines, c.Lines
	c.Lines, want.Lines = nil, nil
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got  %+v\nwant %+v", c, want)
	}
	if len(lines) != 2 || lines[0].Name != "home" || !reflect.DeepEqual(lines[0].Numbers, []string{"+442079460123"}) {
		t.Fatalf("lines = %+v", lines)
	}
	// yaml.Node fields hold the node, an alias resolved to its anchor's.
	for _, l := range pol {
		var p dPolicy
		if l.Policy.Kind != yaml.MappingNode || l.Policy.Decode(&p) != nil || p.Withheld == nil || *p.Withheld != screening.Block {
			t.Fatalf("line %s: policy node %+v", l.Name, l.Policy)
		}
	}

	// null resets pointers, maps and slices, and leaves the rest alone;
	// a list replaces the default list.
	c, err = decodeT(t, "store: ~\npolicy: ~\nprompts: null\ntimers: ~\naction:\n")
	if err != nil {
		t.Fatal(err)
	}
	d := dDefaults()
	if c.Store != d.Store || c.Policy != nil || c.Prompts != nil || c.Timers != d.Timers || c.Action != d.Action {
		t.Fatalf("after nulls: %+v", c)
	}
	c = dDefaults()
	c.Lines = []dLine{{Name: "a"}, {Name: "b"}}
	if err := decodeStrict([]byte("lines: [{name: c}]"), &c, nil); err != nil || len(c.Lines) != 1 || c.Lines[0].Name != "c" {
		t.Fatalf("lines: %+v, %v", c.Lines, err)
	}
	// an empty file, or only comments, keeps every default
	for _, doc := range []string{"", "# nothing\n", "---\n", "~\n"} {
		if c, err := decodeT(t, doc); err != nil || !reflect.DeepEqual(c, dDefaults()) {
			t.Fatalf("%q: %+v, %v", doc, c, err)
		}
	}
}

func TestDecodeStrictMergeKeys(t *testing.T) {
	var o struct {
		Base, More map[string]int
		Name       string
		Rest       map[string]int `yaml:",inline"`
	}
	err := decodeStrict([]byte(`
base: &b {a: 1, b: 2}
more: &m {b: 20, c: 30}
name: x
<<: [*b, *m]
b: 200
`), &o, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Explicit keys win over merged ones, earlier merges over later ones.
	if o.Name != "x" || !reflect.DeepEqual(o.Rest, map[string]int{"a": 1, "b": 200, "c": 30}) {
		t.Fatalf("got %+v", o)
	}
}

type tree struct {
	Name string `yaml:"name"`
	Kids []tree `yaml:"kids"`
}

func TestDecodeStrictAliasCycle(t *testing.T) {
	var v tree
	err := decodeStrict([]byte("name: root\nkids: &k [{name: a, kids: *k}]\n"), &v, nil)
	var ce *configErrors
	if !errors.As(err, &ce) || len(ce.Errs) != 1 || ce.Errs[0] != (keyError{2, "kids[0].kids[0].kids", "alias *k refers to the value that contains it"}) {
		t.Fatalf("got %#v", err)
	}
}

func TestDecodeStrictInlineMap(t *testing.T) {
	var o dOpen
	err := decodeStrict([]byte("name: x\nanything: 3\nelse: nope\n"), &o, nil)
	var ce *configErrors
	if !errors.As(err, &ce) || len(ce.Errs) != 1 || ce.Errs[0] != (keyError{3, "else", `"nope" is not an integer`}) {
		t.Fatalf("got %v", err)
	}
	if o.Name != "x" || o.Rest["anything"] != 3 {
		t.Fatalf("got %+v", o)
	}
}

func TestDecodeStrictBillionLaughs(t *testing.T) {
	doc := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		doc += fmt.Sprintf("%s: &%s [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]\n", n, n, prev, prev, prev, prev, prev, prev, prev, prev, prev, prev)
		prev = n
	}
	type deep [][][][][][][][][]string
	var v struct {
		A []string
		B [][]string
		I deep
	}
	// A decoder that expanded the 10^9 nodes would not come back within
	// the test's timeout: the refusal is the proof, no clock needed.
	err := decodeStrict([]byte(doc), &v, nil)
	if err == nil || !strings.Contains(err.Error(), "aliases expand the document past") {
		t.Fatalf("got %v", err)
	}
}

// TestDecodeStrictBadGoTypes: mistakes in a Go type's tags are errors, not
// panics.
func TestDecodeStrictBadGoTypes(t *testing.T) {
	var twice struct {
		A string `yaml:"a"`
		B string `yaml:"a"`
	}
	if err := decodeStrict([]byte("a: x"), &twice, nil); err == nil || !strings.Contains(err.Error(), `two fields for key "a"`) {
		t.Fatalf("got %v", err)
	}
	var badInline struct {
		A string `yaml:",inline"`
	}
	if err := decodeStrict([]byte("a: x"), &badInline, nil); err == nil {
		t.Fatal("inline string accepted")
	}
	var fn struct{ F func() }
	if err := decodeStrict([]byte("f: x"), &fn, nil); err == nil || !strings.Contains(err.Error(), "cannot be set") {
		t.Fatalf("got %v", err)
	}
	var s string
	if err := decodeStrict([]byte("x"), s, nil); err == nil {
		t.Fatal("a non-pointer was accepted")
	}
}

// TestDecodeStrictAgreesWithYAMLv3: where yaml.v3 (KnownFields) accepts a
// document, decodeStrict decodes it to the same value.
func TestDecodeStrictAgreesWithYAMLv3(t *testing.T) {
	for _, doc := range decoderSeeds {
		a, b := dDefaults(), dDefaults()
		errA := decodeStrict([]byte(doc), &a, nil)
		dec := yaml.NewDecoder(bytes.NewReader([]byte(doc)))
		dec.KnownFields(true)
		errB := dec.Decode(&b)
		if errB != nil {
			continue
		}
		if errA != nil {
			t.Errorf("%q: yaml.v3 accepts it, decodeStrict says %v", doc, errA)
			continue
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%q:\n strict %+v\n yaml.v3 %+v", doc, a, b)
		}
	}
}

var decoderSeeds = []string{
	"store: a\ntimers: {bye: 2s}\n",
	"region: GB\nlevel: info\nnote: x\n",
	"lines: [{name: a, numbers: [1, '2']}, {name: b, policy: {withheld: warn}}]\n",
	"policy: {withheld: block, threshold: 5, protected: [999]}\n",
	"prompts: {a: b}\nports: {1: a, 2: b}\n",
	"pair: [1, 2]\naction: allow\nshout: hi\nany: [1, {a: b}]\n",
	"media: {port_min: 0x10, port_max: 1e3, enabled: on, count: 3, ratio: .5, small: -8}\n",
	"timers: &t {bye: 1s}\nstore: &s x\n",
	"store: ~\npolicy: ~\nprompts: ~\n",
	"<<: {store: m}\nstore: n\n",
}

// FuzzDecodeStrict: no input makes decodeStrict panic, and it agrees with
// yaml.v3 where both accept a document.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range decoderSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		a, b := dDefaults(), dDefaults()
		errA := decodeStrict([]byte(doc), &a, testMoved)
		if errA != nil {
			var ce *configErrors
			if !errors.As(errA, &ce) || len(ce.Errs) == 0 {
				t.Fatalf("error %v is not a list of key errors", errA)
			}
			return
		}
		dec := yaml.NewDecoder(bytes.NewReader([]byte(doc)))
		dec.KnownFields(true)
		if err := safely(func() error { return dec.Decode(&b) }); err != nil {
			return
		}
		// yaml.Node fields hold a node of the same document either way;
		// yaml.v3 keeps an alias node where decodeStrict resolves it.
		for i := range a.Lines {
			a.Lines[i].Policy = yaml.Node{}
		}
		for i := range b.Lines {
			b.Lines[i].Policy = yaml.Node{}
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("%q:\n strict %+v\n yaml.v3 %+v", doc, a, b)
		}
	})
}
