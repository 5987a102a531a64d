package core

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/kubernetes/kubespec"
	"github.com/orgplane/orgplane/internal/store"
)

// The kubernetes runtime's part of the spec rules and of the box spec. Its
// spec type and its own checks live in kubespec, beside the provisioner
// that reads it.

func kubeUnavailable() error {
	return Refused("runtime_unavailable", "runtime %q is not enabled on this control plane (serve with --kubeconfig, or in a pod)", RuntimeKubernetes)
}

// checkKubeSpec checks a decoded kubernetes spec: names matched exactly at
// every depth, kubespec's rules, and the rules shared with the other box
// runtimes (command, env, ready_after).
func checkKubeSpec(raw json.RawMessage, sp *kubespec.Spec) error {
	if err := kubespec.ExactKeys(raw); err != nil {
		return Invalid("invalid_spec", "%s", err.Error())
	}
	if err := sp.Validate(); err != nil {
		return Invalid("invalid_spec", "%s", err.Error())
	}
	return checkBoxSpec(sp.Command, sp.Env, sp.ReadyAfterSeconds)
}

// kubeBoxSpec fills in what a kubernetes box runs: the image and command,
// the spec's env (under the effective env, as for the other runtimes), and
// the whole spec for what only the kubernetes provisioner reads.
// A spec without an image runs the control plane's agent image (the
// orgplane image, whose default command is the reference agent).
func kubeBoxSpec(w store.Workspace, sp *provision.Spec, agentImage string) error {
	var ks kubespec.Spec
	if err := json.Unmarshal([]byte(w.Spec), &ks); err != nil {
		return fmt.Errorf("decode spec: %w", err)
	}
	maps.Copy(sp.Env, ks.Env)
	sp.Image, sp.Command = ks.Image, ks.Command
	if sp.Image == "" {
		if agentImage == "" {
			return errors.New("the spec names no image and this control plane has no agent image (--kube-agent-image)")
		}
		sp.Image = agentImage
		// The provisioner reads the image from the runtime spec too.
		ks.Image = agentImage
		b, err := json.Marshal(ks)
		if err != nil {
			return err
		}
		sp.RuntimeSpec = b
		return nil
	}
	sp.RuntimeSpec = json.RawMessage(w.Spec)
	return nil
}
