package core

import (
	"encoding/json"
	"testing"

	"github.com/orgplane/orgplane/internal/provision/kubernetes/kubespec"
)

func TestKubeSpecRules(t *testing.T) {
	ok := []string{
		`{"image":"registry.example/box:1"}`,
		`{"image":"x","command":["/box"],"args":["-lines","3"],"env":{"MODE":"a"},"ready_after_seconds":2}`,
		`{"image":"x","resources":{"requests":{"cpu":"100m","memory":"64Mi"},"limits":{"cpu":"1","memory":"128Mi","example.com/gpu":"1"}}}`,
		`{"image":"x","service_account":"agent-sa","node_selector":{"kubernetes.io/os":"linux","pool":"agents"}}`,
		`{"image":"x","tolerations":[{"key":"dedicated","operator":"Equal","value":"agents","effect":"NoSchedule"},{"operator":"Exists"},{"key":"k","operator":"Exists","effect":"NoExecute","toleration_seconds":30}]}`,
		`{"image":"x","image_pull_secrets":["regcred","other"]}`,
		// No image: the control plane's agent image, when it has one
		// (checkSpec refuses it otherwise; see TestKubeAgentImage).
		`{}`,
	}
	for _, s := range ok {
		out, err := normalizeSpec(RuntimeKubernetes, json.RawMessage(s))
		if err != nil {
			t.Errorf("%s: refused: %v", s, err)
			continue
		}
		if again, err := normalizeSpec(RuntimeKubernetes, json.RawMessage(out)); err != nil || again != out {
			t.Errorf("%s: canonical form does not round-trip: %s -> %s (%v)", s, out, again, err)
		}
	}
	bad := map[string]string{
		"unknown field":          `{"image":"x","privileged":true}`,
		"case of a field":        `{"Image":"x"}`,
		"case of a nested field": `{"image":"x","resources":{"Limits":{"cpu":"1"}}}`,
		"unknown nested field":   `{"image":"x","resources":{"limit":{"cpu":"1"}}}`,
		"nested field twice":     `{"image":"x","tolerations":[{"operator":"Exists","operator":"Exists"}]}`,
		"toleration case":        `{"image":"x","tolerations":[{"Operator":"Exists"}]}`,
		"bad quantity":           `{"image":"x","resources":{"limits":{"cpu":"lots"}}}`,
		"negative quantity":      `{"image":"x","resources":{"limits":{"memory":"-1Mi"}}}`,
		"bad resource name":      `{"image":"x","resources":{"limits":{"gpu":"1"}}}`,
		"request over limit":     `{"image":"x","resources":{"requests":{"cpu":"2"},"limits":{"cpu":"1"}}}`,
		"service account name":   `{"image":"x","service_account":"Not_A_Name"}`,
		"node selector key":      `{"image":"x","node_selector":{"bad key":"v"}}`,
		"node selector value":    `{"image":"x","node_selector":{"k":"bad value!"}}`,
		"toleration operator":    `{"image":"x","tolerations":[{"key":"k","operator":"Maybe"}]}`,
		"toleration effect":      `{"image":"x","tolerations":[{"key":"k","effect":"Sometimes"}]}`,
		"equal without key":      `{"image":"x","tolerations":[{"value":"v"}]}`,
		"exists with value":      `{"image":"x","tolerations":[{"key":"k","operator":"Exists","value":"v"}]}`,
		"seconds not NoExecute":  `{"image":"x","tolerations":[{"key":"k","effect":"NoSchedule","toleration_seconds":1}]}`,
		"pull secret name":       `{"image":"x","image_pull_secrets":["UPPER"]}`,
		"pull secret twice":      `{"image":"x","image_pull_secrets":["a","a"]}`,
		"image with space":       `{"image":"x y"}`,
		"NUL in args":            `{"image":"x","args":["a\u0000"]}`,
		"reserved env":           `{"image":"x","env":{"ORGPLANE_TOKEN":"y"}}`,
		"empty command":          `{"image":"x","command":[""]}`,
		"ready after negative":   `{"image":"x","ready_after_seconds":-1}`,
		"wrong type":             `{"image":"x","args":"-v"}`,
	}
	for name, s := range bad {
		_, err := normalizeSpec(RuntimeKubernetes, json.RawMessage(s))
		if err == nil {
			t.Errorf("%s: %s accepted", name, s)
			continue
		}
		requireRefusal(t, err, "invalid_spec", "invalid_value", "value_too_large")
	}
}

func FuzzKubeSpec(f *testing.F) {
	for _, s := range []string{`{"image":"x"}`, `{}`, `{"image":"x","args":["a"],"resources":{"limits":{"cpu":"1"}}}`,
		`{"image":"x","tolerations":[{"operator":"Exists"}]}`, `{"image":"x","node_selector":{"a/b":"c"}}`,
		`{"image":"x","resources":{"Requests":{}}}`, `{"image":"x","image_pull_secrets":["a"]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		fuzzSpec(t, RuntimeKubernetes, raw, func(sp *kubespec.Spec) {
			checkBoxRules(t, sp.Command, sp.Env, sp.ReadyAfterSeconds)
			if err := sp.Validate(); err != nil {
				t.Fatalf("accepted a spec its own rules refuse: %v", err)
			}
		})
	})
}
