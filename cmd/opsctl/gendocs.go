package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/opsctl/opsctl/internal/cli"
)

type genDocsOptions struct {
	IO             *cli.IOStreams
	ManDir         string
	CompletionsDir string
	Version        string
}

// newCmdGenDocs is hidden: the packaging (make install, make deb) uses it to
// write man pages and shell completions generated from the command tree, so
// they never drift from the binary.
func newCmdGenDocs(f *cli.Factory) *cobra.Command {
	opts := &genDocsOptions{IO: f.IO, Version: f.Version}
	cmd := &cobra.Command{
		Use:     "gen-docs --man DIR --completions DIR",
		Short:   "Write man pages and shell completions (used by packaging)",
		Hidden:  true,
		Example: `  opsctl gen-docs --man build/man --completions build/completions`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.ManDir == "" && opts.CompletionsDir == "" {
				return cli.Usagef("gen-docs: expected --man DIR and/or --completions DIR")
			}
			return runGenDocs(opts, cmd.Root())
		},
	}
	cmd.Flags().StringVar(&opts.ManDir, "man", "", "write section 1 man pages into `DIR`")
	cmd.Flags().StringVar(&opts.CompletionsDir, "completions", "", "write bash, zsh and fish completions into `DIR`")
	return cmd
}

func runGenDocs(opts *genDocsOptions, root *cobra.Command) error {
	root.DisableAutoGenTag = true
	if opts.ManDir != "" {
		if err := os.MkdirAll(opts.ManDir, 0o755); err != nil {
			return err
		}
		header := &doc.GenManHeader{Section: "1", Source: "opsctl " + opts.Version, Manual: "opsctl manual"}
		if err := doc.GenManTree(root, header, opts.ManDir); err != nil {
			return fmt.Errorf("man pages: %w", err)
		}
	}
	if opts.CompletionsDir != "" {
		if err := os.MkdirAll(opts.CompletionsDir, 0o755); err != nil {
			return err
		}
		writers := map[string]func(string) error{
			"opsctl.bash": func(p string) error { return root.GenBashCompletionFileV2(p, true) },
			"_opsctl":     root.GenZshCompletionFile,
			"opsctl.fish": func(p string) error { return root.GenFishCompletionFile(p, true) },
		}
		for name, write := range writers {
			if err := write(filepath.Join(opts.CompletionsDir, name)); err != nil {
				return fmt.Errorf("completion %s: %w", name, err)
			}
		}
	}
	return nil
}
