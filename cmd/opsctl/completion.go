package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/chain"
	"github.com/opsctl/opsctl/pkg/lvmcache"
)

// completionTimeout bounds what one press of TAB may cost: lvm2 waiting on
// a VG lock, or a receiver that does not answer, must not hang the prompt.
const completionTimeout = 2 * time.Second

// registerCompletions makes shell completion offer, for every command of
// the tree: the values of each flag with a fixed set (cli.EnumVar, -o),
// folders for a flag whose value is a DIR, nothing for values no file name
// can be (a number, a duration, a URL), and, where it is cheap, what exists
// on this host: LVs and PVs from lvm2, projects under --dir, run ids from a
// state file or a receiver. It is called once the tree is built, so a
// command file only defines its flags.
func registerCompletions(root *cobra.Command, f *cli.Factory) {
	for _, c := range hostCompletions(f) {
		cmd, rest, err := root.Find(c.path)
		if err != nil || len(rest) > 0 || cmd == root {
			continue // TestHostCompletionsNameExistingCommands fails instead
		}
		complete := guardCompletion(c.complete)
		if c.flag == "" {
			if cmd.ValidArgsFunction == nil {
				cmd.ValidArgsFunction = complete
			}
		} else if _, taken := cmd.GetFlagCompletionFunc(c.flag); !taken && cmd.Flag(c.flag) != nil {
			_ = cmd.RegisterFlagCompletionFunc(c.flag, complete)
		}
	}
	// After the host's: a flag completed from the host keeps that.
	registerFlagValueCompletions(root)
}

// notFileNames are value names (the backquoted word of a flag's usage)
// whose values are never file names: the shell offers nothing for them.
var notFileNames = []string{"N", "DURATION", "URL", "ADDR", "HOST", "HOST:PORT", "HOST[:PORT]", "PORT", "SIZE", "NAME",
	"GROUP", "REF", "UID", "MODE", "PV"}

func registerFlagValueCompletions(cmd *cobra.Command) {
	register := func(flag *pflag.Flag) {
		if _, taken := cmd.GetFlagCompletionFunc(flag.Name); taken || flag.NoOptDefVal != "" {
			return
		}
		var complete cobra.CompletionFunc
		if chooser, ok := flag.Value.(cli.Chooser); ok {
			complete = completeChoices(chooser.Choices())
		} else {
			switch name, _ := pflag.UnquoteUsage(flag); {
			case name == "DIR":
				complete = func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
					return nil, cobra.ShellCompDirectiveFilterDirs
				}
			case slices.Contains(notFileNames, name):
				complete = cobra.NoFileCompletions
			}
		}
		if complete != nil {
			_ = cmd.RegisterFlagCompletionFunc(flag.Name, complete)
		}
	}
	// The flags defined on this command; inherited ones are registered
	// where they are defined (cobra finds them by pointer).
	cmd.Flags().VisitAll(register)
	cmd.PersistentFlags().VisitAll(register)
	for _, sub := range cmd.Commands() {
		registerFlagValueCompletions(sub)
	}
}

// completeChoices offers the choices that start with what is typed.
func completeChoices(choices []string) cobra.CompletionFunc {
	return func(_ *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		var matching []cobra.Completion
		for _, choice := range choices {
			if strings.HasPrefix(choice, toComplete) {
				matching = append(matching, choice)
			}
		}
		return matching, cobra.ShellCompDirectiveNoFileComp
	}
}

// hostCompletion completes an argument (flag "") or a flag of the command
// at path from what exists on this host.
type hostCompletion struct {
	path     []string
	flag     string
	complete cobra.CompletionFunc
}

func hostCompletions(f *cli.Factory) []hostCompletion {
	return []hostCompletion{
		{path: []string{"lvm", "cache", "create"}, complete: completeLVs(f, false)},
		{path: []string{"lvm", "cache", "create"}, flag: "cache-pv", complete: completeCachePVs(f)},
		{path: []string{"lvm", "cache", "resize"}, complete: completeLVs(f, true)},
		{path: []string{"lvm", "cache", "flush"}, complete: completeLVs(f, true)},
		{path: []string{"lvm", "cache", "status"}, complete: completeLVs(f, true)},
		{path: []string{"lvm", "cache", "remove"}, complete: completeLVs(f, true)},
		{path: []string{"chain", "plan"}, complete: completeDirProjects(-1)},
		{path: []string{"chain", "trigger"}, complete: completeDirProjects(1)},
		{path: []string{"chain", "status"}, complete: completeRunIDs(f)},
	}
}

// guardCompletion makes a completion that fails offer nothing rather than
// a Go panic in the middle of the user's command line (a state file bbolt
// cannot read, for one).
func guardCompletion(complete cobra.CompletionFunc) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) (choices []cobra.Completion, directive cobra.ShellCompDirective) {
		defer func() {
			if recover() != nil {
				choices, directive = nil, cobra.ShellCompDirectiveNoFileComp
			}
		}()
		return complete(cmd, args, toComplete)
	}
}

func flagValue(cmd *cobra.Command, name string) string {
	if flag := cmd.Flag(name); flag != nil {
		return flag.Value.String()
	}
	return ""
}

// lvmRunner runs the lvm2 the command would run: --lvm, else $OPSCTL_LVM,
// else lvm on PATH.
func lvmRunner(cmd *cobra.Command, f *cli.Factory) *lvmcache.Runner {
	path := flagValue(cmd, "lvm")
	if path == "" && f.Getenv != nil {
		path = f.Getenv("OPSCTL_LVM")
	}
	return &lvmcache.Runner{Path: path}
}

// completeLVs offers VG/LV names: LVs with a cache (cached), or without
// one for create. Hidden LVs (a cache pool's parts) are never offered.
func completeLVs(f *cli.Factory, cached bool) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
		defer cancel()
		report, err := lvmRunner(cmd, f).Report(ctx, "lvs", "-o", "vg_name,lv_name,segtype")
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var choices []cobra.Completion
		for _, row := range report["lv"] {
			name := row["vg_name"] + "/" + row["lv_name"]
			isCached := row["segtype"] == "cache" || row["segtype"] == "writecache"
			if strings.HasPrefix(row["lv_name"], "[") || isCached != cached || !strings.HasPrefix(name, toComplete) {
				continue
			}
			if !cached && strings.HasSuffix(row["segtype"], "-pool") {
				continue // a cache or thin pool is not an LV to cache
			}
			choices = append(choices, cobra.CompletionWithDesc(name, row["segtype"]))
		}
		return choices, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeCachePVs offers the PVs of the VG named by the VG/LV argument
// (every PV before it is typed) that are not given yet.
func completeCachePVs(f *cli.Factory) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		vg := ""
		if len(args) > 0 {
			vg, _, _ = strings.Cut(args[0], "/")
		}
		given, _ := cmd.Flags().GetStringArray("cache-pv")
		ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
		defer cancel()
		report, err := lvmRunner(cmd, f).Report(ctx, "pvs", "-o", "pv_name,vg_name")
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var choices []cobra.Completion
		for _, row := range report["pv"] {
			pv := row["pv_name"]
			if (vg != "" && row["vg_name"] != vg) || slices.Contains(given, pv) || !strings.HasPrefix(pv, toComplete) {
				continue
			}
			choices = append(choices, cobra.CompletionWithDesc(pv, row["vg_name"]))
		}
		return choices, cobra.ShellCompDirectiveNoFileComp
	}
}

// completeDirProjects offers the projects under --dir not given yet, for
// at most maxArgs arguments (-1: any number). Without --dir it offers
// nothing: asking GitLab is not cheap enough for a key press.
func completeDirProjects(maxArgs int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		dir := flagValue(cmd, "dir")
		if dir == "" || (maxArgs >= 0 && len(args) >= maxArgs) {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
		defer cancel()
		refs, err := (&chain.DirSource{Root: dir}).ListProjects(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var choices []cobra.Completion
		for _, ref := range refs {
			if !slices.Contains(args, ref.Path) && strings.HasPrefix(ref.Path, toComplete) {
				choices = append(choices, ref.Path)
			}
		}
		slices.Sort(choices)
		return choices, cobra.ShellCompDirectiveNoFileComp
	}
}

// completionRuns is how many of the newest runs are offered.
const completionRuns = 50

// completeRunIDs offers the ids of the newest runs: read-only from
// --state, else from the receiver chain status would ask.
func completeRunIDs(f *cli.Factory) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(context.Background(), completionTimeout)
		defer cancel()
		var runs []*chain.Run
		if state := flagValue(cmd, "state"); state != "" {
			engine, err := chain.OpenReadOnly(state)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			defer engine.Close()
			if runs, err = engine.Runs(completionRuns); err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
		} else {
			getenv := f.Getenv
			if getenv == nil {
				getenv = func(string) string { return "" }
			}
			client, err := receiverClient(flagValue(cmd, "server"), getenv)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			if runs, err = client.Runs(ctx, completionRuns); err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
		}
		var choices []cobra.Completion
		for _, run := range runs {
			if run != nil && strings.HasPrefix(run.ID, toComplete) {
				choices = append(choices, cobra.CompletionWithDesc(run.ID, string(run.Status)+" "+strings.Join(run.Roots, " ")))
			}
		}
		return choices, cobra.ShellCompDirectiveNoFileComp
	}
}
