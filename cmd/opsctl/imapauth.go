package main

import (
	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
)

// newCmdIMAPAuth is a placeholder until its issue is done: it exits 2 and says so.
func newCmdIMAPAuth(f *cli.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "imap-auth",
		Short: "Authenticate SMTP users against IMAP with strict certificate verification",
		RunE:  notImplemented,
	}
}
