package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orgplane/orgplane/internal/client"
)

// Mode is a tool set: what a kind of token may be offered.
type Mode string

// The tool sets of the contract.
const (
	// Management is for admin tokens (the concierge's management token
	// among them): the org.
	Management Mode = "management"
	// Workspace is for workspace tokens: the box's own workspace, its
	// secrets' keys and restarts, its approvals and requests.
	Workspace Mode = "workspace"
)

// Version is reported to clients as the server's version.
var Version = "dev"

const instructions = `orgplane manages an organization of AI agent workspaces.
Risky writes may answer {"status":"approval_required","approval":{...}}: nothing changed;
people decide. Wait for them with wait_approval. No tool ever returns a secret's value:
a box reads its own from its environment.`

// NewServer returns an MCP server with the tools of mode over b.
func NewServer(mode Mode, b Backend) *sdk.Server {
	s := sdk.NewServer(&sdk.Implementation{Name: "orgplane", Title: "orgplane (" + string(mode) + ")", Version: Version},
		&sdk.ServerOptions{Instructions: instructions, Capabilities: &sdk.ServerCapabilities{Tools: &sdk.ToolCapabilities{}}})
	for _, t := range toolsFor(mode) {
		t.add(s, b)
	}
	return s
}

// Tools lists the tools of mode by name, as tools/list shows them.
func Tools(mode Mode) []*sdk.Tool {
	var out []*sdk.Tool
	for _, t := range toolsFor(mode) {
		out = append(out, t.tool())
	}
	slices.SortFunc(out, func(a, b *sdk.Tool) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func toolsFor(mode Mode) []toolDef {
	var out []toolDef
	for _, t := range allTools {
		if t.in(mode) {
			out = append(out, t)
		}
	}
	return out
}

// toolDef is one tool, whatever its argument and result types.
type toolDef interface {
	tool() *sdk.Tool
	in(Mode) bool
	add(*sdk.Server, Backend)
}

// call is what a tool's body sees: the backend and the MCP request (for
// progress notifications).
type call struct {
	b   Backend
	req *sdk.CallToolRequest
}

// progress returns a func that notifies the client of each state seen, or
// nil when the client did not ask for progress.
func (c call) progress(ctx context.Context) func(string) {
	tok := c.req.Params.GetProgressToken()
	if tok == nil || c.req.Session == nil {
		return nil
	}
	n := 0.0
	return func(state string) {
		n++
		_ = c.req.Session.NotifyProgress(ctx, &sdk.ProgressNotificationParams{ProgressToken: tok, Progress: n, Message: state})
	}
}

// typedTool is a tool with In arguments and an Out result.
type typedTool[In, Out any] struct {
	def   sdk.Tool
	modes []Mode
	run   func(ctx context.Context, c call, in In) (Out, error)

	schemaIn, schemaOut *jsonschema.Schema
	required            []string
}

func (t *typedTool[In, Out]) in(m Mode) bool {
	for _, x := range t.modes {
		if x == m {
			return true
		}
	}
	return false
}

func (t *typedTool[In, Out]) tool() *sdk.Tool {
	d := t.def
	d.InputSchema, d.OutputSchema = t.schemaIn, t.schemaOut
	return &d
}

func (t *typedTool[In, Out]) add(s *sdk.Server, b Backend) {
	s.AddTool(t.tool(), func(ctx context.Context, req *sdk.CallToolRequest) (*sdk.CallToolResult, error) {
		in, err := decodeArgs[In](req.Params.Arguments, t.required)
		if err != nil {
			// Malformed arguments are the caller's protocol error, not a
			// tool's refusal. The message names fields, never values.
			return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: t.def.Name + ": " + err.Error()}
		}
		out, err := t.run(ctx, call{b: b, req: req}, in)
		if err != nil {
			return errorResult(err)
		}
		return jsonResult(out)
	})
}

// decodeArgs decodes a tool's arguments strictly: an object, every
// required field present, no unknown field, the right JSON types. Errors
// name the field, never the value (a secret's value is an argument).
func decodeArgs[In any](raw json.RawMessage, required []string) (In, error) {
	var in In
	if len(bytes.TrimSpace(raw)) == 0 || string(bytes.TrimSpace(raw)) == "null" {
		raw = json.RawMessage("{}")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return in, errors.New("arguments must be a JSON object")
	}
	for _, k := range required {
		if v, ok := fields[k]; !ok || string(v) == "null" {
			return in, fmt.Errorf("missing required argument %q", k)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return in, fmt.Errorf("argument %q must be of JSON type %s", te.Field, jsonType(te.Type))
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return in, fmt.Errorf("unknown argument %s", name)
		}
		return in, errors.New("arguments are not valid JSON")
	}
	return in, nil
}

func jsonType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "integer"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.Slice:
		return "array"
	}
	return t.String()
}

// jsonResult is a done call's result: the structured content, and the same
// JSON as text for clients that read only text.
func jsonResult(out any) (*sdk.CallToolResult, error) {
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return &sdk.CallToolResult{Content: []sdk.Content{&sdk.TextContent{Text: string(b)}}, StructuredContent: json.RawMessage(b)}, nil
}

// errorResult is a tool error: isError, and the API's error as text,
// {"error":{"code":..., "message":...}}.
func errorResult(err error) (*sdk.CallToolResult, error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
	}
	b, _ := json.Marshal(map[string]*Error{"error": e})
	return &sdk.CallToolResult{IsError: true, Content: []sdk.Content{&sdk.TextContent{Text: string(b)}}}, nil
}

// schemaOpts: raw JSON (a spec, an action's parameters, an audit detail)
// is any JSON value.
var schemaOpts = &jsonschema.ForOptions{TypeSchemas: map[reflect.Type]*jsonschema.Schema{
	reflect.TypeFor[json.RawMessage](): {},
	reflect.TypeFor[time.Time]():       {Type: "string", Format: "date-time"},
}}

// newTool defines a tool; its schemas come from In and Out.
func newTool[In, Out any](def sdk.Tool, modes []Mode, run func(ctx context.Context, c call, in In) (Out, error)) toolDef {
	in, err := jsonschema.For[In](schemaOpts)
	if err != nil {
		panic(fmt.Sprintf("mcp: input schema of %s: %v", def.Name, err))
	}
	out, err := jsonschema.For[Out](schemaOpts)
	if err != nil {
		panic(fmt.Sprintf("mcp: output schema of %s: %v", def.Name, err))
	}
	if in.Properties == nil {
		in.Properties = map[string]*jsonschema.Schema{} // {} takes no arguments, and says so
	}
	return &typedTool[In, Out]{def: def, modes: modes, run: run, schemaIn: in, schemaOut: out, required: in.Required}
}

// Outcome is the result of a write the org's policy may gate.
type Outcome[T any] struct {
	Status   string           `json:"status" jsonschema:"done: the call took effect (see result); approval_required: the org's policy holds it for people to decide and nothing changed (see approval; wait_approval waits for the decision)"`
	Result   *T               `json:"result,omitempty" jsonschema:"what the call did, when status is done"`
	Approval *client.Approval `json:"approval,omitempty" jsonschema:"the pending approval, when status is approval_required"`
}

// gated turns a backend answer into an Outcome: a gated call is not an
// error but a pending approval.
func gated[T any](v T, err error) (Outcome[T], error) {
	var g *Gated
	if errors.As(err, &g) {
		return Outcome[T]{Status: "approval_required", Approval: &g.Approval}, nil
	}
	if err != nil {
		return Outcome[T]{}, err
	}
	return Outcome[T]{Status: "done", Result: &v}, nil
}
