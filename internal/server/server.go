// Package server wires the control plane together: store, service layer,
// HTTP API, background loops. `orgplane up`, `orgplane serve` and the
// end-to-end tests start it through Start.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/httpapi"
	"github.com/orgplane/orgplane/internal/store"
)

// Config configures a control plane.
type Config struct {
	DBURL     string
	Addr      string
	MasterKey []byte
	// DataDir holds box logs (process runtime); "" uses a temp dir.
	DataDir string
	// AdvertiseURL is how boxes reach the control plane; default
	// http://<listen address>.
	AdvertiseURL string
	Logger       *slog.Logger
}

// Server is a running control plane.
type Server struct {
	Store   store.Store
	Service *core.Service
	URL     string

	http     *http.Server
	listener net.Listener
	done     chan error
	log      *slog.Logger
}

// Start opens the store and serves the API on cfg.Addr until Close or ctx
// ends.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	st, err := store.Open(ctx, cfg.DBURL)
	if err != nil {
		return nil, err
	}
	svc := core.New(st, core.Options{Logger: log})
	api := httpapi.New(svc, httpapi.Options{Logger: log})
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	s := &Server{
		Store: st, Service: svc, URL: "http://" + ln.Addr().String(), listener: ln, log: log,
		done: make(chan error, 1),
		http: &http.Server{
			Handler:           api,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       120 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
	}
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
	log.Info("orgplane serving", "url", s.URL, "store", st.Dialect())
	return s, nil
}

func (s *Server) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.http.Shutdown(ctx); err != nil {
		s.log.Warn("http shutdown", "err", err)
	}
}

// Wait blocks until the server stops and closes the store.
func (s *Server) Wait() error {
	err := <-s.done
	return errors.Join(err, s.Store.Close())
}

// Close stops serving (gracefully, within 10 s) and closes the store.
func (s *Server) Close() error {
	s.shutdown()
	return s.Wait()
}
