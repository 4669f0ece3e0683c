package main

import (
	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
)

// newCmdSock is a placeholder until its issue is done: it exits 2 and says so.
func newCmdSock(f *cli.Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "sock",
		Short: "Capture the traffic of a UNIX socket into a pcap file",
		RunE:  notImplemented,
	}
}
