package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/orgplane/orgplane/internal/core"
)

// MaxBody is the largest request body accepted.
const MaxBody = 1 << 20

// decodeJSON reads one request body into v (a pointer to a struct) or
// refuses it. It is stricter than encoding/json, which takes the last of
// two equal keys, matches field names in any case and replaces invalid
// UTF-8 with U+FFFD: a value stored must be the value sent, and a field
// the caller named must be the field it meant. Refused:
//
//   - a Content-Type other than application/json (parameters allowed; a
//     charset must be utf-8), or none: unsupported_content_type;
//   - an empty body, malformed JSON, or a body that is not an object:
//     invalid_json;
//   - invalid UTF-8, raw or as a lone surrogate escape: invalid_utf8;
//   - a key twice in one object: duplicate_key;
//   - a key that is not one of the exact field names: unknown_field;
//   - a value of the wrong JSON type: invalid_type;
//   - a timestamp that is not RFC 3339: invalid_timestamp;
//   - anything after the object: trailing_data.
//
// Refusals are *core.Error with status 400; the size limit is the
// caller's (see readBody).
func decodeJSON(contentType string, body []byte, v any) *core.Error {
	if len(bytes.TrimSpace(body)) == 0 {
		return core.Invalid("invalid_json", "request body is empty; want a JSON object")
	}
	if err := checkContentType(contentType); err != nil {
		return err
	}
	if !utf8.Valid(body) {
		return core.Invalid("invalid_utf8", "request body is not valid UTF-8")
	}
	rt := reflect.TypeOf(v)
	if rt == nil || rt.Kind() != reflect.Pointer {
		panic("httpapi: decodeJSON wants a pointer")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return syntaxErr(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return core.Invalid("invalid_json", "request body must be a JSON object, not %s", kindOf(tok))
	}
	if e := walkObject(dec, rt.Elem(), ""); e != nil {
		return e
	}
	if _, err := dec.Token(); err != io.EOF {
		return core.Invalid("trailing_data", "request body has data after the JSON object")
	}
	if e := checkSurrogates(body); e != nil {
		return e
	}
	if err := json.Unmarshal(body, v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return typeErr(te.Field, te.Type, te.Value)
		}
		return core.Invalid("invalid_json", "malformed JSON")
	}
	return nil
}

// checkContentType accepts application/json in any case, with parameters;
// a charset parameter must say utf-8, the only encoding JSON has (RFC 8259).
func checkContentType(ct string) *core.Error {
	if strings.TrimSpace(ct) == "" {
		return core.Invalid("unsupported_content_type", "a request body needs Content-Type: application/json")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return core.Invalid("unsupported_content_type", "Content-Type must be application/json; got %s", quoteShort(ct))
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return core.Invalid("unsupported_content_type", "Content-Type application/json takes only charset=utf-8; got %s", quoteShort(ct))
		}
	}
	return nil
}

var (
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(json.RawMessage(nil))
)

// walkObject walks the members of an object whose '{' was read, checking
// keys against t (a struct type: exact names; anything else: no
// duplicates) and each value against its field's type.
func walkObject(dec *json.Decoder, t reflect.Type, path string) *core.Error {
	seen := map[string]bool{}
	for {
		tok, err := dec.Token()
		if err != nil {
			return syntaxErr(err)
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			return nil
		}
		key, _ := tok.(string)
		full := join(path, key)
		if seen[key] {
			return core.Invalid("duplicate_key", "key %s appears twice; send each field once", quoteShort(full))
		}
		seen[key] = true
		var ft reflect.Type // nil: any JSON value, only walked for duplicates
		if t != nil && t.Kind() == reflect.Struct {
			f, ok := fieldByExactName(t, key)
			if !ok {
				if f, ok := fieldByFoldedName(t, key); ok {
					return core.Invalid("unknown_field", "unknown field %s: did you mean %q? (field names are exact)", quoteShort(full), join(path, f))
				}
				return core.Invalid("unknown_field", "unknown field %s", quoteShort(full))
			}
			ft = f
		} else if t != nil && t.Kind() == reflect.Map {
			ft = t.Elem()
		}
		if e := walkValue(dec, ft, full); e != nil {
			return e
		}
	}
}

// walkValue walks one value. Only timestamps get their value checked here
// (encoding/json would not say which field was wrong); other type
// mismatches are left to json.Unmarshal, which does name the field.
func walkValue(dec *json.Decoder, t reflect.Type, path string) *core.Error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawType {
		t = nil
	}
	tok, err := dec.Token()
	if err != nil {
		return syntaxErr(err)
	}
	if t == timeType {
		s, ok := tok.(string)
		if tok == nil {
			return nil
		}
		if !ok {
			return core.Invalid("invalid_timestamp", "field %q must be an RFC 3339 timestamp string such as \"2006-01-02T15:04:05Z\", not %s", path, kindOf(tok))
		}
		if _, err := time.Parse(time.RFC3339, s); err != nil {
			return core.Invalid("invalid_timestamp", "field %q must be an RFC 3339 timestamp such as \"2006-01-02T15:04:05Z\"; got %s", path, quoteShort(s))
		}
		return nil
	}
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	switch d {
	case '{':
		if t != nil && t.Kind() != reflect.Struct && t.Kind() != reflect.Map && t.Kind() != reflect.Interface {
			return typeErr(path, t, "object")
		}
		return walkObject(dec, t, path)
	case '[':
		var et reflect.Type
		if t != nil {
			if t.Kind() != reflect.Slice && t.Kind() != reflect.Array && t.Kind() != reflect.Interface {
				return typeErr(path, t, "array")
			}
			if t.Kind() != reflect.Interface {
				et = t.Elem()
			}
		}
		for i := 0; dec.More(); i++ {
			if e := walkValue(dec, et, path+"["+strconv.Itoa(i)+"]"); e != nil {
				return e
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return syntaxErr(err)
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// jsonName is the name encoding/json gives a struct field, and whether
// the field is encoded at all.
func jsonName(f reflect.StructField) (string, bool) {
	if !f.IsExported() {
		return "", false
	}
	tag := f.Tag.Get("json")
	if tag == "-" {
		return "", false
	}
	name, _, _ := strings.Cut(tag, ",")
	if name == "" {
		name = f.Name
	}
	return name, true
}

func fieldByExactName(t reflect.Type, key string) (reflect.Type, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if name, ok := jsonName(f); ok && name == key {
			return f.Type, true
		}
	}
	return nil, false
}

func fieldByFoldedName(t reflect.Type, key string) (string, bool) {
	for i := range t.NumField() {
		if name, ok := jsonName(t.Field(i)); ok && (strings.EqualFold(name, key) || fold(name) == fold(key)) {
			return name, true
		}
	}
	return "", false
}

// checkSurrogates refuses a \u escape of half a UTF-16 surrogate pair:
// encoding/json would store U+FFFD in its place, a value other than the
// one sent. body is known to be valid JSON, so every backslash is inside a
// string and starts an escape.
func checkSurrogates(body []byte) *core.Error {
	bad := core.Invalid("invalid_utf8", "request body has a \\u escape of a lone UTF-16 surrogate, which is not a character")
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		if i+1 >= len(body) {
			return bad // cannot happen in valid JSON
		}
		if body[i+1] != 'u' {
			i++
			continue
		}
		r, ok := hex4(body, i+2)
		if !ok {
			return bad // cannot happen in valid JSON
		}
		switch {
		case r >= 0xD800 && r < 0xDC00:
			if i+12 > len(body) || body[i+6] != '\\' || body[i+7] != 'u' {
				return bad
			}
			lo, ok := hex4(body, i+8)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return bad
			}
			i += 11
		case r >= 0xDC00 && r <= 0xDFFF:
			return bad
		default:
			i += 5
		}
	}
	return nil
}

func hex4(b []byte, at int) (rune, bool) {
	if at+4 > len(b) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[at:at+4]), 16, 32)
	return rune(n), err == nil
}

func syntaxErr(err error) *core.Error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return core.Invalid("invalid_json", "malformed JSON at byte %d", se.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return core.Invalid("invalid_json", "malformed JSON: unexpected end of body")
	}
	return core.Invalid("invalid_json", "malformed JSON")
}

func typeErr(field string, t reflect.Type, got string) *core.Error {
	if field == "" {
		return core.Invalid("invalid_json", "request body must be a JSON object, not %s", got)
	}
	return core.Invalid("invalid_type", "field %q must be %s, not %s", field, jsonType(t), got)
}

// jsonType names what JSON value a Go type takes.
func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Bool:
		return "a boolean"
	case reflect.String:
		return "a string"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a JSON value"
}

// kindOf names the JSON kind of a token, for messages.
func kindOf(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "an object"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}
