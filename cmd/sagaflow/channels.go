package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sagaflow/sagaflow/internal/app"
	"github.com/sagaflow/sagaflow/internal/store"
)

func (c *cli) channelsCmd() *cobra.Command {
	cc := &cobra.Command{Use: "channels", Short: "Manage the tenants' market channels"}
	cc.AddCommand(&cobra.Command{
		Use:   "reencrypt",
		Short: "Seal every channel's credentials under the first key of SAGAFLOW_SECRET_KEYS (plain-text rows included); run after adding a new key, before removing the old one",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, log := cmd.Context(), c.logger()
			keys, err := app.SecretKeys(c.cfg, log)
			if err != nil {
				return err
			}
			s, err := store.Open(ctx, c.cfg.DatabaseURL, c.cfg.DatabaseMaxConns, store.WithSecrets(keys))
			if err != nil {
				return err
			}
			defer s.Close()
			n, err := s.ReencryptChannels(ctx)
			if err != nil {
				return err
			}
			fmt.Printf("%d channels re-encrypted under key %s\n", n, keys.Primary())
			return nil
		},
	})
	return cc
}
