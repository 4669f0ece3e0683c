package main

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
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
		streams.Failf("%s", msg)
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
  lvm        create, resize, flush and remove an LVM writeback cache
  sock       capture the traffic of a UNIX socket into a pcap file
  pygrub     make EL7-style grub2 guests boot under Xen's pygrub
  imap-auth  authenticate SMTP users against IMAP, strictly verified

Logs and progress go to stderr; results go to stdout.`,
		Example: `  opsctl chain plan --dir ~/src/images
  opsctl lvm cache status -o json
  opsctl pygrub check --xen 4.1 /mnt
  opsctl help chain
  source <(opsctl completion bash)`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			level, err := parseLogLevel(logLevel)
			if err != nil {
				return err
			}
			f.Logger = cli.NewLogger(f.IO.ErrOut, level, f.IO.ErrIsJournal)
			return nil
		},
	}
	addVersionFlag(root, f.Version)
	root.SetIn(f.IO.In)
	root.SetOut(f.IO.Out)
	root.SetErr(f.IO.ErrOut)
	cli.EnumVar(root.PersistentFlags(), &logLevel, "log-level", "info", []string{"debug", "info", "warn", "error"}, "log on stderr the messages of this level and above")
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
	describeCompletionCommands(root)
	root.InitDefaultHelpCmd()
	refuseUnknownHelpTopics(root)
	markUsageErrors(root)
	registerCompletions(root, f)
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
				return cli.Usagef("unknown command %q for %q%s", a[0], c.CommandPath(), didYouMean(c, a[0]))
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

// didYouMean is "; did you mean "x"?" naming the subcommands of parent close
// to typed (cobra's suggestions: a Levenshtein distance of 2 at most, or a
// prefix), or "" when none is.
func didYouMean(parent *cobra.Command, typed string) string {
	if parent.SuggestionsMinimumDistance <= 0 {
		parent.SuggestionsMinimumDistance = 2
	}
	suggestions := parent.SuggestionsFor(typed)
	if len(suggestions) == 0 {
		return ""
	}
	quoted := make([]string, len(suggestions))
	for i, s := range suggestions {
		quoted[i] = strconv.Quote(s)
	}
	return "; did you mean " + strings.Join(quoted, " or ") + "?"
}

// addVersionFlag gives opsctl -v/--version, printing what `opsctl version`
// prints. cobra prints it (through the version template) before any argument
// check, as it does for --help.
func addVersionFlag(root *cobra.Command, version string) {
	if version == "" {
		version = "dev"
	}
	root.Version = version
	root.Flags().BoolP("version", "v", false, "print the version and build information (as 'opsctl version' does)")
	// The template is the text itself, as a quoted template string: no
	// template action can come from the build's version string.
	root.SetVersionTemplate(fmt.Sprintf("{{%q}}", readVersionInfo(version).text()))
}

// describeCompletionCommands replaces the help of cobra's completion
// commands: it told admins to write /etc/bash_completion.d/opsctl (a folder
// bash-completion deprecates) while the package and make install already
// put every script where its shell loads it, and it gave macOS steps. The
// powershell script stays available, unlisted: opsctl runs on Linux.
func describeCompletionCommands(root *cobra.Command) {
	for _, cmd := range root.Commands() {
		if cmd.Name() != "completion" {
			continue
		}
		cmd.Short = "Print the shell completion script for bash, zsh or fish"
		cmd.Long = `Print a script that makes the shell complete opsctl's commands, flags and
flag values: formats and modes, the LVs lvm2 reports, the projects under
--dir, the runs of a receiver.

The Debian package installs the scripts where the shells load them, so
there is nothing to do:

  bash  /usr/share/bash-completion/completions/opsctl
  zsh   /usr/share/zsh/vendor-completions/_opsctl
  fish  /usr/share/fish/vendor_completions.d/opsctl.fish

make install puts them under its PREFIX (docs/install.md). This command is
for a binary copied by hand, or to try completion in the current shell.`
		cmd.Example = `  source <(opsctl completion bash)
  opsctl completion fish > ~/.config/fish/completions/opsctl.fish`
		for _, shell := range cmd.Commands() {
			help, ok := shellCompletionHelp[shell.Name()]
			if !ok {
				continue
			}
			if help.short != "" {
				shell.Short = help.short
				shell.Long = help.long
			}
			shell.Example = help.example
			shell.Hidden = help.hidden
		}
	}
}

// completionHelp is the help of one shell's completion command. A help
// without short keeps cobra's texts.
type completionHelp struct {
	short, long, example string
	hidden               bool
}

// shellCompletionHelp says, for each shell, where the package puts its
// script and how to load it by hand.
var shellCompletionHelp = map[string]completionHelp{
	"bash": {
		short: "Print the bash completion script",
		long: `Print the bash completion script. It needs the bash-completion package.

The Debian package installs it as /usr/share/bash-completion/completions/opsctl
(make install: under its PREFIX), where bash-completion finds it the first
time opsctl is completed: nothing to do. For a binary copied by hand, put it
in your own completions folder (~/.local/share/bash-completion/completions,
or $BASH_COMPLETION_USER_DIR/completions), or load it into this shell.`,
		example: `  # this shell only
  source <(opsctl completion bash)

  # every new shell of yours, for a binary copied by hand
  mkdir -p ~/.local/share/bash-completion/completions
  opsctl completion bash > ~/.local/share/bash-completion/completions/opsctl`,
	},
	"zsh": {
		short: "Print the zsh completion script",
		long: `Print the zsh completion script.

The Debian package installs it as /usr/share/zsh/vendor-completions/_opsctl
(make install: PREFIX/share/zsh/site-functions/_opsctl), where zsh finds it
once compinit runs (most zsh setups run it; otherwise add
"autoload -U compinit; compinit" to ~/.zshrc). For a binary copied by hand,
write it as _opsctl in a folder of your $fpath, or load it into this shell.`,
		example: `  # this shell only
  source <(opsctl completion zsh)

  # every new shell of yours: a folder in fpath before compinit runs
  mkdir -p ~/.zfunc && opsctl completion zsh > ~/.zfunc/_opsctl
  echo 'fpath=(~/.zfunc $fpath)' >> ~/.zshrc`,
	},
	"fish": {
		short: "Print the fish completion script",
		long: `Print the fish completion script.

The Debian package installs it as
/usr/share/fish/vendor_completions.d/opsctl.fish (make install: under its
PREFIX), where fish loads it: nothing to do. For a binary copied by hand,
write it into ~/.config/fish/completions, or load it into this shell.`,
		example: `  # this shell only
  opsctl completion fish | source

  # every new shell of yours
  opsctl completion fish > ~/.config/fish/completions/opsctl.fish`,
	},
	"powershell": {hidden: true, example: `  opsctl completion powershell | Out-String | Invoke-Expression`},
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
				hint := "; expected one of the commands opsctl --help lists"
				if topic != nil && len(rest) > 0 {
					if suggestion := didYouMean(topic, rest[0]); suggestion != "" {
						hint = suggestion
					}
				}
				return cli.Usagef("help: unknown command %q%s", strings.Join(args, " "), hint)
			}
			show(c, args)
			return nil
		}
	}
}
