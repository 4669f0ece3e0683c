package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/chain"
)

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
		data, err := os.ReadFile(o.AuthFile)
		if err != nil {
			return nil, cli.Usagef("--registry-auth-file: %v", err)
		}
		cfg, err := chain.ParseDockerConfig(data)
		if err != nil {
			return nil, cli.Usagef("--registry-auth-file %s: %v", o.AuthFile, err)
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
  opsctl chain watch --once --dry-run --state /tmp/w.db --dir examples/images -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Log = f.Logger
			return runChainWatch(opts)
		},
	}
	addChainSourceFlags(cmd.Flags(), &opts.Source)
	addRegistryFlags(cmd.Flags(), &opts.Registry)
	cmd.Flags().StringVar(&opts.State, "state", "", "state `FILE` (bbolt) holding the digests seen and the runs started")
	cmd.Flags().BoolVar(&opts.Once, "once", false, "check once and exit")
	cmd.Flags().DurationVar(&opts.Interval, "interval", 6*time.Hour, "time between checks (`DURATION`)")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "report what would be triggered; record and trigger nothing")
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
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
	f := &cli.Factory{IO: opts.IO, Logger: opts.Log, Getenv: opts.Getenv}
	src, err := opts.Source.build(f, !opts.DryRun)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(opts.State), 0o700); err != nil {
		return fmt.Errorf("--state %s: %w", opts.State, err)
	}
	ctx, stop := signalContext()
	defer stop()
	var api chain.PipelineAPI
	if src.gitlab != nil {
		api = src.gitlab
	}
	engine, err := chain.NewEngine(chain.EngineOptions{StatePath: opts.State, API: api, Logger: opts.Log, Crash: crashHook(opts.Getenv)})
	if err != nil {
		return err
	}
	defer engine.Close()
	watcher := &chain.Watcher{Engine: engine, Digests: digests, DryRun: opts.DryRun}
	scanner := chain.Scanner{Source: src.source, Registries: src.registries, Concurrency: opts.Source.Concurrency}
	for {
		res, pending, err := watchOnce(ctx, engine, watcher, scanner, api != nil && !opts.DryRun)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil // stopped by a signal
		case err != nil && !opts.Once && cli.ExitCode(err) == cli.ExitTemporary:
			// GitLab or the network failing for a while must not end the
			// watcher: the next check scans again.
			opts.Log.Error("chain watch: check failed, next check in "+opts.Interval.String(), "err", err)
		case err != nil:
			return chainError("chain watch", err)
		}
		if err != nil {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(opts.Interval):
			}
			continue
		}
		if err := writeWatchResult(opts.IO.Out, opts.Output, res); err != nil {
			return err
		}
		if opts.Once {
			if len(res.Errors) > 0 {
				return cli.TemporaryError(fmt.Errorf("chain watch: %d of %d images could not be checked", len(res.Errors), res.Checked))
			}
			if pending > 0 {
				return cli.TemporaryError(fmt.Errorf("chain watch: %d pipelines not created yet (GitLab failed, see the log); the next check creates them", pending))
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(opts.Interval):
		}
	}
}

// watchOnce scans the graph, checks its external images, and creates the
// pipelines of the runs it started (and of any left by an earlier crash);
// pending is how many of those are still to be created.
func watchOnce(ctx context.Context, engine *chain.Engine, w *chain.Watcher, scanner chain.Scanner, trigger bool) (res *chain.WatchResult, pending int, err error) {
	planner, err := chain.ScanPlanner(ctx, scanner)
	if err != nil {
		return nil, 0, err
	}
	engine.SetPlanner(planner)
	if res, err = w.Check(ctx, planner.Graph); err != nil {
		return res, 0, err
	}
	if trigger {
		if pending, err = engine.FireDue(ctx); err != nil {
			return res, 0, err
		}
	}
	return res, pending, nil
}

func writeWatchResult(w io.Writer, out *cli.OutputFlag, res *chain.WatchResult) error {
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

// externalWatchLoop is `chain serve --watch-external`: the watcher on the
// receiver's state and graph.
func externalWatchLoop(ctx context.Context, log *slog.Logger, engine *chain.Engine, w *chain.Watcher, every time.Duration) {
	for {
		if planner, ok := engine.Planner().(*chain.GraphPlanner); ok {
			res, err := w.Check(ctx, planner.Graph)
			switch {
			case err != nil && ctx.Err() == nil:
				log.Error("external image check failed", "err", err)
			case err == nil:
				log.Info("external images checked", "checked", res.Checked, "changed", len(res.Changed), "errors", len(res.Errors))
				for _, e := range res.Errors {
					log.Warn("external image not checked", "error", e)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}
