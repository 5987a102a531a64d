// Package kubespec is the spec of a kubernetes workspace and its rules.
// It is its own small package so that the service layer can validate a
// spec without linking the Kubernetes client.
package kubespec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Spec is the spec of a kubernetes workspace. Command and Args are the
// container's (command replaces the image's ENTRYPOINT, args its CMD).
type Spec struct {
	Image             string            `json:"image"`
	Command           []string          `json:"command,omitempty"`
	Args              []string          `json:"args,omitempty"`
	Env               map[string]string `json:"env,omitempty"`
	Resources         *Resources        `json:"resources,omitempty"`
	ServiceAccount    string            `json:"service_account,omitempty"`
	NodeSelector      map[string]string `json:"node_selector,omitempty"`
	Tolerations       []Toleration      `json:"tolerations,omitempty"`
	ImagePullSecrets  []string          `json:"image_pull_secrets,omitempty"`
	ReadyAfterSeconds *float64          `json:"ready_after_seconds,omitempty"`
}

// Resources are the box container's requests and limits, by resource name
// ("cpu", "memory", "ephemeral-storage", or an extended "vendor/name").
type Resources struct {
	Requests map[string]string `json:"requests,omitempty"`
	Limits   map[string]string `json:"limits,omitempty"`
}

// Toleration is a Kubernetes toleration, with the API's snake_case names.
type Toleration struct {
	Key               string `json:"key,omitempty"`
	Operator          string `json:"operator,omitempty"` // Equal (default) or Exists
	Value             string `json:"value,omitempty"`
	Effect            string `json:"effect,omitempty"` // NoSchedule, PreferNoSchedule, NoExecute; empty: all
	TolerationSeconds *int64 `json:"toleration_seconds,omitempty"`
}

// Parse decodes a spec strictly (unknown fields and names that match only
// case-insensitively are refused, at every depth) and validates it.
func Parse(raw []byte) (Spec, error) {
	var sp Spec
	if err := ExactKeys(raw); err != nil {
		return sp, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sp); err != nil {
		return sp, fmt.Errorf("decode spec: %w", err)
	}
	return sp, sp.Validate()
}

// maxArg bounds one argument (as the service bounds a secret value).
const maxArg = 64 << 10

// Validate checks what the API server would refuse only when the pod is
// created, so that a bad spec is a 4xx on the write, not a failed box.
// Command and env are checked by the service's rules shared with the
// other runtimes.
func (s *Spec) Validate() error {
	// An empty image is the control plane's agent image (its
	// --kube-agent-image): the service decides whether there is one.
	if strings.IndexByte(s.Image, 0) >= 0 || strings.TrimSpace(s.Image) != s.Image || len(s.Image) > 1024 ||
		strings.ContainsAny(s.Image, " \t\r\n") {
		return errors.New("spec.image must be an image reference (no spaces or NUL, at most 1024 bytes)")
	}
	for i, a := range s.Args {
		if strings.IndexByte(a, 0) >= 0 {
			return fmt.Errorf("spec.args[%d] contains a NUL byte, which no program argument can hold", i)
		}
		if len(a) > maxArg {
			return fmt.Errorf("spec.args[%d] is %d bytes; at most %d", i, len(a), maxArg)
		}
	}
	if s.Resources != nil {
		if err := s.Resources.validate(); err != nil {
			return err
		}
	}
	if s.ServiceAccount != "" {
		if errs := validation.IsDNS1123Subdomain(s.ServiceAccount); len(errs) > 0 {
			return fmt.Errorf("spec.service_account %q: %s", s.ServiceAccount, strings.Join(errs, "; "))
		}
	}
	for k, v := range s.NodeSelector {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return fmt.Errorf("spec.node_selector key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return fmt.Errorf("spec.node_selector[%q] value %q: %s", k, v, strings.Join(errs, "; "))
		}
	}
	for i, t := range s.Tolerations {
		if err := t.validate(); err != nil {
			return fmt.Errorf("spec.tolerations[%d]: %w", i, err)
		}
	}
	for i, name := range s.ImagePullSecrets {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return fmt.Errorf("spec.image_pull_secrets[%d] %q: %s", i, name, strings.Join(errs, "; "))
		}
		if slices.Contains(s.ImagePullSecrets[:i], name) {
			return fmt.Errorf("spec.image_pull_secrets names %q twice", name)
		}
	}
	return nil
}

var standardResources = []string{"cpu", "memory", "ephemeral-storage"}

func (r *Resources) validate() error {
	parsed := map[string]map[string]resource.Quantity{}
	for _, part := range []struct {
		name string
		m    map[string]string
	}{{"requests", r.Requests}, {"limits", r.Limits}} {
		parsed[part.name] = map[string]resource.Quantity{}
		for name, v := range part.m {
			if !slices.Contains(standardResources, name) {
				// An extended resource is a qualified name with a domain.
				if !strings.Contains(name, "/") || len(validation.IsQualifiedName(name)) > 0 {
					return fmt.Errorf("spec.resources.%s: %q is not a resource name (cpu, memory, ephemeral-storage, or domain/name)", part.name, name)
				}
			}
			q, err := resource.ParseQuantity(v)
			if err != nil {
				return fmt.Errorf("spec.resources.%s.%s: %q is not a quantity (for example 500m, 2, 128Mi)", part.name, name, v)
			}
			if q.Sign() < 0 {
				return fmt.Errorf("spec.resources.%s.%s must not be negative", part.name, name)
			}
			parsed[part.name][name] = q
		}
	}
	for name, req := range parsed["requests"] {
		if lim, ok := parsed["limits"][name]; ok && req.Cmp(lim) > 0 {
			return fmt.Errorf("spec.resources.requests.%s (%s) is above its limit (%s)", name, req.String(), lim.String())
		}
	}
	return nil
}

func (t Toleration) validate() error {
	if t.Key != "" {
		if errs := validation.IsQualifiedName(t.Key); len(errs) > 0 {
			return fmt.Errorf("key %q: %s", t.Key, strings.Join(errs, "; "))
		}
	}
	switch t.Operator {
	case "", "Equal":
		if t.Key == "" {
			return errors.New("operator Equal needs a key (an empty key tolerates everything only with operator Exists)")
		}
		if errs := validation.IsValidLabelValue(t.Value); len(errs) > 0 {
			return fmt.Errorf("value %q: %s", t.Value, strings.Join(errs, "; "))
		}
	case "Exists":
		if t.Value != "" {
			return errors.New("operator Exists takes no value")
		}
	default:
		return fmt.Errorf("operator must be Equal or Exists, got %q", t.Operator)
	}
	switch t.Effect {
	case "", "NoSchedule", "PreferNoSchedule", "NoExecute":
	default:
		return fmt.Errorf("effect must be NoSchedule, PreferNoSchedule or NoExecute, got %q", t.Effect)
	}
	if t.TolerationSeconds != nil && t.Effect != "NoExecute" {
		return errors.New("toleration_seconds applies only to effect NoExecute")
	}
	return nil
}

// ExactKeys refuses an object field whose name matches a field of Spec (or
// of one of its nested objects) only case-insensitively, or that repeats
// one: encoding/json would take "Image" for "image" and keep the last of
// two. Map keys (env, node_selector, resources) are data, not names.
func ExactKeys(raw []byte) error {
	return exactKeys(raw, reflect.TypeFor[Spec](), "spec")
}

// exactKeys walks raw beside t. What is not JSON, or not of t's shape, it
// leaves to the strict decoder, which says what is wrong.
func exactKeys(raw []byte, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice:
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return nil
		}
		for i, it := range items {
			if err := exactKeys(it, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		return nil
	case reflect.Struct:
	default:
		return nil
	}
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			fields[name] = t.Field(i).Type
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil
		}
		if seen[key] {
			return fmt.Errorf("%s: field %q appears twice", path, key)
		}
		seen[key] = true
		ft, known := fields[key]
		if !known {
			for k := range fields {
				if strings.EqualFold(k, key) {
					return fmt.Errorf("%s: unknown field %q (did you mean %q? names are matched exactly)", path, key, k)
				}
			}
			continue // the strict decoder refuses it
		}
		if err := exactKeys(val, ft, path+"."+key); err != nil {
			return err
		}
	}
	return nil
}
