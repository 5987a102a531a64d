package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/crypto"
	"github.com/orgplane/orgplane/internal/httpapi"
	"github.com/orgplane/orgplane/internal/provision/docker"
	"github.com/orgplane/orgplane/internal/provision/process"
	"github.com/orgplane/orgplane/internal/server"
	"github.com/orgplane/orgplane/internal/store"
)

// DefaultOrg is the org `orgplane up` creates.
const DefaultOrg = "default"

func newLogger(g *Globals, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(g.Stderr, &slog.HandlerOptions{Level: l})), nil
}

// masterKey resolves the master key: the flag's file wins over
// ORGPLANE_MASTER_KEY, which wins over the data dir's file (up only).
// With generate, a missing data dir file is created, but only beside no
// database: a new key cannot open a store sealed under the lost one, and
// writing it would replace the evidence of what is missing with a key that
// "does not open this store".
func masterKey(flagFile, dataDirFile, dbFile string, generate bool) ([]byte, error) {
	if flagFile != "" {
		return crypto.LoadMasterKeyFile(flagFile)
	}
	if v := os.Getenv("ORGPLANE_MASTER_KEY"); v != "" {
		k, err := crypto.ParseMasterKey(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("ORGPLANE_MASTER_KEY: %w", err)
		}
		return k, nil
	}
	if dataDirFile == "" {
		return nil, errors.New("no master key: pass --master-key-file or set ORGPLANE_MASTER_KEY (base64 of 32 bytes)")
	}
	k, err := crypto.LoadMasterKeyFile(dataDirFile)
	if errors.Is(err, os.ErrNotExist) && generate {
		if _, statErr := os.Stat(dbFile); statErr == nil || !errors.Is(statErr, os.ErrNotExist) {
			return nil, fmt.Errorf("master key %s is missing but the database %s exists: restore the key file (or pass --master-key-file, or set ORGPLANE_MASTER_KEY); a new key could not open the secrets, so none was written", dataDirFile, dbFile)
		}
		if k, err = crypto.GenerateMasterKey(); err != nil {
			return nil, err
		}
		if err := crypto.WriteMasterKeyFile(dataDirFile, k); err != nil {
			return nil, err
		}
		return k, nil
	}
	return k, err
}

// runtimeFlags are the box and restart settings shared by up and serve.
type runtimeFlags struct {
	rt            core.RuntimeConfig
	docker        string
	dockerNetwork string
	kube          kubeFlags
	stopGrace     time.Duration
	boxUIDs       string
	boxDir        string
	http          httpapi.Limits
	retention     time.Duration
}

// DefaultBoxDir holds isolated process boxes' working directories: outside
// any data dir, and one place per machine, so that the uid claims of all
// the control planes on it meet.
const DefaultBoxDir = "/var/lib/orgplane-boxes"

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func (r *runtimeFlags) add(f *pflag.FlagSet) {
	f.DurationVar(&r.rt.ProvisionTimeout, "provision-timeout", envDuration("ORGPLANE_PROVISION_TIMEOUT", 30*time.Second), "a box not healthy this long after it started has failed (env ORGPLANE_PROVISION_TIMEOUT)")
	f.DurationVar(&r.rt.CoalesceWindow, "coalesce-window", envDuration("ORGPLANE_COALESCE_WINDOW", 2*time.Second), "a workspace restarted for a secret change less than this ago waits this long for its next restart, into which the burst coalesces, 2s-30s (env ORGPLANE_COALESCE_WINDOW)")
	f.IntVar(&r.rt.MaxConcurrentRestarts, "max-concurrent-restarts", envInt("ORGPLANE_MAX_CONCURRENT_RESTARTS", 4), "restarts in flight at once, over all replicas (env ORGPLANE_MAX_CONCURRENT_RESTARTS)")
	f.IntVar(&r.rt.MaxConcurrentRestartsPerOrg, "max-concurrent-restarts-per-org", envInt("ORGPLANE_MAX_CONCURRENT_RESTARTS_PER_ORG", 4), "restarts in flight at once per org (env ORGPLANE_MAX_CONCURRENT_RESTARTS_PER_ORG)")
	f.IntVar(&r.rt.MaxProvisionRetries, "max-provision-retries", envInt("ORGPLANE_MAX_PROVISION_RETRIES", 3), "re-provisions of a failed box before it stays failed (env ORGPLANE_MAX_PROVISION_RETRIES)")
	f.DurationVar(&r.rt.JobLease, "job-lease", envDuration("ORGPLANE_JOB_LEASE", 30*time.Second), "a restart job whose replica stops renewing this lease is taken over by another (env ORGPLANE_JOB_LEASE)")
	f.DurationVar(&r.rt.ProvisionerCallTimeout, "provisioner-call-timeout", envDuration("ORGPLANE_PROVISIONER_CALL_TIMEOUT", 15*time.Second), "deadline of each inspect, adopt and list call to a box runtime; a start has the provision timeout, a stop the stop grace plus this (env ORGPLANE_PROVISIONER_CALL_TIMEOUT)")
	f.DurationVar(&r.rt.SupervisionLease, "supervision-lease", envDuration("ORGPLANE_SUPERVISION_LEASE", 15*time.Second), "a box whose supervising replica stops renewing this lease is taken over by a replica that can see it (env ORGPLANE_SUPERVISION_LEASE)")
	f.DurationVar(&r.rt.PlatformMaxBackoff, "platform-max-backoff", envDuration("ORGPLANE_PLATFORM_MAX_BACKOFF", 30*time.Second), "cap of the backoff between attempts to bring a dead platform box back; they never stop (env ORGPLANE_PLATFORM_MAX_BACKOFF)")
	f.DurationVar(&r.stopGrace, "stop-grace", envDuration("ORGPLANE_STOP_GRACE", 5*time.Second), "time between SIGTERM and SIGKILL when a box is stopped (env ORGPLANE_STOP_GRACE)")
	f.IntVar(&r.rt.MaxBoxEnvBytes, "max-box-env-bytes", envInt("ORGPLANE_MAX_BOX_ENV_BYTES", core.DefaultMaxBoxEnvBytes), "cap on a box's env plus command line, as exec counts them; writes that would pass it are refused (env ORGPLANE_MAX_BOX_ENV_BYTES)")
	f.StringVar(&r.boxUIDs, "box-uid-range", envOr("ORGPLANE_BOX_UID_RANGE", process.DefaultUIDRange.String()), "as root, each process box runs as its own user from this range FIRST-LAST, or off (env ORGPLANE_BOX_UID_RANGE)")
	f.StringVar(&r.boxDir, "box-dir", envOr("ORGPLANE_BOX_DIR", DefaultBoxDir), "as root, where isolated process boxes get their working directories (env ORGPLANE_BOX_DIR)")
	f.DurationVar(&r.http.ReadHeaderTimeout, "http-read-header-timeout", envDuration("ORGPLANE_HTTP_READ_HEADER_TIMEOUT", 10*time.Second), "time to receive a request's headers (env ORGPLANE_HTTP_READ_HEADER_TIMEOUT)")
	f.DurationVar(&r.http.ReadTimeout, "http-read-timeout", envDuration("ORGPLANE_HTTP_READ_TIMEOUT", 30*time.Second), "time to receive a whole request, body included (env ORGPLANE_HTTP_READ_TIMEOUT)")
	f.DurationVar(&r.http.WriteTimeout, "http-write-timeout", envDuration("ORGPLANE_HTTP_WRITE_TIMEOUT", 60*time.Second), "time to answer a request; event streams are exempt (env ORGPLANE_HTTP_WRITE_TIMEOUT)")
	f.DurationVar(&r.http.IdleTimeout, "http-idle-timeout", envDuration("ORGPLANE_HTTP_IDLE_TIMEOUT", 120*time.Second), "an idle kept-alive connection is closed after this (env ORGPLANE_HTTP_IDLE_TIMEOUT)")
	f.IntVar(&r.http.MaxStreams, "max-event-streams", envInt("ORGPLANE_MAX_EVENT_STREAMS", 1000), "event streams open at once on this server (env ORGPLANE_MAX_EVENT_STREAMS)")
	f.IntVar(&r.http.MaxStreamsPerToken, "max-event-streams-per-token", envInt("ORGPLANE_MAX_EVENT_STREAMS_PER_TOKEN", 8), "event streams open at once per token (env ORGPLANE_MAX_EVENT_STREAMS_PER_TOKEN)")
	f.DurationVar(&r.http.StreamHeartbeat, "event-heartbeat", envDuration("ORGPLANE_EVENT_HEARTBEAT", 15*time.Second), "keep-alive comment and token re-check on event streams this often (env ORGPLANE_EVENT_HEARTBEAT)")
	f.StringVar(&r.docker, "docker", envOr("ORGPLANE_DOCKER", "auto"), "docker runtime: on, off, or auto (on when an engine answers) (env ORGPLANE_DOCKER)")
	f.StringVar(&r.dockerNetwork, "docker-network", os.Getenv("ORGPLANE_DOCKER_NETWORK"), "network mode of docker boxes, e.g. host (env ORGPLANE_DOCKER_NETWORK)")
	f.DurationVar(&r.retention, "retention", envDuration("ORGPLANE_RETENTION", core.DefaultRetention), "finished restart jobs and changes older than this are pruned; 0 keeps them forever; the audit log is never pruned (env ORGPLANE_RETENTION)")
	r.kube.add(f)
}

// apply validates the flags into cfg.
func (r *runtimeFlags) apply(ctx context.Context, cfg *server.Config, dev bool) error {
	if !dev && (r.rt.CoalesceWindow < 2*time.Second || r.rt.CoalesceWindow > 30*time.Second) {
		return fmt.Errorf("--coalesce-window %s: must be between 2s and 30s", r.rt.CoalesceWindow)
	}
	if r.rt.MaxConcurrentRestarts < 1 || r.rt.MaxConcurrentRestartsPerOrg < 1 {
		return errors.New("--max-concurrent-restarts and --max-concurrent-restarts-per-org must be at least 1")
	}
	if r.rt.JobLease < 3*time.Second {
		return errors.New("--job-lease must be at least 3s")
	}
	if r.rt.ProvisionTimeout < time.Second {
		return errors.New("--provision-timeout must be at least 1s")
	}
	if r.rt.ProvisionerCallTimeout < time.Second {
		return errors.New("--provisioner-call-timeout must be at least 1s")
	}
	if r.rt.SupervisionLease < 3*time.Second {
		return errors.New("--supervision-lease must be at least 3s")
	}
	if r.rt.PlatformMaxBackoff < time.Second {
		return errors.New("--platform-max-backoff must be at least 1s")
	}
	// A stop waits out the grace period before SIGKILL; its deadline
	// leaves room for that and for the runtime's own answer.
	r.rt.StopTimeout = r.stopGrace + r.rt.ProvisionerCallTimeout
	if r.rt.MaxBoxEnvBytes < 2*core.MaxSecretValue || r.rt.MaxBoxEnvBytes > core.MaxMaxBoxEnvBytes {
		return fmt.Errorf("--max-box-env-bytes %d: must be between %d and %d (the kernel refuses an exec over about 2 MiB)",
			r.rt.MaxBoxEnvBytes, 2*core.MaxSecretValue, core.MaxMaxBoxEnvBytes)
	}
	if r.http.ReadHeaderTimeout <= 0 || r.http.ReadTimeout <= 0 || r.http.WriteTimeout <= 0 || r.http.IdleTimeout <= 0 || r.http.StreamHeartbeat <= 0 {
		return errors.New("--http-*-timeout and --event-heartbeat must be positive durations")
	}
	if r.http.MaxStreams < 1 || r.http.MaxStreamsPerToken < 1 {
		return errors.New("--max-event-streams and --max-event-streams-per-token must be at least 1")
	}
	// History younger than an hour is what the loop breaker and the
	// restart history read; pruning it would defeat them.
	switch {
	case r.retention == 0:
		r.rt.Retention = -1 // never prune
	case r.retention < time.Hour:
		return fmt.Errorf("--retention %s: must be 0 (keep everything) or at least 1h", r.retention)
	default:
		r.rt.Retention = r.retention
	}
	cfg.Runtime, cfg.StopGrace, cfg.DockerNetwork, cfg.HTTP = r.rt, r.stopGrace, r.dockerNetwork, r.http
	uids, err := process.ParseUIDRange(r.boxUIDs)
	if err != nil {
		return fmt.Errorf("--box-uid-range: %w", err)
	}
	cfg.BoxUIDs, cfg.BoxDir = uids, r.boxDir
	switch r.docker {
	case "on", "true":
		cfg.Docker = true
	case "off", "false":
	case "auto":
		cfg.Docker = docker.EngineAnswers(ctx)
	default:
		return fmt.Errorf("--docker %q: want on, off or auto", r.docker)
	}
	return r.kube.apply(cfg)
}

func newUpCmd(g *Globals) *cobra.Command {
	var addr, keyFile, logLevel, advertise string
	var rf runtimeFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run orgplane embedded: SQLite store, process boxes, all on this machine",
		Long: `Run orgplane with everything embedded. The first run creates the data directory
with a SQLite store, a master key (mode 0600), the default org with its
platform workspace, an admin token written to DIR/admin.token (0600) and
printed once, and the person "owner", whose token is written to
DIR/owner.token (0600; the CLI acts as that person by default). Later runs
reuse all of it; a missing owner.token is minted again. Every start prints a
fresh one-time link that signs the owner in to the canvas (it works once, for
10 minutes).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(g, logLevel)
			if err != nil {
				return err
			}
			dir := g.DataDir
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("create data dir: %w", err)
			}
			// It holds the store, the master key and the tokens: only
			// orgplane's user may enter it, whatever mode it had.
			if err := os.Chmod(dir, 0o700); err != nil {
				return fmt.Errorf("restrict data dir: %w", err)
			}
			dbFile := filepath.Join(dir, "orgplane.db")
			key, err := masterKey(keyFile, filepath.Join(dir, "master.key"), dbFile, true)
			if err != nil {
				return err
			}
			cfg := server.Config{
				DBURL: "sqlite:" + dbFile, Addr: addr, MasterKey: key,
				DataDir: dir, AdvertiseURL: advertise, Logger: log,
			}
			if err := rf.apply(cmd.Context(), &cfg, false); err != nil {
				return err
			}
			cfg.Bootstrap = func(ctx context.Context, svc *core.Service) error {
				if err := bootstrapDefault(ctx, g, svc, dir); err != nil {
					return err
				}
				printOwnerLoginLink(ctx, g, svc)
				return nil
			}
			return runServer(cmd.Context(), g, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", envOr("ORGPLANE_ADDR", DefaultAddr), "listen address (env ORGPLANE_ADDR)")
	f.StringVar(&keyFile, "master-key-file", os.Getenv("ORGPLANE_MASTER_KEY_FILE"), "master key file (env ORGPLANE_MASTER_KEY_FILE; default DATA_DIR/master.key)")
	f.StringVar(&advertise, "advertise-url", os.Getenv("ORGPLANE_ADVERTISE_URL"), "URL boxes use to reach the control plane (env ORGPLANE_ADVERTISE_URL)")
	f.StringVar(&logLevel, "log-level", envOr("ORGPLANE_LOG_LEVEL", "info"), "debug, info, warn or error (env ORGPLANE_LOG_LEVEL)")
	rf.add(f)
	return cmd
}

// bootstrapDefault creates the default org on the first run and writes its
// admin token to the data dir, printing it once; and keeps DIR/owner.token,
// the token of the person "owner" (the CLI prefers it: a person at the
// keyboard), minting one when the file is missing.
func bootstrapDefault(ctx context.Context, g *Globals, svc *core.Service, dir string) error {
	ownerPath := filepath.Join(dir, "owner.token")
	if o, err := svc.OrgByName(ctx, DefaultOrg); err == nil {
		if _, err := os.Stat(ownerPath); err == nil {
			return nil
		}
		secret, err := svc.OwnerToken(ctx, o.ID)
		if err != nil {
			return fmt.Errorf("owner token: %w", err)
		}
		if err := os.WriteFile(ownerPath, []byte(secret+"\n"), 0o600); err != nil {
			return fmt.Errorf("write owner token: %w", err)
		}
		fmt.Fprintf(g.Stdout, "Wrote the token of the person \"owner\" to %s.\n", ownerPath)
		return nil
	}
	n, err := svc.CreateOrg(ctx, DefaultOrg)
	if err != nil {
		return fmt.Errorf("create default org: %w", err)
	}
	if err := svc.StartPending(ctx, n.Org.ID, n.Platform.ID); err != nil {
		return fmt.Errorf("start the platform workspace: %w", err)
	}
	path := filepath.Join(dir, "admin.token")
	if err := os.WriteFile(path, []byte(n.Secret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write admin token: %w", err)
	}
	if err := os.WriteFile(ownerPath, []byte(n.OwnerSecret+"\n"), 0o600); err != nil {
		return fmt.Errorf("write owner token: %w", err)
	}
	fmt.Fprintf(g.Stdout, "Created org %q (%s) with platform workspace %s.\n", n.Org.Name, n.Org.ID, n.Platform.ID)
	fmt.Fprintf(g.Stdout, "Admin token (shown once; also saved to %s):\n%s\n", path, n.Secret)
	fmt.Fprintf(g.Stdout, "The person \"owner\" was created; their token is in %s (the CLI uses it by default).\n", ownerPath)
	return nil
}

// printOwnerLoginLink prints a fresh one-time canvas sign-in link for the
// person "owner" of the default org, at every start of up. A link that
// cannot be made (the owner was renamed or is no longer an owner) is said,
// not fatal: the server is still of use.
func printOwnerLoginLink(ctx context.Context, g *Globals, svc *core.Service) {
	o, err := svc.OrgByName(ctx, DefaultOrg)
	if err == nil {
		var l core.LoginLink
		if l, err = svc.OwnerLoginLink(ctx, o.ID); err == nil {
			fmt.Fprintf(g.Stdout, "Sign in to the canvas as \"owner\" (the link works once, for 10 minutes; `orgplane users login-link owner` makes another):\n%s\n", l.URL)
			return
		}
	}
	fmt.Fprintf(g.Stderr, "No sign-in link for the person \"owner\": %v\n", err)
}

func runServer(ctx context.Context, g *Globals, cfg server.Config) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := server.Start(ctx, cfg)
	if err != nil {
		return err
	}
	if cfg.DataDir != "" {
		_ = os.WriteFile(filepath.Join(cfg.DataDir, "server.url"), []byte(s.URL+"\n"), 0o600)
	}
	fmt.Fprintf(g.Stdout, "orgplane is serving on %s (Ctrl-C to stop)\n", s.URL)
	return s.Wait()
}

func newServeCmd(g *Globals) *cobra.Command {
	var db, addr, keyFile, logLevel, advertise string
	var rf runtimeFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run orgplane for production (Postgres or SQLite store, master key from env or file)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(g, logLevel)
			if err != nil {
				return err
			}
			if db == "" {
				return errors.New("--db is required (sqlite:PATH or postgres://...; env ORGPLANE_DB)")
			}
			key, err := masterKey(keyFile, "", "", false)
			if err != nil {
				return err
			}
			cfg := server.Config{DBURL: db, Addr: addr, MasterKey: key, DataDir: g.DataDir, AdvertiseURL: advertise, Logger: log}
			if err := rf.apply(cmd.Context(), &cfg, os.Getenv("ORGPLANE_DEV") == "1"); err != nil {
				return err
			}
			return runServer(cmd.Context(), g, cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&db, "db", os.Getenv("ORGPLANE_DB"), "store URL: sqlite:PATH or postgres://... (env ORGPLANE_DB)")
	f.StringVar(&addr, "addr", envOr("ORGPLANE_ADDR", DefaultAddr), "listen address (env ORGPLANE_ADDR)")
	f.StringVar(&keyFile, "master-key-file", os.Getenv("ORGPLANE_MASTER_KEY_FILE"), "master key file (env ORGPLANE_MASTER_KEY_FILE; else ORGPLANE_MASTER_KEY)")
	f.StringVar(&advertise, "advertise-url", os.Getenv("ORGPLANE_ADVERTISE_URL"), "URL boxes use to reach the control plane (env ORGPLANE_ADVERTISE_URL)")
	f.StringVar(&logLevel, "log-level", envOr("ORGPLANE_LOG_LEVEL", "info"), "debug, info, warn or error (env ORGPLANE_LOG_LEVEL)")
	rf.add(f)
	return cmd
}

func newOrgCmd(g *Globals) *cobra.Command {
	var db string
	org := &cobra.Command{Use: "org", Short: "Operator commands on orgs (work on the store directly)"}
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create an org with its platform workspace; prints its first admin token once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if db == "" {
				db = "sqlite:" + filepath.Join(g.DataDir, "orgplane.db")
			}
			st, err := store.Open(cmd.Context(), db)
			if err != nil {
				return err
			}
			defer st.Close()
			n, err := core.New(st, core.Options{}).CreateOrg(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, map[string]string{"org_id": n.Org.ID, "name": n.Org.Name,
					"platform_workspace_id": n.Platform.ID, "admin_token": n.Secret,
					"owner_user_id": n.Owner.ID, "owner_token": n.OwnerSecret})
			}
			fmt.Fprintf(g.Stdout, "Created org %q (%s) with platform workspace %s.\n", n.Org.Name, n.Org.ID, n.Platform.ID)
			fmt.Fprintf(g.Stdout, "Admin token (shown once):\n%s\n", n.Secret)
			fmt.Fprintf(g.Stdout, "Token of the person \"owner\" (shown once):\n%s\n", n.OwnerSecret)
			return nil
		},
	}
	create.Flags().StringVar(&db, "db", os.Getenv("ORGPLANE_DB"), "store URL (env ORGPLANE_DB; default the data dir's SQLite)")
	org.AddCommand(create)
	return org
}
