package main

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/chain"
)

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
		Example: `  opsctl chain scan --dir examples/images
  opsctl chain scan --dir examples/images -o dot | dot -Tsvg > chain.svg
  opsctl chain scan --dir examples/images -o mermaid
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
	addChainSourceFlags(cmd.Flags(), &opts.Source)
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
names the cycle.`,
		Example: `  opsctl chain plan --dir examples/images
  opsctl chain plan --dir examples/images ops/ruby -o json
  opsctl chain plan --gitlab-url https://gitlab.example.com --group images images/base`,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Roots = args
			if runF != nil {
				return runF(opts)
			}
			return runChainPlan(opts)
		},
	}
	addChainSourceFlags(cmd.Flags(), &opts.Source)
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
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
	if opts.Output.JSON() {
		err = cli.WriteJSON(f.IO.Out, plan)
	} else {
		err = plan.WriteText(f.IO.Out)
	}
	if err != nil {
		return fmt.Errorf("chain plan: write output: %w", err)
	}
	return nil
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
