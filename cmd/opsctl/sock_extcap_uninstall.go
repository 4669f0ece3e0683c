package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/sockspy"
)

// SockExtcapUninstallOptions are the inputs of `sock extcap uninstall`.
type SockExtcapUninstallOptions struct {
	*cli.Factory
	Link extcapLinkFlags
}

// NewCmdSockExtcapUninstall builds `sock extcap uninstall`; runF, when
// set, receives the options instead of runSockExtcapUninstall (tests of
// the flags).
func NewCmdSockExtcapUninstall(f *cli.Factory, runF func(*SockExtcapUninstallOptions) error) *cobra.Command {
	opts := &SockExtcapUninstallOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "uninstall [--dir DIR]",
		Short: "Remove opsctl's link from Wireshark's extcap folder",
		Long: `Remove the link ` + sockspy.ExtcapLinkName + ` from Wireshark's extcap folder (default: the
global one that tshark -G folders names), when it is a link to opsctl;
anything else of that name is left as it is (exit 1). No link: nothing
to do.`,
		Example: `  sudo opsctl sock extcap uninstall
  opsctl sock extcap uninstall --dir ~/.config/wireshark/extcap`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runSockExtcapUninstall(opts)
		},
	}
	opts.Link.register(cmd.Flags())
	return cmd
}

func runSockExtcapUninstall(opts *SockExtcapUninstallOptions) error {
	link, err := opts.Link.link(opts.Factory)
	if err != nil {
		return err
	}
	if opts.Link.DryRun {
		fmt.Fprintf(opts.IO.Out, "+ remove %s when it is a link to opsctl\n", link.Path())
		return nil
	}
	removed, err := link.Remove()
	if err != nil {
		return fmt.Errorf("sock extcap uninstall: %w", extcapLinkError(err))
	}
	if removed {
		opts.Logger.Info("link removed", "link", link.Path())
	} else {
		opts.Logger.Info("no link to remove", "link", link.Path())
	}
	return nil
}
