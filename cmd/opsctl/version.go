package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
)

type versionOptions struct {
	IO      *cli.IOStreams
	Version string
	Output  *cli.OutputFlag
}

type versionInfo struct {
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"`
	Module    string `json:"module,omitempty"`
	Revision  string `json:"vcs_revision,omitempty"`
	Modified  bool   `json:"vcs_modified,omitempty"`
	CGO       string `json:"cgo_enabled,omitempty"`
}

func newCmdVersion(f *cli.Factory) *cobra.Command {
	opts := &versionOptions{IO: f.IO, Version: f.Version}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version and Go build information",
		Example: `  opsctl version
  opsctl version -o json | jq -r .version`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runVersion(opts)
		},
	}
	opts.Output = cli.AddOutputFlag(cmd.Flags(), "text", "json")
	return cmd
}

func runVersion(opts *versionOptions) error {
	info := versionInfo{Version: opts.Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		info.Module = bi.Main.Path
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			case "CGO_ENABLED":
				info.CGO = s.Value
			}
		}
	}
	if opts.Output.JSON() {
		return cli.WriteJSON(opts.IO.Out, info)
	}
	fmt.Fprintf(opts.IO.Out, "opsctl %s\n", info.Version)
	fmt.Fprintf(opts.IO.Out, "go: %s %s\n", info.GoVersion, info.Platform)
	if info.Module != "" {
		fmt.Fprintf(opts.IO.Out, "module: %s\n", info.Module)
	}
	if info.CGO != "" {
		fmt.Fprintf(opts.IO.Out, "cgo: %s\n", info.CGO)
	}
	if info.Revision != "" {
		fmt.Fprintf(opts.IO.Out, "revision: %s", info.Revision)
		if info.Modified {
			fmt.Fprint(opts.IO.Out, " (modified)")
		}
		fmt.Fprintln(opts.IO.Out)
	}
	return nil
}
