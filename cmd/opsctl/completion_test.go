package main

import (
	"bytes"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/testenv"
	"github.com/opsctl/opsctl/pkg/chain"
)

// complete asks opsctl what a shell should offer after args, the way the
// completion scripts of every shell do: `opsctl __complete ARGS... WORD`,
// the last argument being the word being typed. It returns the choices
// (without their descriptions) and cobra's directive.
func complete(t *testing.T, env map[string]string, args ...string) ([]string, cobra.ShellCompDirective) {
	t.Helper()
	var out, errOut bytes.Buffer
	streams := &cli.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut}
	code := run(append([]string{cobra.ShellCompRequestCmd}, args...), streams, func(key string) string { return env[key] })
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	directive, err := strconv.Atoi(strings.TrimPrefix(last, ":"))
	if code != 0 || !strings.HasPrefix(last, ":") || err != nil {
		t.Fatalf("opsctl __complete %s: exit %d, stdout %q, stderr %q", strings.Join(args, " "), code, out.String(), errOut.String())
	}
	var choices []string
	for _, line := range lines[:len(lines)-1] {
		choice, _, _ := strings.Cut(line, "\t")
		choices = append(choices, choice)
	}
	return choices, cobra.ShellCompDirective(directive)
}

// The flags of issue 19 that take one of a few words complete them.
func TestFixedValueFlagsComplete(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"--log-level", ""}, []string{"debug", "info", "warn", "error"}},
		{[]string{"imap-auth", "check", "--tls", ""}, []string{"implicit", "starttls"}},
		{[]string{"imap-auth", "serve", "--tls", "s"}, []string{"starttls"}},
		{[]string{"pygrub", "check", "--xen", ""}, []string{"4.17", "4.1"}},
		{[]string{"lvm", "cache", "create", "--cachemode", ""}, []string{"writeback", "writethrough"}},
		{[]string{"lvm", "cache", "resize", "--strategy", ""}, []string{"auto", "online", "recache"}},
		{[]string{"sock", "capture", "--format", ""}, []string{"pcap", "pcapng"}},
		{[]string{"chain", "scan", "-o", ""}, []string{"text", "json", "svg", "dot", "mermaid"}},
		{[]string{"version", "--output", "j"}, []string{"json"}},
	}
	for _, tc := range cases {
		got, directive := complete(t, nil, tc.args...)
		if !slices.Equal(got, tc.want) || directive&cobra.ShellCompDirectiveNoFileComp == 0 {
			t.Errorf("opsctl %s<TAB>: %q (directive %d), want %q and no file names", strings.Join(tc.args, " "), got, directive, tc.want)
		}
	}
}

// One mechanism: every flag whose value is a fixed set completes exactly
// that set, wherever it is defined.
func TestEveryChoiceFlagCompletesItsChoices(t *testing.T) {
	f := &cli.Factory{IO: &cli.IOStreams{}, Getenv: func(string) string { return "" }, Logger: slog.New(slog.DiscardHandler)}
	var checked int
	var walk func(cmd *cobra.Command, path []string)
	walk = func(cmd *cobra.Command, path []string) {
		cmd.LocalFlags().VisitAll(func(flag *pflag.Flag) {
			chooser, ok := flag.Value.(cli.Chooser)
			if !ok {
				return
			}
			checked++
			got, _ := complete(t, nil, append(path, "--"+flag.Name, "")...)
			if !slices.Equal(got, chooser.Choices()) {
				t.Errorf("opsctl %s --%s <TAB>: %q, want %q", strings.Join(path, " "), flag.Name, got, chooser.Choices())
			}
		})
		for _, sub := range cmd.Commands() {
			if sub.Name() != "help" && !strings.HasPrefix(sub.Name(), "__") {
				walk(sub, append(slices.Clone(path), sub.Name()))
			}
		}
	}
	walk(newRootCmd(f), nil)
	if checked < 15 {
		t.Errorf("only %d flags with a fixed set of values", checked)
	}
}

func TestFolderFlagsCompleteFolders(t *testing.T) {
	for _, args := range [][]string{{"chain", "scan", "--dir", ""}, {"lvm", "cache", "status", "--state-dir", ""}, {"pygrub", "menulst", "--root", ""}} {
		_, directive := complete(t, nil, args...)
		if directive&cobra.ShellCompDirectiveFilterDirs == 0 {
			t.Errorf("opsctl %s<TAB>: directive %d, want folders only", strings.Join(args, " "), directive)
		}
	}
}

func TestChainProjectsCompleteFromDir(t *testing.T) {
	images := filepath.Join(testenv.ModuleRoot(), "examples", "images")
	all := []string{"ops/app", "ops/base", "ops/deploy", "ops/python", "ops/ruby", "tools/linter"}
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"chain", "plan", "--dir", images, ""}, all},
		{[]string{"chain", "plan", "--dir", images, "ops/base", "ops/r"}, []string{"ops/ruby"}},
		{[]string{"chain", "plan", "ops/base", "--dir", images, "ops/"}, []string{"ops/app", "ops/deploy", "ops/python", "ops/ruby"}},
		{[]string{"chain", "trigger", "--dir", images, "t"}, []string{"tools/linter"}},
		{[]string{"chain", "trigger", "--dir", images, "ops/base", ""}, nil},
		{[]string{"chain", "plan", ""}, nil}, // no --dir: GitLab is not asked while typing
	}
	for _, tc := range cases {
		got, directive := complete(t, nil, tc.args...)
		if !slices.Equal(got, tc.want) || directive&cobra.ShellCompDirectiveNoFileComp == 0 {
			t.Errorf("opsctl %s<TAB>: %q (directive %d), want %q", strings.Join(tc.args, " "), got, directive, tc.want)
		}
	}
}

func TestLVMNamesCompleteFromLVM2(t *testing.T) {
	lvm := fakeLVM(t)
	cases := []struct {
		env  map[string]string
		args []string
		want []string
	}{
		// Only cached LVs have a cache to show, resize or remove.
		{nil, []string{"lvm", "--lvm", lvm, "cache", "status", ""}, []string{"storage/slowlv"}},
		{nil, []string{"lvm", "cache", "remove", "--lvm", lvm, "st"}, []string{"storage/slowlv"}},
		{map[string]string{"OPSCTL_LVM": lvm}, []string{"lvm", "cache", "resize", ""}, []string{"storage/slowlv"}},
		// create wants an LV without a cache.
		{map[string]string{"OPSCTL_LVM": lvm}, []string{"lvm", "cache", "create", ""}, []string{"storage/plainlv"}},
		// The cache PVs of create are the PVs of the LV's VG.
		{map[string]string{"OPSCTL_LVM": lvm}, []string{"lvm", "cache", "create", "storage/plainlv", "--cache-pv", ""}, []string{"/dev/loop0", "/dev/loop1"}},
		{map[string]string{"OPSCTL_LVM": lvm}, []string{"lvm", "cache", "create", "--cache-pv", "/dev/loop0", "storage/plainlv", "--cache-pv", ""}, []string{"/dev/loop1"}},
		{nil, []string{"lvm", "cache", "status", "--lvm", filepath.Join(t.TempDir(), "nolvm"), ""}, nil},
	}
	for _, tc := range cases {
		got, directive := complete(t, tc.env, tc.args...)
		if !slices.Equal(got, tc.want) || directive&cobra.ShellCompDirectiveNoFileComp == 0 {
			t.Errorf("opsctl %s<TAB>: %q (directive %d), want %q", strings.Join(tc.args, " "), got, directive, tc.want)
		}
	}
}

// An lvm2 that does not answer (a held VG lock) costs the shell a short
// time-out, not a hung prompt.
func TestLVMCompletionGivesUpOnAHungLVM2(t *testing.T) {
	lvm := filepath.Join(t.TempDir(), "lvm")
	if err := os.WriteFile(lvm, []byte("#!/bin/sh\nexec sleep 600\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	got, directive := complete(t, nil, "lvm", "--lvm", lvm, "cache", "status", "")
	if len(got) != 0 || directive&cobra.ShellCompDirectiveNoFileComp == 0 {
		t.Errorf("hung lvm2: %q (directive %d), want nothing", got, directive)
	}
}

func TestChainRunIDsComplete(t *testing.T) {
	state := filepath.Join(t.TempDir(), "chain.db")
	projects := []*chain.Project{
		{Path: "g/base", Source: chain.SourceDepsFile, Upstreams: []string{}, External: []string{}},
		{Path: "g/app", Source: chain.SourceDepsFile, Upstreams: []string{"g/base"}, External: []string{}},
	}
	planner := &chain.GraphPlanner{Graph: chain.NewGraph(projects, nil), Refs: map[string]chain.ProjectRef{
		"g/base": {Path: "g/base", ID: 1, DefaultBranch: "main"}, "g/app": {Path: "g/app", ID: 2, DefaultBranch: "main"}}}
	engine, err := chain.NewEngine(chain.EngineOptions{StatePath: state, Planner: planner, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range 2 {
		run, err := engine.StartRun([]string{"g/base"}, "", "test", "main")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, run.ID)
	}
	slices.Sort(ids)

	// A receiver holds the state: it is asked over HTTP.
	receiver := httptest.NewServer((&chain.Receiver{Engine: engine}).Handler())
	for _, env := range []map[string]string{nil, {"OPSCTL_CHAIN_SERVER": receiver.URL}} {
		args := []string{"chain", "status", ""}
		if env == nil {
			args = []string{"chain", "status", "--server", receiver.URL, ""}
		}
		got, _ := complete(t, env, args...)
		slices.Sort(got)
		if !slices.Equal(got, ids) {
			t.Errorf("opsctl %s<TAB> (env %v): %q, want the run ids %q", strings.Join(args, " "), env, got, ids)
		}
	}
	receiver.Close()
	if err := engine.Close(); err != nil {
		t.Fatal(err)
	}

	// A state file nobody holds is read, read-only.
	before, _ := os.ReadFile(state)
	got, _ := complete(t, nil, "chain", "status", "--state", state, ids[0][:4])
	slices.Sort(got)
	if !slices.Equal(got, ids) {
		t.Errorf("chain status --state <TAB>: %q, want %q", got, ids)
	}
	if after, _ := os.ReadFile(state); !bytes.Equal(before, after) {
		t.Error("completing run ids changed the state file")
	}
	// Nothing listening: nothing offered.
	if got, _ := complete(t, nil, "chain", "status", "--server", receiver.URL, ""); len(got) != 0 {
		t.Errorf("no receiver: %q", got)
	}
}

// The table of host completions names commands and flags that exist: a
// renamed command would otherwise lose its completion without a word.
func TestHostCompletionsNameExistingCommands(t *testing.T) {
	f := &cli.Factory{IO: &cli.IOStreams{}, Getenv: func(string) string { return "" }, Logger: slog.New(slog.DiscardHandler)}
	root := newRootCmd(f)
	for _, c := range hostCompletions(f) {
		cmd, rest, err := root.Find(c.path)
		if err != nil || len(rest) > 0 || cmd == root {
			t.Errorf("host completion for %q: no such command (%v, %q)", c.path, err, rest)
			continue
		}
		if c.flag != "" && cmd.Flag(c.flag) == nil {
			t.Errorf("host completion for %q --%s: no such flag", c.path, c.flag)
		}
		if c.flag == "" && cmd.ValidArgsFunction == nil {
			t.Errorf("opsctl %s: its arguments do not complete", strings.Join(c.path, " "))
		}
	}
}
