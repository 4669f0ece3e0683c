package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/lvmcache"
)

// lvmFlags are the flags every lvm command shares.
type lvmFlags struct {
	lvmPath  string
	stateDir string
}

// lvmEnv is what an lvm command needs from the process.
type lvmEnv struct {
	IO *cli.IOStreams
	// Manager builds the lvmcache.Manager from the shared flags.
	Manager func() *lvmcache.Manager
	// StdinIsTerminal tells whether a confirmation can be asked.
	StdinIsTerminal func() bool
}

func newCmdLVM(f *cli.Factory) *cobra.Command {
	flags := &lvmFlags{}
	env := &lvmEnv{
		IO: f.IO,
		Manager: func() *lvmcache.Manager {
			path := flags.lvmPath
			if path == "" && f.Getenv != nil {
				path = f.Getenv("OPSCTL_LVM")
			}
			return &lvmcache.Manager{
				Runner:   &lvmcache.Runner{Path: path, Logger: f.Logger},
				StateDir: flags.stateDir,
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
	cmd.PersistentFlags().StringVar(&flags.lvmPath, "lvm", "", "lvm2 executable (default: lvm on PATH, or $OPSCTL_LVM)")
	cmd.PersistentFlags().StringVar(&flags.stateDir, "state-dir", lvmcache.DefaultStateDir, "directory of the resize journals and locks")

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
	if yes {
		return nil
	}
	if !env.StdinIsTerminal() {
		return cli.Usagef("lvm cache %s %s: refusing to change it without confirmation: stdin is not a terminal; pass -y (or --dry-run to see the commands)", plan.Op, plan.LV)
	}
	w := env.IO.ErrOut
	fmt.Fprintf(w, "opsctl lvm cache %s %s will:\n", plan.Op, plan.LV)
	for _, note := range plan.Notes {
		fmt.Fprintf(w, "  - %s\n", note)
	}
	for _, line := range plan.Commands() {
		fmt.Fprintf(w, "  %s\n", line)
	}
	fmt.Fprint(w, "Proceed? [y/N] ")
	answer, _ := bufio.NewReader(env.IO.In).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return fmt.Errorf("lvm cache %s %s: not confirmed, nothing changed", plan.Op, plan.LV)
}

// changeContext ends on SIGINT or SIGTERM: a running lvm2 command is left
// to finish, and the plan stops before its next step. It is taken only
// for Apply: until then nothing has changed, and Ctrl-C (at the
// confirmation prompt, say) ends opsctl at once.
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

func changeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}
