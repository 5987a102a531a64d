package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/orgplane/orgplane/internal/client"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command { return []*cobra.Command{newAgentCmd(g)} })
}

func newAgentCmd(g *Globals) *cobra.Command {
	var interval time.Duration
	var maxUnauthorized int
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "The reference box runtime: heartbeats with its generation, reads its secrets",
		Long: `The reference box runtime. It reads ORGPLANE_URL, ORGPLANE_WORKSPACE_ID,
ORGPLANE_TOKEN, ORGPLANE_GENERATION and ORGPLANE_ENV_FINGERPRINT, pulls its
secrets from the control plane, heartbeats at once and then every interval,
and exits cleanly on SIGTERM. It exits (code 3) when its token is refused
several times in a row: a newer box has replaced it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAgent(cmd.Context(), g, interval, maxUnauthorized)
		},
	}
	iv := 2 * time.Second
	if v, err := time.ParseDuration(os.Getenv("ORGPLANE_HEARTBEAT_INTERVAL")); err == nil && v > 0 {
		iv = v
	}
	cmd.Flags().DurationVar(&interval, "interval", iv, "heartbeat interval (env ORGPLANE_HEARTBEAT_INTERVAL)")
	cmd.Flags().IntVar(&maxUnauthorized, "max-unauthorized", 3, "exit after this many refused heartbeats in a row")
	return cmd
}

// errReplaced: the agent's token is refused; a newer box replaced it.
var errReplaced = errors.New("token refused: this box was replaced or revoked")

func runAgent(ctx context.Context, g *Globals, interval time.Duration, maxUnauthorized int) error {
	url, ws, token := os.Getenv("ORGPLANE_URL"), os.Getenv("ORGPLANE_WORKSPACE_ID"), os.Getenv("ORGPLANE_TOKEN")
	gen, err := strconv.ParseInt(os.Getenv("ORGPLANE_GENERATION"), 10, 64)
	if url == "" || ws == "" || token == "" || err != nil || gen <= 0 {
		return errors.New("agent: ORGPLANE_URL, ORGPLANE_WORKSPACE_ID, ORGPLANE_TOKEN and ORGPLANE_GENERATION must be set (the control plane sets them in a box)")
	}
	fp := os.Getenv("ORGPLANE_ENV_FINGERPRINT")
	c := client.New(url, token)
	logf := func(format string, args ...any) {
		fmt.Fprintf(g.Stdout, "%s agent %s g%d: %s\n", time.Now().UTC().Format(time.RFC3339), ws, gen, fmt.Sprintf(format, args...))
	}
	logf("starting (heartbeat every %s)", interval)
	var values map[string]string
	if err := c.Do(ctx, http.MethodGet, "/v1/workspaces/"+ws+"/secrets/values", nil, &values); err != nil {
		logf("could not read secrets: %v", err) // never fatal: the env already holds them
	} else {
		logf("secrets readable: %d keys", len(values)) // names and values stay private
	}
	refused := 0
	beat := func() error {
		body := map[string]any{"generation": gen}
		if fp != "" {
			body["fingerprint"] = fp
		}
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := c.Do(hctx, http.MethodPost, "/v1/workspaces/"+ws+"/heartbeat", body, nil)
		var ce *client.Error
		switch {
		case err == nil:
			refused = 0
		case errors.As(err, &ce) && (ce.Status == http.StatusUnauthorized || ce.Status == http.StatusForbidden ||
			(ce.Status == http.StatusConflict && ce.Code == "conflict")):
			refused++
			logf("heartbeat refused (%d/%d): %s", refused, maxUnauthorized, ce.Message)
			if refused >= maxUnauthorized {
				return errReplaced
			}
		default:
			if ctx.Err() == nil {
				logf("heartbeat failed: %v", err)
			}
		}
		return nil
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := beat(); err != nil {
			logf("exiting: %v", err)
			os.Exit(3)
		}
		select {
		case <-ctx.Done():
			logf("stopping on signal")
			return nil
		case <-t.C:
		}
	}
}
