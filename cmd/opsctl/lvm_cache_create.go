package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/lvmcache"
)

// LVMCacheCreateOptions are the inputs of `lvm cache create`.
type LVMCacheCreateOptions struct {
	*cli.Factory
	LVM       lvmFlags
	LV        string
	Size      string
	CachePVs  []string
	CacheMode string
	Name      string
	lvmChange
}

// NewCmdLVMCacheCreate builds `lvm cache create`; runF, when set, receives
// the options instead of runLVMCacheCreate (tests of the flags).
func NewCmdLVMCacheCreate(f *cli.Factory, runF func(*LVMCacheCreateOptions) error) *cobra.Command {
	opts := &LVMCacheCreateOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "create VG/LV --size SIZE --cache-pv PV [--cache-pv PV]...",
		Short: "Put a cache on a fast PV in front of an LV",
		Long: `Create a cache pool of SIZE on the given PVs and attach it to VG/LV:

  lvcreate --type cache --cachemode writeback --name NAME --size SIZE VG/LV PV...

Checked first: VG/LV exists and is not cached, the PVs belong to the VG, and
they have room for SIZE and the cache metadata.

SIZE is a number with an optional unit b k m g t p (powers of 1024, like
lvm2); no unit means MiB.`,
		Example: `  # 100 GiB writeback cache on the NVMe mirror /dev/md3
  opsctl lvm cache create storage/slowlv --size 100G --cache-pv /dev/md3 -y

  # see the lvm2 command without running it
  opsctl lvm cache create storage/slowlv --size 100G --cache-pv /dev/md3 --dry-run`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.LV, opts.LVM = args[0], lvmFlagsOf(cmd)
			if runF != nil {
				return runF(opts)
			}
			return runLVMCacheCreate(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Size, "size", "", "cache size: `SIZE` (required)")
	cmd.Flags().StringArrayVar(&opts.CachePVs, "cache-pv", nil, "fast `PV` of the VG to hold the cache (required, repeatable)")
	cli.EnumVar(cmd.Flags(), &opts.CacheMode, "cachemode", "writeback", []string{"writeback", "writethrough"}, "when writes reach the origin LV: later (writeback) or at once")
	cmd.Flags().StringVar(&opts.Name, "name", "", "`NAME` of the cache pool LV (default LV_cache)")
	opts.register(cmd, "print the lvm2 command instead of running it")
	return cmd
}

func runLVMCacheCreate(opts *LVMCacheCreateOptions) error {
	req, err := opts.request()
	if err != nil {
		return err
	}
	m := opts.LVM.manager(opts.Factory)
	plan, err := m.PlanCreate(opts.BaseContext(), req)
	if err != nil {
		return lvmError(err, req.LV)
	}
	if applied, err := runPlan(opts.Factory, m, plan, opts.lvmChange); err != nil || !applied {
		return lvmError(err, req.LV)
	}
	fmt.Fprintf(opts.IO.Out, "%s: cached by %s (%s %s on %s)\n", req.LV, plan.Cache.Name,
		lvmcache.FormatBytes(plan.Cache.SizeBytes), plan.Cache.Mode, strings.Join(plan.Cache.PVs, ", "))
	return nil
}

// request checks the argument and flags; its errors are usage errors.
func (opts *LVMCacheCreateOptions) request() (lvmcache.CreateRequest, error) {
	name, err := parseLVArg(opts.LV)
	if err != nil {
		return lvmcache.CreateRequest{}, err
	}
	if opts.Size == "" {
		return lvmcache.CreateRequest{}, cli.Usagef("lvm cache create %s: --size is required", name)
	}
	size, err := lvmcache.ParseSize(opts.Size)
	if err != nil {
		return lvmcache.CreateRequest{}, cli.UsageError(fmt.Errorf("--size: %w", err))
	}
	if len(opts.CachePVs) == 0 {
		return lvmcache.CreateRequest{}, cli.Usagef("lvm cache create %s: --cache-pv is required (the fast PV of the VG)", name)
	}
	if opts.CacheMode != "writeback" && opts.CacheMode != "writethrough" {
		return lvmcache.CreateRequest{}, cli.Usagef("--cachemode %q: expected writeback or writethrough", opts.CacheMode)
	}
	if opts.Name != "" && !lvmcache.ValidLVName(opts.Name) {
		return lvmcache.CreateRequest{}, cli.Usagef("--name %q: expected an LV name (letters, digits, + _ . -)", opts.Name)
	}
	if err := opts.LVM.check(); err != nil {
		return lvmcache.CreateRequest{}, err
	}
	return lvmcache.CreateRequest{LV: name, SizeBytes: size, PVs: opts.CachePVs, Mode: opts.CacheMode, CacheName: opts.Name}, nil
}
