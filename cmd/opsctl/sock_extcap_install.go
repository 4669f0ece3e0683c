package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/sockspy"
)

// SockExtcapInstallOptions are the inputs of `sock extcap install`.
type SockExtcapInstallOptions struct {
	*cli.Factory
	Link extcapLinkFlags
}

// NewCmdSockExtcapInstall builds `sock extcap install`; runF, when set,
// receives the options instead of runSockExtcapInstall (tests of the
// flags).
func NewCmdSockExtcapInstall(f *cli.Factory, runF func(*SockExtcapInstallOptions) error) *cobra.Command {
	opts := &SockExtcapInstallOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "install [--dir DIR]",
		Short: "Link opsctl into Wireshark's extcap folder",
		Long: `Make the link ` + sockspy.ExtcapLinkName + ` to this opsctl in Wireshark's extcap folder: Wireshark
and tshark then list the interface ` + sockspy.ExtcapInterface + `. The default folder is the
global one that tshark -G folders names (root's to write); --dir names
another, such as a user's personal extcap folder (Wireshark 4.0:
~/.config/wireshark/extcap).

Nothing is replaced but an earlier link of opsctl's; the folder must exist
and not be a symbolic link itself. The Debian package ships the link
already.`,
		Example: `  sudo opsctl sock extcap install
  opsctl sock extcap install --dir ~/.config/wireshark/extcap --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runSockExtcapInstall(opts)
		},
	}
	opts.Link.register(cmd.Flags())
	return cmd
}

func runSockExtcapInstall(opts *SockExtcapInstallOptions) error {
	link, err := opts.Link.link(opts.Factory)
	if err != nil {
		return err
	}
	if opts.Link.DryRun {
		fmt.Fprintf(opts.IO.Out, "+ link %s to %s\n", link.Path(), link.Target)
		return nil
	}
	installed, err := link.Install()
	if err != nil {
		return fmt.Errorf("sock extcap install: %w", extcapLinkError(err))
	}
	if installed {
		opts.Logger.Info("linked; Wireshark lists the interface "+sockspy.ExtcapInterface, "link", link.Path(), "target", link.Target)
	} else {
		opts.Logger.Info("already linked", "link", link.Path(), "target", link.Target)
	}
	return nil
}
