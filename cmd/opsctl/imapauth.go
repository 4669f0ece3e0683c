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

// newCmdIMAPAuth is the imap-auth group: imapauth_check.go,
// imapauth_serve.go and imapauth_pin.go hold its verbs.
func newCmdIMAPAuth(f *cli.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "imap-auth",
		Short: "Authenticate SMTP users against IMAP with strict certificate verification",
		Long: `Check a user name and password by logging in to an IMAP server, for Exim's
${run} (check) or ${readsocket} (serve). The server's certificate is always
verified (chain and name, TLS 1.2 or newer); there is no switch to turn that
off. The answer is yes, no (the server rejected the credentials) or defer
(anything else: connection, certificate, protocol, time-out). With
--pin-sha256 or --pin-file, the chain must also hold a pinned key; pin
prints the pins of the chain a server presents.`,
		Example: `  printf '%s\n' "$PASSWORD" | opsctl imap-auth check --server imap.example.org --password-stdin alice
  opsctl imap-auth serve --socket /run/opsctl/imap-auth.sock --server imap.example.org --allow-uid Debian-exim
  opsctl imap-auth pin --server imap.example.org`,
	}
	cmd.AddCommand(NewCmdIMAPAuthCheck(f, nil), NewCmdIMAPAuthServe(f, nil), NewCmdIMAPAuthPin(f, nil))
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

// imapPinFlags are the flags of the pins the server's chain must hold
// (check and serve).
type imapPinFlags struct {
	pins []string
	file string
}

func (fl *imapPinFlags) register(flags *pflag.FlagSet) {
	flags.StringArrayVar(&fl.pins, "pin-sha256", nil, "the server's chain must hold this key: `BASE64` SHA-256 of a SubjectPublicKeyInfo, or sha256//BASE64 (repeatable; see imap-auth pin)")
	flags.StringVar(&fl.file, "pin-file", "", "`FILE` of more pins, one a line, # comments (serve reads it again on SIGHUP)")
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
	"Config.Pins":                 "--pin-sha256",
	"Config.PinFile":              "--pin-file",
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
// a --ca-file or --pin-file that is there but cannot be used is not (see
// inputFileUnreadable).
func (fl *imapServerFlags) checker(warm int, pins imapPinFlags) (*imapauth.Checker, error) {
	cfg, err := fl.config()
	if err != nil {
		return nil, err
	}
	cfg.Warm = warm
	cfg.Pins, cfg.PinFile = pins.pins, pins.file
	checker, err := imapauth.NewChecker(cfg)
	if inputFileUnreadable(err) {
		return nil, imapError(err)
	}
	if err != nil {
		return nil, cli.UsageError(imapError(err))
	}
	return checker, nil
}

// inputFileUnreadable reports whether err is a --ca-file or --pin-file
// that is there, a regular file, but cannot be read or holds no
// certificate or no valid pin: not a usage error (exit 2) but a failure of
// the command. A missing file or a folder, FIFO or device in its place is
// a mistake in the flag: exit 2.
func inputFileUnreadable(err error) bool {
	var caErr *imapauth.CAFileError
	var pinErr *imapauth.PinFileError
	return (errors.As(err, &caErr) || errors.As(err, &pinErr)) && !errors.Is(err, fs.ErrNotExist) &&
		!errors.Is(err, syscall.ENOTDIR) && !errors.Is(err, imapauth.ErrNotRegularFile)
}
