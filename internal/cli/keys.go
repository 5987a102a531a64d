package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/orgplane/orgplane/internal/core"
	"github.com/orgplane/orgplane/internal/store"
)

func init() {
	extraCommands = append(extraCommands, func(g *Globals) []*cobra.Command { return []*cobra.Command{newKeysCmd(g)} })
}

// storeFlags are the operator commands' way to the store and the master key.
type storeFlags struct {
	db, keyFile string
}

func (f *storeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.db, "db", os.Getenv("ORGPLANE_DB"), "store URL (env ORGPLANE_DB; default the data dir's SQLite)")
	cmd.Flags().StringVar(&f.keyFile, "master-key-file", os.Getenv("ORGPLANE_MASTER_KEY_FILE"), "master key file (env ORGPLANE_MASTER_KEY_FILE; else ORGPLANE_MASTER_KEY, else DATA_DIR/master.key)")
}

func (f *storeFlags) open(ctx context.Context, g *Globals, needKey bool) (store.Store, *core.Keyring, error) {
	db := f.db
	if db == "" {
		db = "sqlite:" + filepath.Join(g.DataDir, "orgplane.db")
	}
	st, err := store.Open(ctx, db)
	if err != nil {
		return nil, nil, err
	}
	if !needKey {
		return st, nil, nil
	}
	key, err := masterKey(f.keyFile, filepath.Join(g.DataDir, "master.key"), "", false)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	kr, err := core.OpenKeyring(ctx, st, key)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return st, kr, nil
}

func newKeysCmd(g *Globals) *cobra.Command {
	keys := &cobra.Command{Use: "keys", Short: "Operator commands on the data keys that encrypt secrets (work on the store directly)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() }}

	var lsf storeFlags
	ls := &cobra.Command{Use: "ls", Short: "List data keys and how many secrets each encrypts", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, _, err := lsf.open(cmd.Context(), g, false)
			if err != nil {
				return err
			}
			defer st.Close()
			list, err := core.ListKeys(cmd.Context(), st)
			if err != nil {
				return err
			}
			if g.JSON {
				type row struct {
					ID        string     `json:"id"`
					Current   bool       `json:"current"`
					Secrets   int64      `json:"secrets"`
					CreatedAt time.Time  `json:"created_at"`
					RetiredAt *time.Time `json:"retired_at,omitempty"`
				}
				out := make([]row, len(list))
				for i, k := range list {
					out[i] = row{ID: k.ID, Current: k.Current, Secrets: k.Secrets, CreatedAt: k.CreatedAt}
					if !k.RetiredAt.IsZero() {
						t := k.RetiredAt
						out[i].RetiredAt = &t
					}
				}
				return printJSON(g.Stdout, out)
			}
			fmt.Fprintf(g.Stdout, "%-16s %-8s %-8s %-20s %s\n", "ID", "CURRENT", "SECRETS", "CREATED", "RETIRED")
			for _, k := range list {
				retired := "-"
				if !k.RetiredAt.IsZero() {
					retired = k.RetiredAt.Format(time.RFC3339)
				}
				fmt.Fprintf(g.Stdout, "%-16s %-8t %-8d %-20s %s\n", k.ID, k.Current, k.Secrets, k.CreatedAt.Format(time.RFC3339), retired)
			}
			return nil
		}}
	lsf.add(ls)

	var rf storeFlags
	var batch int
	var settle time.Duration
	rotate := &cobra.Command{Use: "rotate", Short: "Make a new data key current and re-encrypt every secret with it (online, resumable)",
		Long: `Make a new data key current and re-encrypt every secret under it, in batches.
Servers keep serving meanwhile. If the command is interrupted, run it again: it
resumes the same rotation. It changes no secret's value or version and restarts
no box. Afterwards the old key can be retired with "orgplane keys retire ID".

Progress (secrets re-encrypted so far) is shown on stderr: on a terminal one
line rewritten in place, otherwise one line per batch.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if batch < 1 || batch > 10000 {
				return fmt.Errorf("--batch %d: must be between 1 and 10000", batch)
			}
			st, kr, err := rf.open(cmd.Context(), g, true)
			if err != nil {
				return err
			}
			defer st.Close()
			// Progress goes to stderr, so that stdout holds only the result
			// (--json stays one object).
			progress := newProgressLine(g.Stderr)
			progress.set("rotating: 0 secrets re-encrypted so far")
			res, err := kr.RotateKeys(cmd.Context(), st, core.RotateOptions{BatchSize: batch, Settle: settle,
				Progress: func(done int64) {
					progress.set(fmt.Sprintf("rotating: %d secrets re-encrypted so far", done))
				}})
			if err != nil {
				progress.end()
				return fmt.Errorf("rotate keys (run the command again to resume): %w", err)
			}
			progress.done(fmt.Sprintf("rotated: %d secrets re-encrypted", res.Reencrypted))
			if err := core.AuditRotation(cmd.Context(), st, res); err != nil {
				return err
			}
			if g.JSON {
				return printJSON(g.Stdout, map[string]any{"new_key_id": res.NewKeyID, "resumed": res.Resumed, "reencrypted": res.Reencrypted})
			}
			verb := "Rotated"
			if res.Resumed {
				verb = "Resumed and finished the rotation"
			}
			fmt.Fprintf(g.Stdout, "%s: current key %s; %d secrets re-encrypted. Retire old keys with \"orgplane keys retire ID\".\n", verb, res.NewKeyID, res.Reencrypted)
			return nil
		}}
	rf.add(rotate)
	rotate.Flags().IntVar(&batch, "batch", 500, "secrets re-encrypted per transaction")
	rotate.Flags().DurationVar(&settle, "settle", 20*time.Second, "keep sweeping this long for rows written by servers that have not reloaded the key ring yet")

	var tf storeFlags
	retire := &cobra.Command{Use: "retire ID", Short: "Retire a data key that no secret uses any more", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, _, err := tf.open(cmd.Context(), g, true)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := core.RetireKey(cmd.Context(), st, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(g.Stdout, "Retired data key %s.\n", args[0])
			return nil
		}}
	tf.add(retire)
	keys.AddCommand(ls, rotate, retire)
	return keys
}
