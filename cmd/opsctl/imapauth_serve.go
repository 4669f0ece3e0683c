package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/sockfile"
	"github.com/opsctl/opsctl/pkg/imapauth"
)

// IMAPAuthServeOptions are the inputs of `imap-auth serve`.
type IMAPAuthServeOptions struct {
	*cli.Factory
	Server        imapServerFlags
	Pins          imapPinFlags
	Socket        string
	SocketMode    string
	AllowUIDs     []string
	CacheTTL      time.Duration
	MaxConcurrent int
	MaxQueue      int
	// MaxConnections and MaxConnectionsPerUID cap the open connections of
	// allowed clients; 0 sizes them from the descriptor limit.
	MaxConnections       int
	MaxConnectionsPerUID int
	Warm                 int
	MetricsListen        string
}

// NewCmdIMAPAuthServe builds `imap-auth serve`; runF, when set, receives the
// options instead of runIMAPAuthServe (tests of the flags).
func NewCmdIMAPAuthServe(f *cli.Factory, runF func(*IMAPAuthServeOptions) error) *cobra.Command {
	opts := &IMAPAuthServeOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "serve --socket PATH [flags]",
		Short: "Answer Exim ${readsocket} login checks on a UNIX socket",
		Long: `Listen on a UNIX socket for Exim's ${readsocket}. A request is one line

  base64(user) SP base64(password) LF

and the reply is yes, no or defer, without a newline; then the connection is
closed. A malformed request gets defer. Only clients whose uid is allowed
(SO_PEERCRED; default root and the daemon's own uid) are answered; others get
defer at once, are counted in the metrics and logged once a minute at most.

Connections of allowed clients are capped (--max-connections, and
--max-connections-per-uid so that one uid cannot take every slot); by
default the caps are sized from the descriptor limit (RLIMIT_NOFILE, raised
to its hard limit at start): all of it but a reserve for the daemon itself,
at most 4096, half of that per uid. A connection over a cap gets defer at
once; a client has 10 seconds to send its line.

With --pin-sha256 or --pin-file, a server whose verified chain holds no
pinned key gets no password: the request is answered defer, logged and
counted (opsctl_imap_auth_pin_mismatches_total). SIGHUP reads --pin-file
again; a file that cannot be read or holds no valid pin keeps the pins in
force (one line in the log).

Under systemd socket activation (LISTEN_FDS) the passed socket is used and
--socket may be omitted. SIGTERM and SIGINT stop accepting and let the
requests being answered finish.`,
		Example: `  # Exim runs as Debian-exim, root tries by hand; cache good logins for a minute; metrics
  opsctl imap-auth serve --socket /run/opsctl/imap-auth.sock --server imap.example.org \
      --allow-uid Debian-exim --allow-uid root --cache-ttl 1m --metrics-listen 127.0.0.1:9127

  # try it by hand (as root)
  printf '%s %s\n' "$(printf alice | base64 -w0)" "$(printf 'secret' | base64 -w0)" |
      socat - UNIX-CONNECT:/run/opsctl/imap-auth.sock`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runIMAPAuthServe(opts)
		},
	}
	opts.Server.register(cmd.Flags())
	opts.Pins.register(cmd.Flags())
	flags := cmd.Flags()
	flags.StringVar(&opts.Socket, "socket", "", "`PATH` of the UNIX socket to create (not needed under socket activation)")
	flags.StringVar(&opts.SocketMode, "socket-mode", "0666", "permissions of the socket file (octal `MODE`); --allow-uid is the access control")
	flags.StringArrayVar(&opts.AllowUIDs, "allow-uid", nil, "`UID` or user name allowed to ask (repeatable; default root and the daemon's uid)")
	flags.DurationVar(&opts.CacheTTL, "cache-ttl", 0, "remember successful logins this long (`DURATION`; salted hashes only; 0: off)")
	flags.IntVar(&opts.MaxConcurrent, "max-concurrent", 16, "`N` IMAP logins at once at most")
	flags.IntVar(&opts.MaxQueue, "max-queue", 256, "`N` requests waiting for a login slot before new ones get defer")
	flags.IntVar(&opts.MaxConnections, "max-connections", 0, "`N` connections of allowed clients open at once before new ones get defer (0: from the descriptor limit, at most 4096)")
	flags.IntVar(&opts.MaxConnectionsPerUID, "max-connections-per-uid", 0, "`N` connections of one client uid open at once before its new ones get defer (0: half of --max-connections)")
	flags.IntVar(&opts.Warm, "warm", 1, "`N` connections kept ready for the next login (TLS up, greeting read); 0: connect per login")
	flags.StringVar(&opts.MetricsListen, "metrics-listen", "", "serve Prometheus /metrics on this `HOST:PORT` (default: off)")
	return cmd
}

func runIMAPAuthServe(opts *IMAPAuthServeOptions) error {
	server, mode, err := opts.server()
	if err != nil {
		return err
	}
	if _, err := imapauth.RaiseOpenFileLimit(); err != nil {
		opts.Logger.Warn("keeping the descriptor limit", "err", err)
	}
	if _, err := server.ConnectionLimits(); err != nil {
		if opts.MaxConnections != 0 || opts.MaxConnectionsPerUID != 0 {
			return cli.UsageError(imapError(err))
		}
		return fmt.Errorf("imap-auth serve: %w", imapError(err))
	}
	ln, err := opts.listen(mode)
	if err != nil {
		return err
	}
	defer ln.Close()
	var metrics net.Listener
	if opts.MetricsListen != "" {
		if metrics, err = net.Listen("tcp", opts.MetricsListen); err != nil {
			return fmt.Errorf("imap-auth serve: --metrics-listen: %w", err)
		}
		opts.Logger.Info("serving metrics", "addr", metrics.Addr().String())
	}
	ctx, stop := opts.SignalContext(nil)
	defer stop()
	checker := server.Checker.(*imapauth.Checker)
	server.Serving = func(limits imapauth.ConnectionLimits) {
		opts.Logger.Info("serving", "socket", ln.Addr().String(), "imap", checker.Addr(), "tls", opts.Server.tls, "pins", len(checker.Pins()),
			"max_connections", limits.Total, "max_connections_per_uid", limits.PerUID, "open_files", limits.OpenFiles)
	}
	if err := server.Run(ctx, ln, metrics); err != nil {
		return fmt.Errorf("imap-auth serve: %w", imapError(err))
	}
	opts.Logger.Info("stopped")
	return nil
}

// server checks the flags and builds the daemon (and the socket's mode).
func (opts *IMAPAuthServeOptions) server() (*imapauth.Server, os.FileMode, error) {
	if opts.Warm < 0 || opts.Warm > 64 {
		return nil, 0, cli.Usagef("--warm %d: expected 0 to 64 connections", opts.Warm)
	}
	checker, err := opts.Server.checker(opts.Warm, opts.Pins)
	if inputFileUnreadable(err) {
		return nil, 0, fmt.Errorf("imap-auth serve: %w", err)
	}
	if err != nil {
		return nil, 0, err
	}
	uids, err := resolveUIDs(opts.AllowUIDs)
	if err != nil {
		return nil, 0, cli.UsageError(err)
	}
	mode, err := strconv.ParseUint(opts.SocketMode, 8, 32)
	if err != nil || mode > 0o777 {
		return nil, 0, cli.Usagef("--socket-mode %q: expected octal permissions such as 0660", opts.SocketMode)
	}
	if err := opts.checkCounts(); err != nil {
		return nil, 0, err
	}
	server := &imapauth.Server{
		Checker:              checker,
		AllowUIDs:            uids,
		MaxConcurrent:        opts.MaxConcurrent,
		MaxQueue:             opts.MaxQueue,
		MaxConnections:       opts.MaxConnections,
		MaxConnectionsPerUID: opts.MaxConnectionsPerUID,
		// A ready connection and its replacement, and the metrics listener
		// with its clients.
		OtherDescriptors: 2 * opts.Warm,
		Logger:           opts.Logger,
	}
	if opts.MetricsListen != "" {
		server.OtherDescriptors += 1 + imapauth.MetricsMaxConns
	}
	if opts.CacheTTL > 0 {
		server.Cache = imapauth.NewCache(opts.CacheTTL, 0)
	}
	return server, os.FileMode(mode), nil
}

// checkCounts checks the flags that are counts and durations.
func (opts *IMAPAuthServeOptions) checkCounts() error {
	switch {
	case opts.CacheTTL < 0:
		return cli.Usagef("--cache-ttl %s: expected a duration of 0 (off) or more", opts.CacheTTL)
	case opts.MaxConcurrent < 1:
		return cli.Usagef("--max-concurrent %d: expected at least 1 login at once", opts.MaxConcurrent)
	case opts.MaxQueue < 1:
		// The daemon takes 0 for its default, so 0 cannot mean "no queue".
		return cli.Usagef("--max-queue %d: expected at least 1 waiting request", opts.MaxQueue)
	case opts.MaxConnections < 0:
		return cli.Usagef("--max-connections %d: expected 0 (sized from the descriptor limit) or more", opts.MaxConnections)
	case opts.MaxConnectionsPerUID < 0:
		return cli.Usagef("--max-connections-per-uid %d: expected 0 (half of --max-connections) or more", opts.MaxConnectionsPerUID)
	}
	if opts.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(opts.MetricsListen); err != nil {
			return cli.Usagef("--metrics-listen %q: expected HOST:PORT", opts.MetricsListen)
		}
	}
	return nil
}

// listen is the socket systemd passed, else the one --socket names.
func (opts *IMAPAuthServeOptions) listen(mode os.FileMode) (net.Listener, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	ln, err := imapauth.ActivationListener(getenv)
	if err != nil {
		return nil, fmt.Errorf("imap-auth serve: %w", err)
	}
	if ln != nil {
		return ln, nil
	}
	if opts.Socket == "" {
		return nil, cli.Usagef("imap-auth serve: --socket: required unless started by systemd socket activation")
	}
	ln, err = imapauth.ListenUnix(opts.Socket, mode)
	if errors.Is(err, sockfile.ErrTooLong) || errors.Is(err, sockfile.ErrNoFolder) || errors.Is(err, sockfile.ErrNotSocket) {
		// The path as given cannot be a socket: a usage error.
		return nil, cli.UsageError(fmt.Errorf("imap-auth serve: %w", imapError(err)))
	}
	if err != nil {
		return nil, fmt.Errorf("imap-auth serve: %w", imapError(err))
	}
	return ln, nil
}

// resolveUIDs turns --allow-uid values (numbers or user names) into uids.
func resolveUIDs(values []string) ([]uint32, error) {
	var uids []uint32
	for _, value := range values {
		if n, err := strconv.ParseUint(value, 10, 32); err == nil {
			uids = append(uids, uint32(n))
			continue
		}
		account, err := user.Lookup(value)
		if err != nil {
			return nil, fmt.Errorf("--allow-uid %q: expected a uid or a user name of this system: %w", value, err)
		}
		n, err := strconv.ParseUint(account.Uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--allow-uid %q: user has a non-numeric uid %q", value, account.Uid)
		}
		uids = append(uids, uint32(n))
	}
	return uids, nil
}
