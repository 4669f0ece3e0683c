package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/chain"
)

// ChainTriggerOptions are the inputs of `chain trigger`.
type ChainTriggerOptions struct {
	*cli.Factory
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

// NewCmdChainTrigger builds `chain trigger`; runF, when set, receives the
// options instead of runChainTrigger (tests of the flags).
func NewCmdChainTrigger(f *cli.Factory, runF func(*ChainTriggerOptions) error) *cobra.Command {
	opts := &ChainTriggerOptions{Factory: f}
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
			opts.Project = strings.Trim(args[0], "/")
			if runF != nil {
				return runF(opts)
			}
			return runChainTrigger(opts)
		},
	}
	fl := cmd.Flags()
	addChainSourceFlags(fl, &opts.Source, true)
	fl.StringVar(&opts.Ref, "ref", "", "`REF` of PROJECT's pipeline (default: its default branch); downstream projects build their default branches")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "print the pipeline that would be created and the plan, change nothing")
	fl.StringVar(&opts.Server, "server", "", "`URL` of a running receiver to start the run on")
	fl.StringVar(&opts.SecretFile, "webhook-secret-file", "", "`FILE` holding the receiver's webhook secret (required with --server)")
	fl.BoolVar(&opts.Follow, "follow", false, "poll the pipelines and trigger downstream from here until the run ends")
	fl.StringVar(&opts.State, "state", "/var/lib/opsctl/chain-follow.db", "state `FILE` of --follow")
	addAPITimeoutFlag(fl, &opts.Source)
	fl.DurationVar(&opts.Interval, "interval", 15*time.Second, "how often --follow polls (`DURATION`)")
	opts.Output = cli.AddOutputFlag(fl, "text", "json")
	return cmd
}

func runChainTrigger(opts *ChainTriggerOptions) error {
	if err := opts.validate(); err != nil {
		return err
	}
	ctx, stop := opts.SignalContext(nil)
	defer stop()
	if opts.Server != "" {
		return opts.triggerOnServer(ctx)
	}
	src, err := opts.Source.build(opts.Factory, true)
	if err != nil {
		return err
	}
	engine, err := opts.followState(src)
	if err != nil {
		return err
	}
	if engine != nil {
		defer engine.Close()
	}
	planner, err := chain.ScanPlanner(ctx, src.scanner())
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
	switch {
	case opts.DryRun:
		return opts.writeDryRun(plan, runID, ref)
	case !opts.Follow:
		return opts.createPipeline(ctx, src.gitlab, plan, runID, ref)
	}
	engine.SetPlanner(planner)
	return opts.follow(ctx, engine, runID)
}

// validate checks the argument and the flags that go together.
func (opts *ChainTriggerOptions) validate() error {
	if err := chain.ValidateProjectPath(opts.Project); err != nil {
		return cli.Usagef("chain trigger: PROJECT: %v", err)
	}
	switch {
	case opts.Interval <= 0:
		return cli.Usagef("--interval %s: expected a positive duration", opts.Interval)
	case opts.Server != "" && opts.DryRun:
		return cli.Usagef("--dry-run cannot be combined with --server (the receiver plans the run)")
	case opts.Server != "" && opts.SecretFile == "":
		return cli.Usagef("--server needs --webhook-secret-file FILE: the receiver starts runs only for requests carrying its webhook secret")
	case opts.Server == "" && opts.SecretFile != "":
		return cli.Usagef("--webhook-secret-file goes with --server")
	}
	return nil
}

// followState opens the state file of --follow (nil without it), before
// GitLab is asked anything; a dry run checks it as the real run would,
// and only reads it.
func (opts *ChainTriggerOptions) followState(src *chainSource) (*chain.Engine, error) {
	if !opts.Follow {
		return nil, nil
	}
	exists, err := checkStatePath("--state", opts.State, !opts.DryRun)
	if err != nil {
		return nil, err
	}
	var engine *chain.Engine
	switch {
	case !opts.DryRun:
		engine, err = chain.NewEngine(chain.EngineOptions{StatePath: opts.State, API: src.gitlab,
			Logger: chainLogger(opts.Logger), Crash: crashHook(opts.Getenv)})
	case exists:
		engine, err = chain.OpenReadOnly(opts.State)
	}
	if err != nil {
		return nil, chainError("chain trigger", err)
	}
	return engine, nil
}

// writeDryRun prints the pipeline that would be created and the plan.
func (opts *ChainTriggerOptions) writeDryRun(plan *chain.RunPlan, runID, ref string) error {
	if opts.Output.JSON() {
		return cli.WriteJSON(opts.IO.Out, map[string]any{"dry_run": true, "run": runID, "project": opts.Project, "ref": ref, "waves": plan.Waves})
	}
	fmt.Fprintf(opts.IO.Out, "would create a pipeline of %s on %s with %s=%s\n", opts.Project, ref, chain.RunVariable, runID)
	for i, wave := range plan.Waves {
		fmt.Fprintf(opts.IO.Out, "%d: %s\n", i+1, strings.Join(wave, " "))
	}
	return nil
}

// createPipeline creates PROJECT's pipeline, which a receiver continues.
func (opts *ChainTriggerOptions) createPipeline(ctx context.Context, api *chain.GitLab, plan *chain.RunPlan, runID, ref string) error {
	created, err := api.CreatePipeline(ctx, opts.Project, chain.Target{ProjectID: plan.Targets[opts.Project].ProjectID, Ref: ref}, runID, nil)
	if err != nil {
		return chainError("chain trigger", err)
	}
	id := created.ID
	if opts.Output.JSON() {
		return cli.WriteJSON(opts.IO.Out, map[string]any{"run": runID, "project": opts.Project, "pipeline_id": id, "ref": ref})
	}
	fmt.Fprintf(opts.IO.Out, "run %s: pipeline %d of %s created on %s\n", runID, id, opts.Project, ref)
	return nil
}

// follow starts the run at PROJECT, or resumes the unfinished one a crash
// left, and drives it to its end (Engine.Follow).
func (opts *ChainTriggerOptions) follow(ctx context.Context, engine *chain.Engine, runID string) error {
	run, err := engine.UnfinishedRunAt(opts.Project)
	if err != nil {
		return chainError("chain trigger", err)
	}
	if run != nil {
		opts.IO.Sayf("resuming the unfinished run %s of %s", run.ID, opts.Project)
	} else if run, err = engine.StartRun([]string{opts.Project}, runID, opts.Project, opts.Ref); err != nil {
		return chainError("chain trigger", err)
	}
	opts.IO.Sayf("run %s: %d projects", run.ID, len(run.Steps))
	run, err = engine.Follow(ctx, run.ID, opts.Interval, progressLines(opts.IO.ErrOut))
	if run != nil {
		if werr := writeRun(opts.IO.Out, opts.Output, run); werr != nil {
			return werr
		}
	}
	if err != nil && !errors.As(err, new(*chain.RunFailedError)) {
		return chainError("chain trigger", err)
	}
	return chainRename(err) // a failed run: its failed project is the message
}

// triggerOnServer starts the run on the receiver at --server, which
// drives it; with --follow it follows the run there (Client.Follow).
func (opts *ChainTriggerOptions) triggerOnServer(ctx context.Context) error {
	client, err := receiverClient(opts.Server, opts.Getenv)
	if err != nil {
		return err
	}
	if client.Secret, err = secretFlag("--webhook-secret-file", opts.SecretFile); err != nil {
		return err
	}
	run, err := client.StartRun(ctx, chain.StartRunRequest{Project: opts.Project, Ref: opts.Ref})
	if err != nil {
		return chainRename(err)
	}
	opts.IO.Sayf("run %s: %d projects", run.ID, len(run.Steps))
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
