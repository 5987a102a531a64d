// Package provisiontest helps tests run real boxes: it builds static
// binaries, wraps them in FROM-scratch docker images, and finds the Docker
// engine (or skips).
//
// It is imported by tests only. Typical use from another package's test:
//
//	bin := provisiontest.TestBox(t)                    // static testbox binary
//	p, _ := process.New(process.Config{LogDir: t.TempDir()})
//	h, _ := p.Start(ctx, provision.Spec{WorkspaceID: "ws1", Command: []string{bin, "-lines", "3"}})
//
//	c := provisiontest.RequireDocker(t)                // skips without an engine
//	image := provisiontest.DockerImage(t, bin)         // holds the binary as /box
package provisiontest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"
)

// TestBoxPackage is the import path of the test box program (see testbox).
const TestBoxPackage = "github.com/orgplane/orgplane/internal/provision/provisiontest/testbox"

// EnvRequireDocker, set to 1, turns "no Docker engine" from a skip into a
// failure, so that CI on a machine that has one cannot silently skip.
const EnvRequireDocker = "ORGPLANE_TEST_REQUIRE_DOCKER"

// TestLabel is the label key tests put on their containers (with a unique
// value per test) so that leftovers can be found and removed.
const TestLabel = "orgplane.test"

type build struct {
	once sync.Once
	path string
	err  error
}

var (
	buildsMu sync.Mutex
	builds   = map[string]*build{}
)

// BuildStaticBinary builds the Go package pkg (an import path or a path
// relative to the test's directory) with CGO_ENABLED=0 and returns the path
// of the binary inside t.TempDir(). The build runs once per package per test
// binary; later calls hard-link (or copy) that result.
func BuildStaticBinary(t testing.TB, pkg string) string {
	t.Helper()
	buildsMu.Lock()
	b := builds[pkg]
	if b == nil {
		b = &build{}
		builds[pkg] = b
	}
	buildsMu.Unlock()
	b.once.Do(func() { b.path, b.err = goBuild(pkg) })
	if b.err != nil {
		t.Fatalf("build %s: %v", pkg, b.err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(b.path))
	if err := linkOrCopy(b.path, dst); err != nil {
		t.Fatalf("copy binary of %s: %v", pkg, err)
	}
	return dst
}

// TestBox builds the test box program (see package testbox).
func TestBox(t testing.TB) string {
	t.Helper()
	return BuildStaticBinary(t, TestBoxPackage)
}

// cacheDir is this test binary's build cache. It must outlive single tests,
// so it cannot be a t.TempDir; instead each run removes the directories of
// runs whose process is gone.
func cacheDir() (string, error) {
	base := os.TempDir()
	if stale, err := filepath.Glob(filepath.Join(base, "orgplane-provisiontest-*")); err == nil {
		for _, dir := range stale {
			pid, err := strconv.Atoi(strings.TrimPrefix(filepath.Base(dir), "orgplane-provisiontest-"))
			if err == nil && pid != os.Getpid() && errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
				_ = os.RemoveAll(dir)
			}
		}
	}
	dir := filepath.Join(base, fmt.Sprintf("orgplane-provisiontest-%d", os.Getpid()))
	return dir, os.MkdirAll(dir, 0o700)
}

func goBuild(pkg string) (string, error) {
	dir, err := cacheDir()
	if err != nil {
		return "", fmt.Errorf("create build cache dir: %w", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("find go tool: %w", err)
	}
	name := path.Base(filepath.ToSlash(pkg))
	if name == "." || name == "/" {
		name = "bin"
	}
	out, err := os.MkdirTemp(dir, name+"-")
	if err != nil {
		return "", fmt.Errorf("create build dir: %w", err)
	}
	bin := filepath.Join(out, name)
	cmd := exec.Command(goBin, "build", "-trimpath", "-o", bin, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, msg)
	}
	return bin, nil
}

func linkOrCopy(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}

// RequireDocker returns a client of the Docker engine named by the usual
// environment (DOCKER_HOST...), with its API version negotiated. If the
// engine does not answer, the test is skipped, or fails when
// ORGPLANE_TEST_REQUIRE_DOCKER=1. The client is closed in t.Cleanup.
func RequireDocker(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.New(client.FromEnv)
	if err != nil {
		unavailable(t, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		unavailable(t, err)
	}
	return c
}

func unavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv(EnvRequireDocker) == "1" {
		t.Fatalf("Docker engine unreachable and %s=1: %v", EnvRequireDocker, err)
	}
	t.Skipf("Docker engine unreachable, skipping (set %s=1 to fail instead): %v", EnvRequireDocker, err)
}

// dockerfile puts the binary at /box. No ENTRYPOINT: a Spec.Command (which
// replaces CMD) then names the whole argv, e.g. ["/box", "-lines", "3"].
const dockerfile = "FROM scratch\nCOPY box /box\nCMD [\"/box\"]\n"

// DockerImage builds a FROM-scratch image holding the static binary at
// binaryPath as /box, by sending a tar build context to the engine (nothing
// is pulled: the machine may have no registry at all). The image has a
// unique tag, which is returned, and is removed in t.Cleanup.
func DockerImage(t testing.TB, binaryPath string) string {
	t.Helper()
	c := RequireDocker(t)
	bin, err := os.ReadFile(binaryPath)
	if err != nil {
		t.Fatalf("read binary for image: %v", err)
	}
	buildCtx, err := buildContext(bin)
	if err != nil {
		t.Fatalf("make build context: %v", err)
	}
	tag := "orgplane-provisiontest/box:" + RandomID(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := c.ImageBuild(ctx, buildCtx, client.ImageBuildOptions{
		Tags:        []string{tag},
		Remove:      true,
		ForceRemove: true,
		Labels:      map[string]string{TestLabel: "image"},
	})
	if err != nil {
		t.Fatalf("build image: %v", err)
	}
	// Registered before reading the stream: a build that fails half way
	// may still have tagged the image.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = c.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
	})
	defer res.Body.Close()
	if err := readBuildStream(res.Body); err != nil {
		t.Fatalf("build image %s: %v", tag, err)
	}
	return tag
}

func buildContext(bin []byte) (io.Reader, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	files := []struct {
		name string
		mode int64
		data []byte
	}{
		{"Dockerfile", 0o644, []byte(dockerfile)},
		{"box", 0o755, bin},
	}
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return &buf, nil
}

// readBuildStream drains the build's JSON message stream. An error message
// in it is the build's failure (the HTTP status was 200 already).
func readBuildStream(r io.Reader) error {
	dec := json.NewDecoder(r)
	var log strings.Builder
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("read build output: %w", err)
		}
		log.WriteString(m.Stream)
		if m.Error != nil {
			return fmt.Errorf("%s\n%s", m.Error.Message, log.String())
		}
	}
}

// RandomID returns a short random lowercase hex id, handy for workspace ids,
// tags and label values that must not collide between tests.
func RandomID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("random id: %v", err)
	}
	return hex.EncodeToString(b)
}
