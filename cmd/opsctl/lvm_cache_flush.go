package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/lvmcache"
)

// LVMCacheFlushOptions are the inputs of `lvm cache flush`.
type LVMCacheFlushOptions struct {
	*cli.Factory
	LVM   lvmFlags
	LV    string
	Until string
	For   time.Duration
	// ForSet tells a --for given on the command line (--for 0s is wrong)
	// from none.
	ForSet bool
	Method string
	Resume bool
	DryRun bool
	Output *cli.OutputFlag
	// now is the clock --until is read against; nil is time.Now.
	now func() time.Time
}

// NewCmdLVMCacheFlush builds `lvm cache flush`; runF, when set, receives
// the options instead of runLVMCacheFlush (tests of the flags).
func NewCmdLVMCacheFlush(f *cli.Factory, runF func(*LVMCacheFlushOptions) error) *cobra.Command {
	opts := &LVMCacheFlushOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "flush VG/LV [--until TIME | --for DURATION] [--dry-run]",
		Short: "Write back every dirty block of a writeback cache, keeping it",
		Long: `Write every dirty block of the writeback cache of VG/LV back to the origin,
while the LV stays cached, in writeback and online:

  lvchange --cachepolicy cleaner VG/LV        the cleaner policy writes back
  ...                                          (progress: blocks left, rate, time left)
  lvchange --cachepolicy POLICY VG/LV         the policy found, back
  dmsetup message VG-LV 0 migration_threshold N   the runtime value found,
                                               if the reload changed it

Every setting is put back as it was found (the cache policy and its settings
in lvm's metadata, the kernel's runtime migration_threshold): once no dirty
block is left, when the window of --until or --for ends (what is left is
reported), and on Ctrl-C or SIGTERM. A flush killed outright (SIGKILL, power
loss) leaves a journal in --state-dir: --resume finishes it, and every other
change of the LV is refused until then. A flush does not ask for
confirmation: it loses nothing and changes nothing for good.

A writethrough cache holds no dirty block: exit 0 with a line saying so. A
failed cache, or one with read-only metadata, is refused (exit 1).

TIME is 15:04 (the next time the clock shows it), 2006-01-02 15:04, or
RFC 3339 (2006-01-02T15:04:05+01:00); local time unless it says otherwise.`,
		Example: `  # flush it all, whatever it takes
  opsctl lvm cache flush storage/slowlv

  # flush during tonight's maintenance window, stop at 06:00 whatever is left
  opsctl lvm cache flush storage/slowlv --until 06:00

  # at most two hours, the final figures as JSON
  opsctl lvm cache flush storage/slowlv --for 2h -o json

  # the commands it would run
  opsctl lvm cache flush storage/slowlv --dry-run

  # finish a flush that was killed
  opsctl lvm cache flush storage/slowlv --resume`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.LV, opts.LVM = args[0], lvmFlagsOf(cmd)
			opts.ForSet = cmd.Flags().Changed("for")
			if runF != nil {
				return runF(opts)
			}
			return runLVMCacheFlush(opts)
		},
	}
	flags := cmd.Flags()
	flags.StringVar(&opts.Until, "until", "", "stop at `TIME` (15:04, 2006-01-02 15:04 or RFC 3339), whatever is left, settings put back")
	flags.DurationVar(&opts.For, "for", 0, "stop after `DURATION` (30m, 2h), whatever is left, settings put back")
	cli.EnumVar(flags, &opts.Method, "method", lvmcache.FlushCleaner, []string{lvmcache.FlushCleaner, lvmcache.FlushThreshold},
		"how dm-cache is made to write back: the cleaner policy, or migration_threshold raised in steps (for measurements)")
	_ = flags.MarkHidden("method")
	flags.BoolVar(&opts.Resume, "resume", false, "finish the flush journaled in --state-dir (one that was killed)")
	flags.BoolVar(&opts.DryRun, "dry-run", false, "print the lvm2 and dmsetup commands instead of running them")
	opts.Output = cli.AddOutputFlag(flags, "text", "json")
	return cmd
}

func runLVMCacheFlush(opts *LVMCacheFlushOptions) error {
	name, until, err := opts.validate()
	if err != nil {
		return err
	}
	m := opts.LVM.manager(opts.Factory)
	var plan *lvmcache.Plan
	if opts.Resume {
		plan, err = m.ResumeFlush(name, until)
	} else {
		plan, err = m.PlanFlush(opts.BaseContext(), lvmcache.FlushRequest{LV: name, Until: until, Method: opts.Method})
	}
	if err != nil {
		return lvmError(err, name)
	}
	if len(plan.Steps) == 0 {
		opts.IO.Sayf("%s", strings.Join(plan.Notes, "; "))
		if opts.Output.JSON() {
			return cli.WriteJSON(opts.IO.Out, lvmcache.FlushResult{LV: name.String(), Complete: true})
		}
		return nil
	}
	if opts.DryRun {
		for _, note := range plan.Notes {
			opts.IO.Sayf("%s", note)
		}
		printPlan(opts.IO, plan)
		return nil
	}
	// Signals after the first are caught and dropped (nobody reads again):
	// the first stops the flush, and the settings must be back before
	// opsctl exits. SIGKILL leaves them to --resume.
	again := make(chan os.Signal, 1)
	ctx, stop := opts.SignalContext(again)
	defer stop()
	res, err := m.Flush(ctx, plan)
	if res != nil {
		if opts.Output.JSON() {
			if jsonErr := cli.WriteJSON(opts.IO.Out, res); jsonErr != nil && err == nil {
				err = jsonErr
			}
		} else {
			writeFlushed(opts.IO, res)
		}
	}
	return lvmError(err, name)
}

// validate checks the argument and the flags; its errors are usage
// errors. until is zero without --until and --for.
func (opts *LVMCacheFlushOptions) validate() (name lvmcache.Name, until time.Time, err error) {
	if name, err = parseLVArg(opts.LV); err != nil {
		return name, until, err
	}
	now := time.Now()
	if opts.now != nil {
		now = opts.now()
	}
	switch {
	case opts.Until != "" && opts.ForSet:
		return name, until, cli.Usagef("lvm cache flush %s: --until and --for both given, expected one", name)
	case opts.ForSet && opts.For <= 0:
		return name, until, cli.Usagef("--for %s: expected a positive duration like 30m or 2h", opts.For)
	case opts.ForSet:
		until = now.Add(opts.For)
	case opts.Until != "":
		if until, err = parseUntil(opts.Until, now); err != nil {
			return name, until, err
		}
	}
	if opts.Resume && opts.Method != lvmcache.FlushCleaner {
		return name, until, cli.Usagef("lvm cache flush %s: --resume takes the method from the journal; leave out --method", name)
	}
	return name, until, opts.LVM.check()
}

// untilLayouts are the forms of --until, each with or without a zone.
var untilLayouts = []string{time.RFC3339, "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04"}

// parseUntil reads --until: a clock time HH:MM is the next time the clock
// shows it (today or tomorrow); a date and time must be in the future.
func parseUntil(value string, now time.Time) (time.Time, error) {
	if clock, err := time.ParseInLocation("15:04", value, now.Location()); err == nil {
		at := time.Date(now.Year(), now.Month(), now.Day(), clock.Hour(), clock.Minute(), 0, 0, now.Location())
		if !at.After(now) {
			at = at.AddDate(0, 0, 1)
		}
		return at, nil
	}
	for _, layout := range untilLayouts {
		at, err := time.ParseInLocation(layout, value, now.Location())
		if err != nil {
			continue
		}
		if !at.After(now) {
			return time.Time{}, cli.Usagef("--until %q: that is past (now %s); expected a time to come", value, now.Format("2006-01-02 15:04"))
		}
		return at, nil
	}
	return time.Time{}, cli.Usagef("--until %q: expected a time like 06:00, 2026-12-24 06:00 or 2026-12-24T06:00:00+01:00", value)
}

// writeFlushed says what the flush did.
func writeFlushed(io *cli.IOStreams, res *lvmcache.FlushResult) {
	back := fmt.Sprintf("policy %s and migration_threshold %d as before", res.Policy, res.MigrationThreshold)
	switch res.Stopped {
	case lvmcache.StoppedClean:
		fmt.Fprintf(io.Out, "%s: %d dirty blocks written back in %.2fs (%.1f blocks/s), none left; %s\n",
			res.LV, res.FlushedBlocks, res.Seconds, res.BlocksPerSecond, back)
	case lvmcache.StoppedWindow:
		fmt.Fprintf(io.Out, "%s: the window ended after %.2fs: %d dirty blocks written back, %d left; %s\n",
			res.LV, res.Seconds, res.FlushedBlocks, res.DirtyBlocksAfter, back)
	}
}
