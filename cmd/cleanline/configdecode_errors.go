package main

// What decodeStrict reports, and yaml.v3's messages (syntax errors, a
// type's own TypeErrors) rewritten in the configuration file's words.

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

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

// decodeErrors rewrites an error from Node.Decode (a type decoding itself)
// as keyErrors; line and path are the node's, for messages without a line.
func decodeErrors(err error, line int, path string) []keyError {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return []keyError{{Line: line, Path: path, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	out := make([]keyError, 0, len(te.Errors))
	for _, s := range te.Errors {
		k := keyError{Line: line, Path: path, Msg: s}
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
		out = append(out, k)
	}
	return out
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
