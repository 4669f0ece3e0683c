package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/pkg/chain"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// newCmdChain is the chain group: the dependency graph of container images
// kept in GitLab projects (scan, plan), the webhooks that report their
// pipelines (hooks sync), the receiver and trigger engine that rebuilds
// them in order (serve, trigger, status) and the watch of their external
// base images (watch).
func newCmdChain(f *cli.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "chain",
		Short: "Rebuild container images in dependency order through GitLab CI",
		Long: `Find which projects build their images on which (base -> ruby -> app), from
.gitlab-deps files or the FROM lines of Containerfiles, and rebuild them in
dependency order.

A project's upstreams come from .gitlab-deps at the root of its default branch
when there is one, else from every FROM of its Containerfile, else Dockerfile.
See docs/chain.md.

Every chain command reads projects from a GitLab group; scan and plan also
read them from local folders (a checkout of the projects):
  --gitlab-url URL --group GROUP     a GitLab group and its subgroups
                                     (token: --token-file FILE or GITLAB_TOKEN)
  --dir DIR                          local folders, one project per folder
                                     (scan and plan only)`,
		Example: `  opsctl chain plan --dir ~/src/images
  opsctl chain scan --dir ~/src/images -o dot | dot -Tsvg > chain.svg
  GITLAB_TOKEN=... opsctl chain scan --gitlab-url https://gitlab.example.com --group images -o json`,
	}
	cmd.AddCommand(
		newCmdChainScan(f, nil),
		newCmdChainPlan(f, nil),
		newCmdChainHooks(f),
		newCmdChainServe(f),
		newCmdChainTrigger(f),
		newCmdChainStatus(f),
		newCmdChainWatch(f),
	)
	return cmd
}

// chainSourceOptions are the flags that choose where projects come from.
type chainSourceOptions struct {
	Dir         string
	GitLabURL   string
	Group       string
	TokenFile   string
	Registries  []string
	Concurrency int
	// APITimeout bounds one GitLab API request (0: the client's default).
	APITimeout time.Duration
}

// addChainSourceFlags adds the source flags. Commands that act on GitLab
// (gitlabOnly) keep --dir out of their help: they refuse it, with a line
// saying why.
func addChainSourceFlags(fs *pflag.FlagSet, o *chainSourceOptions, gitlabOnly bool) {
	fs.StringVar(&o.Dir, "dir", "", "local mode: every folder under `DIR` with a Containerfile, Dockerfile or .gitlab-deps is a project")
	if gitlabOnly {
		fs.MarkHidden("dir")
	}
	fs.StringVar(&o.GitLabURL, "gitlab-url", "", "GitLab's `URL`, e.g. https://gitlab.example.com")
	fs.StringVar(&o.Group, "group", "", "the GitLab `GROUP` (full path) whose projects, subgroups included, are read")
	fs.StringVar(&o.TokenFile, "token-file", "", "`FILE` holding the GitLab token (default: $GITLAB_TOKEN)")
	registryDefault := "default with --gitlab-url: the GitLab host, registry.HOST and HOST:5050; with --dir: every host but docker.io"
	if gitlabOnly {
		registryDefault = "default: the GitLab host, registry.HOST and HOST:5050"
	}
	fs.StringArrayVar(&o.Registries, "registry", nil, "registry `HOST[:PORT]` whose images are built by the projects (repeatable; "+registryDefault+")")
	fs.IntVar(&o.Concurrency, "concurrency", 8, "read at most `N` projects from GitLab at the same time")
}

// chainSource is a validated source with its registries.
type chainSource struct {
	source     chain.Source
	registries *chain.Registries
	gitlab     *chain.GitLab // nil in --dir mode
	dir        *chain.DirSource
}

func (o *chainSourceOptions) build(f *cli.Factory, needGitLab bool) (*chainSource, error) {
	if o.Concurrency < 1 || o.Concurrency > 256 {
		return nil, cli.Usagef("--concurrency %d: expected a number from 1 to 256", o.Concurrency)
	}
	for _, r := range o.Registries {
		if r == "" || strings.ContainsAny(r, "/ \t@") {
			return nil, cli.Usagef("--registry %q: expected a registry host, e.g. registry.example.com or gitlab.example.com:5050", r)
		}
	}
	switch {
	case o.Dir != "" && (o.GitLabURL != "" || o.Group != "" || o.TokenFile != ""):
		return nil, cli.Usagef("--dir cannot be combined with --gitlab-url, --group or --token-file")
	case o.Dir != "" && needGitLab:
		return nil, cli.Usagef("--dir: this command works on GitLab; expected --gitlab-url URL --group GROUP")
	case o.Dir != "":
		if err := wantFolder("--dir", o.Dir); err != nil {
			return nil, err
		}
		dir := &chain.DirSource{Root: o.Dir}
		registries := chain.AnyRegistry()
		if len(o.Registries) > 0 {
			registries = chain.NewRegistries(o.Registries...)
		}
		return &chainSource{source: dir, registries: registries, dir: dir}, nil
	case o.GitLabURL == "":
		return nil, cli.Usagef("no source: expected --dir DIR, or --gitlab-url URL --group GROUP")
	case o.Group == "":
		return nil, cli.Usagef("--gitlab-url needs --group GROUP")
	}
	u, err := url.Parse(o.GitLabURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return nil, cli.Usagef("--gitlab-url %q: expected an http(s) URL without credentials, like https://gitlab.example.com", redactURL(o.GitLabURL))
	}
	group := strings.Trim(o.Group, "/")
	if err := chain.ValidateProjectPath(group); err != nil {
		return nil, cli.Usagef("--group: %v", err)
	}
	token := ""
	if o.TokenFile != "" {
		if token, err = readSecret("--token-file", o.TokenFile); err != nil {
			return nil, err
		}
	} else if token = f.Getenv("GITLAB_TOKEN"); token == "" {
		return nil, cli.Usagef("no GitLab token: expected --token-file FILE or the GITLAB_TOKEN environment variable")
	}
	api, err := chain.NewGitLab(chain.GitLabConfig{URL: o.GitLabURL, Token: token, Logger: chainLogger(f.Logger), Timeout: o.APITimeout})
	if err != nil {
		return nil, cli.UsageError(chainRename(err))
	}
	registries := o.Registries
	if len(registries) == 0 {
		registries = defaultRegistries(u)
	}
	return &chainSource{
		source:     &chain.GitLabSource{API: api, Group: group},
		registries: chain.NewRegistries(registries...),
		gitlab:     api,
	}, nil
}

// defaultRegistries are where a GitLab's container registry usually lives:
// on GitLab's own host (GitLab's default port for that is 5050), or on
// registry.HOST.
func defaultRegistries(u *url.URL) []string {
	hosts := []string{u.Host, "registry." + u.Hostname(), u.Hostname() + ":5050"}
	if u.Host != u.Hostname() {
		hosts = append(hosts, u.Hostname())
	}
	return hosts
}

// scan reads the graph, showing progress on stderr for GitLab.
func (s *chainSource) scan(ctx context.Context, f *cli.Factory, concurrency int) (*chain.Graph, error) {
	scanner := &chain.Scanner{Source: s.source, Registries: s.registries, Concurrency: concurrency}
	if s.gitlab != nil && f.IO.ErrIsTerminal {
		// A bar on a terminal only: in logs, a line per project is noise.
		progress := cli.NewProgress(f.IO, "scan", 0)
		scanner.Progress = func(done, total int) {
			progress.SetTotal(int64(total))
			progress.Update(int64(done))
		}
		defer fmt.Fprintln(f.IO.ErrOut)
	}
	g, err := scanner.Scan(ctx)
	if err != nil {
		return nil, err
	}
	if s.dir != nil && len(s.dir.Warnings) > 0 {
		warnings := make([]string, 0, len(s.dir.Warnings)+len(g.Warnings))
		for _, w := range s.dir.Warnings {
			warnings = append(warnings, chainText(w))
		}
		g.Warnings = append(warnings, g.Warnings...)
	}
	return g, nil
}

// signalContext is cancelled by SIGINT and SIGTERM. From the first one on
// the signals are no longer caught: while a command finishes what is under
// way (a pipeline creation gets a grace, see chain.Engine), a second one
// ends opsctl at once.
func signalContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	context.AfterFunc(ctx, stop)
	return ctx, stop
}

// chainFlagNames are the flags (and variables) that fill in pkg/chain's
// inputs: its errors, warnings and log lines name the inputs ("check
// GitLabConfig.URL"), the user reads what they typed ("check --gitlab-url").
var chainFlagNames = map[string]string{
	"GitLabConfig.URL":        "--gitlab-url",
	"GitLabConfig.Token":      "--token-file or GITLAB_TOKEN",
	"DirSource.Root":          "--dir",
	"Client.URL":              "--server or OPSCTL_CHAIN_SERVER",
	"HookSettings.Token":      "--webhook-secret-file",
	"Server.InsecureNoSecret": "--insecure-no-webhook-secret",
	"RegistryDigests.Auth":    "--registry-auth-file",
}

// chainRename shows the flags in an error of pkg/chain.
func chainRename(err error) error { return inputerr.Rename(err, chainFlagNames) }

// chainText shows the flags in a text of pkg/chain (a warning, a dry run).
func chainText(s string) string { return inputerr.RenameText(s, chainFlagNames) }

// chainLogger is log for pkg/chain: its lines show the flags too.
func chainLogger(log *slog.Logger) *slog.Logger {
	return slog.New(inputerr.RenameHandler(log.Handler(), chainFlagNames))
}

// chainError turns errors of pkg/chain into exit codes: an unknown root
// is a usage error; the rest keep their own (temporary: 75, else 1). A
// corrupt state file gets what to do about it.
func chainError(cmd string, err error) error {
	var unknown *chain.UnknownProjectError
	if errors.As(err, &unknown) {
		return chainRename(cli.Usagef("%s: %v", cmd, err))
	}
	var corrupt *chain.StateCorruptError
	if errors.As(err, &corrupt) {
		return chainRename(fmt.Errorf("%s: %v; move it aside (mv %s %s.corrupt) and %s", cmd, corrupt, corrupt.Path, corrupt.Path, afterCorruptState(cmd)))
	}
	var exitErr *cli.ExitError
	if errors.As(err, &exitErr) {
		return chainRename(err)
	}
	return chainRename(fmt.Errorf("%s: %w", cmd, err))
}

// afterCorruptState says what starting again on a new state file gives,
// for the command that found its state corrupt (docs/chain.md, "A corrupt
// state file", says it at length).
func afterCorruptState(cmd string) string {
	switch cmd {
	case "chain serve":
		return "restart: its runs are forgotten, but a pipeline of theirs that succeeds later starts a run below its project"
	case "chain trigger":
		return "run it again: it starts a new run"
	case "chain watch":
		return "run it again: it records the digests it sees (a change until then triggers nothing)"
	}
	return "let the command that writes it start a new one"
}

// packagedStateDir is the state folder of the Debian package's unit
// (StateDirectory=opsctl) and of the default --state files.
const packagedStateDir = "/var/lib/opsctl"

// checkStatePath applies the common rule to a state file that opsctl opens
// for writing: its folder must exist and the file, when there, must be a
// regular file (a usage error otherwise). The one exception is the
// packaged folder, which systemd creates for the unit and opsctl creates
// (create set) when it runs from a shell or a timer. exists says whether
// the file is there with some content.
func checkStatePath(flag, path string, create bool) (exists bool, err error) {
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist) && dir == packagedStateDir && create:
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return false, fmt.Errorf("%s %s: %w", flag, path, err)
		}
		return false, nil
	case errors.Is(err, fs.ErrNotExist) && dir == packagedStateDir:
		return false, nil // a dry run: the real one creates it
	case errors.Is(err, fs.ErrNotExist):
		return false, cli.Usagef("%s %s: folder %s does not exist; create it first", flag, path, dir)
	case err != nil:
		return false, fmt.Errorf("%s %s: %w", flag, path, err)
	case !fi.IsDir():
		return false, cli.Usagef("%s %s: %s is not a folder", flag, path, dir)
	}
	fi, err = os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("%s %s: %w", flag, path, err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return false, cli.Usagef("%s %s: a symbolic link; expected a regular file (opsctl does not write through links)", flag, path)
	case !fi.Mode().IsRegular():
		return false, cli.Usagef("%s %s: %s; expected a regular file", flag, path, fileKind(fi.Mode()))
	}
	return fi.Size() > 0, nil
}

// wantRegularFile applies the common rule to a file opsctl reads: one that
// does not exist or is not a regular file (a folder, a FIFO that would
// block the read) is a usage error naming flag; other errors of reaching
// it are failures.
func wantRegularFile(flag, path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return cli.Usagef("%s %s: no such file", flag, path)
	case err != nil:
		return fmt.Errorf("%s: %w", flag, err)
	case !fi.Mode().IsRegular():
		return cli.Usagef("%s %s: %s; expected a regular file", flag, path, fileKind(fi.Mode()))
	}
	return nil
}

// wantFolder applies the common rule to a folder opsctl reads.
func wantFolder(flag, path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return cli.Usagef("%s %s: no such folder", flag, path)
	case err != nil:
		return fmt.Errorf("%s: %w", flag, err)
	case !fi.IsDir():
		return cli.Usagef("%s %s: %s; expected a folder", flag, path, fileKind(fi.Mode()))
	}
	return nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a folder"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsRegular():
		return "a file"
	}
	return "a special file"
}

// readSecret reads the secret file of flag under the common rule: missing
// or not a regular file, exit 2; unreadable or empty, exit 1.
func readSecret(flag, path string) (string, error) {
	if err := wantRegularFile(flag, path); err != nil {
		return "", err
	}
	secret, err := cli.ReadSecretFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	return secret, nil
}

// ChainScanOptions are the inputs of chain scan.
type ChainScanOptions struct {
	Factory *cli.Factory
	Source  chainSourceOptions
	Output  *cli.OutputFlag
}

func newCmdChainScan(f *cli.Factory, runF func(*ChainScanOptions) error) *cobra.Command {
	opts := &ChainScanOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "Print the dependency graph of the projects",
		Long: `Read every project of the source and print the dependency graph: for each
project its upstream projects, where they were found (.gitlab-deps,
Containerfile, Dockerfile or none) and the external images it builds on.

With a dependency cycle the graph is still printed, the cycles named, and the
exit code is 1. Warnings (an ARG without default in FROM, an upstream that is
not a project) go to stderr, or into the JSON.`,
		Example: `  opsctl chain scan --dir ~/src/images
  opsctl chain scan --dir ~/src/images -o dot | dot -Tsvg > chain.svg
  opsctl chain scan --dir ~/src/images -o mermaid
  opsctl chain scan --gitlab-url https://gitlab.example.com --group images \
      --token-file ~/.config/opsctl/gitlab-token -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runChainScan(opts)
		},
	}
	addChainSourceFlags(cmd.Flags(), &opts.Source, false)
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json", "dot", "mermaid")
	return cmd
}

func runChainScan(opts *ChainScanOptions) error {
	f := opts.Factory
	g, err := opts.Source.scanGraph(f, "chain scan")
	if err != nil {
		return err
	}
	out := f.IO.Out
	switch opts.Output.Value {
	case "json":
		err = cli.WriteJSON(out, g)
	case "dot":
		err = g.WriteDot(out)
	case "mermaid":
		err = g.WriteMermaid(out)
	default:
		err = g.WriteText(out)
	}
	if err != nil {
		return fmt.Errorf("chain scan: write output: %w", err)
	}
	if !opts.Output.JSON() {
		writeWarnings(f.IO.ErrOut, g.Warnings)
	}
	if len(g.Cycles) > 0 {
		if opts.Output.JSON() || opts.Output.Value == "text" {
			return cli.Silent(cli.ExitFailure) // the cycles are in the output
		}
		return fmt.Errorf("chain scan: %d dependency cycle(s), first: %s", len(g.Cycles), chain.FormatCycle(g.Cycles[0]))
	}
	return nil
}

func writeWarnings(w io.Writer, warnings []string) {
	for _, warning := range warnings {
		fmt.Fprintln(w, "warning: "+warning)
	}
}

// ChainPlanOptions are the inputs of chain plan.
type ChainPlanOptions struct {
	Factory *cli.Factory
	Source  chainSourceOptions
	Output  *cli.OutputFlag
	Roots   []string
}

func newCmdChainPlan(f *cli.Factory, runF func(*ChainPlanOptions) error) *cobra.Command {
	opts := &ChainPlanOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "plan [ROOT...]",
		Short: "Print the rebuild order of everything downstream of the roots",
		Long: `Print, in waves, every project downstream of the ROOT projects (the roots
included; without ROOT, all projects without upstreams). Every project appears
once, in a wave after all its upstreams that are in the plan: the projects of
one wave can build at the same time.

A dependency cycle among the projects to build is an error (exit 1) that
names the cycle. -o dot and -o mermaid draw the graph of the projects of the
plan (without ROOT, the graph of 'chain scan').`,
		Example: `  opsctl chain plan --dir ~/src/images
  opsctl chain plan --dir ~/src/images ops/ruby -o json
  opsctl chain plan --dir ~/src/images ops/ruby -o dot | dot -Tsvg > plan.svg
  opsctl chain plan --gitlab-url https://gitlab.example.com --group images images/base`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Roots = args
			if runF != nil {
				return runF(opts)
			}
			return runChainPlan(opts)
		},
	}
	addChainSourceFlags(cmd.Flags(), &opts.Source, false)
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json", "dot", "mermaid")
	return cmd
}

func runChainPlan(opts *ChainPlanOptions) error {
	f := opts.Factory
	for _, root := range opts.Roots {
		if err := chain.ValidateProjectPath(root); err != nil {
			return cli.Usagef("chain plan: ROOT %v", err)
		}
	}
	g, err := opts.Source.scanGraph(f, "chain plan")
	if err != nil {
		return err
	}
	writeWarnings(f.IO.ErrOut, g.Warnings)
	plan, err := g.Plan(opts.Roots)
	if err != nil {
		return chainError("chain plan", err)
	}
	switch opts.Output.Value {
	case "json":
		err = cli.WriteJSON(f.IO.Out, plan)
	case "dot":
		err = g.Subgraph(plan).WriteDot(f.IO.Out)
	case "mermaid":
		err = g.Subgraph(plan).WriteMermaid(f.IO.Out)
	default:
		err = plan.WriteText(f.IO.Out)
	}
	if err != nil {
		return fmt.Errorf("chain plan: write output: %w", err)
	}
	return nil
}

// redactURL is raw with the password of its user info, if any, replaced:
// error messages name the URL a person gave, never a secret in it.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	scheme, rest, found := strings.Cut(raw, "://")
	if !found {
		scheme, rest = "", raw
	} else {
		scheme += "://"
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, hasPassword := strings.Cut(rest[:at], ":"); hasPassword {
			return scheme + user + ":xxxxx" + rest[at:]
		}
	}
	return raw
}

// scanGraph builds the graph from the source flags; SIGINT or SIGTERM stops
// the scan. Errors name cmd.
func (o *chainSourceOptions) scanGraph(f *cli.Factory, cmd string) (*chain.Graph, error) {
	src, err := o.build(f, false)
	if err != nil {
		return nil, err
	}
	ctx, cancel := signalContext()
	defer cancel()
	g, err := src.scan(ctx, f, o.Concurrency)
	if err != nil {
		return nil, chainError(cmd, err)
	}
	return g, nil
}

func newCmdChainHooks(f *cli.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hooks",
		Short: "Manage the GitLab webhooks that report pipelines to the receiver",
		Example: `  opsctl chain hooks sync --gitlab-url https://gitlab.example.com --group images \
      --token-file ~/.config/opsctl/gitlab-token --hook-url https://chain.example.com/hook --dry-run`,
	}
	cmd.AddCommand(newCmdChainHooksSync(f, nil))
	return cmd
}

// ChainHooksSyncOptions are the inputs of chain hooks sync.
type ChainHooksSyncOptions struct {
	Factory           *cli.Factory
	Source            chainSourceOptions
	HookURL           string
	WebhookSecretFile string
	DryRun            bool
}

func newCmdChainHooksSync(f *cli.Factory, runF func(*ChainHooksSyncOptions) error) *cobra.Command {
	opts := &ChainHooksSyncOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "sync --hook-url URL [--webhook-secret-file FILE] [--dry-run] [source flags]",
		Short: "Give every project of the group exactly one webhook for URL",
		Long: `Make every project of the group end with exactly one webhook for --hook-url:
pipeline events on, push events off, SSL verification on, and the webhook
secret (--webhook-secret-file) as its token. An existing hook for the URL is
edited, never duplicated; extra hooks for the same URL are deleted.

GitLab never shows a hook's token, so with a secret an existing hook is
always rewritten (counted as updated). Prints "added N, updated N, unchanged N".
The token needs the api scope and the Maintainer role.

--dry-run names every project it would change and changes nothing.`,
		Example: `  opsctl chain hooks sync --gitlab-url https://gitlab.example.com --group images \
      --token-file ~/.config/opsctl/gitlab-token \
      --hook-url https://chain.example.com/hook --webhook-secret-file /etc/opsctl/webhook-secret --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runChainHooksSync(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.HookURL, "hook-url", "", "the receiver's `URL`, e.g. https://chain.example.com/hook (required)")
	fl.StringVar(&opts.WebhookSecretFile, "webhook-secret-file", "", "`FILE` holding the webhook secret, sent by GitLab as X-Gitlab-Token")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "print what would change and change nothing")
	addChainSourceFlags(fl, &opts.Source, true)
	return cmd
}

func runChainHooksSync(opts *ChainHooksSyncOptions) error {
	f := opts.Factory
	if opts.HookURL == "" {
		return cli.Usagef("chain hooks sync: --hook-url is required")
	}
	if u, err := url.Parse(opts.HookURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return cli.Usagef("--hook-url %q: expected an http(s) URL like https://chain.example.com/hook", redactURL(opts.HookURL))
	}
	secret := ""
	if opts.WebhookSecretFile != "" {
		var err error
		if secret, err = readSecret("--webhook-secret-file", opts.WebhookSecretFile); err != nil {
			return err
		}
	}
	src, err := opts.Source.build(f, true)
	if err != nil {
		return err
	}
	ctx, cancel := signalContext()
	defer cancel()
	projects, err := src.source.ListProjects(ctx)
	if err != nil {
		return chainError("chain hooks sync", err)
	}
	plan, err := chain.PlanHooks(ctx, src.gitlab, projects, chain.WantedHook(opts.HookURL, secret), opts.Source.Concurrency)
	if err != nil {
		return chainError("chain hooks sync", err)
	}
	if opts.DryRun {
		var dryRun strings.Builder
		plan.WriteDryRun(&dryRun)
		_, err := io.WriteString(f.IO.Out, chainText(dryRun.String()))
		return err
	}
	counts, err := plan.Apply(ctx, src.gitlab, opts.Source.Concurrency)
	fmt.Fprintln(f.IO.Out, counts)
	if err != nil {
		return chainError("chain hooks sync", err)
	}
	return nil
}

// defaultChainServer is where `chain status` and `chain trigger --server`
// look for the receiver when neither flag nor OPSCTL_CHAIN_SERVER says.
const defaultChainServer = "http://127.0.0.1:8686"

// crashHook reads OPSCTL_CHAIN_CRASH_AT=POINT:N, a fault injection for the
// crash tests only: the process kills itself (SIGKILL) the N-th time it
// reaches POINT of the trigger path (queued, attempted, created).
func crashHook(getenv func(string) string) func(string) {
	spec := getenv("OPSCTL_CHAIN_CRASH_AT")
	if spec == "" {
		return nil
	}
	point, nth, _ := strings.Cut(spec, ":")
	n, err := strconv.Atoi(nth)
	if err != nil || n < 1 {
		n = 1
	}
	hits := 0
	return func(at string) {
		if at != point {
			return
		}
		if hits++; hits == n {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
}

// ---- serve ----

type chainServeOptions struct {
	IO             *cli.IOStreams
	Log            *slog.Logger
	Getenv         func(string) string
	Source         chainSourceOptions
	Listen         string
	State          string
	SecretFile     string
	RescanInterval time.Duration
	WatchExternal  time.Duration
	Registry       registryOptions

	// InsecureNoSecret: serve without a webhook secret, on purpose.
	InsecureNoSecret bool
	Retention        retentionOptions
}

func newCmdChainServe(f *cli.Factory) *cobra.Command {
	opts := &chainServeOptions{IO: f.IO, Getenv: f.Getenv}
	cmd := &cobra.Command{
		Use:   "serve --listen ADDR --state FILE --webhook-secret-file FILE [source flags]",
		Short: "Receive GitLab pipeline webhooks and trigger downstream pipelines in order",
		Long: `Run the webhook receiver and trigger engine. GitLab posts pipeline events to
POST /hook; when a project's pipeline on its default branch succeeds, every
downstream project is triggered once all its upstreams of the run succeeded,
each project once per run. Runs, intents and events live in the bbolt state
file: a crash at any moment loses no trigger and repeats none.

The webhook secret (--webhook-secret-file, the token 'chain hooks sync' gives
the hooks) is required: GitLab sends it as X-Gitlab-Token, and POST /hook and
POST /runs need it. --insecure-no-webhook-secret starts without one (a warning
is logged): then anyone who reaches the port can post webhooks, and POST /runs
is refused.

Endpoints: POST /hook, POST /runs (start a run, as 'chain trigger --server'),
GET /runs, GET /runs/{id}, GET /healthz, GET /metrics.`,
		Example: `  opsctl chain serve --listen 127.0.0.1:8686 --state /var/lib/opsctl/chain.db \
    --gitlab-url https://gitlab.example.com --group images \
    --token-file /etc/opsctl/gitlab-token --webhook-secret-file /etc/opsctl/webhook-secret`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Log = chainLogger(f.Logger)
			return runChainServe(cmd.Context(), opts)
		},
	}
	addChainSourceFlags(cmd.Flags(), &opts.Source, true)
	cmd.Flags().StringVar(&opts.Listen, "listen", "127.0.0.1:8686", "`ADDR` to listen on (host:port)")
	cmd.Flags().StringVar(&opts.State, "state", "/var/lib/opsctl/chain.db", "the state `FILE` (bbolt)")
	cmd.Flags().StringVar(&opts.SecretFile, "webhook-secret-file", "", "`FILE` holding the webhook secret GitLab sends as X-Gitlab-Token (required, unless --insecure-no-webhook-secret)")
	cmd.Flags().BoolVar(&opts.InsecureNoSecret, "insecure-no-webhook-secret", false, "run without a webhook secret: anyone who reaches the port can post webhooks (POST /runs stays refused)")
	cmd.Flags().DurationVar(&opts.Source.APITimeout, "api-timeout", 30*time.Second, "time limit of one GitLab API request (`DURATION`); slower ones are retried")
	cmd.Flags().DurationVar(&opts.WatchExternal, "watch-external", 0, "check the external base images every `DURATION` and rebuild from the projects using a changed one (see 'chain watch'; 0: off)")
	addRegistryFlags(cmd.Flags(), &opts.Registry)
	cmd.Flags().DurationVar(&opts.RescanInterval, "rescan-interval", 15*time.Minute, "how often the graph is scanned again (`DURATION`; 0: only on pushes changing a dependency file)")
	addRetentionFlags(cmd.Flags(), &opts.Retention)
	return cmd
}

// retentionOptions are the flags saying which runs a state file keeps.
type retentionOptions struct {
	Days int
	Runs int
}

func addRetentionFlags(fs *pflag.FlagSet, o *retentionOptions) {
	fs.IntVar(&o.Days, "retention-days", int(chain.DefaultRetentionAge/(24*time.Hour)), "remove runs that ended more than `N` days ago (0: no age limit)")
	fs.IntVar(&o.Runs, "retention-runs", chain.DefaultRetentionRuns, "remove ended runs beyond the newest `N` runs (0: no count limit)")
}

func (o retentionOptions) build() (chain.Retention, error) {
	if o.Days < 0 || o.Days > 100*365 {
		return chain.Retention{}, cli.Usagef("--retention-days %d: expected a number of days from 0 (no age limit) to 36500", o.Days)
	}
	if o.Runs < 0 {
		return chain.Retention{}, cli.Usagef("--retention-runs %d: expected 0 (no count limit) or more", o.Runs)
	}
	return chain.Retention{MaxAge: time.Duration(o.Days) * 24 * time.Hour, MaxRuns: o.Runs}, nil
}

func runChainServe(parent context.Context, opts *chainServeOptions) error {
	if opts.RescanInterval < 0 {
		return cli.Usagef("--rescan-interval %s: expected a positive duration or 0", opts.RescanInterval)
	}
	if opts.WatchExternal < 0 {
		return cli.Usagef("--watch-external %s: expected a positive duration or 0", opts.WatchExternal)
	}
	digests, err := opts.Registry.build()
	if err != nil {
		return err
	}
	retention, err := opts.Retention.build()
	if err != nil {
		return err
	}
	secret := ""
	switch {
	case opts.SecretFile != "" && opts.InsecureNoSecret:
		return cli.Usagef("--webhook-secret-file and --insecure-no-webhook-secret exclude each other")
	case opts.SecretFile != "":
		if secret, err = readSecret("--webhook-secret-file", opts.SecretFile); err != nil {
			return err
		}
	case !opts.InsecureNoSecret:
		// Without a secret, whoever reaches the port could post pipeline
		// events that start chain runs.
		return cli.Usagef("no webhook secret: expected --webhook-secret-file FILE (or --insecure-no-webhook-secret to accept webhooks from anyone who reaches the port)")
	}
	src, err := opts.Source.build(&cli.Factory{IO: opts.IO, Logger: opts.Log, Getenv: opts.Getenv}, true)
	if err != nil {
		return err
	}
	if _, err := checkStatePath("--state", opts.State, true); err != nil {
		return err
	}
	listener, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return cli.Usagef("--listen %s: %v", opts.Listen, err)
	}
	defer listener.Close()

	// The state file is checked before GitLab is asked anything: a corrupt
	// one ends the receiver at once (exit 1), not after a scan.
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := chain.NewMetrics(registry)
	engine, err := chain.NewEngine(chain.EngineOptions{StatePath: opts.State, API: src.gitlab,
		Logger: opts.Log, Metrics: metrics, Crash: crashHook(opts.Getenv)})
	if err != nil {
		return chainError("chain serve", err)
	}
	server := &chain.Server{
		Engine:           engine,
		Scanner:          chain.Scanner{Source: src.source, Registries: src.registries, Concurrency: opts.Source.Concurrency},
		RescanInterval:   opts.RescanInterval,
		Secret:           secret,
		InsecureNoSecret: opts.InsecureNoSecret,
		Metrics:          metrics,
		Gatherer:         registry,
		WatchExternal:    opts.WatchExternal,
		Digests:          digests,
		Retention:        retention,
		Logger:           opts.Log,
	}
	ctx, stop := signalContext()
	defer stop()
	if err := server.Run(ctx, listener); err != nil {
		return serveError(err)
	}
	return nil
}

// serveError words an error of the receiver: a first scan that failed is
// a temporary failure (GitLab may answer later), unless GitLab's name does
// not resolve: starting again does not cure a wrong --gitlab-url.
func serveError(err error) error {
	if errors.As(err, new(*chain.FirstScanError)) && !errors.As(err, new(*chain.HostNotFoundError)) {
		return cli.TemporaryError(chainError("chain serve", err))
	}
	return chainError("chain serve", err)
}

// ---- trigger ----

type chainTriggerOptions struct {
	IO         *cli.IOStreams
	Log        *slog.Logger
	Getenv     func(string) string
	Source     chainSourceOptions
	Project    string
	Ref        string
	DryRun     bool
	Server     string
	SecretFile string
	Follow     bool
	State      string
	Interval   time.Duration
	Output     *cli.OutputFlag
}

func newCmdChainTrigger(f *cli.Factory) *cobra.Command {
	opts := &chainTriggerOptions{IO: f.IO, Getenv: f.Getenv}
	cmd := &cobra.Command{
		Use:   "trigger PROJECT [--ref REF] [--dry-run] [--server URL --webhook-secret-file FILE] [--follow]",
		Short: "Start a chain run at PROJECT by creating its pipeline",
		Long: `Start a chain run at PROJECT by creating its pipeline (with the variable
OPSCTL_CHAIN_RUN set to the run's id).

  (no flag)   create the pipeline; a receiver that gets GitLab's webhooks
              continues the run when it succeeds
  --server    register the run with a running receiver ('chain serve'),
              which creates the pipeline and continues the run; needs the
              receiver's webhook secret (--webhook-secret-file)
  --follow    drive the whole run from here: create the pipeline, poll GitLab,
              trigger each downstream project in order, until the run ends
              (for sites whose GitLab cannot reach a webhook receiver; the
              run's state is kept in --state: run again after a crash, it
              resumes the unfinished run of PROJECT without duplicates)

Exit 0 when the run succeeded (with --follow) or was started.`,
		Example: `  opsctl chain trigger images/base --gitlab-url https://gitlab.example.com --group images --follow
  opsctl chain trigger images/base --server http://127.0.0.1:8686 --webhook-secret-file /etc/opsctl/webhook-secret
  opsctl chain trigger images/base --dry-run --gitlab-url https://gitlab.example.com --group images`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Log = chainLogger(f.Logger)
			opts.Project = strings.Trim(args[0], "/")
			return runChainTrigger(opts)
		},
	}
	addChainSourceFlags(cmd.Flags(), &opts.Source, true)
	cmd.Flags().StringVar(&opts.Ref, "ref", "", "`REF` of PROJECT's pipeline (default: its default branch); downstream projects build their default branches")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print the pipeline that would be created and the plan, change nothing")
	cmd.Flags().StringVar(&opts.Server, "server", "", "`URL` of a running receiver to start the run on")
	cmd.Flags().StringVar(&opts.SecretFile, "webhook-secret-file", "", "`FILE` holding the receiver's webhook secret (required with --server)")
	cmd.Flags().BoolVar(&opts.Follow, "follow", false, "poll the pipelines and trigger downstream from here until the run ends")
	cmd.Flags().StringVar(&opts.State, "state", "/var/lib/opsctl/chain-follow.db", "state `FILE` of --follow")
	cmd.Flags().DurationVar(&opts.Source.APITimeout, "api-timeout", 30*time.Second, "time limit of one GitLab API request (`DURATION`); slower ones are retried")
	cmd.Flags().DurationVar(&opts.Interval, "interval", 15*time.Second, "how often --follow polls (`DURATION`)")
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
	return cmd
}

func runChainTrigger(opts *chainTriggerOptions) error {
	if err := chain.ValidateProjectPath(opts.Project); err != nil {
		return cli.Usagef("chain trigger: PROJECT: %v", err)
	}
	if opts.Interval <= 0 {
		return cli.Usagef("--interval %s: expected a positive duration", opts.Interval)
	}
	ctx, stop := signalContext()
	defer stop()
	if opts.Server != "" {
		if opts.DryRun {
			return cli.Usagef("--dry-run cannot be combined with --server (the receiver plans the run)")
		}
		if opts.SecretFile == "" {
			return cli.Usagef("--server needs --webhook-secret-file FILE: the receiver starts runs only for requests carrying its webhook secret")
		}
		return triggerOnServer(ctx, opts)
	}
	if opts.SecretFile != "" {
		return cli.Usagef("--webhook-secret-file goes with --server")
	}
	f := &cli.Factory{IO: opts.IO, Logger: opts.Log, Getenv: opts.Getenv}
	src, err := opts.Source.build(f, true)
	if err != nil {
		return err
	}
	// --follow checks its state file before GitLab is asked anything; a
	// dry run checks it as the real run would, read-only.
	var engine *chain.Engine
	if opts.Follow {
		exists, err := checkStatePath("--state", opts.State, !opts.DryRun)
		if err != nil {
			return err
		}
		switch {
		case !opts.DryRun:
			engine, err = chain.NewEngine(chain.EngineOptions{StatePath: opts.State, API: src.gitlab,
				Logger: opts.Log, Crash: crashHook(opts.Getenv)})
		case exists:
			engine, err = chain.OpenReadOnly(opts.State)
		}
		if err != nil {
			return chainError("chain trigger", err)
		}
		if engine != nil {
			defer engine.Close()
		}
	}
	scanner := chain.Scanner{Source: src.source, Registries: src.registries, Concurrency: opts.Source.Concurrency}
	planner, err := chain.ScanPlanner(ctx, scanner)
	if err != nil {
		return chainError("chain trigger", err)
	}
	plan, err := planner.PlanRun([]string{opts.Project})
	if err != nil {
		return chainError("chain trigger", err)
	}
	runID := chain.NewRunID(time.Now())
	ref := opts.Ref
	if ref == "" {
		ref = plan.Targets[opts.Project].Ref
	}
	if opts.DryRun && opts.Output.JSON() {
		return cli.WriteJSON(opts.IO.Out, map[string]any{"dry_run": true, "run": runID, "project": opts.Project, "ref": ref, "waves": plan.Waves})
	}
	if opts.DryRun {
		fmt.Fprintf(opts.IO.Out, "would create a pipeline of %s on %s with %s=%s\n", opts.Project, ref, chain.RunVariable, runID)
		for i, wave := range plan.Waves {
			fmt.Fprintf(opts.IO.Out, "%d: %s\n", i+1, strings.Join(wave, " "))
		}
		return nil
	}
	if !opts.Follow {
		id, err := src.gitlab.CreatePipeline(ctx, opts.Project, chain.Target{ProjectID: plan.Targets[opts.Project].ProjectID, Ref: ref}, runID, nil)
		if err != nil {
			return chainError("chain trigger", err)
		}
		if opts.Output.JSON() {
			return cli.WriteJSON(opts.IO.Out, map[string]any{"run": runID, "project": opts.Project, "pipeline_id": id, "ref": ref})
		}
		fmt.Fprintf(opts.IO.Out, "run %s: pipeline %d of %s created on %s\n", runID, id, opts.Project, ref)
		return nil
	}
	engine.SetPlanner(planner)
	run, err := engine.UnfinishedRunAt(opts.Project)
	if err != nil {
		return chainError("chain trigger", err)
	}
	if run != nil {
		fmt.Fprintf(opts.IO.ErrOut, "resuming the unfinished run %s of %s\n", run.ID, opts.Project)
	} else if run, err = engine.StartRun([]string{opts.Project}, runID, opts.Project, opts.Ref); err != nil {
		return chainError("chain trigger", err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "run %s: %d projects\n", run.ID, len(run.Steps))
	run, err = engine.Follow(ctx, run.ID, opts.Interval, progressLines(opts.IO.ErrOut))
	if run != nil {
		if werr := writeRun(opts.IO.Out, opts.Output, run); werr != nil {
			return werr
		}
	}
	if err != nil {
		var failed *chain.RunFailedError
		if errors.As(err, &failed) {
			return err
		}
		return chainError("chain trigger", err)
	}
	return nil
}

// progressLines prints each new summary line of a run that is followed.
func progressLines(w io.Writer) func(*chain.Run) {
	last := ""
	return func(r *chain.Run) {
		if line := r.Summary(); line != last {
			fmt.Fprintln(w, line)
			last = line
		}
	}
}

// receiverClient is a client of the receiver at --server, else
// $OPSCTL_CHAIN_SERVER, else the default address.
func receiverClient(flag string, getenv func(string) string) (*chain.Client, error) {
	raw := flag
	if raw == "" {
		raw = getenv("OPSCTL_CHAIN_SERVER")
	}
	if raw == "" {
		raw = defaultChainServer
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, cli.Usagef("--server %q: expected the receiver's http(s) URL, e.g. %s", raw, defaultChainServer)
	}
	return &chain.Client{URL: u}, nil
}

func triggerOnServer(ctx context.Context, opts *chainTriggerOptions) error {
	client, err := receiverClient(opts.Server, opts.Getenv)
	if err != nil {
		return err
	}
	if client.Secret, err = readSecret("--webhook-secret-file", opts.SecretFile); err != nil {
		return err
	}
	run, err := client.StartRun(ctx, chain.StartRunRequest{Project: opts.Project, Ref: opts.Ref})
	if err != nil {
		return chainRename(err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "run %s: %d projects\n", run.ID, len(run.Steps))
	if opts.Follow {
		run, err = client.Follow(ctx, run, opts.Interval, progressLines(opts.IO.ErrOut))
		if err != nil && !errors.As(err, new(*chain.RunFailedError)) {
			return chainRename(err)
		}
	}
	if err := writeRun(opts.IO.Out, opts.Output, run); err != nil {
		return err
	}
	if run.Status == chain.RunFailed {
		return &chain.RunFailedError{Run: run}
	}
	return nil
}

// ---- status ----

type chainStatusOptions struct {
	IO     *cli.IOStreams
	Getenv func(string) string
	Server string
	State  string
	RunID  string
	Limit  int
	// ExitStatus makes the exit code say how RUN stands: 0 succeeded,
	// 1 failed, 75 still running.
	ExitStatus bool
	Output     *cli.OutputFlag
}

func newCmdChainStatus(f *cli.Factory) *cobra.Command {
	opts := &chainStatusOptions{IO: f.IO, Getenv: f.Getenv}
	cmd := &cobra.Command{
		Use:   "status [RUN [--exit-status]] [--server URL | --state FILE] [-o text|json]",
		Short: "Show chain runs, or one run project by project",
		Long: `Show the chain runs of a receiver (newest first), or one run with the state
of each project. The receiver is --server URL (default $OPSCTL_CHAIN_SERVER or
` + defaultChainServer + `); --state FILE reads a state file that no process holds
(e.g. that of 'chain trigger --follow').

The exit code is 0 whenever the runs could be shown. With --exit-status (as
'gh run view --exit-status'), it says how RUN stands: 0 succeeded, 1 failed
(some project failed or was canceled), 75 still running.`,
		Example: `  opsctl chain status
  opsctl chain status 20261126-101500-a1b2c3d4 -o json
  opsctl chain status 20261126-101500-a1b2c3d4 --exit-status || echo "not (yet) rebuilt"
  opsctl chain status --state /var/lib/opsctl/chain-follow.db`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.RunID = args[0]
			}
			return runChainStatus(opts)
		},
	}
	cmd.Flags().StringVar(&opts.Server, "server", "", "`URL` of the receiver")
	cmd.Flags().StringVar(&opts.State, "state", "", "read the state `FILE` instead of asking a receiver")
	cmd.Flags().IntVar(&opts.Limit, "limit", 20, "how many runs to list (`N`, 0 for all)")
	cmd.Flags().BoolVar(&opts.ExitStatus, "exit-status", false, "with RUN: exit 1 when the run failed, 75 while it runs, 0 when it succeeded")
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
	return cmd
}

func runChainStatus(opts *chainStatusOptions) error {
	if opts.Server != "" && opts.State != "" {
		return cli.Usagef("--server and --state exclude each other")
	}
	if opts.ExitStatus && opts.RunID == "" {
		return cli.Usagef("--exit-status goes with RUN: expected chain status RUN --exit-status")
	}
	if opts.Limit < 0 {
		return cli.Usagef("--limit %d: expected 0 or more", opts.Limit)
	}
	ctx, stop := signalContext()
	defer stop()
	var runs []*chain.Run
	var one *chain.Run
	if opts.State != "" {
		if err := wantRegularFile("--state", opts.State); err != nil {
			return err
		}
		engine, err := chain.OpenReadOnly(opts.State)
		if err != nil {
			return chainError("chain status", err)
		}
		defer engine.Close()
		if opts.RunID != "" {
			if one, err = engine.Run(opts.RunID); err != nil {
				return chainError("chain status", err)
			}
		} else if runs, err = engine.Runs(opts.Limit); err != nil {
			return chainError("chain status", err)
		}
	} else {
		client, err := receiverClient(opts.Server, opts.Getenv)
		if err != nil {
			return err
		}
		if opts.RunID != "" {
			if one, err = client.Run(ctx, opts.RunID); err != nil {
				return chainRename(err)
			}
		} else if runs, err = client.Runs(ctx, opts.Limit); err != nil {
			return chainRename(err)
		}
	}
	if opts.RunID != "" {
		if one == nil {
			return fmt.Errorf("chain status: no run %s", opts.RunID)
		}
		if err := writeRun(opts.IO.Out, opts.Output, one); err != nil || !opts.ExitStatus {
			return err
		}
		switch one.Status {
		case chain.RunSucceeded:
			return nil
		case chain.RunFailed:
			return cli.Silent(cli.ExitFailure) // the failed projects are in the output
		}
		return cli.Silent(cli.ExitTemporary)
	}
	if opts.Limit > 0 && len(runs) > opts.Limit {
		runs = runs[:opts.Limit]
	}
	if opts.Output.JSON() {
		if runs == nil {
			runs = []*chain.Run{}
		}
		return cli.WriteJSON(opts.IO.Out, runs)
	}
	tw := tabwriter.NewWriter(opts.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RUN\tSTATUS\tPROJECTS\tSTARTED\tBY")
	for _, r := range runs {
		done := 0
		for _, s := range r.Steps {
			if s.State == chain.StepSucceeded {
				done++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\n", r.ID, r.Status, done, len(r.Steps), r.Created.Local().Format("2006-01-02 15:04:05"), r.StartedBy)
	}
	return tw.Flush()
}

// writeRun prints one run: JSON, or its projects wave by wave.
func writeRun(w io.Writer, out *cli.OutputFlag, r *chain.Run) error {
	if out.JSON() {
		return cli.WriteJSON(w, r)
	}
	fmt.Fprintf(w, "run %s: %s (started %s by %s)\n", r.ID, r.Status, r.Created.Local().Format("2006-01-02 15:04:05"), r.StartedBy)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WAVE\tPROJECT\tSTATE\tPIPELINE\tDETAIL")
	for _, ps := range r.StepStates() {
		pipeline := "-"
		if ps.PipelineID != 0 {
			pipeline = strconv.FormatInt(ps.PipelineID, 10)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", ps.Wave, ps.Project, ps.State, pipeline, ps.Reason)
	}
	return tw.Flush()
}

// registryOptions are the flags of `chain watch` and `chain serve
// --watch-external` that say how to reach registries.
type registryOptions struct {
	AuthFile  string
	PlainHTTP []string
}

func addRegistryFlags(fs *pflag.FlagSet, o *registryOptions) {
	fs.StringVar(&o.AuthFile, "registry-auth-file", "", "Docker config.json `FILE` with registry credentials (auths keys host:port); default anonymous")
	fs.StringArrayVar(&o.PlainHTTP, "plain-http-registry", nil, "registry `HOST:PORT` spoken to over plain HTTP (repeatable)")
}

func (o *registryOptions) build() (*chain.RegistryDigests, error) {
	r := &chain.RegistryDigests{PlainHTTP: o.PlainHTTP}
	for _, h := range o.PlainHTTP {
		if h == "" || strings.ContainsAny(h, "/ \t@") {
			return nil, cli.Usagef("--plain-http-registry %q: expected a registry host:port", h)
		}
	}
	if o.AuthFile != "" {
		if err := wantRegularFile("--registry-auth-file", o.AuthFile); err != nil {
			return nil, err
		}
		data, err := os.ReadFile(o.AuthFile)
		if err != nil {
			return nil, fmt.Errorf("--registry-auth-file: %w", err)
		}
		cfg, err := chain.ParseDockerConfig(data)
		if err != nil {
			return nil, fmt.Errorf("--registry-auth-file %s: %w", o.AuthFile, err)
		}
		r.Auth = cfg
	}
	return r, nil
}

type chainWatchOptions struct {
	IO       *cli.IOStreams
	Log      *slog.Logger
	Getenv   func(string) string
	Source   chainSourceOptions
	Registry registryOptions
	State    string
	Once     bool
	Interval time.Duration
	DryRun   bool
	Output   *cli.OutputFlag

	Retention retentionOptions
}

func newCmdChainWatch(f *cli.Factory) *cobra.Command {
	opts := &chainWatchOptions{IO: f.IO, Getenv: f.Getenv}
	cmd := &cobra.Command{
		Use:   "watch --state FILE [--once] [--interval DURATION] [source flags]",
		Short: "Rebuild the chain when an external base image changes upstream",
		Long: `Watch the external base images of the graph (debian:bookworm, ruby:3.3, ...).
For every external image referenced by tag (never one pinned by digest) ask its
registry for the tag's current manifest digest (HEAD, as Docker Hub does not
count it as a pull), compare it with the digest recorded in the state file,
and when it changed start one chain run rooted at the projects whose FROM uses
the image: their pipelines are created as 'chain trigger' does. The first
sighting of an image only records its digest. A registry that cannot be
reached is reported, never a trigger.

--once checks once (for a systemd timer or a scheduled pipeline); otherwise it
checks every --interval. 'chain serve --watch-external DURATION' runs the same
watcher inside the receiver.`,
		Example: `  opsctl chain watch --once --state /var/lib/opsctl/chain-watch.db \
    --gitlab-url https://gitlab.example.com --group images --token-file /etc/opsctl/gitlab-token
  opsctl chain watch --once --dry-run --state /var/lib/opsctl/chain-watch.db \
    --gitlab-url https://gitlab.example.com --group images --token-file /etc/opsctl/gitlab-token -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Log = chainLogger(f.Logger)
			return runChainWatch(opts)
		},
	}
	addChainSourceFlags(cmd.Flags(), &opts.Source, true)
	addRegistryFlags(cmd.Flags(), &opts.Registry)
	cmd.Flags().StringVar(&opts.State, "state", "", "state `FILE` (bbolt) holding the digests seen and the runs started")
	cmd.Flags().BoolVar(&opts.Once, "once", false, "check once and exit")
	cmd.Flags().DurationVar(&opts.Interval, "interval", 6*time.Hour, "time between checks (`DURATION`)")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "report what would be triggered; record and trigger nothing")
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
	addRetentionFlags(cmd.Flags(), &opts.Retention)
	cmd.MarkFlagRequired("state")
	return cmd
}

func runChainWatch(opts *chainWatchOptions) error {
	if opts.Interval <= 0 {
		return cli.Usagef("--interval %s: expected a positive duration", opts.Interval)
	}
	digests, err := opts.Registry.build()
	if err != nil {
		return err
	}
	retention, err := opts.Retention.build()
	if err != nil {
		return err
	}
	f := &cli.Factory{IO: opts.IO, Logger: opts.Log, Getenv: opts.Getenv}
	src, err := opts.Source.build(f, true)
	if err != nil {
		return err
	}
	var api chain.PipelineAPI
	if src.gitlab != nil {
		api = src.gitlab
	}
	engine, closeState, err := openWatchState(opts, api)
	if err != nil {
		return err
	}
	defer closeState()
	ctx, stop := signalContext()
	defer stop()
	loop := &chain.WatchLoop{
		Watcher:   &chain.Watcher{Engine: engine, Digests: digests, DryRun: opts.DryRun},
		Scanner:   chain.Scanner{Source: src.source, Registries: src.registries, Concurrency: opts.Source.Concurrency},
		Interval:  opts.Interval,
		Retention: retention,
		Logger:    opts.Log,
	}
	report := func(res *chain.WatchResult) error { return writeWatchResult(opts.IO.Out, opts.Output, res) }
	if !opts.Once {
		if err := loop.Run(ctx, report); err != nil {
			return chainError("chain watch", err)
		}
		return nil
	}
	res, pending, err := loop.Check(ctx)
	switch {
	case err != nil && ctx.Err() != nil:
		return nil // stopped by a signal
	case err != nil:
		return chainError("chain watch", err)
	}
	if err := report(res); err != nil {
		return err
	}
	if len(res.Errors) > 0 {
		return cli.TemporaryError(fmt.Errorf("chain watch: %d of %d images could not be checked", len(res.Errors), res.Checked))
	}
	if pending > 0 {
		return cli.TemporaryError(fmt.Errorf("chain watch: %d pipelines not created yet (GitLab failed, see the log); the next check creates them", pending))
	}
	return nil
}

// openWatchState opens the state file of `chain watch`. A dry run changes
// nothing, the file included: it reads an existing state file read-only,
// and works on a throw-away one when there is none yet.
func openWatchState(opts *chainWatchOptions, api chain.PipelineAPI) (*chain.Engine, func(), error) {
	exists, err := checkStatePath("--state", opts.State, !opts.DryRun)
	if err != nil {
		return nil, nil, err
	}
	if !opts.DryRun {
		engine, err := chain.NewEngine(chain.EngineOptions{StatePath: opts.State, API: api, Logger: opts.Log, Crash: crashHook(opts.Getenv)})
		if err != nil {
			return nil, nil, chainError("chain watch", err)
		}
		return engine, func() { engine.Close() }, nil
	}
	if exists {
		engine, err := chain.OpenReadOnly(opts.State)
		if err != nil {
			return nil, nil, chainError("chain watch", err)
		}
		return engine, func() { engine.Close() }, nil
	}
	dir, err := os.MkdirTemp("", "opsctl-watch-dry-run-")
	if err != nil {
		return nil, nil, err
	}
	engine, err := chain.NewEngine(chain.EngineOptions{StatePath: filepath.Join(dir, "state.db"), Logger: opts.Log})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return engine, func() { engine.Close(); os.RemoveAll(dir) }, nil
}

func writeWatchResult(w io.Writer, out *cli.OutputFlag, res *chain.WatchResult) error {
	for i, e := range res.Errors {
		res.Errors[i] = chainText(e)
	}
	if out.JSON() {
		return cli.WriteJSON(w, res)
	}
	fmt.Fprintf(w, "checked %d external images, %d changed, %d errors\n", res.Checked, len(res.Changed), len(res.Errors))
	for _, c := range res.Changed {
		fmt.Fprintf(w, "changed %s: %s -> %s", c.Image, c.Old, c.New)
		if len(c.Triggered) > 0 {
			fmt.Fprintf(w, "; triggered %s", strings.Join(c.Triggered, " "))
		}
		if c.Run != "" {
			fmt.Fprintf(w, " (run %s)", c.Run)
		}
		fmt.Fprintln(w)
	}
	for _, e := range res.Errors {
		fmt.Fprintf(w, "error %s\n", e)
	}
	return nil
}
