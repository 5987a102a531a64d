// Package server wires the control plane together: store, key ring,
// provisioners, service layer, HTTP API and background loops. `orgplane up`,
// `orgplane serve` and the end-to-end tests start it through Start.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"

	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/httpapi"
	"github.com/orgplane/orgplane/internal/mcp"
	"github.com/orgplane/orgplane/internal/provision"
	"github.com/orgplane/orgplane/internal/provision/docker"
	kubeprov "github.com/orgplane/orgplane/internal/provision/kubernetes"
	"github.com/orgplane/orgplane/internal/provision/process"
	"github.com/orgplane/orgplane/internal/store"
	"github.com/orgplane/orgplane/internal/web"
)

// Config configures a control plane.
type Config struct {
	DBURL     string
	Addr      string
	MasterKey []byte
	// DataDir holds box logs (process runtime).
	DataDir string
	// AdvertiseURL is how boxes reach the control plane; default
	// http://<listen address>.
	AdvertiseURL string
	// Runtime tunes boxes and restarts (AdvertiseURL and AgentCommand are
	// filled in here).
	Runtime core.RuntimeConfig
	// Docker enables the docker runtime; DockerNetwork is its containers'
	// network mode ("host" lets them reach a loopback control plane).
	Docker        bool
	DockerNetwork string
	DockerLabels  map[string]string
	// Kube enables the kubernetes runtime; nil: off.
	Kube *KubeConfig
	// StopGrace is how long a box gets between SIGTERM and SIGKILL.
	StopGrace time.Duration
	// BoxUIDs and BoxDir isolate process boxes (see process.Config).
	BoxUIDs process.UIDRange
	BoxDir  string
	// HTTP bounds connections and event streams (timeouts, stream caps).
	HTTP   httpapi.Limits
	Logger *slog.Logger
	// Bootstrap runs once the service has started and before the API
	// answers: /readyz is 200 only when it has finished.
	Bootstrap func(ctx context.Context, svc *core.Service) error
}

// KubeConfig configures the kubernetes runtime (see package
// provision/kubernetes).
type KubeConfig struct {
	Client    kubernetes.Interface
	Namespace string
	// Instance labels this install's pods; every replica uses the same.
	Instance string
}

// Server is a running control plane.
type Server struct {
	Store   store.Store
	Service *core.Service
	URL     string

	http  *http.Server
	done  chan error
	log   *slog.Logger
	close []func() error
}

// Start opens the store, checks the master key against it, adopts the boxes
// a previous run left and serves the API on cfg.Addr until Close or ctx ends.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Server{log: log, done: make(chan error, 1)}
	defer func() {
		if err != nil {
			s.closeAll()
		}
	}()
	st, err := store.Open(ctx, cfg.DBURL)
	if err != nil {
		return nil, err
	}
	s.Store = st
	s.close = append(s.close, st.Close)
	keys, err := core.OpenKeyring(ctx, st, cfg.MasterKey)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s.URL = "http://" + ln.Addr().String()

	rt := cfg.Runtime
	rt.AdvertiseURL = cfg.AdvertiseURL
	if rt.AdvertiseURL == "" {
		rt.AdvertiseURL = s.URL
	}
	if len(rt.AgentCommand) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the orgplane binary for the reference agent: %w", err)
		}
		rt.AgentCommand = []string{exe, "agent"}
	}
	provs := map[string]provision.Provisioner{}
	dataDir := cfg.DataDir
	if dataDir == "" {
		dataDir = "orgplane-data"
	}
	proc, err := process.New(process.Config{LogDir: filepath.Join(dataDir, "logs"), StopGrace: cfg.StopGrace, Logger: log,
		BoxUIDs: cfg.BoxUIDs, BoxDir: cfg.BoxDir, Programs: rt.AgentCommand[:1]})
	if err != nil {
		return nil, err
	}
	s.close = append(s.close, proc.Close)
	rt.AgentCommand = append([]string{proc.ProgramPath(rt.AgentCommand[0])}, rt.AgentCommand[1:]...)
	provs[provision.RuntimeProcess] = proc
	if cfg.Docker {
		d, err := docker.New(docker.Config{NetworkMode: cfg.DockerNetwork, Labels: cfg.DockerLabels, StopGrace: cfg.StopGrace, Init: true, Logger: log})
		if err != nil {
			return nil, err
		}
		s.close = append(s.close, d.Close)
		provs[provision.RuntimeDocker] = d
	}
	if k := cfg.Kube; k != nil {
		kp, err := kubeprov.New(kubeprov.Config{Client: k.Client, Namespace: k.Namespace, Instance: k.Instance,
			StopGrace: cfg.StopGrace, CallTimeout: rt.ProvisionerCallTimeout, Logger: log})
		if err != nil {
			return nil, err
		}
		s.close = append(s.close, kp.Close)
		provs[provision.RuntimeKube] = kp
	}
	svc := core.New(st, core.Options{Logger: log, Keys: keys, Provisioners: provs, Runtime: rt})
	s.Service = svc
	if err := svc.Start(ctx); err != nil {
		return nil, err
	}
	s.close = append([]func() error{func() error { svc.Close(); return nil }}, s.close...)
	if cfg.Bootstrap != nil {
		if err := cfg.Bootstrap(ctx, svc); err != nil {
			ln.Close()
			return nil, err
		}
	}
	canvas := web.New(svc, log)
	api := httpapi.New(svc, httpapi.Options{Logger: log, Limits: cfg.HTTP,
		Metrics: promhttp.HandlerFor(svc.Metrics().Registry, promhttp.HandlerOpts{}),
		Extra: func(r chi.Router, authn func(http.Handler) http.Handler) {
			canvas.Mount(r)
			mcp.Mount(svc, log)(r, authn)
		}})
	s.http = api.HTTPServer(slog.NewLogLogger(log.Handler(), slog.LevelWarn))
	go func() {
		err := s.http.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	go func() {
		<-ctx.Done()
		s.shutdown()
	}()
	log.Info("orgplane serving", "url", s.URL, "store", st.Dialect(), "advertise_url", rt.AdvertiseURL, "docker", cfg.Docker, "kubernetes", cfg.Kube != nil)
	return s, nil
}

func (s *Server) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		s.log.Warn("http shutdown", "err", err)
	}
}

func (s *Server) closeAll() error {
	var err error
	for _, c := range s.close {
		err = errors.Join(err, c())
	}
	s.close = nil
	return err
}

// Wait blocks until the server stops, then stops the background work and
// closes the store. Boxes keep running.
func (s *Server) Wait() error {
	err := <-s.done
	return errors.Join(err, s.closeAll())
}

// Close stops serving (gracefully, within 10 s) and releases everything.
func (s *Server) Close() error {
	s.shutdown()
	return s.Wait()
}
