package core

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
)

// Runtimes a workspace may name.
const (
	RuntimeProcess    = "process"
	RuntimeDocker     = "docker"
	RuntimeKubernetes = "kubernetes"
	RuntimeExternal   = "external"
)

// ProcessSpec is the spec of a process workspace.
type ProcessSpec struct {
	Command           []string          `json:"command,omitempty"`
	Env               map[string]string `json:"env,omitempty"`
	ReadyAfterSeconds *float64          `json:"ready_after_seconds,omitempty"`
}

// DockerSpec is the spec of a docker workspace.
type DockerSpec struct {
	Image             string            `json:"image"`
	Command           []string          `json:"command,omitempty"`
	Env               map[string]string `json:"env,omitempty"`
	ReadyAfterSeconds *float64          `json:"ready_after_seconds,omitempty"`
}

// ExternalSpec is the (empty) spec of an external workspace.
type ExternalSpec struct{}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

func validName(what, name string) error {
	if !nameRE.MatchString(name) {
		return Invalid("invalid_name", "%s %q must be 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", what, name)
	}
	return nil
}

// normalizeSpec checks spec against its runtime and returns its canonical
// JSON. Unknown fields are refused, not ignored: a typo must not silently
// become a default.
func normalizeSpec(runtime string, spec json.RawMessage) (string, error) {
	if len(bytes.TrimSpace(spec)) == 0 || bytes.Equal(bytes.TrimSpace(spec), []byte("null")) {
		spec = json.RawMessage("{}")
	}
	var v any
	switch runtime {
	case RuntimeProcess:
		v = &ProcessSpec{}
	case RuntimeDocker:
		v = &DockerSpec{}
	case RuntimeExternal:
		v = &ExternalSpec{}
	case RuntimeKubernetes:
		return "", Refused("runtime_unavailable", "runtime %q is not available in this build", runtime)
	default:
		return "", Invalid("invalid_runtime", "runtime must be one of process, docker, external; got %q", runtime)
	}
	dec := json.NewDecoder(bytes.NewReader(spec))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return "", Invalid("invalid_spec", "spec for runtime %s: %s", runtime, specErr(err))
	}
	switch sp := v.(type) {
	case *ProcessSpec:
		if err := checkSpecEnv(sp.Env); err != nil {
			return "", err
		}
		if sp.ReadyAfterSeconds != nil && (*sp.ReadyAfterSeconds < 0 || *sp.ReadyAfterSeconds > 3600) {
			return "", Invalid("invalid_spec", "spec.ready_after_seconds must be between 0 and 3600")
		}
		if len(sp.Command) > 0 && sp.Command[0] == "" {
			return "", Invalid("invalid_spec", "spec.command[0] must name a program")
		}
	case *DockerSpec:
		if sp.Image == "" {
			return "", Invalid("invalid_spec", "spec.image is required for runtime docker")
		}
		if err := checkSpecEnv(sp.Env); err != nil {
			return "", err
		}
	}
	out, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode spec: %w", err)
	}
	return string(out), nil
}

func checkSpecEnv(env map[string]string) error {
	for k := range env {
		if err := ValidateSecretKey(k); err != nil {
			return Invalid("invalid_spec", "spec.env: %s", err.Error())
		}
	}
	return nil
}

func specErr(err error) string {
	var te *json.UnmarshalTypeError
	if ok := asType(err, &te); ok {
		return fmt.Sprintf("field %q must be %s", te.Field, te.Type.String())
	}
	return err.Error()
}

func asType[T any](err error, target *T) bool {
	t, ok := err.(T)
	if ok {
		*target = t
	}
	return ok
}
