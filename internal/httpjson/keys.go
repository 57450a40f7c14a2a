// Package httpjson holds what the HTTP APIs' JSON decoding shares: refusing object
// keys that match a field only when case is ignored.
package httpjson

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// CheckKeys refuses a JSON object key that only case-folds to a field of t:
// encoding/json matches names case-insensitively, so {"nAme": …} would set name,
// while the API's spec (and every other client's parser) says such a key is not
// name at all. Keys that match no field at all are left to the caller's own policy
// (a strict decoder refuses them, a tolerant one ignores them); CheckKeys only stops
// one from being taken for a field. Nested objects and arrays of them are checked by
// their field types; map keys are data, not names, and are left alone. raw is
// expected to have decoded into t already: malformed JSON is not reported here.
func CheckKeys(raw json.RawMessage, t reflect.Type) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return nil // not an object: the decoder has already said what is wrong
		}
		fields := jsonFields(t)
		for key, val := range obj {
			ft, ok := fields[key]
			if !ok {
				for name := range fields {
					if strings.EqualFold(name, key) {
						return fmt.Errorf("json: unknown field %q (field names are case-sensitive: %q)", key, name)
					}
				}
				continue
			}
			if err := CheckKeys(val, ft); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return nil
		}
		for _, item := range items {
			if err := CheckKeys(item, t.Elem()); err != nil {
				return err
			}
		}
	case reflect.Map:
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			return nil
		}
		for _, v := range m {
			if err := CheckKeys(v, t.Elem()); err != nil {
				return err
			}
		}
	}
	return nil
}

// jsonFields maps the JSON names of t's fields (embedded structs' included) to
// their types, as encoding/json names them.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				for n, ft := range jsonFields(et) {
					out[n] = ft
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}
