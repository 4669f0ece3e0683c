package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/chain"
)

// ChainStatusOptions are the inputs of `chain status`.
type ChainStatusOptions struct {
	*cli.Factory
	Server string
	State  string
	RunID  string
	Limit  int
	// ExitStatus makes the exit code say how RUN stands: 0 succeeded,
	// 1 failed, 75 still running.
	ExitStatus bool
	Output     *cli.OutputFlag
	// runPage is RUN's web page on the receiver that was asked ("" when
	// a state file was read).
	runPage string
}

// NewCmdChainStatus builds `chain status`; runF, when set, receives the
// options instead of runChainStatus (tests of the flags).
func NewCmdChainStatus(f *cli.Factory, runF func(*ChainStatusOptions) error) *cobra.Command {
	opts := &ChainStatusOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "status [RUN [--exit-status]] [--server URL | --state FILE] [-o text|json]",
		Short: "Show chain runs, or one run project by project",
		Long: `Show the chain runs of a receiver (newest first), or one run with the state
of each project. The receiver is --server URL (default $OPSCTL_CHAIN_SERVER or
` + defaultChainServer + `); --state FILE reads a state file that no process holds
(e.g. that of 'chain trigger --follow').

The text of one RUN asked of a receiver ends with the address of the run's
web page on the receiver (page: URL/ui/runs/RUN), which draws the run and
follows it live.

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
			if runF != nil {
				return runF(opts)
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

func runChainStatus(opts *ChainStatusOptions) error {
	switch {
	case opts.Server != "" && opts.State != "":
		return cli.Usagef("--server and --state exclude each other")
	case opts.ExitStatus && opts.RunID == "":
		return cli.Usagef("--exit-status goes with RUN: expected chain status RUN --exit-status")
	case opts.Limit < 0:
		return cli.Usagef("--limit %d: expected 0 or more", opts.Limit)
	}
	ctx, stop := opts.SignalContext(nil)
	defer stop()
	read := opts.readReceiver
	if opts.State != "" {
		read = opts.readState
	}
	one, runs, err := read(ctx)
	if err != nil {
		return err
	}
	if opts.RunID != "" {
		return opts.writeOne(one)
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
	return writeRunList(opts.IO.Out, runs)
}

// readState reads RUN, or the runs, from the state file of --state.
func (opts *ChainStatusOptions) readState(context.Context) (one *chain.Run, runs []*chain.Run, err error) {
	if err := wantRegularFile("--state", opts.State); err != nil {
		return nil, nil, err
	}
	engine, err := chain.OpenReadOnly(opts.State)
	if err != nil {
		return nil, nil, chainError("chain status", err)
	}
	defer engine.Close()
	if opts.RunID != "" {
		one, err = engine.Run(opts.RunID)
	} else {
		runs, err = engine.Runs(opts.Limit)
	}
	if err != nil {
		return nil, nil, chainError("chain status", err)
	}
	return one, runs, nil
}

// readReceiver asks the receiver for RUN, or the runs.
func (opts *ChainStatusOptions) readReceiver(ctx context.Context) (one *chain.Run, runs []*chain.Run, err error) {
	client, err := receiverClient(opts.Server, opts.Getenv)
	if err != nil {
		return nil, nil, err
	}
	if opts.RunID != "" {
		one, err = client.Run(ctx, opts.RunID)
		opts.runPage = client.RunPageURL(opts.RunID)
	} else {
		runs, err = client.Runs(ctx, opts.Limit)
	}
	return one, runs, chainRename(err)
}

// writeOne prints RUN; with --exit-status the exit code says how it stands.
func (opts *ChainStatusOptions) writeOne(run *chain.Run) error {
	if run == nil {
		return fmt.Errorf("chain status: no run %s", opts.RunID)
	}
	if err := writeRun(opts.IO.Out, opts.Output, run); err != nil {
		return err
	}
	if opts.runPage != "" && !opts.Output.JSON() {
		if _, err := fmt.Fprintf(opts.IO.Out, "page: %s\n", opts.runPage); err != nil {
			return err
		}
	}
	if !opts.ExitStatus {
		return nil
	}
	switch run.Status {
	case chain.RunSucceeded:
		return nil
	case chain.RunFailed:
		return cli.Silent(cli.ExitFailure) // the failed projects are in the output
	}
	return cli.Silent(cli.ExitTemporary)
}

// writeRunList prints the runs, one a line.
func writeRunList(w io.Writer, runs []*chain.Run) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
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

// writeRun prints one run: JSON, or its projects wave by wave (status RUN,
// and trigger when it followed the run).
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
