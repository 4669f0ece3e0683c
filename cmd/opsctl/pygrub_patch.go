package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/pygrubfix"
)

// PygrubPatchOptions are the inputs of `pygrub patch`.
type PygrubPatchOptions struct {
	*cli.Factory
	Pygrub string
	Check  bool
	DryRun bool
}

// NewCmdPygrubPatch builds `pygrub patch`; runF, when set, receives the
// options instead of runPygrubPatch (tests of the flags).
func NewCmdPygrubPatch(f *cli.Factory, runF func(*PygrubPatchOptions) error) *cobra.Command {
	opts := &PygrubPatchOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "patch",
		Short: "Fix the host's pygrub for EL7 guests (non-greedy titles, linux16)",
		Long: `Find the host's pygrub grub parser (GrubConf.py beside the pygrub script,
on the distribution's python path, or the script itself) and apply Xen's fixes
where they are missing: the non-greedy menuentry title regex ((.*) -> (.*?))
and linux16/initrd16 support. The original is kept as FILE.orig (FILE.orig.N
when that exists; no backup is ever overwritten); the new file is written
atomically with the same mode, owner and extended attributes. Running it
again changes nothing. Code that is not what the patcher expects, or a
parser file that is not a regular file, is refused, the line shown, and
nothing is changed. A --pygrub that does not exist or is not a regular file
exits 2.`,
		Example: `  # Is a patch needed? (exit 1 when it is)
  opsctl pygrub patch --check

  # Show the change as a unified diff, then apply it
  opsctl pygrub patch --dry-run
  opsctl pygrub patch --pygrub /usr/lib/xen-4.1/bin/pygrub`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runPygrubPatch(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Pygrub, "pygrub", "", "`PATH` of the pygrub script or its GrubConf.py (default: search /usr/lib/xen-*/bin/pygrub and the usual places)")
	cmd.Flags().BoolVar(&opts.Check, "check", false, "change nothing; exit 1 when a patch is needed")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print the unified diff of the patch and change nothing")
	return cmd
}

func runPygrubPatch(opts *PygrubPatchOptions) error {
	paths, err := pygrubfix.FindParsers(opts.Pygrub)
	if err != nil {
		return pygrubError("pygrub patch", "--pygrub", err)
	}
	plan, err := pygrubfix.PlanPatch(paths)
	if err != nil {
		return pygrubError("pygrub patch", "", err)
	}
	defer plan.Close()
	if opts.DryRun {
		fmt.Fprint(opts.IO.Out, plan.Diff())
	}
	if opts.Check || opts.DryRun {
		printPatchNeeds(opts.IO, plan)
		if opts.Check && plan.Needed() {
			return cli.Silent(cli.ExitFailure)
		}
		return nil
	}
	if _, err := plan.Apply(); err != nil {
		return pygrubError("pygrub patch", "", err)
	}
	for _, f := range plan.Files {
		if len(f.Changes) == 0 {
			fmt.Fprintf(opts.IO.Out, "%s: already patched\n", f.Path)
			continue
		}
		fmt.Fprintf(opts.IO.Out, "%s: patched (backup %s): %s\n", f.Path, f.Backup, strings.Join(f.Changes, "; "))
	}
	return nil
}

// printPatchNeeds says on stderr, for --check and --dry-run, which files
// the plan would change and how.
func printPatchNeeds(streams *cli.IOStreams, plan *pygrubfix.PatchPlan) {
	for _, f := range plan.Files {
		if len(f.Changes) == 0 {
			streams.Sayf("%s: up to date", f.Path)
			continue
		}
		streams.Sayf("%s: patch needed: %s", f.Path, strings.Join(f.Changes, "; "))
	}
}
