package main

// The keys a mapping may hold: a struct's, derived from its yaml tags as
// yaml.v3 derives them; the paths that name keys in messages; and what is
// said of a key no field takes (with its moved-key hint).

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

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
