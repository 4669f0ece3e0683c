package main

import (
	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
)

// newCmdLVM is a placeholder until its issue is done: it exits 2 and says so.
func newCmdLVM(f *cli.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "lvm",
		Short: "Create, resize and remove an LVM writeback cache",
		RunE:  notImplemented,
	}
}
