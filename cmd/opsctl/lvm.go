package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/pkg/lvmcache"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// lvmFlags are the flags every lvm command shares.
type lvmFlags struct {
	lvmPath       string
	stateDir      string
	reportTimeout time.Duration
}

// lvmEnv is what an lvm command needs from the process.
type lvmEnv struct {
	IO *cli.IOStreams
	// Manager builds the lvmcache.Manager from the shared flags.
	Manager func() *lvmcache.Manager
	// StdinIsTerminal tells whether a confirmation can be asked.
	StdinIsTerminal func() bool
	// SharedFlags checks the values of the shared flags: --report-timeout,
	// and an --lvm or a --state-dir given on the command line.
	SharedFlags func() error
}

// checkLVMFlag makes an --lvm that is not there, or not an executable
// file, a usage error (exit 2). lvm on PATH or $OPSCTL_LVM missing is the
// runner's NotFoundError (exit 1): not named on the command line.
func checkLVMFlag(path string) error {
	if path == "" {
		return nil
	}
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return cli.Usagef("--lvm: lvm2 executable %q not found", path)
	case err != nil:
		return fmt.Errorf("--lvm %s: %w", path, err)
	case !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0:
		return cli.Usagef("--lvm %s: not an executable file; expected the lvm2 executable", path)
	}
	return nil
}

// checkStateDirFlag makes a --state-dir that is not there, or not a
// folder, a usage error (exit 2). Whether opsctl may keep journals in it
// (its owner and mode, no symbolic link on the way) lvmcache checks.
func checkStateDirFlag(dir string) error {
	info, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return cli.Usagef("--state-dir %s: no such folder (make it with: install -d -m 0700 %s)", dir, dir)
	case err != nil:
		return fmt.Errorf("--state-dir %s: %w", dir, err)
	case !info.IsDir():
		return cli.Usagef("--state-dir %s: not a folder", dir)
	}
	return nil
}

func newCmdLVM(f *cli.Factory) *cobra.Command {
	flags := &lvmFlags{}
	var persistent *pflag.FlagSet
	env := &lvmEnv{
		IO: f.IO,
		Manager: func() *lvmcache.Manager {
			path := flags.lvmPath
			if path == "" && f.Getenv != nil {
				path = f.Getenv("OPSCTL_LVM")
			}
			// Left empty, the Manager makes the default state dir when it
			// is missing; a --state-dir must exist.
			stateDir := ""
			if persistent.Changed("state-dir") {
				stateDir = flags.stateDir
			}
			return &lvmcache.Manager{
				Runner:   &lvmcache.Runner{Path: path, Logger: f.Logger, ReportTimeout: flags.reportTimeout},
				StateDir: stateDir,
				Logger:   f.Logger,
				NewProgress: func(label string, total int64) lvmcache.Progress {
					return cli.NewProgress(f.IO, label, total)
				},
			}
		},
		StdinIsTerminal: func() bool {
			file, ok := f.IO.In.(*os.File)
			return ok && term.IsTerminal(int(file.Fd()))
		},
	}
	cmd := &cobra.Command{
		Use:   "lvm",
		Short: "Create, resize and remove an LVM writeback cache",
		Long: `Manage LVM caches through lvm2: a fast PV (SSD, NVMe) in front of an LV on slow disks.

lvm2 is run as "lvm" from PATH unless --lvm or OPSCTL_LVM names another binary.
Every change is planned and checked first; --dry-run prints the lvm2 commands.`,
		Example: `  opsctl lvm cache create storage/slowlv --size 100G --cache-pv /dev/md3 -y
  opsctl lvm cache status -o json
  opsctl --log-level debug lvm --lvm /usr/sbin/lvm cache resize storage/slowlv --size +200G --dry-run`,
	}
	persistent = cmd.PersistentFlags()
	persistent.StringVar(&flags.lvmPath, "lvm", "", "`PATH` of the lvm2 executable (default: $OPSCTL_LVM, else lvm on PATH)")
	persistent.StringVar(&flags.stateDir, "state-dir", lvmcache.DefaultStateDir,
		"`DIR` of the resize journals and locks: it must exist, owned by root and writable by root alone (the default is made when missing)")
	persistent.DurationVar(&flags.reportTimeout, "report-timeout", lvmcache.DefaultReportTimeout,
		"time limit (`DURATION`) of each lvm2 report (lvs, vgs, pvs, version); one that does not answer is killed, exit 75")
	env.SharedFlags = func() error {
		if flags.reportTimeout <= 0 {
			return cli.Usagef("--report-timeout %s: expected a positive duration like 60s or 5m", flags.reportTimeout)
		}
		if err := checkLVMFlag(flags.lvmPath); err != nil {
			return err
		}
		if !persistent.Changed("state-dir") {
			return nil
		}
		return checkStateDirFlag(flags.stateDir)
	}

	cache := &cobra.Command{
		Use:   "cache",
		Short: "Create, resize, inspect and remove the cache of an LV",
		Example: `  opsctl lvm cache create storage/slowlv --size 100G --cache-pv /dev/md3 -y
  opsctl lvm cache resize storage/slowlv --size +200G -y
  opsctl lvm cache status storage/slowlv
  opsctl lvm cache remove storage/slowlv -y`,
	}
	cache.AddCommand(
		newCmdLVMCacheCreate(env, nil),
		newCmdLVMCacheResize(env, nil),
		newCmdLVMCacheStatus(env, nil),
		newCmdLVMCacheRemove(env, nil),
	)
	cmd.AddCommand(cache)
	return cmd
}

func (env *lvmEnv) checkSharedFlags() error {
	if env.SharedFlags == nil {
		return nil
	}
	return env.SharedFlags()
}

// lvmFlagNames are the inputs of lvmcache that the lvm verbs fill in from
// their flags, and the calls its messages point to that the verbs offer as
// command lines: errors of the package name them in its terms, the user
// reads the flags. The calls carry the LV (see lvmcache's hints.go).
func lvmFlagNames(name lvmcache.Name) map[string]string {
	names := map[string]string{
		"CreateRequest.PVs":       "--cache-pv",
		"CreateRequest.CacheName": "--name",
		"StrategyRecache":         "--strategy recache",
		"StrategyOnline":          "--strategy online",
		"Manager.StateDir":        "--state-dir",
	}
	if name != (lvmcache.Name{}) {
		lv := name.String()
		names["Manager.Resume("+lv+")"] = "opsctl lvm cache resize " + lv + " --resume"
		names["Manager.PlanAbandon("+lv+")"] = "opsctl lvm cache resize " + lv + " --abandon"
		names["lvm cache resize "+lv+" (Manager.Resume)"] = "lvm cache resize " + lv + " --resume"
		names["lvm cache resize "+lv+" (Manager.PlanAbandon)"] = "lvm cache resize " + lv + " --abandon"
	}
	return names
}

// lvmError shows the flags and command lines in an error of lvmcache about
// the LV name (the zero Name when the command names none).
func lvmError(err error, name lvmcache.Name) error {
	return inputerr.Rename(err, lvmFlagNames(name))
}

// lvmText shows the flags and command lines in a note of lvmcache about
// the LV name, as lvmError does in its errors.
func lvmText(note string, name lvmcache.Name) string {
	return lvmError(errors.New(note), name).Error()
}

// parseLVArg turns the VG/LV argument into a name, or a usage error.
func parseLVArg(arg string) (lvmcache.Name, error) {
	name, err := lvmcache.ParseName(arg)
	if err != nil {
		return lvmcache.Name{}, cli.UsageError(fmt.Errorf("VG/LV %w", err))
	}
	return name, nil
}

// printPlan writes the plan's lvm2 commands, one per line, to stdout.
func printPlan(io *cli.IOStreams, plan *lvmcache.Plan) {
	for _, line := range plan.Commands() {
		fmt.Fprintln(io.Out, line)
	}
}

// confirm asks before a change. With -y it does not ask; without a
// terminal to ask on it refuses, so a script never hangs or guesses.
func confirm(env *lvmEnv, plan *lvmcache.Plan, yes bool) error {
	return confirmChange(env, plan.Op+" "+plan.LV, plan.Notes, plan.Commands(), yes)
}

// confirmChange asks whether "opsctl lvm cache WHAT" may do what notes say
// with commands.
func confirmChange(env *lvmEnv, what string, notes, commands []string, yes bool) error {
	if yes {
		return nil
	}
	if !env.StdinIsTerminal() {
		return cli.Usagef("lvm cache %s: refusing to change it without confirmation: stdin is not a terminal; pass -y (or --dry-run to see the commands)", what)
	}
	w := env.IO.ErrOut
	fmt.Fprintf(w, "opsctl lvm cache %s will:\n", what)
	for _, note := range notes {
		fmt.Fprintf(w, "  - %s\n", note)
	}
	for _, line := range commands {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprint(w, "Proceed? [y/N] ")
	answer, _ := bufio.NewReader(env.IO.In).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("lvm cache %s: not confirmed, nothing changed", what)
}

// runPlan prints plan for --dry-run; otherwise it asks for confirmation
// (unless yes) and applies it. applied reports whether it ran.
func runPlan(ctx context.Context, env *lvmEnv, m *lvmcache.Manager, plan *lvmcache.Plan, dryRun, yes bool) (applied bool, err error) {
	if dryRun {
		printPlan(env.IO, plan)
		return false, nil
	}
	if err := confirm(env, plan, yes); err != nil {
		return false, err
	}
	ctx, stop := changeContext(ctx)
	defer stop()
	return true, m.Apply(ctx, plan)
}

// changeContext ends on SIGINT or SIGTERM: a running lvm2 command is left
// to finish, and the plan stops before its next step. It is taken only
// for Apply: until then nothing has changed, and Ctrl-C (at the
// confirmation prompt, say) ends opsctl at once. After the first signal the
// next one has its default effect again: an admin who does not want to
// wait for a flush of hours ends opsctl with a second Ctrl-C, lvm2 going
// on in its own process group and the journal kept for --resume.
func changeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}

type lvmCacheCreateOptions struct {
	Env       *lvmEnv
	LV        string
	Size      string
	CachePVs  []string
	CacheMode string
	Name      string
	DryRun    bool
	Yes       bool
}

func newCmdLVMCacheCreate(env *lvmEnv, runF func(*lvmCacheCreateOptions) error) *cobra.Command {
	opts := &lvmCacheCreateOptions{Env: env}
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
			opts.LV = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runLVMCacheCreate(cmd, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Size, "size", "", "cache size: `SIZE` (required)")
	cmd.Flags().StringArrayVar(&opts.CachePVs, "cache-pv", nil, "fast `PV` of the VG to hold the cache (required, repeatable)")
	cli.EnumVar(cmd.Flags(), &opts.CacheMode, "cachemode", "writeback", []string{"writeback", "writethrough"}, "when writes reach the origin LV: later (writeback) or at once")
	cmd.Flags().StringVar(&opts.Name, "name", "", "`NAME` of the cache pool LV (default LV_cache)")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print the lvm2 command instead of running it")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func runLVMCacheCreate(cmd *cobra.Command, opts *lvmCacheCreateOptions) error {
	name, err := parseLVArg(opts.LV)
	if err != nil {
		return err
	}
	if opts.Size == "" {
		return cli.Usagef("lvm cache create %s: --size is required", name)
	}
	size, err := lvmcache.ParseSize(opts.Size)
	if err != nil {
		return cli.UsageError(fmt.Errorf("--size: %w", err))
	}
	if len(opts.CachePVs) == 0 {
		return cli.Usagef("lvm cache create %s: --cache-pv is required (the fast PV of the VG)", name)
	}
	if opts.CacheMode != "writeback" && opts.CacheMode != "writethrough" {
		return cli.Usagef("--cachemode %q: expected writeback or writethrough", opts.CacheMode)
	}
	if opts.Name != "" && !lvmcache.ValidLVName(opts.Name) {
		return cli.Usagef("--name %q: expected an LV name (letters, digits, + _ . -)", opts.Name)
	}
	if err := opts.Env.checkSharedFlags(); err != nil {
		return err
	}
	m := opts.Env.Manager()
	plan, err := m.PlanCreate(cmd.Context(), lvmcache.CreateRequest{LV: name, SizeBytes: size, PVs: opts.CachePVs, Mode: opts.CacheMode, CacheName: opts.Name})
	if err != nil {
		return lvmError(err, name)
	}
	if applied, err := runPlan(cmd.Context(), opts.Env, m, plan, opts.DryRun, opts.Yes); err != nil || !applied {
		return lvmError(err, name)
	}
	fmt.Fprintf(opts.Env.IO.Out, "%s: cached by %s (%s %s on %s)\n", name, plan.Cache.Name,
		lvmcache.FormatBytes(plan.Cache.SizeBytes), plan.Cache.Mode, strings.Join(plan.Cache.PVs, ", "))
	return nil
}

type lvmCacheResizeOptions struct {
	Env      *lvmEnv
	LV       string
	Size     string
	Strategy string
	Resume   bool
	Abandon  bool
	DryRun   bool
	Yes      bool
}

func newCmdLVMCacheResize(env *lvmEnv, runF func(*lvmCacheResizeOptions) error) *cobra.Command {
	opts := &lvmCacheResizeOptions{Env: env}
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
			opts.LV = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runLVMCacheResize(cmd, opts)
		},
	}
	cmd.Flags().StringVar(&opts.Size, "size", "", "new size `SIZE`, or +SIZE to grow by (required unless --resume or --abandon)")
	cli.EnumVar(cmd.Flags(), &opts.Strategy, "strategy", lvmcache.StrategyAuto, []string{lvmcache.StrategyAuto, lvmcache.StrategyOnline, lvmcache.StrategyRecache}, "how to resize: in place (online), by uncaching first (recache), or online where lvm2 can (auto)")
	cmd.Flags().BoolVar(&opts.Resume, "resume", false, "finish the interrupted resize journaled in --state-dir")
	cmd.Flags().BoolVar(&opts.Abandon, "abandon", false, "remove the journal of an interrupted resize, after checking the LV by hand (changes nothing in lvm2)")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print the lvm2 commands instead of running them")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func runLVMCacheResize(cmd *cobra.Command, opts *lvmCacheResizeOptions) error {
	name, err := parseLVArg(opts.LV)
	if err != nil {
		return err
	}
	switch opts.Strategy {
	case lvmcache.StrategyAuto, lvmcache.StrategyOnline, lvmcache.StrategyRecache:
	default:
		return cli.Usagef("--strategy %q: expected auto, online or recache", opts.Strategy)
	}
	var size lvmcache.Size
	switch {
	case opts.Abandon && (opts.Resume || opts.Size != "" || cmd.Flags().Changed("strategy")):
		return cli.Usagef("lvm cache resize %s: --abandon only removes the journal; leave out --resume, --size and --strategy", name)
	case opts.Abandon:
	case opts.Resume && opts.Size != "":
		return cli.Usagef("lvm cache resize %s: --resume takes the size from the journal; leave out --size", name)
	case opts.Resume && cmd.Flags().Changed("strategy"):
		return cli.Usagef("lvm cache resize %s: --resume takes the strategy from the journal; leave out --strategy", name)
	case !opts.Resume && opts.Size == "":
		return cli.Usagef("lvm cache resize %s: --size is required (SIZE or +SIZE)", name)
	case !opts.Resume:
		if size, err = lvmcache.ParseResizeSize(opts.Size); err != nil {
			return cli.UsageError(fmt.Errorf("--size: %w", err))
		}
	}
	if err := opts.Env.checkSharedFlags(); err != nil {
		return err
	}
	ctx := cmd.Context()
	m := opts.Env.Manager()
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
		fmt.Fprintf(opts.Env.IO.ErrOut, "opsctl: %s\n", strings.Join(plan.Notes, "; "))
		return nil
	}
	if applied, err := runPlan(ctx, opts.Env, m, plan, opts.DryRun, opts.Yes); err != nil || !applied {
		return lvmError(err, name)
	}
	fmt.Fprintf(opts.Env.IO.Out, "%s: resized from %s to %s (%s", name, lvmcache.FormatBytes(plan.OriginalSizeBytes),
		lvmcache.FormatBytes(plan.TargetSizeBytes), plan.Strategy)
	for _, step := range plan.Steps {
		if step.Skipped {
			fmt.Fprintf(opts.Env.IO.Out, ", %s already done", step.Kind)
			continue
		}
		earlier := ""
		if step.Earlier {
			earlier = " (before --resume)"
		}
		fmt.Fprintf(opts.Env.IO.Out, ", %s%s %.2fs", step.Kind, earlier, step.Duration().Seconds())
		if step.Kind == lvmcache.StepUncache {
			fmt.Fprintf(opts.Env.IO.Out, " flushing %d dirty blocks", step.DirtyBlocks)
		}
	}
	fmt.Fprintln(opts.Env.IO.Out, ")")
	return nil
}

// abandonJournal removes the journal of name's interrupted resize, after
// showing what it records and what to check.
func abandonJournal(opts *lvmCacheResizeOptions, m *lvmcache.Manager, name lvmcache.Name) error {
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
			fmt.Fprintf(opts.Env.IO.ErrOut, "opsctl: %s\n", note)
		}
		for _, line := range a.Commands() {
			fmt.Fprintln(opts.Env.IO.Out, line)
		}
		return nil
	}
	if err := confirmChange(opts.Env, "resize "+name.String()+" --abandon", notes, a.Commands(), opts.Yes); err != nil {
		return err
	}
	if err := m.Abandon(a); err != nil {
		return lvmError(err, name)
	}
	fmt.Fprintf(opts.Env.IO.Out, "%s: journal %s removed; nothing was changed in lvm2\n", name, a.Path)
	return nil
}

type lvmCacheStatusOptions struct {
	Env    *lvmEnv
	LV     string
	Output *cli.OutputFlag
}

func newCmdLVMCacheStatus(env *lvmEnv, runF func(*lvmCacheStatusOptions) error) *cobra.Command {
	opts := &lvmCacheStatusOptions{Env: env}
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
			if runF != nil {
				return runF(opts)
			}
			return runLVMCacheStatus(cmd, opts)
		},
	}
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
	return cmd
}

func runLVMCacheStatus(cmd *cobra.Command, opts *lvmCacheStatusOptions) error {
	if err := opts.Env.checkSharedFlags(); err != nil {
		return err
	}
	ctx := cmd.Context()
	m := opts.Env.Manager()
	out := opts.Env.IO.Out
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
		writeStatusText(opts.Env.IO, status)
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
		writeStatusText(opts.Env.IO, status)
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

type lvmCacheRemoveOptions struct {
	Env    *lvmEnv
	LV     string
	DryRun bool
	Yes    bool
}

func newCmdLVMCacheRemove(env *lvmEnv, runF func(*lvmCacheRemoveOptions) error) *cobra.Command {
	opts := &lvmCacheRemoveOptions{Env: env}
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
			opts.LV = args[0]
			if runF != nil {
				return runF(opts)
			}
			return runLVMCacheRemove(cmd, opts)
		},
	}
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print the lvm2 command instead of running it")
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

func runLVMCacheRemove(cmd *cobra.Command, opts *lvmCacheRemoveOptions) error {
	name, err := parseLVArg(opts.LV)
	if err != nil {
		return err
	}
	if err := opts.Env.checkSharedFlags(); err != nil {
		return err
	}
	m := opts.Env.Manager()
	plan, err := m.PlanRemove(cmd.Context(), name)
	if err != nil {
		return lvmError(err, name)
	}
	if applied, err := runPlan(cmd.Context(), opts.Env, m, plan, opts.DryRun, opts.Yes); err != nil || !applied {
		return lvmError(err, name)
	}
	step := plan.Steps[0]
	fmt.Fprintf(opts.Env.IO.Out, "%s: cache %s removed (%d dirty blocks flushed, %.2fs)\n", name, plan.Cache.Pool, step.DirtyBlocks, step.Duration().Seconds())
	return nil
}
