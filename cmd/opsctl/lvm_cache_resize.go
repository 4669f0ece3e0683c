package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/lvmcache"
)

// LVMCacheResizeOptions are the inputs of `lvm cache resize`.
type LVMCacheResizeOptions struct {
	*cli.Factory
	LVM      lvmFlags
	LV       string
	Size     string
	Strategy string
	// StrategySet tells a --strategy given on the command line from the
	// default.
	StrategySet bool
	Resume      bool
	Abandon     bool
	lvmChange
}

// NewCmdLVMCacheResize builds `lvm cache resize`; runF, when set, receives
// the options instead of runLVMCacheResize (tests of the flags).
func NewCmdLVMCacheResize(f *cli.Factory, runF func(*LVMCacheResizeOptions) error) *cobra.Command {
	opts := &LVMCacheResizeOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "resize VG/LV (--size [+]SIZE [--strategy auto|online|recache] | --resume | --abandon)",
		Short: "Grow a cached LV, keeping its cache",
		Long: `Grow a cached LV to SIZE, or by +SIZE.

Strategies:
  online   lvresize the cached LV in place (lvm2 2.03.12 and newer); no flush
  recache  the classic way: record the cache (size, mode, policy, chunk size,
           PVs), uncache it (dirty blocks are written back, with a progress
           bar), lvresize, and re-create the identical cache
  auto     online where lvm2 supports it, recache otherwise (the default)

A resize is journaled in --state-dir before each step. If opsctl is stopped
half-way, --resume finishes it. If lvresize fails after the uncache, the cache
is re-attached before opsctl exits non-zero. Shrinking is refused.

A journal that --resume cannot use (damaged, or not one opsctl wrote) is shown
as far as it can be read, with the lvm2 commands that would finish the resize
by hand; --abandon removes it once the LV has been checked, changing nothing
in lvm2.`,
		Example: `  # add 200 GiB, the way lvm2 on this host supports best
  opsctl lvm cache resize storage/slowlv --size +200G -y

  # the classic uncache / lvresize / re-create, shown first
  opsctl lvm cache resize storage/slowlv --size 1T --strategy recache --dry-run

  # finish a resize that was interrupted
  opsctl lvm cache resize storage/slowlv --resume -y

  # what a damaged journal records and what to check; then drop it
  opsctl lvm cache resize storage/slowlv --abandon --dry-run
  opsctl lvm cache resize storage/slowlv --abandon -y`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.LV, opts.LVM = args[0], lvmFlagsOf(cmd)
			opts.StrategySet = cmd.Flags().Changed("strategy")
			if runF != nil {
				return runF(opts)
			}
			return runLVMCacheResize(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Size, "size", "", "new size `SIZE`, or +SIZE to grow by (required unless --resume or --abandon)")
	cli.EnumVar(cmd.Flags(), &opts.Strategy, "strategy", lvmcache.StrategyAuto, []string{lvmcache.StrategyAuto, lvmcache.StrategyOnline, lvmcache.StrategyRecache}, "how to resize: in place (online), by uncaching first (recache), or online where lvm2 can (auto)")
	cmd.Flags().BoolVar(&opts.Resume, "resume", false, "finish the interrupted resize journaled in --state-dir")
	cmd.Flags().BoolVar(&opts.Abandon, "abandon", false, "remove the journal of an interrupted resize, after checking the LV by hand (changes nothing in lvm2)")
	opts.register(cmd, "print the lvm2 commands instead of running them")
	return cmd
}

func runLVMCacheResize(opts *LVMCacheResizeOptions) error {
	name, size, err := opts.validate()
	if err != nil {
		return err
	}
	ctx := opts.BaseContext()
	m := opts.LVM.manager(opts.Factory)
	if opts.Abandon {
		return abandonJournal(opts, m, name)
	}
	var plan *lvmcache.Plan
	if opts.Resume {
		plan, err = m.Resume(ctx, name)
	} else {
		plan, err = m.PlanResize(ctx, lvmcache.ResizeRequest{LV: name, Size: size, Strategy: opts.Strategy})
	}
	if err != nil {
		return lvmError(err, name)
	}
	if len(plan.Steps) == 0 {
		opts.IO.Sayf("%s", strings.Join(plan.Notes, "; "))
		return nil
	}
	if applied, err := runPlan(opts.Factory, m, plan, opts.lvmChange); err != nil || !applied {
		return lvmError(err, name)
	}
	writeResized(opts.IO, name, plan)
	return nil
}

// validate checks the argument and the flags that go together; its errors
// are usage errors. size is zero with --resume and --abandon.
func (opts *LVMCacheResizeOptions) validate() (name lvmcache.Name, size lvmcache.Size, err error) {
	if name, err = parseLVArg(opts.LV); err != nil {
		return name, size, err
	}
	switch opts.Strategy {
	case lvmcache.StrategyAuto, lvmcache.StrategyOnline, lvmcache.StrategyRecache:
	default:
		return name, size, cli.Usagef("--strategy %q: expected auto, online or recache", opts.Strategy)
	}
	switch {
	case opts.Abandon && (opts.Resume || opts.Size != "" || opts.StrategySet):
		return name, size, cli.Usagef("lvm cache resize %s: --abandon only removes the journal; leave out --resume, --size and --strategy", name)
	case opts.Abandon:
	case opts.Resume && opts.Size != "":
		return name, size, cli.Usagef("lvm cache resize %s: --resume takes the size from the journal; leave out --size", name)
	case opts.Resume && opts.StrategySet:
		return name, size, cli.Usagef("lvm cache resize %s: --resume takes the strategy from the journal; leave out --strategy", name)
	case !opts.Resume && opts.Size == "":
		return name, size, cli.Usagef("lvm cache resize %s: --size is required (SIZE or +SIZE)", name)
	case !opts.Resume:
		if size, err = lvmcache.ParseResizeSize(opts.Size); err != nil {
			return name, size, cli.UsageError(fmt.Errorf("--size: %w", err))
		}
	}
	return name, size, opts.LVM.check()
}

// writeResized says what the resize did, step by step.
func writeResized(io *cli.IOStreams, name lvmcache.Name, plan *lvmcache.Plan) {
	fmt.Fprintf(io.Out, "%s: resized from %s to %s (%s", name, lvmcache.FormatBytes(plan.OriginalSizeBytes),
		lvmcache.FormatBytes(plan.TargetSizeBytes), plan.Strategy)
	for _, step := range plan.Steps {
		if step.Skipped {
			fmt.Fprintf(io.Out, ", %s already done", step.Kind)
			continue
		}
		earlier := ""
		if step.Earlier {
			earlier = " (before --resume)"
		}
		fmt.Fprintf(io.Out, ", %s%s %.2fs", step.Kind, earlier, step.Duration().Seconds())
		if step.Kind == lvmcache.StepUncache {
			fmt.Fprintf(io.Out, " flushing %d dirty blocks", step.DirtyBlocks)
		}
	}
	fmt.Fprintln(io.Out, ")")
}

// abandonJournal removes the journal of name's interrupted resize, after
// showing what it records and what to check.
func abandonJournal(opts *LVMCacheResizeOptions, m *lvmcache.Manager, name lvmcache.Name) error {
	a, err := m.PlanAbandon(name)
	if err != nil {
		return lvmError(err, name)
	}
	notes := []string{"the journal records: " + a.Records}
	if a.Problem != "" {
		notes = append(notes, "--resume cannot use it: "+a.Problem)
	}
	for _, check := range a.Checks {
		notes = append(notes, lvmText(check, name))
	}
	notes = append(notes, "nothing is changed in lvm2; only this journal is removed")
	if opts.DryRun {
		for _, note := range notes {
			opts.IO.Sayf("%s", note)
		}
		for _, line := range a.Commands() {
			fmt.Fprintln(opts.IO.Out, line)
		}
		return nil
	}
	if err := confirmChange(opts.IO, stdinIsTerminal(opts.IO), "resize "+name.String()+" --abandon", notes, a.Commands(), opts.Yes); err != nil {
		return err
	}
	if err := m.Abandon(a); err != nil {
		return lvmError(err, name)
	}
	fmt.Fprintf(opts.IO.Out, "%s: journal %s removed; nothing was changed in lvm2\n", name, a.Path)
	return nil
}
