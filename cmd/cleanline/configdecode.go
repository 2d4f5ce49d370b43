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
//
// This file holds the walk; configdecode_yaml.go the documents, aliases and
// merge keys; configdecode_keys.go struct keys, key paths and moved-key
// hints; configdecode_errors.go what is reported, and how it is worded.

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

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
	d.onlyDocument(dec)
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

// decoder is the state of one decodeStrict call.
type decoder struct {
	moved  map[string]string
	errs   []keyError
	steps  int
	active map[*yaml.Node]bool // aliases being expanded: meeting one again is a cycle
}

func (d *decoder) fail(n *yaml.Node, path, format string, a ...any) {
	d.errs = append(d.errs, keyError{Line: n.Line, Path: path, Msg: fmt.Sprintf(format, a...)})
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
	if err := safely(func() error { return n.Decode(v.Addr().Interface()) }); err != nil {
		d.errs = append(d.errs, decodeErrors(err, n.Line, path)...)
	}
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
