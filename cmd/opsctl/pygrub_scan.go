package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/pygrubfix"
)

// PygrubScanOptions are the inputs of `pygrub scan`.
type PygrubScanOptions struct {
	*cli.Factory
	Connect string
	Check   bool
	Pygrub  string
	Timeout time.Duration
	Output  *cli.OutputFlag
}

// NewCmdPygrubScan builds `pygrub scan`; runF, when set, receives the
// options instead of runPygrubScan (tests of the flags).
func NewCmdPygrubScan(f *cli.Factory, runF func(*PygrubScanOptions) error) *cobra.Command {
	opts := &PygrubScanOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "List the libvirt domains booted by pygrub, and check them",
		Long: `Ask libvirt for every domain (running or not) and list those whose
<bootloader> is pygrub, with their disks. With --check, run the host's pygrub
in list mode on each disk (and, where pygrub has --not-really, a dry boot) and
report the guests that would not boot; a guest boots when its first disk does.
Run it before rebooting a Xen host. Exit status 1 when a checked guest would
not boot; 2 when --pygrub does not exist or is not a regular file. The text
output shows control characters of names and pygrub's messages escaped.`,
		Example: `  # Before rebooting the host: would every PV guest come back?
  opsctl pygrub scan --check

  # A libvirtd listening on another socket
  opsctl pygrub scan --connect 'xen:///system?socket=/run/libvirt/virtxend-sock' -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runPygrubScan(opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Connect, "connect", "c", pygrubfix.DefaultURI, "libvirt `URI` (?socket=PATH picks the unix socket)")
	cmd.Flags().BoolVar(&opts.Check, "check", false, "run the host's pygrub on each disk")
	cmd.Flags().StringVar(&opts.Pygrub, "pygrub", "", "with --check: run the pygrub at `PATH` instead of each domain's bootloader")
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 30*time.Second, "time allowed to reach libvirt and list the domains (`DURATION`)")
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
	return cmd
}

func runPygrubScan(opts *PygrubScanOptions) error {
	uri, err := pygrubfix.ParseURI(opts.Connect)
	if err != nil {
		return cli.UsageError(pygrubRename(err))
	}
	if opts.Check && opts.Pygrub != "" {
		// Named on the command line: a missing one is a usage error, found
		// before libvirt is asked anything.
		if _, err := pygrubfix.HostPygrub(opts.Pygrub, ""); err != nil {
			return pygrubError("pygrub scan", "--pygrub", err)
		}
	}
	ctx, cancel := context.WithTimeout(opts.BaseContext(), opts.Timeout)
	guests, err := pygrubfix.Scan(ctx, uri)
	cancel()
	if err != nil {
		var connErr *pygrubfix.ConnectError
		if errors.As(err, &connErr) {
			return cli.TemporaryError(fmt.Errorf("pygrub scan: %w", err))
		}
		return fmt.Errorf("pygrub scan: %w", err)
	}
	var failed []string
	if opts.Check {
		failed = pygrubfix.CheckGuests(opts.BaseContext(), guests, opts.Pygrub)
	}
	if opts.Output.JSON() {
		if err := cli.WriteJSON(opts.IO.Out, guests); err != nil {
			return err
		}
	} else {
		printScanTable(opts.IO.Out, guests, opts.Check)
	}
	if len(failed) > 0 {
		opts.IO.Sayf("%d of %d pygrub guests would not boot: %s", len(failed), len(guests), escapeControls(strings.Join(failed, ", ")))
		return cli.Silent(cli.ExitFailure)
	}
	return nil
}

// printScanTable prints the guests for people, with the control characters
// of what comes from libvirt and from the guests' disks (pygrub's output
// quotes their titles) escaped.
func printScanTable(w io.Writer, guests []pygrubfix.Guest, check bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := "DOMAIN\tBOOTLOADER\tDISKS"
	if check {
		header += "\tBOOTS\tDETAIL"
	}
	fmt.Fprintln(tw, header)
	for _, g := range guests {
		line := escapeControls(g.Domain) + "\t" + escapeControls(g.Bootloader) + "\t" + escapeControls(strings.Join(g.Disks, ","))
		if g.Check != nil {
			boots := "yes"
			if !g.Check.Bootable {
				boots = "NO"
			}
			line += "\t" + boots + "\t" + escapeControls(g.Check.Detail)
		}
		fmt.Fprintln(tw, line)
	}
	tw.Flush()
}
