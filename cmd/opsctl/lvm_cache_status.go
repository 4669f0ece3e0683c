package main

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/lvmcache"
)

// LVMCacheStatusOptions are the inputs of `lvm cache status`.
type LVMCacheStatusOptions struct {
	*cli.Factory
	LVM lvmFlags
	// LV is the argument: VG/LV, a VG, or "" for every VG.
	LV       string
	Output   *cli.OutputFlag
	Textfile string
}

// NewCmdLVMCacheStatus builds `lvm cache status`; runF, when set, receives
// the options instead of runLVMCacheStatus (tests of the flags).
func NewCmdLVMCacheStatus(f *cli.Factory, runF func(*LVMCacheStatusOptions) error) *cobra.Command {
	opts := &LVMCacheStatusOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "status [VG[/LV]]",
		Short: "Show a cache: mode, policy, size, use, dirty blocks, hits and misses",
		Long: `Show the cache of VG/LV, of every cached LV of VG, or of every cached LV when
none is named.

JSON (-o json) is one object for a named LV (cached false when it has no
cache), a list otherwise.

-o prometheus writes dm-cache's counters of every active cached LV among
them in Prometheus's text format (opsctl_lvm_cache_read_hits_total and the
others of docs/lvm.md, labels lv="VG/LV" and mode); with --textfile DIR it
writes them to DIR/opsctl_lvm_cache.prom instead of stdout, atomically, for
node_exporter's textfile collector.`,
		Example: `  opsctl lvm cache status storage/slowlv
  opsctl lvm cache status -o json | jq '.[] | {lv, dirty_blocks}'
  opsctl lvm cache status storage -o prometheus
  opsctl lvm cache status -o prometheus --textfile /var/lib/prometheus/node-exporter`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.LV = args[0]
			}
			opts.LVM = lvmFlagsOf(cmd)
			if cmd.Flags().Changed("textfile") && opts.Textfile == "" {
				return cli.Usagef("--textfile: expected a folder, got an empty value")
			}
			if runF != nil {
				return runF(opts)
			}
			return runLVMCacheStatus(opts)
		},
	}
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json", "prometheus")
	cmd.Flags().StringVar(&opts.Textfile, "textfile", "", "with -o prometheus, write the metrics to `DIR`/"+lvmcache.TextfileName+" for node_exporter")
	return cmd
}

func runLVMCacheStatus(opts *LVMCacheStatusOptions) error {
	if opts.Textfile != "" && opts.Output.Value != "prometheus" {
		return cli.Usagef("--textfile: only with -o prometheus")
	}
	if opts.Textfile != "" {
		// A wrong folder is refused before lvm2 is asked anything.
		if err := cli.PathError("--textfile", lvmcache.CheckTextfileDir(opts.Textfile)); err != nil {
			return err
		}
	}
	if err := opts.LVM.check(); err != nil {
		return err
	}
	m := opts.LVM.manager(opts.Factory)
	if name, err := lvmcache.ParseName(opts.LV); err == nil && opts.Output.Value != "prometheus" {
		status, err := m.Status(opts.BaseContext(), name)
		if err != nil {
			return lvmError(err, name)
		}
		if opts.Output.JSON() {
			return cli.WriteJSON(opts.IO.Out, status)
		}
		writeStatusText(opts.IO, status)
		return nil
	}
	all, err := opts.statuses(m)
	if err != nil {
		return err
	}
	switch opts.Output.Value {
	case "prometheus":
		return opts.writeMetrics(m, all)
	case "json":
		return cli.WriteJSON(opts.IO.Out, all)
	}
	if len(all) == 0 {
		fmt.Fprintln(opts.IO.Out, "no cached LV")
	}
	for i, status := range all {
		if i > 0 {
			fmt.Fprintln(opts.IO.Out)
		}
		writeStatusText(opts.IO, status)
	}
	return nil
}

// statuses are the statuses the argument names: one LV, a VG's cached LVs
// or every cached LV.
func (opts *LVMCacheStatusOptions) statuses(m *lvmcache.Manager) ([]lvmcache.Status, error) {
	ctx := opts.BaseContext()
	switch {
	case opts.LV == "":
		all, err := m.StatusAll(ctx)
		return all, lvmError(err, lvmcache.Name{})
	case !strings.Contains(strings.TrimPrefix(opts.LV, "/dev/"), "/"):
		vg := strings.TrimPrefix(opts.LV, "/dev/")
		if !lvmcache.ValidVGName(vg) {
			return nil, cli.Usagef("VG[/LV] %q: expected a VG or VG/LV, like storage or storage/slowlv", opts.LV)
		}
		all, err := m.StatusOfVG(ctx, vg)
		return all, lvmError(err, lvmcache.Name{})
	}
	name, err := parseLVArg(opts.LV)
	if err != nil {
		return nil, err
	}
	status, err := m.Status(ctx, name)
	if err != nil {
		return nil, lvmError(err, name)
	}
	return []lvmcache.Status{status}, nil
}

// writeMetrics writes the Prometheus text of the statuses' counters to
// stdout, or to --textfile's folder.
func (opts *LVMCacheStatusOptions) writeMetrics(m *lvmcache.Manager, all []lvmcache.Status) error {
	counters, err := m.Counters(opts.BaseContext(), all)
	if err != nil {
		return lvmError(err, lvmcache.Name{})
	}
	if opts.Textfile == "" {
		return lvmcache.WriteMetrics(opts.IO.Out, counters)
	}
	var buf bytes.Buffer
	if err := lvmcache.WriteMetrics(&buf, counters); err != nil {
		return err
	}
	return cli.PathError("--textfile", lvmcache.WriteTextfile(opts.Textfile, lvmcache.TextfileName, buf.Bytes()))
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
