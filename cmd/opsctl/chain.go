package main

import (
	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
)

// newCmdChain is a placeholder until its issue is done: it exits 2 and says so.
func newCmdChain(f *cli.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "chain",
		Short: "Rebuild container images in dependency order through GitLab CI",
		RunE:  notImplemented,
	}
}
