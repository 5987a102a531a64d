package pgtest

import (
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// Proxy stands between a client and PostgreSQL, so a test can take the
// server away (nothing listens, open connections drop) and bring it back.
type Proxy struct {
	t              testing.TB
	network, laddr string // where the store connects
	tnet, taddr    string // the real server
	URL            string // connect here
	mu             sync.Mutex
	ln             net.Listener
	conns          map[net.Conn]struct{}
	wg             sync.WaitGroup
}

// NewProxy starts a proxy to the server of dsn; it stops at cleanup.
func NewProxy(t testing.TB, dsn string) *Proxy {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	port := strconv.Itoa(int(cfg.Port))
	p := &Proxy{t: t, conns: map[net.Conn]struct{}{}}
	var host string
	if strings.HasPrefix(cfg.Host, "/") {
		// A short folder: unix socket paths are limited to ~100 bytes.
		dir, err := os.MkdirTemp("", "pgproxy")
		require.NoError(t, err)
		t.Cleanup(func() { _ = os.RemoveAll(dir) })
		p.tnet, p.taddr = "unix", filepath.Join(cfg.Host, ".s.PGSQL."+port)
		p.network, p.laddr = "unix", filepath.Join(dir, ".s.PGSQL."+port)
		host = dir
	} else {
		p.tnet, p.taddr = "tcp", net.JoinHostPort(cfg.Host, port)
		p.network, p.laddr = "tcp", "127.0.0.1:0"
	}
	p.Start()
	if p.network == "tcp" {
		host, port, _ = net.SplitHostPort(p.laddr)
	}
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("host", host)
		q.Set("port", port)
		u.Host, u.RawQuery = "", q.Encode() // the query names the host
		p.URL = u.String()
	} else {
		p.URL = dsn + " host=" + host + " port=" + port
	}
	t.Cleanup(p.Stop)
	return p
}

// Start listens again (after Stop) at the same address.
func (p *Proxy) Start() {
	p.t.Helper()
	ln, err := net.Listen(p.network, p.laddr)
	require.NoError(p.t, err)
	p.laddr = ln.Addr().String() // the port chosen, to listen there again
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Go(func() { p.serve(c) })
		}
	})
}

func (p *Proxy) serve(c net.Conn) {
	s, err := net.Dial(p.tnet, p.taddr)
	if err != nil {
		c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil { // stopped meanwhile
		p.mu.Unlock()
		c.Close()
		s.Close()
		return
	}
	p.conns[c], p.conns[s] = struct{}{}, struct{}{}
	p.mu.Unlock()
	var wg sync.WaitGroup
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		dst.Close()
		src.Close()
	}
	wg.Go(func() { pipe(s, c) })
	wg.Go(func() { pipe(c, s) })
	wg.Wait()
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

// Stop closes the listener (the socket file goes too) and every connection.
func (p *Proxy) Stop() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
