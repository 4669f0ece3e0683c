package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/imapauth"
)

// IMAPAuthCheckOptions are the inputs of `imap-auth check`.
type IMAPAuthCheckOptions struct {
	*cli.Factory
	Server        imapServerFlags
	Pins          imapPinFlags
	User          string
	Password      string
	PasswordStdin bool
	passwordArg   bool
}

// NewCmdIMAPAuthCheck builds `imap-auth check`; runF, when set, receives the
// options instead of runIMAPAuthCheck (tests of the flags).
func NewCmdIMAPAuthCheck(f *cli.Factory, runF func(*IMAPAuthCheckOptions) error) *cobra.Command {
	opts := &IMAPAuthCheckOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "check [flags] USER [PASSWORD]",
		Short: "Check one login: prints yes (exit 0), no (exit 1) or defer (exit 75)",
		Long: `Log in to the IMAP server as USER and print the answer on stdout:

  yes    exit 0   the server accepted the password
  no     exit 1   the server rejected the user name or password
  defer  exit 75  no answer: connection, certificate, protocol or time-out

The reason for no and defer goes to stderr. A password given as an argument
is visible to every local user (ps, /proc/PID/cmdline) while the check runs;
prefer --password-stdin, or the serve daemon. Exim's ${run} gives the command
no input, so from ${run} the password can only be an argument (after --, see
docs/imap-auth.md); ${readsocket} and serve keep it off the command line.

With --pin-sha256 (or --pin-file), the server's verified chain must also
hold a pinned key: if none matches, the answer is defer and the password is
not sent. A malformed pin is a usage error (exit 2).

A --ca-file or --pin-file that does not exist or is not a file (a folder,
FIFO, device) is a usage error (exit 2); one that cannot be read or holds no
certificate or valid pin is defer (exit 75).`,
		Example: `  # by hand or from a script: the password on stdin, off the command line
  printf '%s\n' "$PASSWORD" | opsctl imap-auth check --server imap.example.org --password-stdin alice

  # Exim's ${run} (no stdin there): the credentials as arguments after --
  opsctl imap-auth check --server imap.example.org -- "$USER" "$PASSWORD"

  # STARTTLS on port 143, a private CA, an IP address with the cert's name
  opsctl imap-auth check --server 192.0.2.10 --tls starttls --ca-file /etc/ssl/private-ca.pem \
      --server-name imap.example.org --password-stdin alice < pw.txt

  # only if the server's key is one of two (see imap-auth pin)
  opsctl imap-auth check --server imap.example.org --pin-sha256 sha256//9qGGs7kQt83e6JQh6HFPTnYUMJzu2qR1YGPRO0AukD4= \
      --pin-sha256 sha256//rRq0XjRODa6vnR+88sbFFo11e8CfZI5jQcUKDl7Nrc8= --password-stdin alice < pw.txt`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.User = args[0]
			if len(args) == 2 {
				opts.Password, opts.passwordArg = args[1], true
			}
			if runF != nil {
				return runF(opts)
			}
			return runIMAPAuthCheck(opts)
		},
	}
	opts.Server.register(cmd.Flags())
	opts.Pins.register(cmd.Flags())
	cmd.Flags().BoolVar(&opts.PasswordStdin, "password-stdin", false, "read the password from stdin (one trailing newline stripped)")
	return cmd
}

// maxPasswordInput bounds what --password-stdin reads.
const maxPasswordInput = 64 << 10

func runIMAPAuthCheck(opts *IMAPAuthCheckOptions) error {
	if opts.passwordArg && opts.PasswordStdin {
		return cli.Usagef("imap-auth check: PASSWORD argument and --password-stdin both given, expected one")
	}
	if !opts.passwordArg && !opts.PasswordStdin {
		return cli.Usagef("imap-auth check: no password, expected a PASSWORD argument or --password-stdin")
	}
	checker, err := opts.Server.checker(0, opts.Pins)
	if inputFileUnreadable(err) {
		// Exit 1 is check's "no", which ${run} recipes turn into 535
		// (wrong password): a CA bundle or pin file that cannot be read
		// is a certificate problem, and those are defer.
		fmt.Fprintln(opts.IO.Out, imapauth.Defer)
		return cli.TemporaryError(fmt.Errorf("imap-auth check: %w", err))
	}
	if err != nil {
		return err
	}
	password := opts.Password
	if opts.PasswordStdin {
		if password, err = readPasswordStdin(opts.IO); err != nil {
			return err
		}
	}
	verdict, reason := checker.Check(opts.BaseContext(), opts.User, password)
	fmt.Fprintln(opts.IO.Out, verdict)
	checker.Close() // the LOGOUT, after the answer is out
	switch verdict {
	case imapauth.Yes:
		return nil
	case imapauth.No:
		return &cli.ExitError{Code: cli.ExitFailure, Err: fmt.Errorf("imap-auth check: %w", reason)}
	default:
		return cli.TemporaryError(fmt.Errorf("imap-auth check: %w", imapError(reason)))
	}
}

// readPasswordStdin reads --password-stdin's password: at most
// maxPasswordInput bytes, one line end (LF or CRLF) dropped.
func readPasswordStdin(streams *cli.IOStreams) (string, error) {
	data, err := io.ReadAll(io.LimitReader(streams.In, maxPasswordInput+1))
	if err != nil {
		fmt.Fprintln(streams.Out, imapauth.Defer) // exit 75 always comes with the word
		return "", cli.TemporaryError(fmt.Errorf("imap-auth check: reading the password from stdin: %w", err))
	}
	if len(data) > maxPasswordInput {
		return "", cli.Usagef("imap-auth check: stdin holds more than %d bytes, expected one password", maxPasswordInput)
	}
	// A CR alone is part of the password (one IMAP cannot carry), not a
	// line end to drop.
	password := string(data)
	if trimmed, ok := strings.CutSuffix(password, "\n"); ok {
		password = strings.TrimSuffix(trimmed, "\r")
	}
	return password, nil
}
