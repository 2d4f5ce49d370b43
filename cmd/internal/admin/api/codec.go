package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/cleanline/cleanline/cmd/internal/admin"
)

// How a request type travels over HTTP, read from its fields' tags (see
// admin's types.go): path:"x" is the route's {x}, query:"x" a query
// parameter, body:"raw" the raw request body (an io.Reader); every other
// field with a JSON name is in the JSON body. Embedded structs are
// flattened. The server decodes with it, the client encodes with it, and
// the OpenAPI document describes it.

// maxBody bounds a JSON request body; a raw body (an import) streams.
const maxBody = 1 << 20

// field is one field of a request type and where it travels.
type field struct {
	index []int
	name  string // the parameter's name (path, query)
	where string // "path", "query", "raw", "json"
	typ   reflect.Type
}

// fieldsOf lists t's fields (t a struct type), embedded structs flattened.
func fieldsOf(t reflect.Type) []field {
	var out []field
	if t == nil || t.Kind() != reflect.Struct {
		return nil // a raw route's
	}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			for _, sub := range fieldsOf(f.Type) {
				sub.index = append([]int{i}, sub.index...)
				out = append(out, sub)
			}
			continue
		}
		fd := field{index: []int{i}, typ: f.Type}
		switch {
		case f.Tag.Get("path") != "":
			fd.where, fd.name = "path", f.Tag.Get("path")
		case f.Tag.Get("query") != "":
			fd.where, fd.name = "query", f.Tag.Get("query")
		case f.Tag.Get("body") == "raw":
			fd.where = "raw"
		case f.Tag.Get("json") != "-":
			fd.where = "json"
		default:
			continue
		}
		out = append(out, fd)
	}
	return out
}

// hasJSON says whether t has fields in a JSON body.
func hasJSON(t reflect.Type) bool {
	for _, f := range fieldsOf(t) {
		if f.where == "json" {
			return true
		}
	}
	return false
}

// inPath says whether the route's path has {name}.
func (r Route) inPath(name string) bool { return strings.Contains(r.Path, "{"+name+"}") }

func badRequest(format string, a ...any) error {
	return admin.FromCode("invalid_argument", fmt.Sprintf(format, a...))
}

// decode reads r into a new value of the route's request type (a pointer).
func decode(w http.ResponseWriter, r *http.Request, rt Route) (any, error) {
	v := reflect.New(rt.in)
	fields := fieldsOf(rt.in)
	if hasJSON(rt.in) {
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v.Interface()); err != nil && !errors.Is(err, io.EOF) {
			return nil, badRequest("body: %v", err)
		}
		if dec.More() {
			return nil, badRequest("body: more than one JSON value")
		}
	}
	q := r.URL.Query()
	for _, f := range fields {
		fv := v.Elem().FieldByIndex(f.index)
		switch f.where {
		case "path":
			if rt.inPath(f.name) {
				fv.SetString(r.PathValue(f.name))
			}
		case "query":
			vals, ok := q[f.name]
			if !ok {
				continue
			}
			if len(vals) != 1 {
				return nil, badRequest("query %s: given %d times", f.name, len(vals))
			}
			if err := setText(fv, vals[0]); err != nil {
				return nil, badRequest("query %s: %v", f.name, err)
			}
		case "raw":
			fv.Set(reflect.ValueOf(r.Body))
		}
	}
	return v.Interface(), nil
}

var timeType = reflect.TypeFor[time.Time]()

// setText sets a query parameter's value.
func setText(v reflect.Value, s string) error {
	switch {
	case v.Type() == timeType:
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return fmt.Errorf("%q is not a time (RFC 3339: 2026-03-01T10:00:00Z)", s)
		}
		v.Set(reflect.ValueOf(t))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		v.SetInt(int64(n))
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	default:
		return fmt.Errorf("cannot be given as text") // a bug in a request type, caught by the tests
	}
	return nil
}

// text is a query parameter's value as text; "" for the zero value, which
// is not sent.
func text(v reflect.Value) string {
	if v.IsZero() {
		return ""
	}
	switch {
	case v.Type() == timeType:
		return v.Interface().(time.Time).Format(time.RFC3339Nano)
	case v.Kind() == reflect.String:
		return v.String()
	case v.Kind() == reflect.Int:
		return strconv.FormatInt(v.Int(), 10)
	case v.Kind() == reflect.Bool:
		return strconv.FormatBool(v.Bool())
	}
	return fmt.Sprint(v.Interface())
}

// encode builds the request for rt carrying in (a value of rt's request
// type) against base.
func encode(ctx context.Context, base string, rt Route, in any) (*http.Request, error) {
	v := reflect.ValueOf(in)
	path := rt.Path
	q := url.Values{}
	var body io.Reader
	ctype := ""
	for _, f := range fieldsOf(rt.in) {
		fv := v.FieldByIndex(f.index)
		switch f.where {
		case "path":
			if !rt.inPath(f.name) {
				if !fv.IsZero() {
					return nil, fmt.Errorf("api: %s has no {%s}", rt.ID, f.name) // a bug in the Client
				}
				continue
			}
			if fv.String() == "" {
				return nil, badRequest("no %s given", f.name)
			}
			path = strings.Replace(path, "{"+f.name+"}", url.PathEscape(fv.String()), 1)
		case "query":
			if s := text(fv); s != "" {
				q.Set(f.name, s)
			}
		case "raw":
			if r, ok := fv.Interface().(io.Reader); ok && r != nil {
				body, ctype = r, "text/csv"
			}
		}
	}
	if hasJSON(rt.in) {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body, ctype = bytes.NewReader(b), "application/json"
	}
	u := strings.TrimSuffix(base, "/") + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, rt.Method, u, body)
	if err != nil {
		return nil, err
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	return req, nil
}
