package main

import (
	"errors"
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/chain"
)

// ChainServeOptions are the inputs of `chain serve`.
type ChainServeOptions struct {
	*cli.Factory
	Source     chainSourceOptions
	Listen     string
	State      string
	SecretFile string
	// InsecureNoSecret: serve without a webhook secret, on purpose.
	InsecureNoSecret bool
	RescanInterval   time.Duration
	WatchExternal    time.Duration
	Registry         registryOptions
	Retention        retentionOptions
}

// NewCmdChainServe builds `chain serve`; runF, when set, receives the
// options instead of runChainServe (tests of the flags).
func NewCmdChainServe(f *cli.Factory, runF func(*ChainServeOptions) error) *cobra.Command {
	opts := &ChainServeOptions{Factory: f}
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
GET /runs, GET /runs/{id}, GET /healthz, GET /metrics; web pages for a
browser: GET / (the runs) and GET /ui/runs/{id} (a run as a live graph).
Everything but POST is read-only and open to whoever reaches ADDR: expose
only /hook through a reverse proxy.`,
		Example: `  opsctl chain serve --listen 127.0.0.1:8686 --state /var/lib/opsctl/chain.db \
    --gitlab-url https://gitlab.example.com --group images \
    --token-file /etc/opsctl/gitlab-token --webhook-secret-file /etc/opsctl/webhook-secret`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runChainServe(opts)
		},
	}
	fl := cmd.Flags()
	addChainSourceFlags(fl, &opts.Source, true)
	fl.StringVar(&opts.Listen, "listen", "127.0.0.1:8686", "`ADDR` to listen on (host:port)")
	fl.StringVar(&opts.State, "state", "/var/lib/opsctl/chain.db", "the state `FILE` (bbolt)")
	fl.StringVar(&opts.SecretFile, "webhook-secret-file", "", "`FILE` holding the webhook secret GitLab sends as X-Gitlab-Token (required, unless --insecure-no-webhook-secret)")
	fl.BoolVar(&opts.InsecureNoSecret, "insecure-no-webhook-secret", false, "run without a webhook secret: anyone who reaches the port can post webhooks (POST /runs stays refused)")
	addAPITimeoutFlag(fl, &opts.Source)
	fl.DurationVar(&opts.WatchExternal, "watch-external", 0, "check the external base images every `DURATION` and rebuild from the projects using a changed one (see 'chain watch'; 0: off)")
	addRegistryFlags(fl, &opts.Registry)
	fl.DurationVar(&opts.RescanInterval, "rescan-interval", 15*time.Minute, "how often the graph is scanned again (`DURATION`; 0: only on pushes changing a dependency file)")
	addRetentionFlags(fl, &opts.Retention)
	return cmd
}

func runChainServe(opts *ChainServeOptions) error {
	server, listener, err := opts.server()
	if err != nil {
		return err
	}
	defer listener.Close()
	ctx, stop := opts.SignalContext(nil)
	defer stop()
	if err := server.Run(ctx, listener); err != nil {
		return serveError(err)
	}
	return nil
}

// server checks the flags and builds the receiver and its listener. The
// state file is opened last, and before GitLab is asked anything: a
// corrupt one ends the receiver at once (exit 1), not after a scan.
func (opts *ChainServeOptions) server() (*chain.Server, net.Listener, error) {
	if opts.RescanInterval < 0 {
		return nil, nil, cli.Usagef("--rescan-interval %s: expected a positive duration or 0", opts.RescanInterval)
	}
	if opts.WatchExternal < 0 {
		return nil, nil, cli.Usagef("--watch-external %s: expected a positive duration or 0", opts.WatchExternal)
	}
	digests, err := opts.Registry.build()
	if err != nil {
		return nil, nil, err
	}
	retention, err := opts.Retention.build()
	if err != nil {
		return nil, nil, err
	}
	secret, err := opts.secret()
	if err != nil {
		return nil, nil, err
	}
	src, err := opts.Source.build(opts.Factory, true)
	if err != nil {
		return nil, nil, err
	}
	if _, err := checkStatePath("--state", opts.State, true); err != nil {
		return nil, nil, err
	}
	listener, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, nil, cli.Usagef("--listen %s: %v", opts.Listen, err)
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := chain.NewMetrics(registry)
	log := chainLogger(opts.Logger)
	engine, err := chain.NewEngine(chain.EngineOptions{StatePath: opts.State, API: src.gitlab,
		Logger: log, Metrics: metrics, Crash: crashHook(opts.Getenv)})
	if err != nil {
		listener.Close()
		return nil, nil, chainError("chain serve", err)
	}
	return &chain.Server{
		Engine:           engine,
		Scanner:          src.scanner(),
		RescanInterval:   opts.RescanInterval,
		Secret:           secret,
		InsecureNoSecret: opts.InsecureNoSecret,
		GitLabURL:        opts.Source.GitLabURL,
		Metrics:          metrics,
		Gatherer:         registry,
		WatchExternal:    opts.WatchExternal,
		Digests:          digests,
		Retention:        retention,
		Logger:           log,
	}, listener, nil
}

// secret is the webhook secret, or "" when the admin chose to run
// without one.
func (opts *ChainServeOptions) secret() (string, error) {
	switch {
	case opts.SecretFile != "" && opts.InsecureNoSecret:
		return "", cli.Usagef("--webhook-secret-file and --insecure-no-webhook-secret exclude each other")
	case opts.SecretFile == "" && !opts.InsecureNoSecret:
		// Without a secret, whoever reaches the port could post pipeline
		// events that start chain runs.
		return "", cli.Usagef("no webhook secret: expected --webhook-secret-file FILE (or --insecure-no-webhook-secret to accept webhooks from anyone who reaches the port)")
	}
	return secretFlag("--webhook-secret-file", opts.SecretFile)
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
