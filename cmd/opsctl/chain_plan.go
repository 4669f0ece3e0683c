package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/chain"
)

// ChainPlanOptions are the inputs of `chain plan`.
type ChainPlanOptions struct {
	*cli.Factory
	Source chainSourceOptions
	Output *cli.OutputFlag
	Roots  []string
}

// NewCmdChainPlan builds `chain plan`; runF, when set, receives the
// options instead of runChainPlan (tests of the flags).
func NewCmdChainPlan(f *cli.Factory, runF func(*ChainPlanOptions) error) *cobra.Command {
	opts := &ChainPlanOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "plan [ROOT...]",
		Short: "Print the rebuild order of everything downstream of the roots",
		Long: `Print, in waves, every project downstream of the ROOT projects (the roots
included; without ROOT, all projects without upstreams). Every project appears
once, in a wave after all its upstreams that are in the plan: the projects of
one wave can build at the same time.

A dependency cycle among the projects to build is an error (exit 1) that
names the cycle. -o svg draws the plan's waves as a standalone SVG picture, one
column per wave (no Graphviz needed). -o dot and -o mermaid draw the graph of
the projects of the plan (without ROOT, the graph of 'chain scan').`,
		Example: `  opsctl chain plan --dir ~/src/images
  opsctl chain plan --dir ~/src/images ops/ruby -o json
  opsctl chain plan --dir ~/src/images ops/ruby -o svg > plan.svg
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
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json", "svg", "dot", "mermaid")
	return cmd
}

func runChainPlan(opts *ChainPlanOptions) error {
	for _, root := range opts.Roots {
		if err := chain.ValidateProjectPath(root); err != nil {
			return cli.Usagef("chain plan: ROOT %v", err)
		}
	}
	g, err := opts.Source.scanGraph(opts.Factory, "chain plan")
	if err != nil {
		return err
	}
	writeWarnings(opts.IO, g.Warnings)
	plan, err := g.Plan(opts.Roots)
	if err != nil {
		return chainError("chain plan", err)
	}
	out := opts.IO.Out
	switch opts.Output.Value {
	case "json":
		err = cli.WriteJSON(out, plan)
	case "svg":
		err = plan.WriteSVG(out, g)
	case "dot":
		err = g.Subgraph(plan).WriteDot(out)
	case "mermaid":
		err = g.Subgraph(plan).WriteMermaid(out)
	default:
		err = plan.WriteText(out)
	}
	if err != nil {
		return fmt.Errorf("chain plan: write output: %w", err)
	}
	return nil
}
