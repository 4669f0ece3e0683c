package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/chain"
)

// newCmdChainHooks is `chain hooks`, whose one verb is sync.
func newCmdChainHooks(f *cli.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hooks",
		Short: "Manage the GitLab webhooks that report pipelines to the receiver",
		Example: `  opsctl chain hooks sync --gitlab-url https://gitlab.example.com --group images \
      --token-file ~/.config/opsctl/gitlab-token --hook-url https://chain.example.com/hook --dry-run`,
	}
	cmd.AddCommand(NewCmdChainHooksSync(f, nil))
	return cmd
}

// ChainHooksSyncOptions are the inputs of `chain hooks sync`.
type ChainHooksSyncOptions struct {
	*cli.Factory
	Source            chainSourceOptions
	HookURL           string
	WebhookSecretFile string
	DryRun            bool
}

// NewCmdChainHooksSync builds `chain hooks sync`; runF, when set, receives
// the options instead of runChainHooksSync (tests of the flags).
func NewCmdChainHooksSync(f *cli.Factory, runF func(*ChainHooksSyncOptions) error) *cobra.Command {
	opts := &ChainHooksSyncOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "sync --hook-url URL [--webhook-secret-file FILE] [--dry-run] [source flags]",
		Short: "Give every project of the group exactly one webhook for URL",
		Long: `Make every project of the group end with exactly one webhook for --hook-url:
pipeline events on, push events off, SSL verification on, and the webhook
secret (--webhook-secret-file) as its token. An existing hook for the URL is
edited, never duplicated; extra hooks for the same URL are deleted.

GitLab never shows a hook's token, so with a secret an existing hook is
always rewritten (counted as updated). Prints "added N, updated N, unchanged N".
The token needs the api scope and the Maintainer role.

--dry-run names every project it would change and changes nothing.`,
		Example: `  opsctl chain hooks sync --gitlab-url https://gitlab.example.com --group images \
      --token-file ~/.config/opsctl/gitlab-token \
      --hook-url https://chain.example.com/hook --webhook-secret-file /etc/opsctl/webhook-secret --dry-run`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runChainHooksSync(opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.HookURL, "hook-url", "", "the receiver's `URL`, e.g. https://chain.example.com/hook (required)")
	fl.StringVar(&opts.WebhookSecretFile, "webhook-secret-file", "", "`FILE` holding the webhook secret, sent by GitLab as X-Gitlab-Token")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "print what would change and change nothing")
	addChainSourceFlags(fl, &opts.Source, true)
	return cmd
}

func runChainHooksSync(opts *ChainHooksSyncOptions) error {
	if opts.HookURL == "" {
		return cli.Usagef("chain hooks sync: --hook-url is required")
	}
	if _, err := cli.ParseHTTPURL("--hook-url", opts.HookURL, "https://chain.example.com/hook"); err != nil {
		return err
	}
	secret, err := secretFlag("--webhook-secret-file", opts.WebhookSecretFile)
	if err != nil {
		return err
	}
	src, err := opts.Source.build(opts.Factory, true)
	if err != nil {
		return err
	}
	ctx, stop := opts.SignalContext(nil)
	defer stop()
	projects, err := src.source.ListProjects(ctx)
	if err != nil {
		return chainError("chain hooks sync", err)
	}
	plan, err := chain.PlanHooks(ctx, src.gitlab, projects, chain.WantedHook(opts.HookURL, secret), opts.Source.Concurrency)
	if err != nil {
		return chainError("chain hooks sync", err)
	}
	if opts.DryRun {
		var dryRun strings.Builder
		plan.WriteDryRun(&dryRun)
		_, err := io.WriteString(opts.IO.Out, chainText(dryRun.String()))
		return err
	}
	counts, err := plan.Apply(ctx, src.gitlab, opts.Source.Concurrency)
	fmt.Fprintln(opts.IO.Out, counts)
	if err != nil {
		return chainError("chain hooks sync", err)
	}
	return nil
}
