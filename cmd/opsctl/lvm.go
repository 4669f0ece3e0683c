package main

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/pkg/lvmcache"
)

// newCmdLVM is the lvm group and its cache subgroup: lvm_cache_create.go,
// lvm_cache_resize.go, lvm_cache_flush.go, lvm_cache_status.go and
// lvm_cache_remove.go hold the verbs. The flags every verb shares are persistent flags of the group
// (`opsctl lvm --lvm PATH cache status`); a verb reads them with
// lvmFlagsOf.
func newCmdLVM(f *cli.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lvm",
		Short: "Create, resize, flush and remove an LVM writeback cache",
		Long: `Manage LVM caches through lvm2: a fast PV (SSD, NVMe) in front of an LV on slow disks.

lvm2 is run as "lvm" from PATH unless --lvm or OPSCTL_LVM names another binary.
Every change is planned and checked first; --dry-run prints the lvm2 commands.`,
		Example: `  opsctl lvm cache create storage/slowlv --size 100G --cache-pv /dev/md3 -y
  opsctl lvm cache status -o json
  opsctl --log-level debug lvm --lvm /usr/sbin/lvm cache resize storage/slowlv --size +200G --dry-run`,
	}
	persistent := cmd.PersistentFlags()
	persistent.String("lvm", "", "`PATH` of the lvm2 executable (default: $OPSCTL_LVM, else lvm on PATH)")
	persistent.String("dmsetup", "", "`PATH` of device-mapper's dmsetup, for flush and -o prometheus (default: $OPSCTL_DMSETUP, else dmsetup on PATH)")
	persistent.String("state-dir", lvmcache.DefaultStateDir,
		"`DIR` of the journals (resize, flush) and locks: it must exist, owned by root and writable by root alone (the default is made when missing)")
	persistent.Duration("report-timeout", lvmcache.DefaultReportTimeout,
		"time limit (`DURATION`) of each lvm2 report (lvs, vgs, pvs, version); one that does not answer is killed, exit 75")

	cache := &cobra.Command{
		Use:   "cache",
		Short: "Create, resize, flush, inspect and remove the cache of an LV",
		Example: `  opsctl lvm cache create storage/slowlv --size 100G --cache-pv /dev/md3 -y
  opsctl lvm cache resize storage/slowlv --size +200G -y
  opsctl lvm cache flush storage/slowlv --until 06:00
  opsctl lvm cache status storage/slowlv
  opsctl lvm cache status -o prometheus --textfile /var/lib/prometheus/node-exporter
  opsctl lvm cache remove storage/slowlv -y`,
	}
	cache.AddCommand(
		NewCmdLVMCacheCreate(f, nil),
		NewCmdLVMCacheResize(f, nil),
		NewCmdLVMCacheFlush(f, nil),
		NewCmdLVMCacheStatus(f, nil),
		NewCmdLVMCacheRemove(f, nil),
	)
	cmd.AddCommand(cache)
	return cmd
}

// lvmFlags are the values of the lvm group's persistent flags.
type lvmFlags struct {
	// LVMPath is --lvm, DmsetupPath --dmsetup, "" when not given.
	LVMPath     string
	DmsetupPath string
	// StateDir is --state-dir when given on the command line, else "": the
	// Manager then uses its default, which it makes when missing.
	StateDir      string
	ReportTimeout time.Duration
}

// lvmFlagsOf reads the group's flags as cobra parsed them for cmd, a verb.
// A verb built alone (a test of its flags) gets the defaults.
func lvmFlagsOf(cmd *cobra.Command) lvmFlags {
	fl := lvmFlags{ReportTimeout: lvmcache.DefaultReportTimeout}
	flags := cmd.Flags()
	if flag := flags.Lookup("lvm"); flag != nil {
		fl.LVMPath = flag.Value.String()
	}
	if flag := flags.Lookup("dmsetup"); flag != nil {
		fl.DmsetupPath = flag.Value.String()
	}
	if flag := flags.Lookup("state-dir"); flag != nil && flag.Changed {
		fl.StateDir = flag.Value.String()
	}
	if timeout, err := flags.GetDuration("report-timeout"); err == nil {
		fl.ReportTimeout = timeout
	}
	return fl
}

// check checks the values of the shared flags: --report-timeout, and an
// --lvm, --dmsetup or --state-dir given on the command line.
func (fl lvmFlags) check() error {
	if fl.ReportTimeout <= 0 {
		return cli.Usagef("--report-timeout %s: expected a positive duration like 60s or 5m", fl.ReportTimeout)
	}
	if err := checkExecutableFlag("--lvm", "lvm2", fl.LVMPath); err != nil {
		return err
	}
	if err := checkExecutableFlag("--dmsetup", "dmsetup", fl.DmsetupPath); err != nil {
		return err
	}
	if fl.StateDir == "" {
		return nil
	}
	return checkStateDirFlag(fl.StateDir)
}

// manager builds the lvmcache.Manager of the flags.
func (fl lvmFlags) manager(f *cli.Factory) *lvmcache.Manager {
	path, dmsetup := fl.LVMPath, fl.DmsetupPath
	if path == "" && f.Getenv != nil {
		path = f.Getenv("OPSCTL_LVM")
	}
	if dmsetup == "" && f.Getenv != nil {
		dmsetup = f.Getenv("OPSCTL_DMSETUP")
	}
	return &lvmcache.Manager{
		Runner:   &lvmcache.Runner{Path: path, Dmsetup: dmsetup, Logger: f.Logger, ReportTimeout: fl.ReportTimeout},
		StateDir: fl.StateDir,
		Logger:   f.Logger,
		NewProgress: func(label string, total int64) lvmcache.Progress {
			// Flushes take long: the rate and the time left are shown.
			p := cli.NewProgress(f.IO, label, total)
			p.ShowRate = true
			return p
		},
	}
}

// checkExecutableFlag makes an --lvm (or --dmsetup) that is not there, or
// not an executable file, a usage error (exit 2). lvm on PATH or
// $OPSCTL_LVM missing is the runner's NotFoundError (exit 1): not named on
// the command line.
func checkExecutableFlag(flag, tool, path string) error {
	if path == "" {
		return nil
	}
	info, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return cli.Usagef("%s: %s executable %q not found", flag, tool, path)
	case err != nil:
		return fmt.Errorf("%s %s: %w", flag, path, err)
	case !info.Mode().IsRegular() || info.Mode().Perm()&0o111 == 0:
		return cli.Usagef("%s %s: not an executable file; expected the %s executable", flag, path, tool)
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
		names["Manager.ResumeFlush("+lv+")"] = "opsctl lvm cache flush " + lv + " --resume"
		names["lvm cache flush "+lv+" (Manager.ResumeFlush)"] = "lvm cache flush " + lv + " --resume"
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

// lvmChange are the flags of a verb that changes an LV.
type lvmChange struct {
	DryRun bool
	Yes    bool
}

func (c *lvmChange) register(cmd *cobra.Command, dryRun string) {
	cmd.Flags().BoolVar(&c.DryRun, "dry-run", false, dryRun)
	cmd.Flags().BoolVarP(&c.Yes, "yes", "y", false, "do not ask for confirmation")
}

// printPlan writes the plan's lvm2 commands, one per line, to stdout.
func printPlan(io *cli.IOStreams, plan *lvmcache.Plan) {
	for _, line := range plan.Commands() {
		fmt.Fprintln(io.Out, line)
	}
}

// stdinIsTerminal tells whether a confirmation can be asked on io.
func stdinIsTerminal(io *cli.IOStreams) bool {
	file, ok := io.In.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// confirm asks before a change. With -y it does not ask; without a
// terminal to ask on it refuses, so a script never hangs or guesses.
func confirm(io *cli.IOStreams, terminal bool, plan *lvmcache.Plan, yes bool) error {
	return confirmChange(io, terminal, plan.Op+" "+plan.LV, plan.Notes, plan.Commands(), yes)
}

// confirmChange asks whether "opsctl lvm cache WHAT" may do what notes say
// with commands; terminal tells whether io.In is one to ask on.
func confirmChange(io *cli.IOStreams, terminal bool, what string, notes, commands []string, yes bool) error {
	if yes {
		return nil
	}
	if !terminal {
		return cli.Usagef("lvm cache %s: refusing to change it without confirmation: stdin is not a terminal; pass -y (or --dry-run to see the commands)", what)
	}
	w := io.ErrOut
	fmt.Fprintf(w, "opsctl lvm cache %s will:\n", what)
	for _, note := range notes {
		fmt.Fprintf(w, "  - %s\n", note)
	}
	for _, line := range commands {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprint(w, "Proceed? [y/N] ")
	answer, _ := bufio.NewReader(io.In).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("lvm cache %s: not confirmed, nothing changed", what)
}

// runPlan prints plan for --dry-run; otherwise it asks for confirmation
// (unless -y) and applies it. applied reports whether it ran.
//
// Signals are caught only for Apply: until then nothing has changed, and
// Ctrl-C (at the confirmation prompt, say) ends opsctl at once. The first
// SIGINT or SIGTERM lets a running lvm2 command finish (it runs in its own
// process group) and stops the plan before its next step. The next one has
// its default effect again (SignalContext without an again channel): an
// admin who does not want to wait for a flush of hours ends opsctl with a
// second Ctrl-C, lvm2 going on and the journal kept for --resume.
func runPlan(f *cli.Factory, m *lvmcache.Manager, plan *lvmcache.Plan, change lvmChange) (applied bool, err error) {
	if change.DryRun {
		printPlan(f.IO, plan)
		return false, nil
	}
	if err := confirm(f.IO, stdinIsTerminal(f.IO), plan, change.Yes); err != nil {
		return false, err
	}
	ctx, stop := f.SignalContext(nil)
	defer stop()
	return true, m.Apply(ctx, plan)
}
