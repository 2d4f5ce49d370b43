package api

import (
	"encoding"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"
)

// Document is the OpenAPI 3 document of routes: every route, its
// parameters and bodies generated from the same request and answer types
// the server decodes and the client encodes (openapi3gen for the schemas).
func Document(routes []Route) (*openapi3.T, error) {
	doc := &openapi3.T{
		OpenAPI: "3.0.3",
		Info: &openapi3.Info{Title: "CleanLine admin API", Version: "1",
			Description: "Every administrative operation of CleanLine (README.md, \"Admin API\"). " +
				"Errors are {\"error\":{\"code\",\"message\"}}; lists are paged with limit and cursor."},
		Paths: openapi3.NewPaths(),
		Components: &openapi3.Components{
			SecuritySchemes: openapi3.SecuritySchemes{"bearer": &openapi3.SecuritySchemeRef{
				Value: openapi3.NewSecurityScheme().WithType("http").WithScheme("bearer")}},
			Responses: openapi3.ResponseBodies{},
		},
	}
	gen := openapi3gen.NewGenerator(openapi3gen.SchemaCustomizer(customize))
	errSchema, err := gen.GenerateSchemaRef(reflect.TypeFor[errorBody]())
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"Error", "Unauthenticated", "Forbidden"} {
		doc.Components.Responses[name] = &openapi3.ResponseRef{Value: openapi3.NewResponse().
			WithDescription(map[string]string{"Error": "The error, its stable code and the message the CLI prints",
				"Unauthenticated": "No bearer token, or an unknown one", "Forbidden": "The token's scope does not reach this"}[name]).
			WithJSONSchemaRef(errSchema)}
	}
	for _, rt := range routes {
		o, err := operation(gen, rt, doc.Components.Responses)
		if err != nil {
			return nil, fmt.Errorf("api: %s: %w", rt.ID, err)
		}
		doc.AddOperation(rt.Path, rt.Method, o)
	}
	// The generator names each schema by its Go type (a "$ref" to nothing):
	// every schema here is written where it is used.
	for ref := range gen.SchemaRefs {
		if !strings.HasPrefix(ref.Ref, "#/") {
			ref.Ref = ""
		}
	}
	return doc, nil
}

var pathParam = regexp.MustCompile(`\{([a-z]+)\}`)

// ref points at a response of the document's components (with its value,
// so that the document validates without being loaded again).
func ref(responses openapi3.ResponseBodies, name string) *openapi3.ResponseRef {
	return &openapi3.ResponseRef{Ref: "#/components/responses/" + name, Value: responses[name].Value}
}

func operation(gen *openapi3gen.Generator, rt Route, responses openapi3.ResponseBodies) (*openapi3.Operation, error) {
	o := openapi3.NewOperation()
	o.Responses = openapi3.NewResponses()
	o.Responses.Delete("default")
	o.OperationID, o.Summary = rt.ID, rt.Summary
	o.Tags = []string{tag(rt.Path)}
	if rt.access != accessOpen {
		o.Security = &openapi3.SecurityRequirements{{"bearer": []string{}}}
		o.Description = map[access]string{accessAdmin: "Scope: admin.", accessRead: "Scope: admin, or read (GET).",
			accessLine: "Scope: admin, read (GET), or carer of the line."}[rt.access]
		o.Responses.Set("401", ref(responses, "Unauthenticated"))
		o.Responses.Set("403", ref(responses, "Forbidden"))
	}
	// Every {x} of the path, whatever the request type says of it.
	for _, m := range pathParam.FindAllStringSubmatch(rt.Path, -1) {
		o.AddParameter(openapi3.NewPathParameter(m[1]).WithSchema(openapi3.NewStringSchema()))
	}
	if rt.call == nil && rt.stream == nil {
		ok := openapi3.NewResponse().WithDescription(rt.Summary)
		ok.Content = openapi3.NewContentWithSchema(openapi3.NewSchema(), []string{rt.produces})
		o.AddResponse(http.StatusOK, ok)
		return o, nil
	}
	for _, f := range fieldsOf(rt.in) {
		if f.where != "query" {
			continue
		}
		ref, err := gen.GenerateSchemaRef(f.typ)
		if err != nil {
			return nil, err
		}
		o.AddParameter(openapi3.NewQueryParameter(f.name).WithSchema(ref.Value))
	}
	switch {
	case hasJSON(rt.in):
		ref, err := gen.GenerateSchemaRef(rt.in)
		if err != nil {
			return nil, err
		}
		o.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithJSONSchemaRef(ref)}
	case hasRaw(rt.in):
		o.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithRequired(true).
			WithContent(openapi3.NewContentWithSchema(openapi3.NewStringSchema(), []string{"text/csv", "text/plain"}))}
	}
	out, err := gen.GenerateSchemaRef(rt.out)
	if err != nil {
		return nil, err
	}
	ok := openapi3.NewResponse().WithDescription("OK")
	if rt.stream != nil {
		ok.Content = openapi3.NewContentWithSchemaRef(out, []string{"application/x-ndjson"})
	} else {
		ok.Content = openapi3.NewContentWithJSONSchemaRef(out)
	}
	o.AddResponse(http.StatusOK, ok)
	o.Responses.Set("default", ref(responses, "Error"))
	return o, nil
}

func hasRaw(t reflect.Type) bool {
	for _, f := range fieldsOf(t) {
		if f.where == "raw" {
			return true
		}
	}
	return false
}

// tag groups operations by their path's first word after /v1/.
func tag(path string) string {
	p := strings.TrimPrefix(path, "/v1/")
	if p == path {
		return "service"
	}
	w, _, _ := strings.Cut(p, "/")
	return w
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()

// customize: types that marshal themselves as text are strings in JSON,
// and a struct's fields without omitempty are always there (required).
func customize(name string, t reflect.Type, tag reflect.StructTag, s *openapi3.Schema) error {
	if t.Implements(textMarshaler) && t.Kind() != reflect.Struct {
		*s = *openapi3.NewStringSchema()
		return nil
	}
	if t.Kind() != reflect.Struct || t == timeType {
		return nil
	}
	for _, f := range reflect.VisibleFields(t) {
		jname, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || f.Anonymous || jname == "" || jname == "-" || strings.Contains(opts, "omitempty") {
			continue
		}
		if _, ok := s.Properties[jname]; ok {
			s.Required = append(s.Required, jname)
		}
	}
	return nil
}
