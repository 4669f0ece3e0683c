package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/chain"
)

// ChainScanOptions are the inputs of `chain scan`.
type ChainScanOptions struct {
	*cli.Factory
	Source chainSourceOptions
	Output *cli.OutputFlag
}

// NewCmdChainScan builds `chain scan`; runF, when set, receives the
// options instead of runChainScan (tests of the flags).
func NewCmdChainScan(f *cli.Factory, runF func(*ChainScanOptions) error) *cobra.Command {
	opts := &ChainScanOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "scan",
		Short: "Print the dependency graph of the projects",
		Long: `Read every project of the source and print the dependency graph: for each
project its upstream projects, where they were found (.gitlab-deps,
Containerfile, Dockerfile or none) and the external images it builds on.

With a dependency cycle the graph is still printed, the cycles named, and the
exit code is 1. Warnings (an ARG without default in FROM, an upstream that is
not a project) go to stderr, or into the JSON.

-o svg draws the graph as a standalone SVG picture (no Graphviz needed): one
column per wave, one box per project, cycles marked; long paths are
shortened in the box and given in full as its tooltip.`,
		Example: `  opsctl chain scan --dir ~/src/images
  opsctl chain scan --dir ~/src/images -o svg > chain.svg
  opsctl chain scan --dir ~/src/images -o dot | dot -Tpng > chain.png
  opsctl chain scan --dir ~/src/images -o mermaid
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
	addChainSourceFlags(cmd.Flags(), &opts.Source, false)
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json", "svg", "dot", "mermaid")
	return cmd
}

func runChainScan(opts *ChainScanOptions) error {
	g, err := opts.Source.scanGraph(opts.Factory, "chain scan")
	if err != nil {
		return err
	}
	out := opts.IO.Out
	switch opts.Output.Value {
	case "json":
		err = cli.WriteJSON(out, g)
	case "svg":
		err = g.WriteSVG(out)
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
		writeWarnings(opts.IO, g.Warnings)
	}
	if len(g.Cycles) > 0 {
		if opts.Output.JSON() || opts.Output.Value == "text" {
			return cli.Silent(cli.ExitFailure) // the cycles are in the output
		}
		return fmt.Errorf("chain scan: %d dependency cycle(s), first: %s", len(g.Cycles), chain.FormatCycle(g.Cycles[0]))
	}
	return nil
}
