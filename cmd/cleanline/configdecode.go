package main

// A strict YAML decoder that reports mistakes by key path ("sip.timers.no_answer")
// and line, in the words of the configuration file, never in Go's types.
//
// yaml.v3's own decoder with KnownFields(true) is strict too, but it says
// "field regoin not found in type main.ScreeningConfig" and "cannot unmarshal
// !!str `sixty` into time.Duration". This one parses the file into a
// yaml.Node tree and walks it together with the target's reflect type, so
// that every error knows where it is. It is generic: it knows nothing of
// Config's fields, only the rules yaml.v3 follows:
//
//   - structs by their `yaml:"name"` tags (an untagged field's key is its
//     lowercased name; `yaml:"-"` and unexported fields are not keys),
//     `,inline` structs, pointers to structs and maps (the map takes the
//     keys no field claims);
//   - slices and arrays from lists, maps from mappings, pointers allocated
//     when nil;
//   - types implementing yaml.Unmarshaler or encoding.TextUnmarshaler, and
//     yaml.Node, interface and scalar types, are decoded by yaml.v3 itself
//     (Node.Decode) at their node, so values mean what they always meant;
//   - values are decoded over what the target already holds: a key that is
//     absent keeps its default, a struct is filled key by key, a map gains
//     keys, a list is replaced, null resets pointers, maps, slices and
//     interfaces and leaves everything else alone;
//   - anchors, aliases and merge keys (<<) work; a key given twice, an
//     alias that contains itself, or aliases expanding past maxDecodeSteps
//     values are errors.
//
// It is stricter than yaml.v3 in two places: a fractional number is not an
// integer (yaml.v3 truncates 1.5 to 1), and a second YAML document in the
// file is an error instead of being ignored.

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// keyError is one mistake in a YAML document.
type keyError struct {
	Line int    // 1-based line of the key or value at fault; 0 when unknown
	Path string // key path, e.g. "sip.lines[0].numbers"; "" for the whole document
	Msg  string // what is wrong, e.g. `"sixty" is not a duration`
}

func (e keyError) String() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// configErrors is every mistake decodeStrict found in one document, in
// document order. Error prints them as "FILE:LINE: PATH: MSG", joined by
// "; ", at most maxReportedErrors of them.
type configErrors struct {
	File string // the file's name as given; "" prints "line N"
	Errs []keyError
}

const maxReportedErrors = 10

func (e *configErrors) Error() string {
	var b strings.Builder
	for i, k := range e.Errs {
		if i == maxReportedErrors {
			fmt.Fprintf(&b, "; and %d more", len(e.Errs)-i)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		switch {
		case e.File != "" && k.Line > 0:
			fmt.Fprintf(&b, "%s:%d: ", e.File, k.Line)
		case e.File != "":
			b.WriteString(e.File + ": ")
		case k.Line > 0:
			fmt.Fprintf(&b, "line %d: ", k.Line)
		}
		b.WriteString(k.String())
	}
	return b.String()
}

// maxDecodeSteps bounds the values one document may expand to through
// aliases ("billion laughs"); a real configuration is a few hundred.
const maxDecodeSteps = 1 << 20

// decodeStrict decodes the single YAML document in data into out, a non-nil
// pointer, over the values out already holds (see the top of this file).
// moved maps key paths that no longer exist to a hint saying where they
// went ("sip.features.protected" → "moved: ..."); a path's list indexes may
// be written [] to match any item ("sip.lines[].foo"). The error, if any,
// is a *configErrors listing every mistake.
func decodeStrict(data []byte, out any, moved map[string]string) error {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.IsNil() {
		return fmt.Errorf("decodeStrict: want a non-nil pointer, got %T", out)
	}
	d := &decoder{moved: moved, active: map[*yaml.Node]bool{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := safely(func() error { return dec.Decode(&doc) }); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty: every default stands
		}
		return &configErrors{Errs: []keyError{syntaxError(err)}}
	}
	for {
		var next yaml.Node
		err := safely(func() error { return dec.Decode(&next) })
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			d.errs = append(d.errs, syntaxError(err))
			break
		}
		if !emptyDocument(&next) {
			d.errs = append(d.errs, keyError{Line: startLine(&next),
				Msg: "a second YAML document starts here; a configuration file holds one (remove the ---)"})
			break
		}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			root = nil
		} else {
			root = root.Content[0]
		}
	}
	if root != nil {
		d.value(root, v.Elem(), "")
	}
	if len(d.errs) == 0 {
		return nil
	}
	sort.SliceStable(d.errs, func(i, j int) bool { return d.errs[i].Line < d.errs[j].Line })
	return &configErrors{Errs: d.errs}
}

// emptyDocument: a trailing "---" with nothing after it.
func emptyDocument(n *yaml.Node) bool {
	return n.Kind == yaml.DocumentNode && (len(n.Content) == 0 ||
		len(n.Content) == 1 && isNull(n.Content[0]) && n.Content[0].Value == "")
}

func startLine(n *yaml.Node) int {
	for n.Line == 0 && len(n.Content) > 0 {
		n = n.Content[0]
	}
	return n.Line
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns yaml.v3's "yaml: line 3: did not find expected key"
// into a keyError on line 3.
func syntaxError(err error) keyError {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		// yaml.v3 counts lines from 0 for the parser's errors (from 1 for
		// the scanner's); the parser's are these.
		for _, p := range []string{"did not find expected", "found duplicate %", "found incompatible YAML", "found undefined tag"} {
			if strings.HasPrefix(m[2], p) {
				line++
				break
			}
		}
		return keyError{Line: line, Msg: "not valid YAML: " + m[2]}
	}
	return keyError{Msg: "not valid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// safely runs a yaml.v3 entry point, turning a panic (a bug in yaml.v3 or
// in a type's UnmarshalYAML) into an error: a bad file must not crash.
func safely(f func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("cannot be read (%v)", r)
		}
	}()
	return f()
}

type decoder struct {
	moved  map[string]string
	errs   []keyError
	steps  int
	active map[*yaml.Node]bool // aliases being expanded: meeting one again is a cycle
}

func (d *decoder) fail(n *yaml.Node, path, format string, a ...any) {
	d.errs = append(d.errs, keyError{Line: n.Line, Path: path, Msg: fmt.Sprintf(format, a...)})
}

// tooBig counts one step and says whether the document has expanded past
// maxDecodeSteps (reported once).
func (d *decoder) tooBig(n *yaml.Node, path string, steps int) bool {
	if d.steps > maxDecodeSteps {
		return true
	}
	d.steps += steps
	if d.steps > maxDecodeSteps {
		d.fail(n, path, "aliases expand the document past %d values", maxDecodeSteps)
		return true
	}
	return false
}

// deref follows aliases; ok is false (and the error reported) on a cycle.
// leave must be called when the node returned is done with.
func (d *decoder) deref(n *yaml.Node, path string) (_ *yaml.Node, leave func(), ok bool) {
	var entered []*yaml.Node
	leave = func() {
		for _, a := range entered {
			delete(d.active, a)
		}
	}
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil { // the parser refuses unknown anchors; be safe anyway
			d.fail(n, path, "alias *%s names no anchor", n.Value)
			return n, leave, false
		}
		if d.active[n] {
			d.fail(n, path, "alias *%s refers to the value that contains it", n.Value)
			return n, leave, false
		}
		d.active[n] = true
		entered = append(entered, n)
		n = n.Alias
	}
	return n, leave, true
}

var (
	nodeType                = reflect.TypeOf(yaml.Node{})
	durationType            = reflect.TypeOf(time.Duration(0))
	unmarshalerType         = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()
	obsoleteUnmarshalerType = reflect.TypeOf((*interface {
		UnmarshalYAML(func(any) error) error
	})(nil)).Elem()
	textUnmarshalerType = reflect.TypeOf((*encoding.TextUnmarshaler)(nil)).Elem()
)

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// value decodes n into v (addressable) at path.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if d.tooBig(n, path, 1) {
		return
	}
	n, leave, ok := d.deref(n, path)
	defer leave()
	if !ok {
		return
	}
	if !v.CanSet() {
		d.fail(n, path, "cannot be set from a configuration file")
		return
	}
	t := v.Type()
	if t == nodeType {
		v.Set(reflect.ValueOf(*n))
		return
	}
	if isNull(n) {
		switch t.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
			v.Set(reflect.Zero(t))
		}
		return // as yaml.v3: null leaves a struct, string or number as it was
	}
	if t.Kind() == reflect.Pointer {
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.value(n, v.Elem(), path)
		return
	}
	pt := reflect.PointerTo(t)
	switch {
	case pt.Implements(unmarshalerType) || pt.Implements(obsoleteUnmarshalerType):
		d.delegate(n, v, path)
		return
	case pt.Implements(textUnmarshalerType):
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "want a single value, got %s", describe(n))
			return
		}
		d.delegate(n, v, path)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		d.structValue(n, v, path)
	case reflect.Map:
		d.mapValue(n, v, path)
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 && n.Kind == yaml.ScalarNode {
			d.delegate(n, v, path) // []byte from a string or !!binary
			return
		}
		d.sequence(n, v, path)
	case reflect.Array:
		d.sequence(n, v, path)
	case reflect.Interface:
		d.delegate(n, v, path) // free-form: whatever the YAML holds
	case reflect.Bool, reflect.String, reflect.Float32, reflect.Float64,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		d.scalar(n, v, path)
	default:
		d.fail(n, path, "cannot be set from a configuration file")
	}
}

// delegate lets yaml.v3 decode n into v, for types that decode themselves.
func (d *decoder) delegate(n *yaml.Node, v reflect.Value, path string) {
	err := safely(func() error { return n.Decode(v.Addr().Interface()) })
	if err == nil {
		return
	}
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		d.fail(n, path, "%s", strings.TrimPrefix(err.Error(), "yaml: "))
		return
	}
	for _, s := range te.Errors {
		k := keyError{Line: n.Line, Path: path, Msg: s}
		if m := typeErrorRE.FindStringSubmatch(s); m != nil {
			k.Line, _ = strconv.Atoi(m[1])
			k.Msg = fmt.Sprintf("%q is not %s", m[3], goTypeWord(m[4]))
			if m[2] == "map" || m[2] == "seq" {
				k.Msg = fmt.Sprintf("want %s, got %s", goTypeWord(m[4]), map[string]string{"map": "a mapping", "seq": "a list"}[m[2]])
			}
		} else if m := yamlLineErrRE.FindStringSubmatch(s); m != nil {
			k.Line, _ = strconv.Atoi(m[1])
			k.Msg = m[2]
		}
		d.errs = append(d.errs, k)
	}
}

var (
	typeErrorRE   = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (.+)$")
	yamlLineErrRE = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// goTypeWord says in words what a Go type named in a yaml.v3 TypeError
// (from inside a type's own UnmarshalYAML) holds.
func goTypeWord(t string) string {
	switch {
	case t == "time.Duration":
		return "a duration"
	case t == "bool":
		return "a boolean"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "int"), strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map["):
		return "a mapping"
	}
	return "a valid value here"
}

// describe says what a node is, for "want a list, got a string".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		if n.Alias != nil && n.Alias.Kind != yaml.AliasNode {
			return describe(n.Alias)
		}
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	}
	switch n.ShortTag() {
	case "!!str":
		return "a string"
	case "!!int":
		return "an integer"
	case "!!float":
		return "a number"
	case "!!bool":
		return "a boolean"
	case "!!null":
		return "null"
	case "!!timestamp":
		return "a timestamp"
	case "!!binary":
		return "binary data"
	}
	return "a value tagged " + n.Tag
}

// scalar decodes a bool, string or number; yaml.v3 reads the value (so
// 0x10, yes/no and 1h30m mean what they always meant), the message is ours.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	var want string
	switch t.Kind() {
	case reflect.Bool:
		want = "a boolean"
	case reflect.String:
		want = "a string"
	case reflect.Float32, reflect.Float64:
		want = "a number"
	default:
		want = "an integer"
		if t == durationType {
			want = "a duration"
		}
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want %s, got %s", want, describe(n))
		return
	}
	tag := n.ShortTag()
	numeric := tag == "!!int" || tag == "!!float"
	if want == "an integer" && tag == "!!float" {
		// yaml.v3 truncates 1.5 to 1: a typo more often than an intent.
		if f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64); err != nil || f != math.Trunc(f) {
			d.fail(n, path, "%q is not %s", n.Value, want)
			return
		}
	}
	p := reflect.New(t)
	if err := safely(func() error { return n.Decode(p.Interface()) }); err != nil {
		switch {
		case t == durationType && numeric:
			d.fail(n, path, "%q is not a duration: give a unit, e.g. 60s, 5m or 1h30m", n.Value)
		case want == "a duration":
			d.fail(n, path, "%q is not a duration (e.g. 60s, 5m or 1h30m)", n.Value)
		case want == "an integer" && numeric && t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uintptr && strings.HasPrefix(n.Value, "-"):
			d.fail(n, path, "%q is not an integer >= 0", n.Value)
		case want == "an integer" && numeric:
			d.fail(n, path, "%q is out of range", n.Value)
		case want == "a boolean":
			d.fail(n, path, "%q is not a boolean (true or false)", n.Value)
		default:
			d.fail(n, path, "%q is not %s", n.Value, want)
		}
		return
	}
	v.Set(p.Elem())
}

// entry is one key of a mapping, after merge keys are applied.
type entry struct{ key, val *yaml.Node }

func isMergeKey(n *yaml.Node) bool {
	if n.Kind != yaml.ScalarNode || n.Value != "<<" {
		return false
	}
	switch n.Tag {
	case "", "!", "!!merge", "tag:yaml.org,2002:merge":
		return true
	}
	return false
}

// entries lists a mapping's keys in order, then those its merge keys (<<)
// bring that it does not set itself, as YAML's merge key says. A key given
// twice is reported; keys are alias-resolved scalars.
func (d *decoder) entries(n *yaml.Node, path string) []entry {
	if d.tooBig(n, path, len(n.Content)/2) {
		return nil
	}
	var out []entry
	seen := map[string]*yaml.Node{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if isMergeKey(k) {
			if len(merges) > 0 {
				d.fail(k, join(path, "<<"), "given twice in one mapping")
				continue
			}
			merges = append(merges, val)
			continue
		}
		rk, leave, ok := d.deref(k, path)
		leave()
		if !ok {
			continue
		}
		if rk.Kind != yaml.ScalarNode {
			d.fail(k, path, "want a key name, got %s", describe(rk))
			continue
		}
		if first, dup := seen[rk.Value]; dup {
			d.fail(k, join(path, rk.Value), "given twice (first on line %d)", first.Line)
			continue
		}
		seen[rk.Value] = k
		out = append(out, entry{rk, val})
	}
	for _, m := range merges {
		out = d.merge(m, path, seen, out)
	}
	return out
}

// merge appends the entries of the mapping (or list of mappings) m that
// seen does not hold yet.
func (d *decoder) merge(m *yaml.Node, path string, seen map[string]*yaml.Node, out []entry) []entry {
	mp := join(path, "<<")
	m, leave, ok := d.deref(m, mp)
	defer leave()
	if !ok {
		return out
	}
	var sources []*yaml.Node
	switch m.Kind {
	case yaml.MappingNode:
		sources = []*yaml.Node{m}
	case yaml.SequenceNode:
		sources = m.Content
	default:
		d.fail(m, mp, "want a mapping, or a list of mappings, to merge; got %s", describe(m))
		return out
	}
	for _, s := range sources {
		s, leaveS, ok := d.deref(s, mp)
		if ok && s.Kind != yaml.MappingNode {
			d.fail(s, mp, "want a mapping to merge, got %s", describe(s))
			ok = false
		}
		if ok {
			for _, e := range d.entries(s, path) {
				if _, dup := seen[e.key.Value]; !dup {
					seen[e.key.Value] = e.key
					out = append(out, e)
				}
			}
		}
		leaveS()
	}
	return out
}

var simpleKeyRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// join appends a key to a path: "sip" + "timers" = "sip.timers"; a key that
// is not a simple word is quoted: sip.prompts["a b"].
func join(path, key string) string {
	if !simpleKeyRE.MatchString(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

var indexRE = regexp.MustCompile(`\[\d+\]`)

// hint is the moved-key hint for path, if any.
func (d *decoder) hint(path string) (string, bool) {
	if h, ok := d.moved[path]; ok {
		return h, true
	}
	h, ok := d.moved[indexRE.ReplaceAllString(path, "[]")]
	return h, ok
}

// unknownKey reports a key the struct does not have, with its moved-key
// hint if it has one, and the hints of the keys under it: a moved section
// may hold keys that went to different places.
func (d *decoder) unknownKey(k, val *yaml.Node, path string, known []string) {
	switch h, ok := d.hint(path); {
	case ok:
		d.fail(k, path, "%s", h)
	case len(known) == 0:
		d.fail(k, path, "unknown key (this section takes no keys)")
	default:
		d.fail(k, path, "unknown key (known keys: %s)", strings.Join(known, ", "))
	}
	d.movedUnder(val, path)
}

func (d *decoder) movedUnder(n *yaml.Node, path string) {
	if len(d.moved) == 0 || d.tooBig(n, path, 1) {
		return
	}
	n, leave, ok := d.deref(n, path)
	defer leave()
	if !ok {
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if k.Kind != yaml.ScalarNode {
				continue
			}
			p := join(path, k.Value)
			if h, ok := d.hint(p); ok {
				d.fail(k, p, "%s", h)
			}
			d.movedUnder(n.Content[i+1], p)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			d.movedUnder(c, fmt.Sprintf("%s[%d]", path, i))
		}
	}
}

func (d *decoder) structValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", describe(n))
		return
	}
	si, err := structInfoOf(v.Type())
	if err != nil {
		d.fail(n, path, "%v", err) // a bug in the Go type's tags, not in the file
		return
	}
	for _, idx := range si.inlineUnmarshalers {
		if f, ok := fieldByIndex(v, idx); ok {
			d.delegate(n, f, path) // as yaml.v3: it gets the whole mapping
		}
	}
	for _, e := range d.entries(n, path) {
		name := e.key.Value
		p := join(path, name)
		if fi, ok := si.fields[name]; ok {
			f, ok := fieldByIndex(v, fi)
			if !ok {
				d.fail(e.key, p, "cannot be set from a configuration file")
				continue
			}
			d.value(e.val, f, p)
			continue
		}
		if si.inlineMap == nil {
			d.unknownKey(e.key, e.val, p, si.keys)
			continue
		}
		m, ok := fieldByIndex(v, si.inlineMap)
		if !ok {
			d.fail(e.key, p, "cannot be set from a configuration file")
			continue
		}
		if m.IsNil() {
			m.Set(reflect.MakeMap(m.Type()))
		}
		val := reflect.New(m.Type().Elem()).Elem()
		d.value(e.val, val, p)
		m.SetMapIndex(reflect.ValueOf(name).Convert(m.Type().Key()), val)
	}
}

func (d *decoder) mapValue(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, got %s", describe(n))
		return
	}
	t := v.Type()
	if v.IsNil() {
		v.Set(reflect.MakeMap(t))
	}
	for _, e := range d.entries(n, path) {
		p := join(path, e.key.Value)
		k := reflect.New(t.Key()).Elem()
		before := len(d.errs)
		d.value(e.key, k, p)
		if len(d.errs) > before {
			continue
		}
		if !k.Comparable() {
			d.fail(e.key, p, "cannot be a key")
			continue
		}
		val := reflect.New(t.Elem()).Elem()
		d.value(e.val, val, p)
		v.SetMapIndex(k, val)
	}
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "want a list, got %s", describe(n))
		return
	}
	l := len(n.Content)
	s := v
	if v.Kind() == reflect.Array {
		if l != v.Len() {
			d.fail(n, path, "want a list of %d, got %d", v.Len(), l)
			return
		}
		s = reflect.New(v.Type()).Elem()
	} else {
		s = reflect.MakeSlice(v.Type(), l, l)
	}
	for i, c := range n.Content {
		d.value(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

// structInfo is what decoding needs of a struct type: its keys, as yaml.v3
// derives them from the fields' tags.
type structInfo struct {
	fields             map[string][]int // key → field index path (through ,inline structs)
	keys               []string         // in field order, for "known keys"
	inlineMap          []int            // the ,inline map taking unknown keys; nil if none
	inlineUnmarshalers [][]int          // ,inline fields that decode themselves
}

var structInfos sync.Map // reflect.Type → *structInfo or error

func structInfoOf(t reflect.Type) (*structInfo, error) {
	if c, ok := structInfos.Load(t); ok {
		if err, ok := c.(error); ok {
			return nil, err
		}
		return c.(*structInfo), nil
	}
	si, err := buildStructInfo(t, nil)
	if err != nil {
		structInfos.Store(t, err)
		return nil, err
	}
	structInfos.Store(t, si)
	return si, nil
}

func buildStructInfo(t reflect.Type, visiting []reflect.Type) (*structInfo, error) {
	for _, o := range visiting {
		if o == t {
			return nil, fmt.Errorf("type %s inlines itself", t)
		}
	}
	visiting = append(visiting, t)
	si := &structInfo{fields: map[string][]int{}}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if f.PkgPath != "" && !f.Anonymous {
			continue // unexported
		}
		tag := f.Tag.Get("yaml")
		if tag == "" && !strings.Contains(string(f.Tag), ":") {
			tag = string(f.Tag) // yaml.v3 reads a bare tag as the yaml tag
		}
		if tag == "-" {
			continue
		}
		name, flags, _ := strings.Cut(tag, ",")
		inline := false
		for _, fl := range strings.Split(flags, ",") {
			if fl == "inline" {
				inline = true
			}
		}
		add := func(key string, index []int) error {
			if _, dup := si.fields[key]; dup {
				return fmt.Errorf("type %s has two fields for key %q", t, key)
			}
			si.fields[key] = index
			si.keys = append(si.keys, key)
			return nil
		}
		if !inline {
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if err := add(name, []int{i}); err != nil {
				return nil, err
			}
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Map {
			if si.inlineMap != nil {
				return nil, fmt.Errorf("type %s has two ,inline maps", t)
			}
			if ft.Key().Kind() != reflect.String {
				return nil, fmt.Errorf("type %s: an ,inline map needs string keys", t)
			}
			si.inlineMap = []int{i}
			continue
		}
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() != reflect.Struct {
			return nil, fmt.Errorf("type %s: ,inline on field %s, which is not a struct or map", t, f.Name)
		}
		if reflect.PointerTo(ft).Implements(unmarshalerType) {
			si.inlineUnmarshalers = append(si.inlineUnmarshalers, []int{i})
			continue
		}
		sub, err := buildStructInfo(ft, visiting)
		if err != nil {
			return nil, err
		}
		for _, key := range sub.keys {
			if err := add(key, append([]int{i}, sub.fields[key]...)); err != nil {
				return nil, err
			}
		}
		for _, u := range sub.inlineUnmarshalers {
			si.inlineUnmarshalers = append(si.inlineUnmarshalers, append([]int{i}, u...))
		}
		if sub.inlineMap != nil {
			if si.inlineMap != nil {
				return nil, fmt.Errorf("type %s has two ,inline maps", t)
			}
			si.inlineMap = append([]int{i}, sub.inlineMap...)
		}
	}
	return si, nil
}

// fieldByIndex walks an index path through ,inline fields, allocating nil
// pointers on the way; ok is false if the field cannot be set.
func fieldByIndex(v reflect.Value, index []int) (reflect.Value, bool) {
	for i, x := range index {
		if i > 0 {
			for v.Kind() == reflect.Pointer {
				if v.IsNil() {
					if !v.CanSet() {
						return v, false
					}
					v.Set(reflect.New(v.Type().Elem()))
				}
				v = v.Elem()
			}
		}
		v = v.Field(x)
	}
	return v, v.CanSet()
}
