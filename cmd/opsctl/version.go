package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

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
	info := readVersionInfo(opts.Version)
	if opts.Output.JSON() {
		return cli.WriteJSON(opts.IO.Out, info)
	}
	_, err := io.WriteString(opts.IO.Out, info.text())
	return err
}

// readVersionInfo is the version opsctl was built as, with what the Go
// toolchain recorded in the binary.
func readVersionInfo(version string) versionInfo {
	info := versionInfo{Version: version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
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
	return info
}

// text is what `opsctl version` and `opsctl --version` print: the version on
// the first line, for scripts that read only that.
func (info versionInfo) text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "opsctl %s\n", info.Version)
	fmt.Fprintf(&b, "go: %s %s\n", info.GoVersion, info.Platform)
	if info.Module != "" {
		fmt.Fprintf(&b, "module: %s\n", info.Module)
	}
	if info.CGO != "" {
		fmt.Fprintf(&b, "cgo: %s\n", info.CGO)
	}
	if info.Revision != "" {
		fmt.Fprintf(&b, "revision: %s", info.Revision)
		if info.Modified {
			b.WriteString(" (modified)")
		}
		b.WriteString("\n")
	}
	return b.String()
}
