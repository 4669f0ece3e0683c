package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/lvmcache"
)

// LVMCacheStatusOptions are the inputs of `lvm cache status`.
type LVMCacheStatusOptions struct {
	*cli.Factory
	LVM    lvmFlags
	LV     string
	Output *cli.OutputFlag
}

// NewCmdLVMCacheStatus builds `lvm cache status`; runF, when set, receives
// the options instead of runLVMCacheStatus (tests of the flags).
func NewCmdLVMCacheStatus(f *cli.Factory, runF func(*LVMCacheStatusOptions) error) *cobra.Command {
	opts := &LVMCacheStatusOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "status [VG/LV]",
		Short: "Show a cache: mode, policy, size, use, dirty blocks, hits and misses",
		Long: `Show the cache of VG/LV, or of every cached LV when none is named.

JSON (-o json) is one object for a named LV (cached false when it has no
cache), a list otherwise.`,
		Example: `  opsctl lvm cache status storage/slowlv
  opsctl lvm cache status -o json | jq '.[] | {lv, dirty_blocks}'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.LV = args[0]
			}
			opts.LVM = lvmFlagsOf(cmd)
			if runF != nil {
				return runF(opts)
			}
			return runLVMCacheStatus(opts)
		},
	}
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
	return cmd
}

func runLVMCacheStatus(opts *LVMCacheStatusOptions) error {
	if err := opts.LVM.check(); err != nil {
		return err
	}
	ctx := opts.BaseContext()
	m := opts.LVM.manager(opts.Factory)
	out := opts.IO.Out
	if opts.LV != "" {
		name, err := parseLVArg(opts.LV)
		if err != nil {
			return err
		}
		status, err := m.Status(ctx, name)
		if err != nil {
			return lvmError(err, name)
		}
		if opts.Output.JSON() {
			return cli.WriteJSON(out, status)
		}
		writeStatusText(opts.IO, status)
		return nil
	}
	all, err := m.StatusAll(ctx)
	if err != nil {
		return lvmError(err, lvmcache.Name{})
	}
	if opts.Output.JSON() {
		return cli.WriteJSON(out, all)
	}
	if len(all) == 0 {
		fmt.Fprintln(out, "no cached LV")
	}
	for i, status := range all {
		if i > 0 {
			fmt.Fprintln(out)
		}
		writeStatusText(opts.IO, status)
	}
	return nil
}

func writeStatusText(io *cli.IOStreams, s lvmcache.Status) {
	w := io.Out
	if !s.Cached {
		fmt.Fprintf(w, "%s: not cached (%s)\n", s.LV, lvmcache.FormatBytes(s.OriginSizeBytes))
		return
	}
	fmt.Fprintf(w, "%s: cached, %s, policy %s\n", s.LV, s.Mode, s.Policy)
	fmt.Fprintf(w, "  origin size   %s\n", lvmcache.FormatBytes(s.OriginSizeBytes))
	fmt.Fprintf(w, "  cache size    %s on %s, chunk %s\n", lvmcache.FormatBytes(s.CacheSizeBytes), strings.Join(s.CachePVs, ", "), lvmcache.FormatBytes(s.ChunkSizeBytes))
	fmt.Fprintf(w, "  blocks        %d used of %d, %d dirty\n", s.UsedBlocks, s.TotalBlocks, s.DirtyBlocks)
	fmt.Fprintf(w, "  reads         %d hits, %d misses\n", s.ReadHits, s.ReadMisses)
	fmt.Fprintf(w, "  writes        %d hits, %d misses\n", s.WriteHits, s.WriteMisses)
}
