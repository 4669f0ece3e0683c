package main

import (
	"errors"
	"io/fs"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/pkg/imapauth"
)

// newCmdIMAPAuth is the imap-auth group: imapauth_check.go and
// imapauth_serve.go hold its verbs.
func newCmdIMAPAuth(f *cli.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "imap-auth",
		Short: "Authenticate SMTP users against IMAP with strict certificate verification",
		Long: `Check a user name and password by logging in to an IMAP server, for Exim's
${run} (check) or ${readsocket} (serve). The server's certificate is always
verified (chain and name, TLS 1.2 or newer); there is no switch to turn that
off. The answer is yes, no (the server rejected the credentials) or defer
(anything else: connection, certificate, protocol, time-out).`,
		Example: `  printf '%s\n' "$PASSWORD" | opsctl imap-auth check --server imap.example.org --password-stdin alice
  opsctl imap-auth serve --socket /run/opsctl/imap-auth.sock --server imap.example.org --allow-uid Debian-exim`,
	}
	cmd.AddCommand(NewCmdIMAPAuthCheck(f, nil), NewCmdIMAPAuthServe(f, nil))
	return cmd
}

// imapServerFlags are the flags that say which IMAP server to ask and how.
type imapServerFlags struct {
	server     string
	tls        string
	caFile     string
	serverName string
	timeout    time.Duration
}

func (fl *imapServerFlags) register(flags *pflag.FlagSet) {
	flags.StringVar(&fl.server, "server", "", "IMAP server `HOST[:PORT]` (port 993 for implicit TLS, 143 for starttls)")
	cli.EnumVar(flags, &fl.tls, "tls", "implicit", []string{"implicit", "starttls"}, "how to secure the connection")
	flags.StringVar(&fl.caFile, "ca-file", "", "PEM `FILE` of the CAs to trust (default: the system roots)")
	flags.StringVar(&fl.serverName, "server-name", "", "`NAME` the certificate must carry (default: the host of --server)")
	flags.DurationVar(&fl.timeout, "timeout", imapauth.DefaultTimeout, "time limit for one login check (`DURATION`)")
}

// imapFlagNames are the flags that fill in imapauth's inputs: errors of the
// package name the inputs, the user reads the flags.
var imapFlagNames = map[string]string{
	"Config.Server":               "--server",
	"Config.TLS":                  "--tls",
	"Config.CAFile":               "--ca-file",
	"Config.ServerName":           "--server-name",
	"Config.Timeout":              "--timeout",
	"Config.Warm":                 "--warm",
	"Server.MaxConnections":       "--max-connections",
	"Server.MaxConnectionsPerUID": "--max-connections-per-uid",
	"ListenUnix.path":             "--socket",
}

// imapError shows the flags in an error of imapauth.
func imapError(err error) error { return inputerr.Rename(err, imapFlagNames) }

// config validates the flags; its errors are usage errors.
func (fl *imapServerFlags) config() (imapauth.Config, error) {
	mode, err := imapauth.ParseTLSMode(fl.tls)
	if err != nil {
		return imapauth.Config{}, cli.UsageError(imapError(err))
	}
	if fl.server == "" {
		return imapauth.Config{}, cli.Usagef("--server: required, expected HOST[:PORT] of the IMAP server")
	}
	if fl.timeout <= 0 {
		return imapauth.Config{}, cli.Usagef("--timeout %s: expected a positive duration such as 10s", fl.timeout)
	}
	return imapauth.Config{Server: fl.server, TLS: mode, CAFile: fl.caFile, ServerName: fl.serverName, Timeout: fl.timeout}, nil
}

// checker builds the checker of the flags; a wrong value is a usage error,
// a --ca-file that is there but cannot be used is not (see
// caFileUnreadable).
func (fl *imapServerFlags) checker(warm int) (*imapauth.Checker, error) {
	cfg, err := fl.config()
	if err != nil {
		return nil, err
	}
	cfg.Warm = warm
	checker, err := imapauth.NewChecker(cfg)
	if caFileUnreadable(err) {
		return nil, imapError(err)
	}
	if err != nil {
		return nil, cli.UsageError(imapError(err))
	}
	return checker, nil
}

// caFileUnreadable reports whether err is a --ca-file that is there, a
// regular file, but cannot be read or holds no certificate: not a usage
// error (exit 2) but a failure of the command. A missing file or a folder,
// FIFO or device in its place is a mistake in the flag: exit 2.
func caFileUnreadable(err error) bool {
	var caErr *imapauth.CAFileError
	return errors.As(err, &caErr) && !errors.Is(err, fs.ErrNotExist) &&
		!errors.Is(err, syscall.ENOTDIR) && !errors.Is(err, imapauth.ErrNotRegularFile)
}
