package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/pygrubfix"
)

// PygrubCheckOptions are the inputs of `pygrub check`.
type PygrubCheckOptions struct {
	*cli.Factory
	Path   string
	Xen    string
	Output *cli.OutputFlag
}

// NewCmdPygrubCheck builds `pygrub check`; runF, when set, receives the
// options instead of runPygrubCheck (tests of the flags).
func NewCmdPygrubCheck(f *cli.Factory, runF func(*PygrubCheckOptions) error) *cobra.Command {
	opts := &PygrubCheckOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "check PATH",
		Short: "Read a guest's boot config the way a pygrub release does",
		Long: `Read PATH, a grub config file or a guest's root folder, the way pygrub of a
Xen release would: which files it searches and in what order, how it parses
titles, which commands it knows. Prints the entries, the default, the problems
(each with its fix) and whether that pygrub would find a kernel to boot.

A file named menu.lst or grub.conf is read as grub-legacy, *linux.conf and
*linux.cfg as extlinux, anything else as grub2; one over 64 MiB is refused.
In a guest's root folder, symlinks are followed inside the folder (as a
chroot would) and only the first MiB of a config is read, as pygrub does;
FIFOs and device nodes are never opened. The text output shows control
characters of the guest's titles, paths and arguments escaped (\x1b);
-o json has them exact.

Exit status 1 when pygrub would not find a kernel; 2 when PATH does not
exist or is neither a folder nor a regular file.`,
		Example: `  # Would Debian wheezy's Xen 4.1 boot this EL7 guest (disk mounted on /mnt)?
  opsctl pygrub check --xen 4.1 /mnt

  # What does today's pygrub make of a grub.cfg?
  opsctl pygrub check /mnt/boot/grub2/grub.cfg -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Path = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runPygrubCheck(opts)
		},
	}
	cli.EnumVar(cmd.Flags(), &opts.Xen, "xen", "4.17", []string{"4.17", "4.1"}, "pygrub of which Xen release (4.1: 4.1.0-4.1.2)").Accept("4.1.0", "4.1.1", "4.1.2")
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
	return cmd
}

func runPygrubCheck(opts *PygrubCheckOptions) error {
	rel, err := pygrubfix.LookupRelease(opts.Xen)
	if err != nil {
		return cli.UsageError(pygrubRename(err))
	}
	rep, err := pygrubfix.Check(opts.Path, rel)
	if err != nil {
		return pygrubError("pygrub check", "", err)
	}
	if opts.Output.JSON() {
		if err := cli.WriteJSON(opts.IO.Out, rep); err != nil {
			return err
		}
	} else {
		printCheckReport(opts.IO.Out, rep)
	}
	if !rep.Bootable {
		return cli.Silent(cli.ExitFailure)
	}
	return nil
}

// printCheckReport prints the report for people. Everything that comes
// from the guest (titles, paths, arguments, messages quoting them) is
// shown with its control characters escaped; JSON keeps it exact.
func printCheckReport(w io.Writer, rep *pygrubfix.Report) {
	if rep.Config == "" {
		fmt.Fprintf(w, "pygrub %s: no boot loader config found\n", rep.Xen)
	} else {
		fmt.Fprintf(w, "pygrub %s: %s (%s)\n", rep.Xen, escapeControls(rep.Config), rep.Parser)
	}
	for i, e := range rep.Entries {
		mark := " "
		if i == rep.Default {
			mark = "*"
		}
		fmt.Fprintf(w, "%s %d: %s\n", mark, i, escapeControls(e.Title))
		if e.HasKernel {
			fmt.Fprintf(w, "      kernel %s\n", escapeControls(e.Kernel))
		} else {
			fmt.Fprintf(w, "      (no kernel)\n")
		}
		if e.Initrd != "" {
			fmt.Fprintf(w, "      initrd %s\n", escapeControls(e.Initrd))
		}
		if e.Args != "" {
			fmt.Fprintf(w, "      args   %s\n", escapeControls(e.Args))
		}
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "problem %s: %s\n", p.Code, escapeControls(p.Message))
	}
	if rep.Bootable {
		fmt.Fprintf(w, "bootable: yes (entry %d)\n", rep.Default)
	} else {
		fmt.Fprintln(w, "bootable: no")
	}
}
