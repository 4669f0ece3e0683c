package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/chain"
)

// newCmdChain is the chain group: the dependency graph of container images
// kept in GitLab projects (scan, plan, hooks sync) and, in later issues, the
// trigger engine.
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

Every chain command reads projects from one source:
  --dir DIR                          local folders, one project per folder
  --gitlab-url URL --group GROUP     a GitLab group and its subgroups
                                     (token: --token-file FILE or GITLAB_TOKEN)`,
		Example: `  opsctl chain plan --dir examples/images
  opsctl chain scan --dir examples/images -o dot | dot -Tsvg > chain.svg
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

func addChainSourceFlags(fs *pflag.FlagSet, o *chainSourceOptions) {
	fs.StringVar(&o.Dir, "dir", "", "local mode: every folder under `DIR` with a Containerfile, Dockerfile or .gitlab-deps is a project")
	fs.StringVar(&o.GitLabURL, "gitlab-url", "", "GitLab's `URL`, e.g. https://gitlab.example.com")
	fs.StringVar(&o.Group, "group", "", "the GitLab `GROUP` (full path) whose projects, subgroups included, are read")
	fs.StringVar(&o.TokenFile, "token-file", "", "`FILE` holding the GitLab token (default: $GITLAB_TOKEN)")
	fs.StringArrayVar(&o.Registries, "registry", nil, "registry `HOST[:PORT]` whose images are built by the projects (repeatable; default with --gitlab-url: the GitLab host, registry.HOST and HOST:5050; with --dir: every host but docker.io)")
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
		return nil, cli.Usagef("--gitlab-url %q: expected an http(s) URL without credentials, like https://gitlab.example.com", o.GitLabURL)
	}
	group := strings.Trim(o.Group, "/")
	if err := chain.ValidateProjectPath(group); err != nil {
		return nil, cli.Usagef("--group: %v", err)
	}
	token := ""
	if o.TokenFile != "" {
		token, err = cli.ReadSecretFile(o.TokenFile)
		if err != nil {
			return nil, cli.UsageError(fmt.Errorf("--token-file: %w", err))
		}
	} else if token = f.Getenv("GITLAB_TOKEN"); token == "" {
		return nil, cli.Usagef("no GitLab token: expected --token-file FILE or the GITLAB_TOKEN environment variable")
	}
	api, err := chain.NewGitLab(chain.GitLabConfig{URL: o.GitLabURL, Token: token, Logger: f.Logger, Timeout: o.APITimeout})
	if err != nil {
		return nil, cli.UsageError(err)
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
		g.Warnings = append(s.dir.Warnings, g.Warnings...)
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

// chainError turns errors of pkg/chain into exit codes: an unknown root
// is a usage error; the rest keep their own (temporary: 75, else 1).
func chainError(cmd string, err error) error {
	var unknown *chain.UnknownProjectError
	if errors.As(err, &unknown) {
		return cli.Usagef("%s: %v", cmd, err)
	}
	var exitErr *cli.ExitError
	if errors.As(err, &exitErr) {
		return err
	}
	return fmt.Errorf("%s: %w", cmd, err)
}
