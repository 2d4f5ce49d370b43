package main

// The YAML that is more than values: one document per file, anchors and
// aliases (with cycles and "billion laughs" caught), and merge keys (<<).

import (
	"errors"
	"io"

	"gopkg.in/yaml.v3"
)

// onlyDocument reports a second document after the first, which yaml.v3
// would ignore: its settings would silently not apply.
func (d *decoder) onlyDocument(dec *yaml.Decoder) {
	for {
		var next yaml.Node
		err := safely(func() error { return dec.Decode(&next) })
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			d.errs = append(d.errs, syntaxError(err))
			return
		}
		if !emptyDocument(&next) {
			d.errs = append(d.errs, keyError{Line: startLine(&next),
				Msg: "a second YAML document starts here; a configuration file holds one (remove the ---)"})
			return
		}
	}
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

// maxDecodeSteps bounds the values one document may expand to through
// aliases ("billion laughs"); a real configuration is a few hundred.
const maxDecodeSteps = 1 << 20

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
