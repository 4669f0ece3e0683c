package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opsctl/opsctl/internal/cli"
)

// run builds the command tree, executes it with args and returns the exit code.
func run(args []string, streams *cli.IOStreams, getenv func(string) string) int {
	f := &cli.Factory{IO: streams, Version: version, Getenv: getenv, Logger: slog.New(slog.DiscardHandler)}
	root := newRootCmd(f)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return cli.ExitOK
	}
	if isCobraUsageError(err) {
		err = cli.UsageError(err)
	}
	if msg := cli.Message(err); msg != "" {
		fmt.Fprintln(streams.ErrOut, "opsctl: "+msg)
	}
	return cli.ExitCode(err)
}

// isCobraUsageError recognises the usage errors cobra raises after parsing
// and before any hook of ours runs: missing required flags and flag groups.
func isCobraUsageError(err error) bool {
	var exitErr *cli.ExitError
	if errors.As(err, &exitErr) {
		return false
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "required flag(s) ") || strings.HasPrefix(msg, "if any flags in the group ") ||
		strings.HasPrefix(msg, "at least one of the flags in the group ")
}

func newRootCmd(f *cli.Factory) *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:   "opsctl",
		Short: "Operations toolbox for people who run their own servers",
		Long: `opsctl turns five operations recipes into safe, repeatable commands:

  chain      rebuild container images in dependency order through GitLab CI
  lvm        create, resize and remove an LVM writeback cache
  sock       capture the traffic of a UNIX socket into a pcap file
  pygrub     make EL7-style grub2 guests boot under Xen's pygrub
  imap-auth  authenticate SMTP users against IMAP, strictly verified

Logs and progress go to stderr; results go to stdout.`,
		Example: `  opsctl chain plan --dir ~/src/images
  opsctl lvm cache status -o json
  opsctl pygrub check --xen 4.1 /mnt
  opsctl help chain
  opsctl completion bash > /etc/bash_completion.d/opsctl`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			level, err := parseLogLevel(logLevel)
			if err != nil {
				return err
			}
			f.Logger = slog.New(slog.NewTextHandler(f.IO.ErrOut, &slog.HandlerOptions{Level: level}))
			return nil
		},
	}
	root.SetIn(f.IO.In)
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "log level: debug|info|warn|error")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if cmd == root {
			return cli.UsageError(explainFlagValueError(err))
		}
		return cli.UsageError(fmt.Errorf("%s: %w", commandPath(cmd), explainFlagValueError(err)))
	})

	root.AddCommand(
		newCmdChain(f),
		newCmdLVM(f),
		newCmdSock(f),
		newCmdPygrub(f),
		newCmdIMAPAuth(f),
		newCmdVersion(f),
		newCmdGenDocs(f),
	)
	// cobra adds its completion command only when Execute runs, after
	// markUsageErrors: add it now so that its usage errors exit 2 too.
	root.InitDefaultCompletionCmd()
	addCompletionExamples(root)
	root.InitDefaultHelpCmd()
	refuseUnknownHelpTopics(root)
	markUsageErrors(root)
	return root
}

// commandPath is the command's path without "opsctl" ("sock capture"):
// errors are printed after "opsctl: ".
func commandPath(c *cobra.Command) string {
	return strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")
}

// explainFlagValueError turns pflag's report of a value its parser refused
// (`invalid argument "abc" for "--concurrency" flag: strconv.ParseInt: ...`)
// into one that names the flag, the value and what was expected.
func explainFlagValueError(err error) error {
	var invalid *pflag.InvalidValueError
	if !errors.As(err, &invalid) {
		return err
	}
	flag := invalid.GetFlag()
	var expected string
	switch flag.Value.Type() {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		expected = "a whole number"
	case "float32", "float64":
		expected = "a number"
	case "duration":
		expected = "a duration like 30s, 15m or 6h"
	case "bool":
		expected = "true or false"
	default:
		if cause := errors.Unwrap(invalid); cause != nil && strings.HasPrefix(cause.Error(), "expected ") {
			return fmt.Errorf("--%s %q: %w", flag.Name, invalid.GetValue(), cause)
		}
		return err
	}
	return fmt.Errorf("--%s %q: expected %s", flag.Name, invalid.GetValue(), expected)
}

func parseLogLevel(s string) (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, cli.Usagef("--log-level %q: expected debug, info, warn or error", s)
	}
	return level, nil
}

// markUsageErrors makes every error that cobra itself raises before a
// command runs (a wrong number of arguments, an unknown subcommand) a usage
// error, and a group invoked without a subcommand print its help and exit 2.
func markUsageErrors(cmd *cobra.Command) {
	if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				if !c.HasSubCommands() && len(a) > 0 && strings.HasPrefix(err.Error(), "unknown command ") {
					// cobra.NoArgs calls an argument an unknown command.
					return cli.Usagef("%s: takes no arguments, got %q", commandPath(c), a[0])
				}
				return cli.UsageError(fmt.Errorf("%s: %w", commandPath(c), err))
			}
			return nil
		}
	}
	if cmd.HasSubCommands() && cmd.RunE == nil && cmd.Run == nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if len(a) > 0 {
				return cli.Usagef("unknown command %q for %q", a[0], c.CommandPath())
			}
			return nil
		}
		cmd.RunE = func(c *cobra.Command, a []string) error {
			_ = c.Help()
			return cli.Silent(cli.ExitUsage)
		}
	}
	for _, sub := range cmd.Commands() {
		markUsageErrors(sub)
	}
}

// addCompletionExamples gives cobra's completion commands the examples every
// opsctl command has.
func addCompletionExamples(root *cobra.Command) {
	for _, cmd := range root.Commands() {
		if cmd.Name() != "completion" {
			continue
		}
		cmd.Example = `  opsctl completion bash > /etc/bash_completion.d/opsctl
  opsctl completion zsh > "${fpath[1]}/_opsctl"
  opsctl completion fish > ~/.config/fish/completions/opsctl.fish`
		for _, shell := range cmd.Commands() {
			switch shell.Name() {
			case "bash":
				shell.Example = `  source <(opsctl completion bash)
  opsctl completion bash > /etc/bash_completion.d/opsctl`
			case "zsh":
				shell.Example = `  source <(opsctl completion zsh)
  opsctl completion zsh > "${fpath[1]}/_opsctl"`
			case "fish":
				shell.Example = `  opsctl completion fish | source
  opsctl completion fish > ~/.config/fish/completions/opsctl.fish`
			case "powershell":
				shell.Example = `  opsctl completion powershell | Out-String | Invoke-Expression`
			}
		}
	}
}

// refuseUnknownHelpTopics makes `opsctl help NOSUCH` a usage error (cobra
// prints the root usage and exits 0).
func refuseUnknownHelpTopics(root *cobra.Command) {
	for _, cmd := range root.Commands() {
		if cmd.Name() != "help" || cmd.Run == nil {
			continue
		}
		show := cmd.Run
		cmd.Run = nil
		cmd.Example = "  opsctl help chain plan"
		cmd.RunE = func(c *cobra.Command, args []string) error {
			if topic, rest, err := c.Root().Find(args); topic == nil || err != nil || len(rest) > 0 {
				return cli.Usagef("help: unknown command %q; expected one of the commands opsctl --help lists", strings.Join(args, " "))
			}
			show(c, args)
			return nil
		}
	}
}
