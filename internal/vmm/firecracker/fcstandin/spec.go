// Package fcstandin is a spec-checking stand-in for Firecracker, used only by tests. It
// is not a Firecracker emulator: it runs no guest. A Firecracker driver under test
// spawns it instead of the firecracker binary; it serves Firecracker's HTTP API on the
// --api-sock unix socket, checks every request against Firecracker's published Swagger
// document (paths, methods, required fields, types, enums, bounds, unknown fields) and
// against the documented call order (pre-boot-only endpoints, one InstanceStart,
// snapshot/load only on a fresh process, snapshot/create only when paused…), answers
// violations as Firecracker does (400 {"fault_message": …}) and journals every request
// so the test can assert that none was refused.
//
// To let snapshot handling be tested end to end it keeps a simulated guest memory
// that it "dirties" deterministically whenever the VM runs, writes Full and Diff memory
// files and a small state file, and restores from a memory file or through a real
// userfaultfd served by the driver's page-fault handler (Firecracker's handshake),
// checking that the memory it gets back is the memory it snapshotted.
package fcstandin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Spec is Firecracker's Swagger 2.0 API document, reduced to what request checking
// needs.
type Spec struct {
	paths       map[string]map[string]*operation
	definitions map[string]*schema
}

type swaggerDoc struct {
	Paths       map[string]map[string]*operation `yaml:"paths"`
	Definitions map[string]*schema               `yaml:"definitions"`
}

type operation struct {
	Parameters []parameter `yaml:"parameters"`
}

type parameter struct {
	Name        string  `yaml:"name"`
	Description string  `yaml:"description"`
	In          string  `yaml:"in"`
	Required    bool    `yaml:"required"`
	Type        string  `yaml:"type"`
	Schema      *schema `yaml:"schema"`
}

// schema is the subset of a Swagger schema object the stand-in enforces.
type schema struct {
	Ref                  string             `yaml:"$ref"`
	Type                 string             `yaml:"type"`
	Format               string             `yaml:"format"`
	Description          string             `yaml:"description"`
	Required             []string           `yaml:"required"`
	Properties           map[string]*schema `yaml:"properties"`
	AdditionalProperties yaml.Node          `yaml:"additionalProperties"`
	Enum                 []any              `yaml:"enum"`
	Minimum              *float64           `yaml:"minimum"`
	Maximum              *float64           `yaml:"maximum"`
	Items                *schema            `yaml:"items"`
}

// LoadSpec parses Firecracker's Swagger document (src/firecracker/swagger/firecracker.yaml).
func LoadSpec(path string) (*Spec, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read the Firecracker API spec: %w", err)
	}
	var d swaggerDoc
	if err := yaml.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("parse the Firecracker API spec %s: %w", path, err)
	}
	if len(d.Paths) == 0 || len(d.Definitions) == 0 {
		return nil, fmt.Errorf("the Firecracker API spec %s has no paths or definitions", path)
	}
	return &Spec{paths: d.Paths, definitions: d.Definitions}, nil
}

// match finds the documented path template for urlPath and the values of its path
// parameters.
func (s *Spec) match(urlPath string) (string, map[string]string, bool) {
	if _, ok := s.paths[urlPath]; ok {
		return urlPath, nil, true
	}
	segs := strings.Split(urlPath, "/")
	for tmpl := range s.paths {
		tsegs := strings.Split(tmpl, "/")
		if len(tsegs) != len(segs) || !strings.Contains(tmpl, "{") {
			continue
		}
		params := map[string]string{}
		ok := true
		for i, t := range tsegs {
			if strings.HasPrefix(t, "{") && strings.HasSuffix(t, "}") {
				if segs[i] == "" {
					ok = false
					break
				}
				params[t[1:len(t)-1]] = segs[i]
				continue
			}
			if t != segs[i] {
				ok = false
				break
			}
		}
		if ok {
			return tmpl, params, true
		}
	}
	return "", nil, false
}

// Check returns nil when the request is one Firecracker's API document allows, else an
// error naming the violation: an unknown path or method, a missing required body, a
// body that does not match its schema (wrong type, missing required field, unknown
// field, value out of its enum or bounds), or a path id that differs from the body's.
func (s *Spec) Check(method, urlPath string, body []byte) error {
	urlPath, _, _ = strings.Cut(urlPath, "?")
	tmpl, params, ok := s.match(urlPath)
	if !ok {
		return fmt.Errorf("unknown path %s: Firecracker's API has no such resource", urlPath)
	}
	op := s.paths[tmpl][strings.ToLower(method)]
	if op == nil {
		var allowed []string
		for m := range s.paths[tmpl] {
			allowed = append(allowed, strings.ToUpper(m))
		}
		slices.Sort(allowed)
		return fmt.Errorf("method %s is not allowed on %s (the API allows %s)", method, tmpl, strings.Join(allowed, ", "))
	}
	where := method + " " + tmpl
	var bodyParam *parameter
	for i := range op.Parameters {
		if op.Parameters[i].In == "body" {
			bodyParam = &op.Parameters[i]
		}
	}
	body = bytes.TrimSpace(body)
	if bodyParam == nil {
		if len(body) > 0 {
			return fmt.Errorf("%s: takes no request body, got %d bytes", where, len(body))
		}
		return nil
	}
	if len(body) == 0 {
		if bodyParam.Required {
			return fmt.Errorf("%s: the request body (%s) is required but missing", where, refName(bodyParam.Schema))
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("%s: the body is not valid JSON: %v", where, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: trailing data after the JSON body", where)
	}
	if v == nil {
		return fmt.Errorf("%s: the body is null, want %s", where, refName(bodyParam.Schema))
	}
	sc := bodyParam.Schema
	if strings.HasPrefix(bodyParam.Description, "A subset of") {
		// PATCH /machine-config documents its body as "A subset of" the full schema:
		// every field is optional there (Firecracker's MachineConfigUpdate).
		full, _, err := s.resolve(sc)
		if err != nil {
			return err
		}
		partial := *full
		partial.Required = nil
		sc = &partial
	}
	if err := s.validate(v, sc, "body"); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	// Firecracker refuses a body whose id differs from the one in the path.
	if obj, ok := v.(map[string]any); ok {
		for name, val := range params {
			if b, ok := obj[name]; ok && b != val {
				return fmt.Errorf("%s: the path's %s %q differs from the body's %s %v", where, name, val, name, b)
			}
		}
	}
	return nil
}

func refName(sc *schema) string {
	if sc == nil {
		return "a JSON body"
	}
	if sc.Ref != "" {
		return strings.TrimPrefix(sc.Ref, "#/definitions/")
	}
	if sc.Type != "" {
		return "a JSON " + sc.Type
	}
	return "a JSON body"
}

// resolve follows $ref to a definition and returns it with the definition's name.
func (s *Spec) resolve(sc *schema) (*schema, string, error) {
	name := ""
	for range 16 {
		if sc == nil || sc.Ref == "" {
			return sc, name, nil
		}
		name = strings.TrimPrefix(sc.Ref, "#/definitions/")
		d, ok := s.definitions[name]
		if !ok {
			return nil, "", fmt.Errorf("the spec refers to the unknown definition %s", sc.Ref)
		}
		sc = d
	}
	return nil, "", fmt.Errorf("the spec's $ref chain at %s is too deep", name)
}

func jsonKind(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case bool:
		return "boolean " + fmt.Sprint(v)
	case json.Number:
		return "number " + v.String()
	case string:
		return fmt.Sprintf("string %q", v)
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// validate checks v against sc; at names the value (body.rate_limiter.ops) in errors.
func (s *Spec) validate(v any, sc *schema, at string) error {
	sc, name, err := s.resolve(sc)
	if err != nil {
		return err
	}
	if sc == nil {
		return nil
	}
	typ := sc.Type
	if typ == "" && len(sc.Properties) > 0 {
		typ = "object"
	}
	what := typ
	if name != "" {
		what = fmt.Sprintf("%s (%s)", typ, name)
	}
	switch typ {
	case "object":
		obj, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("%s: want an object %s, got %s", at, what, jsonKind(v))
		}
		for _, req := range sc.Required {
			if val, ok := obj[req]; !ok || val == nil {
				return fmt.Errorf("%s: missing required field %q of %s", at, req, what)
			}
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			val := obj[k]
			if p, ok := sc.Properties[k]; ok {
				// serde's Option fields accept null as "absent".
				if val == nil {
					continue
				}
				if err := s.validate(val, p, at+"."+k); err != nil {
					return err
				}
				continue
			}
			switch ap := &sc.AdditionalProperties; {
			case ap.Kind == yaml.ScalarNode && ap.Value == "true":
			case ap.Kind == yaml.MappingNode:
				var extra schema
				if err := ap.Decode(&extra); err != nil {
					return fmt.Errorf("the spec's additionalProperties of %s: %v", what, err)
				}
				if err := s.validate(val, &extra, at+"."+k); err != nil {
					return err
				}
			default:
				known := make([]string, 0, len(sc.Properties))
				for p := range sc.Properties {
					known = append(known, p)
				}
				slices.Sort(known)
				return fmt.Errorf("%s: unknown field %q: Firecracker denies unknown fields (%s has %s)", at, k, what, strings.Join(known, ", "))
			}
		}
	case "array":
		arr, ok := v.([]any)
		if !ok {
			return fmt.Errorf("%s: want an array, got %s", at, jsonKind(v))
		}
		for i, item := range arr {
			if err := s.validate(item, sc.Items, fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			return fmt.Errorf("%s: want a string %s, got %s", at, what, jsonKind(v))
		}
		if len(sc.Enum) > 0 {
			fold := strings.Contains(sc.Description, "case-insensitive")
			for _, e := range sc.Enum {
				if es, ok := e.(string); ok && (es == str || fold && strings.EqualFold(es, str)) {
					return nil
				}
			}
			return fmt.Errorf("%s: %q is not one of the allowed values %v of %s", at, str, sc.Enum, what)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fmt.Errorf("%s: want a boolean, got %s", at, jsonKind(v))
		}
	case "integer", "number":
		n, ok := v.(json.Number)
		if !ok {
			return fmt.Errorf("%s: want %s, got %s", at, what, jsonKind(v))
		}
		f, _, err := big.ParseFloat(n.String(), 10, 200, big.ToNearestEven)
		if err != nil {
			return fmt.Errorf("%s: bad number %s: %v", at, n, err)
		}
		if typ == "integer" {
			if !f.IsInt() {
				return fmt.Errorf("%s: want an integer, got %s", at, n)
			}
			if sc.Format == "int32" && (f.Cmp(big.NewFloat(-1<<31)) < 0 || f.Cmp(big.NewFloat(1<<31-1)) > 0) {
				return fmt.Errorf("%s: %s does not fit in int32", at, n)
			}
			if sc.Format == "int64" && (f.Cmp(big.NewFloat(-1<<63)) < 0 || f.Cmp(new(big.Float).SetUint64(1<<63-1)) > 0) {
				return fmt.Errorf("%s: %s does not fit in int64", at, n)
			}
		}
		if sc.Minimum != nil && f.Cmp(big.NewFloat(*sc.Minimum)) < 0 {
			return fmt.Errorf("%s: %s is below the minimum %v", at, n, *sc.Minimum)
		}
		if sc.Maximum != nil && f.Cmp(big.NewFloat(*sc.Maximum)) > 0 {
			return fmt.Errorf("%s: %s is above the maximum %v", at, n, *sc.Maximum)
		}
	case "":
		// No type: anything goes.
	default:
		return fmt.Errorf("the spec uses the unsupported type %q at %s", typ, at)
	}
	return nil
}
