package main

import (
	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
)

// newCmdPygrub is a placeholder until its issue is done: it exits 2 and says so.
func newCmdPygrub(f *cli.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "pygrub",
		Short: "Make EL7-style grub2 guests boot under Xen's pygrub",
		RunE:  notImplemented,
	}
}
