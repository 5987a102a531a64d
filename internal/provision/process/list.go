package process

import (
	"bytes"
	"context"
	"os"
	"strconv"

	"github.com/orgplane/orgplane/internal/provision"
)

var _ provision.Lister = (*Provisioner)(nil)

// List finds the boxes running on this machine by their environment: a
// process group leader whose environ names ORGPLANE_WORKSPACE_ID and
// ORGPLANE_GENERATION is a box. It finds a box even when the control plane
// died between starting it and recording its handle. Only processes this
// user may read are seen.
func (p *Provisioner) List(ctx context.Context) ([]provision.Handle, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []provision.Handle
	for _, e := range ents {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 {
			continue
		}
		st, err := readStat(pid)
		if err != nil || st.pgrp != pid || st.zombie() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		ws, gen := envValue(env, "ORGPLANE_WORKSPACE_ID"), envValue(env, "ORGPLANE_GENERATION")
		if ws == "" || checkWorkspaceID(ws) != nil {
			continue
		}
		g, err := strconv.ParseInt(gen, 10, 64)
		if err != nil || g <= 0 {
			continue
		}
		out = append(out, provision.Handle{Runtime: provision.RuntimeProcess, WorkspaceID: ws, Generation: g,
			ID: e.Name(), StartTicks: st.startTicks})
	}
	return out, nil
}

// envValue returns the value of name in a NUL-separated environ block.
func envValue(env []byte, name string) string {
	prefix := []byte(name + "=")
	for _, kv := range bytes.Split(env, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, prefix); ok {
			return string(v)
		}
	}
	return ""
}
