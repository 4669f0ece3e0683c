package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/pkg/chain"
)

// newCmdChain is the chain group: the dependency graph of container images
// kept in GitLab projects (chain_scan.go, chain_plan.go), the webhooks that
// report their pipelines (chain_hooks_sync.go), the receiver and trigger
// engine that rebuilds them in order (chain_serve.go, chain_trigger.go,
// chain_status.go) and the watch of their external base images
// (chain_watch.go). This file holds what the verbs share: the source,
// registry and retention flags, the flag names of pkg/chain's inputs, the
// error wording, the rule for state files and secrets.
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
  opsctl chain scan --dir ~/src/images -o svg > chain.svg
  GITLAB_TOKEN=... opsctl chain scan --gitlab-url https://gitlab.example.com --group images -o json`,
	}
	cmd.AddCommand(
		NewCmdChainScan(f, nil),
		NewCmdChainPlan(f, nil),
		newCmdChainHooks(f),
		NewCmdChainServe(f, nil),
		NewCmdChainTrigger(f, nil),
		NewCmdChainStatus(f, nil),
		NewCmdChainWatch(f, nil),
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

// addAPITimeoutFlag adds --api-timeout, for the commands that keep calling
// GitLab (serve, trigger).
func addAPITimeoutFlag(fs *pflag.FlagSet, o *chainSourceOptions) {
	fs.DurationVar(&o.APITimeout, "api-timeout", 30*time.Second, "time limit of one GitLab API request (`DURATION`); slower ones are retried")
}

// chainSource is a validated source with its registries.
type chainSource struct {
	source      chain.Source
	registries  *chain.Registries
	concurrency int
	gitlab      *chain.GitLab // nil in --dir mode
	dir         *chain.DirSource
}

// build checks the source flags and builds the source; needGitLab refuses
// --dir, for the commands that act on GitLab.
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
		return o.dirSource()
	case o.GitLabURL == "":
		return nil, cli.Usagef("no source: expected --dir DIR, or --gitlab-url URL --group GROUP")
	case o.Group == "":
		return nil, cli.Usagef("--gitlab-url needs --group GROUP")
	}
	return o.gitlabSource(f)
}

func (o *chainSourceOptions) dirSource() (*chainSource, error) {
	if err := wantFolder("--dir", o.Dir); err != nil {
		return nil, err
	}
	dir := &chain.DirSource{Root: o.Dir}
	registries := chain.AnyRegistry()
	if len(o.Registries) > 0 {
		registries = chain.NewRegistries(o.Registries...)
	}
	return &chainSource{source: dir, registries: registries, concurrency: o.Concurrency, dir: dir}, nil
}

func (o *chainSourceOptions) gitlabSource(f *cli.Factory) (*chainSource, error) {
	u, err := cli.ParseHTTPURL("--gitlab-url", o.GitLabURL, "https://gitlab.example.com")
	if err != nil {
		return nil, err
	}
	group := strings.Trim(o.Group, "/")
	if err := chain.ValidateProjectPath(group); err != nil {
		return nil, cli.Usagef("--group: %v", err)
	}
	token, err := secretFlag("--token-file", o.TokenFile)
	if err != nil {
		return nil, err
	}
	if token == "" {
		if token = f.Getenv("GITLAB_TOKEN"); token == "" {
			return nil, cli.Usagef("no GitLab token: expected --token-file FILE or the GITLAB_TOKEN environment variable")
		}
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
		source:      &chain.GitLabSource{API: api, Group: group},
		registries:  chain.NewRegistries(registries...),
		concurrency: o.Concurrency,
		gitlab:      api,
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

// scanner reads the graph of the source.
func (s *chainSource) scanner() chain.Scanner {
	return chain.Scanner{Source: s.source, Registries: s.registries, Concurrency: s.concurrency}
}

// scan reads the graph, showing progress on stderr for GitLab. The
// warnings of local folders come first.
func (s *chainSource) scan(ctx context.Context, f *cli.Factory) (*chain.Graph, error) {
	scanner := s.scanner()
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

// scanGraph builds the graph from the source flags; SIGINT or SIGTERM stops
// the scan. Errors name cmd.
func (o *chainSourceOptions) scanGraph(f *cli.Factory, cmd string) (*chain.Graph, error) {
	src, err := o.build(f, false)
	if err != nil {
		return nil, err
	}
	ctx, stop := f.SignalContext(nil)
	defer stop()
	g, err := src.scan(ctx, f)
	if err != nil {
		return nil, chainError(cmd, err)
	}
	return g, nil
}

func writeWarnings(streams *cli.IOStreams, warnings []string) {
	for _, warning := range warnings {
		streams.Warnf("%s", warning)
	}
}

// retentionOptions are the flags saying which runs a state file keeps
// (serve and watch).
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
// corrupt state file gets what to do about it. The flags are shown.
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

// secretFlag reads the secret file named by flag (--token-file,
// --webhook-secret-file) with cli.SecretFlag; "" when path is. A file that
// is missing or not a regular file is said in the chain commands' words
// (wantRegularFile: "no such file", "a folder; expected a regular file").
func secretFlag(flag, path string) (string, error) {
	if path == "" {
		return "", nil
	}
	if err := wantRegularFile(flag, path); err != nil {
		return "", err
	}
	return cli.SecretFlag(flag, path)
}

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

// defaultChainServer is where `chain status` and `chain trigger --server`
// look for the receiver when neither flag nor OPSCTL_CHAIN_SERVER says.
const defaultChainServer = "http://127.0.0.1:8686"

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
	u, err := cli.ParseHTTPURL("--server", raw, defaultChainServer)
	if err != nil {
		return nil, err
	}
	return &chain.Client{URL: u}, nil
}
