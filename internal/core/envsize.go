package core

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/orgplane/orgplane/internal/crypto"
	"github.com/orgplane/orgplane/internal/store"
)

// DefaultMaxBoxEnvBytes caps a box's env and command line, counted as exec
// counts them. Linux refuses an exec whose strings and pointers pass a
// quarter of the stack limit (2 MiB by default) with "argument list too
// long"; 1 MiB keeps well clear of it, leaving room for the ORGPLANE_*
// variables and whatever a docker image adds.
const DefaultMaxBoxEnvBytes = 1 << 20

// MaxMaxBoxEnvBytes is the highest cap that may be configured: above it a
// box could be refused by the kernel under the default stack limit.
const MaxMaxBoxEnvBytes = 1536 << 10

// contractReserve is counted for what the control plane adds to every box:
// the ORGPLANE_* variables (URL, ids, tokens, fingerprint) and the
// reference agent's command line.
const contractReserve = 4 << 10

// sealOverhead is what encryption adds to a value: the GCM nonce in front
// and its 16-byte tag behind (crypto.Ring.Encrypt). A value's length is
// therefore known from its stored ciphertext's, without decrypting.
const sealOverhead = crypto.NonceSize + 16

// envEntrySize is what one variable costs an exec: "KEY=value", its NUL,
// and the pointer to it.
func envEntrySize(key string, valueLen int) int { return len(key) + 1 + valueLen + 1 + 8 }

// argSize is what one command-line argument costs an exec.
func argSize(arg string) int { return len(arg) + 1 + 8 }

func secretValueLen(sec store.Secret) int { return max(sec.CiphertextLen-sealOverhead, 0) }

// specExecSize is what a workspace spec adds to its box's exec: its env
// (counted even where a secret of the same key replaces it: an upper
// bound) and its command, plus the contract's reserve.
func specExecSize(runtime, spec string) int {
	var sp struct {
		Command []string          `json:"command"`
		Env     map[string]string `json:"env"`
	}
	_ = json.Unmarshal([]byte(spec), &sp)
	n := contractReserve
	for k, v := range sp.Env {
		n += envEntrySize(k, len(v))
	}
	for _, a := range sp.Command {
		n += argSize(a)
	}
	return n
}

// envSizes knows the size of every secret of an org, from stored lengths.
type envSizes struct {
	globals     map[string]int // key -> entry size
	globalTotal int
	own         map[string]map[string]int // workspace -> key -> entry size
}

func (s *Service) loadEnvSizes(ctx context.Context, tx store.Store, orgID string) (*envSizes, error) {
	rows, err := tx.ListSecretMACs(ctx, orgID)
	if err != nil {
		return nil, err
	}
	return newEnvSizes(rows), nil
}

// loadGlobalEnvSizes knows the org's global secrets only (no workspace's
// own): with a workspace's own added by the caller, enough for that one.
func (s *Service) loadGlobalEnvSizes(ctx context.Context, tx store.Store, orgID string) (*envSizes, error) {
	rows, err := tx.ListSecretMACsOf(ctx, orgID, "", "") // no workspace id is in ("", ""]
	if err != nil {
		return nil, err
	}
	return newEnvSizes(rows), nil
}

func newEnvSizes(rows []store.Secret) *envSizes {
	z := &envSizes{globals: map[string]int{}, own: map[string]map[string]int{}}
	for _, r := range rows {
		size := envEntrySize(r.Key, secretValueLen(r))
		if r.WorkspaceID == "" {
			z.globals[r.Key] = size
			z.globalTotal += size
			continue
		}
		m := z.own[r.WorkspaceID]
		if m == nil {
			m = map[string]int{}
			z.own[r.WorkspaceID] = m
		}
		m[r.Key] = size
	}
	return z
}

// setGlobal applies a planned global write (size < 0: a delete).
func (z *envSizes) setGlobal(key string, size int) {
	z.globalTotal -= z.globals[key]
	delete(z.globals, key)
	if size >= 0 {
		z.globals[key] = size
		z.globalTotal += size
	}
}

// setOwn applies a planned workspace write (size < 0: a delete).
func (z *envSizes) setOwn(workspaceID, key string, size int) {
	m := z.own[workspaceID]
	if m == nil {
		m = map[string]int{}
		z.own[workspaceID] = m
	}
	delete(m, key)
	if size >= 0 {
		m[key] = size
	}
}

// of is the size of a workspace's effective env: its own secrets, and the
// globals it does not override.
func (z *envSizes) of(workspaceID string) int {
	n := z.globalTotal
	for k, size := range z.own[workspaceID] {
		n += size - z.globals[k]
	}
	return n
}

// checkEnvSizes refuses a change after which the box of any of ws could
// not be started: its env (as z has it, the change applied) and its
// command over the cap. The caller passes a workspace being created or
// re-specified with its new spec. Nothing is decrypted.
func (s *Service) checkEnvSizes(z *envSizes, ws []store.Workspace) error {
	limit := s.cfg.MaxBoxEnvBytes
	type over struct {
		id   string
		size int
	}
	var too []over
	for _, w := range ws {
		if w.Runtime == RuntimeExternal || w.Status == StatusRemoved {
			continue
		}
		if n := z.of(w.ID) + specExecSize(w.Runtime, w.Spec); n > limit {
			too = append(too, over{w.ID, n})
		}
	}
	if len(too) == 0 {
		return nil
	}
	sort.Slice(too, func(i, j int) bool { return too[i].id < too[j].id })
	const shown = 10
	names := make([]string, 0, shown)
	for i, o := range too {
		if i == shown {
			names = append(names, fmt.Sprintf("and %d more", len(too)-shown))
			break
		}
		names = append(names, fmt.Sprintf("%s (%d bytes)", o.id, o.size))
	}
	return Refused("env_too_large", "the env and command of %d workspace box(es) would pass the limit of %d bytes, so they could not be started: %s",
		len(too), limit, strings.Join(names, ", "))
}

// checkSecretEnvSize refuses a secret write after which some affected box
// could not be started. A global write affects every live workspace; a
// workspace write (or delete, which may uncover a larger global) its own.
func (s *Service) checkSecretEnvSize(ctx context.Context, tx store.Store, orgID, workspaceID, key string, value *string) error {
	size := -1
	if value != nil {
		size = envEntrySize(key, len(*value))
	}
	if workspaceID == "" && value == nil {
		return nil // a global delete only shrinks envs
	}
	// The globals only, and what the one workspace concerned adds: an org's
	// secrets are read whole only when the bound below is not enough.
	z, err := s.loadGlobalEnvSizes(ctx, tx, orgID)
	if err != nil {
		return err
	}
	if workspaceID != "" {
		own, err := tx.ListSecrets(ctx, orgID, workspaceID)
		if err != nil {
			return err
		}
		for _, sec := range own {
			z.setOwn(workspaceID, sec.Key, envEntrySize(sec.Key, max(len(sec.Ciphertext)-sealOverhead, 0)))
		}
		z.setOwn(workspaceID, key, size)
		w, err := tx.GetWorkspace(ctx, orgID, workspaceID)
		if err != nil {
			return err
		}
		return s.checkEnvSizes(z, []store.Workspace{w})
	}
	z.setGlobal(key, size)
	// A bound first, without reading every workspace nor their secrets:
	// the globals, the largest own secrets of any workspace (summed by the
	// database), and the longest spec (its JSON is never shorter than what
	// it adds to an exec). Orgs far from the cap, nearly all of them, stop
	// here.
	maxOwn, err := tx.MaxOwnSecretBytes(ctx, orgID, envEntrySize("", 0), sealOverhead)
	if err != nil {
		return err
	}
	maxSpec, err := tx.MaxSpecLength(ctx, orgID)
	if err != nil {
		return err
	}
	if z.globalTotal+maxOwn+maxSpec+contractReserve <= s.cfg.MaxBoxEnvBytes {
		return nil
	}
	if z, err = s.loadEnvSizes(ctx, tx, orgID); err != nil {
		return err
	}
	z.setGlobal(key, size)
	ws, err := tx.ListWorkspaces(ctx, orgID, false, store.ListParams{})
	if err != nil {
		return err
	}
	return s.checkEnvSizes(z, ws)
}
