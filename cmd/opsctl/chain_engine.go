package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/chain"
)

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
}

func newCmdChainServe(f *cli.Factory) *cobra.Command {
	opts := &chainServeOptions{IO: f.IO, Getenv: f.Getenv}
	cmd := &cobra.Command{
		Use:   "serve --listen ADDR --state FILE [--webhook-secret-file FILE] [source flags]",
		Short: "Receive GitLab pipeline webhooks and trigger downstream pipelines in order",
		Long: `Run the webhook receiver and trigger engine. GitLab posts pipeline events to
POST /hook; when a project's pipeline on its default branch succeeds, every
downstream project is triggered once all its upstreams of the run succeeded,
each project once per run. Runs, intents and events live in the bbolt state
file: a crash at any moment loses no trigger and repeats none.

Endpoints: POST /hook, POST /runs (start a run, as 'chain trigger --server'),
GET /runs, GET /runs/{id}, GET /healthz, GET /metrics.`,
		Example: `  opsctl chain serve --listen 127.0.0.1:8686 --state /var/lib/opsctl/chain.db \
    --gitlab-url https://gitlab.example.com --group images \
    --token-file /etc/opsctl/gitlab-token --webhook-secret-file /etc/opsctl/webhook-secret`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Log = f.Logger
			return runChainServe(cmd.Context(), opts)
		},
	}
	addChainSourceFlags(cmd.Flags(), &opts.Source)
	cmd.Flags().StringVar(&opts.Listen, "listen", "127.0.0.1:8686", "`ADDR` to listen on (host:port)")
	cmd.Flags().StringVar(&opts.State, "state", "/var/lib/opsctl/chain.db", "the state `FILE` (bbolt)")
	cmd.Flags().StringVar(&opts.SecretFile, "webhook-secret-file", "", "`FILE` holding the webhook secret GitLab sends as X-Gitlab-Token")
	cmd.Flags().DurationVar(&opts.Source.APITimeout, "api-timeout", 30*time.Second, "time limit of one GitLab API request (`DURATION`); slower ones are retried")
	cmd.Flags().DurationVar(&opts.WatchExternal, "watch-external", 0, "check the external base images every `DURATION` and rebuild from the projects using a changed one (see 'chain watch'; 0: off)")
	addRegistryFlags(cmd.Flags(), &opts.Registry)
	cmd.Flags().DurationVar(&opts.RescanInterval, "rescan-interval", 15*time.Minute, "how often the graph is scanned again (`DURATION`; 0: only on pushes changing a dependency file)")
	return cmd
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
	secret := ""
	if opts.SecretFile != "" {
		if secret, err = cli.ReadSecretFile(opts.SecretFile); err != nil {
			return cli.UsageError(fmt.Errorf("--webhook-secret-file: %w", err))
		}
	}
	src, err := opts.Source.build(&cli.Factory{IO: opts.IO, Logger: opts.Log, Getenv: opts.Getenv}, true)
	if err != nil {
		return err
	}
	listener, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return cli.Usagef("--listen %s: %v", opts.Listen, err)
	}
	defer listener.Close()
	if err := os.MkdirAll(filepath.Dir(opts.State), 0o700); err != nil {
		return fmt.Errorf("--state %s: %w", opts.State, err)
	}

	ctx, stop := signalContext()
	defer stop()
	scanner := chain.Scanner{Source: src.source, Registries: src.registries, Concurrency: opts.Source.Concurrency}
	planner, err := chain.ScanPlanner(ctx, scanner)
	if err != nil {
		return cli.TemporaryError(fmt.Errorf("chain serve: first scan: %w", err))
	}
	opts.Log.Info("graph scanned", "projects", len(planner.Graph.Projects), "cycles", len(planner.Graph.Cycles))

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := chain.NewMetrics(registry)
	engine, err := chain.NewEngine(chain.EngineOptions{StatePath: opts.State, API: src.gitlab, Planner: planner,
		Logger: opts.Log, Metrics: metrics, Crash: crashHook(opts.Getenv)})
	if err != nil {
		return err
	}
	defer engine.Close()

	rescan := make(chan string, 1)
	receiver := &chain.Receiver{Engine: engine, Secret: secret, Metrics: metrics, Gatherer: registry, Log: opts.Log,
		DepsChanged: func(project string) {
			select {
			case rescan <- project:
			default:
			}
		}}
	server := &http.Server{Handler: receiver.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, ErrorLog: slog.NewLogLogger(opts.Log.Handler(), slog.LevelWarn)}

	done := make(chan error, 4)
	// Work outlives ctx by at most the engine's grace for a pipeline
	// creation under way; the engine is closed only after it returned.
	workDone := make(chan error, 1)
	go func() { workDone <- engine.Work(ctx) }()
	if opts.WatchExternal > 0 {
		go externalWatchLoop(ctx, opts.Log, engine, &chain.Watcher{Engine: engine, Digests: digests}, opts.WatchExternal)
	}
	go func() {
		rescanLoop(ctx, opts, scanner, engine, rescan)
		done <- nil
	}()
	go func() {
		if err := server.Serve(listener); !errors.Is(err, http.ErrServerClosed) {
			done <- err
		}
	}()
	opts.Log.Info("chain receiver listening", "addr", listener.Addr().String(), "state", opts.State)

	select {
	case <-ctx.Done():
	case err = <-done:
	case err = <-workDone:
		workDone = nil
	}
	stop()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	server.Shutdown(shutdownCtx)
	if workDone != nil {
		if werr := <-workDone; err == nil {
			err = werr
		}
	}
	opts.Log.Info("chain receiver stopped")
	return err
}

// rescanLoop scans the graph again every interval and soon after a push
// changed a dependency file. Runs in flight keep their plans.
func rescanLoop(ctx context.Context, opts *chainServeOptions, scanner chain.Scanner, engine *chain.Engine, pushed <-chan string) {
	var tick <-chan time.Time
	if opts.RescanInterval > 0 {
		ticker := time.NewTicker(opts.RescanInterval)
		defer ticker.Stop()
		tick = ticker.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		case project := <-pushed:
			opts.Log.Info("dependency file changed, rescanning", "project", project)
			// Let a burst of pushes settle into one scan.
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
		}
		planner, err := chain.ScanPlanner(ctx, scanner)
		if err != nil {
			opts.Log.Error("rescan failed, keeping the previous graph", "err", err)
			continue
		}
		engine.SetPlanner(planner)
		opts.Log.Info("graph rescanned", "projects", len(planner.Graph.Projects))
	}
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
		Use:   "trigger PROJECT [--ref REF] [--dry-run] [--server URL] [--follow]",
		Short: "Start a chain run at PROJECT by creating its pipeline",
		Long: `Start a chain run at PROJECT by creating its pipeline (with the variable
OPSCTL_CHAIN_RUN set to the run's id).

  (no flag)   create the pipeline; a receiver that gets GitLab's webhooks
              continues the run when it succeeds
  --server    register the run with a running receiver ('chain serve'),
              which creates the pipeline and continues the run
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
			opts.Log = f.Logger
			opts.Project = strings.Trim(args[0], "/")
			return runChainTrigger(opts)
		},
	}
	addChainSourceFlags(cmd.Flags(), &opts.Source)
	cmd.Flags().StringVar(&opts.Ref, "ref", "", "`REF` of PROJECT's pipeline (default: its default branch); downstream projects build their default branches")
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "print the pipeline that would be created and the plan, change nothing")
	cmd.Flags().StringVar(&opts.Server, "server", "", "`URL` of a running receiver to start the run on")
	cmd.Flags().StringVar(&opts.SecretFile, "webhook-secret-file", "", "`FILE` holding the receiver's webhook secret (with --server)")
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
		return triggerOnServer(ctx, opts)
	}
	if opts.SecretFile != "" {
		return cli.Usagef("--webhook-secret-file goes with --server")
	}
	f := &cli.Factory{IO: opts.IO, Logger: opts.Log, Getenv: opts.Getenv}
	src, err := opts.Source.build(f, !opts.DryRun)
	if err != nil {
		return err
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
	if err := os.MkdirAll(filepath.Dir(opts.State), 0o700); err != nil {
		return fmt.Errorf("--state %s: %w", opts.State, err)
	}
	engine, err := chain.NewEngine(chain.EngineOptions{StatePath: opts.State, API: src.gitlab, Planner: planner,
		Logger: opts.Log, Crash: crashHook(opts.Getenv)})
	if err != nil {
		return err
	}
	defer engine.Close()
	run, err := engine.UnfinishedRunAt(opts.Project)
	if err != nil {
		return err
	}
	if run != nil {
		fmt.Fprintf(opts.IO.ErrOut, "resuming the unfinished run %s of %s\n", run.ID, opts.Project)
	} else if run, err = engine.StartRun([]string{opts.Project}, runID, opts.Project, opts.Ref); err != nil {
		return chainError("chain trigger", err)
	}
	fmt.Fprintf(opts.IO.ErrOut, "run %s: %d projects\n", run.ID, len(run.Steps))
	lastLine := ""
	run, err = engine.Follow(ctx, run.ID, opts.Interval, func(r *chain.Run) {
		if line := runSummary(r); line != lastLine {
			fmt.Fprintln(opts.IO.ErrOut, line)
			lastLine = line
		}
	})
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

// runSummary is one line of progress: how many projects are in each state.
func runSummary(r *chain.Run) string {
	counts := map[chain.StepState]int{}
	for _, s := range r.Steps {
		counts[s.State]++
	}
	var parts []string
	for _, st := range []chain.StepState{chain.StepSucceeded, chain.StepRunning, chain.StepTriggered, chain.StepQueued, chain.StepWaiting, chain.StepFailed, chain.StepCanceled} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	return fmt.Sprintf("run %s %s: %s", r.ID, r.Status, strings.Join(parts, ", "))
}

func serverURL(flag string, getenv func(string) string) (*url.URL, error) {
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
	return u, nil
}

// receiverCall sends one request to a receiver and decodes its JSON answer.
func receiverCall(ctx context.Context, method string, u *url.URL, path, secret string, body, out any) error {
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	p, query, _ := strings.Cut(path, "?")
	target := u.JoinPath(p)
	target.RawQuery = query
	req, err := http.NewRequestWithContext(ctx, method, target.String(), rd)
	if err != nil {
		return err
	}
	if secret != "" {
		req.Header.Set("X-Gitlab-Token", secret)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return cli.TemporaryError(fmt.Errorf("receiver %s: %w", u.Host, err))
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		json.Unmarshal(data, &e)
		msg := fmt.Errorf("receiver %s: %s %s: %s: %s", u.Host, method, path, resp.Status, e.Error)
		if resp.StatusCode >= 500 {
			return cli.TemporaryError(msg)
		}
		return msg
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("receiver %s: %s %s: answer is not the expected JSON: %w", u.Host, method, path, err)
		}
	}
	return nil
}

func triggerOnServer(ctx context.Context, opts *chainTriggerOptions) error {
	u, err := serverURL(opts.Server, opts.Getenv)
	if err != nil {
		return err
	}
	secret := ""
	if opts.SecretFile != "" {
		if secret, err = cli.ReadSecretFile(opts.SecretFile); err != nil {
			return cli.UsageError(fmt.Errorf("--webhook-secret-file: %w", err))
		}
	}
	var run chain.Run
	if err := receiverCall(ctx, http.MethodPost, u, "/runs", secret, chain.StartRunRequest{Project: opts.Project, Ref: opts.Ref}, &run); err != nil {
		return err
	}
	fmt.Fprintf(opts.IO.ErrOut, "run %s: %d projects\n", run.ID, len(run.Steps))
	if opts.Follow {
		lastLine := ""
		for run.Status == chain.RunRunning {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(opts.Interval):
			}
			if err := receiverCall(ctx, http.MethodGet, u, "/runs/"+run.ID, "", nil, &run); err != nil {
				return err
			}
			if line := runSummary(&run); line != lastLine {
				fmt.Fprintln(opts.IO.ErrOut, line)
				lastLine = line
			}
		}
	}
	if err := writeRun(opts.IO.Out, opts.Output, &run); err != nil {
		return err
	}
	if run.Status == chain.RunFailed {
		return &chain.RunFailedError{Run: &run}
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
	Output *cli.OutputFlag
}

func newCmdChainStatus(f *cli.Factory) *cobra.Command {
	opts := &chainStatusOptions{IO: f.IO, Getenv: f.Getenv}
	cmd := &cobra.Command{
		Use:   "status [RUN] [--server URL | --state FILE] [-o text|json]",
		Short: "Show chain runs, or one run project by project",
		Long: `Show the chain runs of a receiver (newest first), or one run with the state
of each project. The receiver is --server URL (default $OPSCTL_CHAIN_SERVER or
` + defaultChainServer + `); --state FILE reads a state file that no process holds
(e.g. that of 'chain trigger --follow').`,
		Example: `  opsctl chain status
  opsctl chain status 20261126-101500-a1b2c3 -o json
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
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
	return cmd
}

func runChainStatus(opts *chainStatusOptions) error {
	if opts.Server != "" && opts.State != "" {
		return cli.Usagef("--server and --state exclude each other")
	}
	if opts.Limit < 0 {
		return cli.Usagef("--limit %d: expected 0 or more", opts.Limit)
	}
	ctx, stop := signalContext()
	defer stop()
	var runs []*chain.Run
	var one *chain.Run
	if opts.State != "" {
		if _, err := os.Stat(opts.State); err != nil {
			return cli.Usagef("--state: %v", err)
		}
		engine, err := chain.OpenReadOnly(opts.State)
		if err != nil {
			return err
		}
		defer engine.Close()
		if opts.RunID != "" {
			if one, err = engine.Run(opts.RunID); err != nil {
				return err
			}
		} else if runs, err = engine.Runs(opts.Limit); err != nil {
			return err
		}
	} else {
		u, err := serverURL(opts.Server, opts.Getenv)
		if err != nil {
			return err
		}
		if opts.RunID != "" {
			var r chain.Run
			if err := receiverCall(ctx, http.MethodGet, u, "/runs/"+url.PathEscape(opts.RunID), "", nil, &r); err != nil {
				return err
			}
			one = &r
		} else if err := receiverCall(ctx, http.MethodGet, u, "/runs?limit="+strconv.Itoa(opts.Limit), "", nil, &runs); err != nil {
			return err
		}
	}
	if opts.RunID != "" {
		if one == nil {
			return fmt.Errorf("chain status: no run %s", opts.RunID)
		}
		return writeRun(opts.IO.Out, opts.Output, one)
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
