package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/chain"
)

// ChainWatchOptions are the inputs of `chain watch`.
type ChainWatchOptions struct {
	*cli.Factory
	Source    chainSourceOptions
	Registry  registryOptions
	State     string
	Once      bool
	Interval  time.Duration
	DryRun    bool
	Output    *cli.OutputFlag
	Retention retentionOptions
}

// NewCmdChainWatch builds `chain watch`; runF, when set, receives the
// options instead of runChainWatch (tests of the flags).
func NewCmdChainWatch(f *cli.Factory, runF func(*ChainWatchOptions) error) *cobra.Command {
	opts := &ChainWatchOptions{Factory: f}
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
			if runF != nil {
				return runF(opts)
			}
			return runChainWatch(opts)
		},
	}
	fl := cmd.Flags()
	addChainSourceFlags(fl, &opts.Source, true)
	addRegistryFlags(fl, &opts.Registry)
	fl.StringVar(&opts.State, "state", "", "state `FILE` (bbolt) holding the digests seen and the runs started")
	fl.BoolVar(&opts.Once, "once", false, "check once and exit")
	fl.DurationVar(&opts.Interval, "interval", 6*time.Hour, "time between checks (`DURATION`)")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "report what would be triggered; record and trigger nothing")
	opts.Output = cli.AddOutputFlag(fl, "text", "json")
	addRetentionFlags(fl, &opts.Retention)
	cmd.MarkFlagRequired("state")
	return cmd
}

func runChainWatch(opts *ChainWatchOptions) error {
	loop, closeState, err := opts.watchLoop()
	if err != nil {
		return err
	}
	defer closeState()
	ctx, stop := opts.SignalContext(nil)
	defer stop()
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

// watchLoop checks the flags and builds the watch on its state file;
// closeState closes that file.
func (opts *ChainWatchOptions) watchLoop() (loop *chain.WatchLoop, closeState func(), err error) {
	if opts.Interval <= 0 {
		return nil, nil, cli.Usagef("--interval %s: expected a positive duration", opts.Interval)
	}
	digests, err := opts.Registry.build()
	if err != nil {
		return nil, nil, err
	}
	retention, err := opts.Retention.build()
	if err != nil {
		return nil, nil, err
	}
	src, err := opts.Source.build(opts.Factory, true)
	if err != nil {
		return nil, nil, err
	}
	engine, closeState, err := opts.openState(src.gitlab)
	if err != nil {
		return nil, nil, err
	}
	return &chain.WatchLoop{
		Watcher:   &chain.Watcher{Engine: engine, Digests: digests, DryRun: opts.DryRun},
		Scanner:   src.scanner(),
		Interval:  opts.Interval,
		Retention: retention,
		Logger:    chainLogger(opts.Logger),
	}, closeState, nil
}

// openState opens the state file of `chain watch`. A dry run changes
// nothing, the file included: it reads an existing state file read-only,
// and works on a throw-away one when there is none yet.
func (opts *ChainWatchOptions) openState(api *chain.GitLab) (*chain.Engine, func(), error) {
	exists, err := checkStatePath("--state", opts.State, !opts.DryRun)
	if err != nil {
		return nil, nil, err
	}
	log := chainLogger(opts.Logger)
	if !opts.DryRun {
		engine, err := chain.NewEngine(chain.EngineOptions{StatePath: opts.State, API: api, Logger: log, Crash: crashHook(opts.Getenv)})
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
	engine, err := chain.NewEngine(chain.EngineOptions{StatePath: filepath.Join(dir, "state.db"), Logger: log})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return engine, func() { engine.Close(); os.RemoveAll(dir) }, nil
}

// writeWatchResult prints what one check found, with the flags named in
// its errors.
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

// registryOptions are the flags of `chain watch`, which `chain serve
// --watch-external` takes too: how to reach the registries.
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
