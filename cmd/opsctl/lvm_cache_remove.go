package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
)

// LVMCacheRemoveOptions are the inputs of `lvm cache remove`.
type LVMCacheRemoveOptions struct {
	*cli.Factory
	LVM lvmFlags
	LV  string
	lvmChange
}

// NewCmdLVMCacheRemove builds `lvm cache remove`; runF, when set, receives
// the options instead of runLVMCacheRemove (tests of the flags).
func NewCmdLVMCacheRemove(f *cli.Factory, runF func(*LVMCacheRemoveOptions) error) *cobra.Command {
	opts := &LVMCacheRemoveOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "remove VG/LV",
		Short: "Flush and delete the cache of an LV, leaving it plain",
		Long: `Write the dirty blocks back to the origin (with a progress bar), detach the
cache and delete the cache pool: lvconvert --uncache VG/LV. Never --force: that
could drop dirty blocks.`,
		Example: `  opsctl lvm cache remove storage/slowlv -y
  opsctl lvm cache remove storage/slowlv --dry-run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.LV, opts.LVM = args[0], lvmFlagsOf(cmd)
			if runF != nil {
				return runF(opts)
			}
			return runLVMCacheRemove(opts)
		},
	}
	opts.register(cmd, "print the lvm2 command instead of running it")
	return cmd
}

func runLVMCacheRemove(opts *LVMCacheRemoveOptions) error {
	name, err := parseLVArg(opts.LV)
	if err != nil {
		return err
	}
	if err := opts.LVM.check(); err != nil {
		return err
	}
	m := opts.LVM.manager(opts.Factory)
	plan, err := m.PlanRemove(opts.BaseContext(), name)
	if err != nil {
		return lvmError(err, name)
	}
	if applied, err := runPlan(opts.Factory, m, plan, opts.lvmChange); err != nil || !applied {
		return lvmError(err, name)
	}
	step := plan.Steps[0]
	fmt.Fprintf(opts.IO.Out, "%s: cache %s removed (%d dirty blocks flushed, %.2fs)\n", name, plan.Cache.Pool, step.DirtyBlocks, step.Duration().Seconds())
	return nil
}
