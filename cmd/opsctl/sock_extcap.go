package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/pkg/sockspy"
)

// newCmdSockExtcap is the group of Wireshark's extcap interface:
// sock_extcap_run.go answers Wireshark, sock_extcap_install.go and
// sock_extcap_uninstall.go put opsctl in its extcap folder and take it out.
func newCmdSockExtcap(f *cli.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "extcap",
		Short: "Capture a UNIX socket from Wireshark's own interface list",
		Long: `Wireshark runs the programs of its extcap folder to list more interfaces
than libpcap has. With opsctl linked there (install), Wireshark's list has
"UNIX socket (opsctl)", interface ` + sockspy.ExtcapInterface + `: its options offer the host's
listening UNIX sockets, and a capture runs ` + "`opsctl sock capture`" + ` with its
output going to Wireshark.`,
		Example: `  sudo opsctl sock extcap install
  tshark -i ` + sockspy.ExtcapInterface + ` -o extcap.` + sockspy.ExtcapInterface + `.socket:/run/app.sock -w app.pcapng
  sudo opsctl sock extcap uninstall`,
	}
	cmd.AddCommand(NewCmdSockExtcapRun(f, nil), NewCmdSockExtcapInstall(f, nil), NewCmdSockExtcapUninstall(f, nil))
	return cmd
}

// sockExtcapArgs is the command line opsctl runs: the arguments after
// argv[0], behind "sock extcap run" when Wireshark runs opsctl as an
// extcap: through the link in its extcap folder (argv[0] is named
// opsctl-sock), or with an extcap argument first (opsctl
// --extcap-interfaces, as when opsctl itself is in that folder).
func sockExtcapArgs(argv []string) []string {
	if len(argv) == 0 {
		return nil
	}
	args := argv[1:]
	extcap := filepath.Base(argv[0]) == sockspy.ExtcapLinkName
	if len(args) > 0 {
		first := args[0]
		extcap = extcap || strings.HasPrefix(first, "--extcap-") || first == "--capture" ||
			first == "--fifo" || strings.HasPrefix(first, "--fifo=")
	}
	if !extcap {
		return args
	}
	return append([]string{"sock", "extcap", "run"}, args...)
}

// extcapFlagNames are the extcap's arguments that fill in sockspy's
// inputs in a capture that Wireshark runs.
var extcapFlagNames = map[string]string{
	"Config.Socket":  "--" + sockspy.ExtcapSocket,
	"Config.Listen":  "--" + sockspy.ExtcapProxy,
	"Config.Swap":    "--" + sockspy.ExtcapMode + " " + sockspy.ExtcapModeSwap,
	"OpenFIFO.path":  "--fifo",
	"Session.Output": "--fifo",
}

// extcapError shows the extcap's arguments in an error of sockspy.
func extcapError(err error) error { return inputerr.Rename(err, extcapFlagNames) }

// extcapLinkFlags are the flags of install and uninstall: where the link
// is, and whether to only say what would be done.
type extcapLinkFlags struct {
	Dir    string
	DryRun bool
}

func (fl *extcapLinkFlags) register(flags *pflag.FlagSet) {
	flags.StringVar(&fl.Dir, "dir", "", "Wireshark's extcap `DIR` (default: the global one, as tshark -G folders names it)")
	flags.BoolVar(&fl.DryRun, "dry-run", false, "print what would be done and change nothing")
}

// link is the link the flags name: in --dir, or in the global extcap
// folder that tshark names, to the opsctl that runs.
func (fl *extcapLinkFlags) link(f *cli.Factory) (sockspy.ExtcapLink, error) {
	exe, err := os.Executable()
	if err != nil {
		return sockspy.ExtcapLink{}, fmt.Errorf("finding the opsctl binary to link to: %w", err)
	}
	if exe, err = filepath.EvalSymlinks(exe); err != nil {
		return sockspy.ExtcapLink{}, fmt.Errorf("finding the opsctl binary to link to: %w", err)
	}
	dir := fl.Dir
	if dir == "" {
		tshark, err := exec.LookPath("tshark")
		if err != nil {
			return sockspy.ExtcapLink{}, cli.Usagef("--dir: required without tshark (Debian package tshark), which names Wireshark's extcap folder")
		}
		if dir, err = sockspy.GlobalExtcapFolder(f.BaseContext(), tshark); err != nil {
			return sockspy.ExtcapLink{}, fmt.Errorf("finding Wireshark's extcap folder (or give --dir): %w", err)
		}
	}
	return sockspy.ExtcapLink{Dir: dir, Target: exe}, nil
}

// extcapLinkFlagNames are the flags of ExtcapLink's inputs.
var extcapLinkFlagNames = map[string]string{"ExtcapLink.Dir": "--dir"}

// extcapLinkError shows the flags in an error of ExtcapLink; a --dir that
// is missing or not a folder is a usage error.
func extcapLinkError(err error) error {
	return sockInputError(inputerr.Rename(err, extcapLinkFlagNames))
}
