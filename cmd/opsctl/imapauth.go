package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/sockfile"
	"github.com/opsctl/opsctl/pkg/imapauth"
)

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
	cmd.AddCommand(newCmdIMAPAuthCheck(f, nil), newCmdIMAPAuthServe(f, nil))
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

// config validates the flags; its errors are usage errors.
func (fl *imapServerFlags) config() (imapauth.Config, error) {
	mode, err := imapauth.ParseTLSMode(fl.tls)
	if err != nil {
		return imapauth.Config{}, cli.UsageError(err)
	}
	if fl.server == "" {
		return imapauth.Config{}, cli.Usagef("--server: required, expected HOST[:PORT] of the IMAP server")
	}
	if fl.timeout <= 0 {
		return imapauth.Config{}, cli.Usagef("--timeout %s: expected a positive duration such as 10s", fl.timeout)
	}
	return imapauth.Config{Server: fl.server, TLS: mode, CAFile: fl.caFile, ServerName: fl.serverName, Timeout: fl.timeout}, nil
}

func (fl *imapServerFlags) checker(warm int) (*imapauth.Checker, error) {
	cfg, err := fl.config()
	if err != nil {
		return nil, err
	}
	cfg.Warm = warm
	checker, err := imapauth.NewChecker(cfg)
	if err != nil {
		if caFileUnreadable(err) {
			return nil, err
		}
		return nil, cli.UsageError(err)
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

// IMAPAuthCheckOptions are the inputs of `imap-auth check`.
type IMAPAuthCheckOptions struct {
	IO            *cli.IOStreams
	Server        imapServerFlags
	User          string
	Password      string
	PasswordStdin bool
	passwordArg   bool
}

func newCmdIMAPAuthCheck(f *cli.Factory, runF func(*IMAPAuthCheckOptions) error) *cobra.Command {
	opts := &IMAPAuthCheckOptions{IO: f.IO}
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

A --ca-file that does not exist or is not a file (a folder, FIFO, device) is
a usage error (exit 2); one that cannot be read or holds no certificate is
defer (exit 75).`,
		Example: `  # by hand or from a script: the password on stdin, off the command line
  printf '%s\n' "$PASSWORD" | opsctl imap-auth check --server imap.example.org --password-stdin alice

  # Exim's ${run} (no stdin there): the credentials as arguments after --
  opsctl imap-auth check --server imap.example.org -- "$USER" "$PASSWORD"

  # STARTTLS on port 143, a private CA, an IP address with the cert's name
  opsctl imap-auth check --server 192.0.2.10 --tls starttls --ca-file /etc/ssl/private-ca.pem \
      --server-name imap.example.org --password-stdin alice < pw.txt`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.User = args[0]
			if len(args) == 2 {
				opts.Password, opts.passwordArg = args[1], true
			}
			if runF != nil {
				return runF(opts)
			}
			return runIMAPAuthCheck(cmd.Context(), opts)
		},
	}
	opts.Server.register(cmd.Flags())
	cmd.Flags().BoolVar(&opts.PasswordStdin, "password-stdin", false, "read the password from stdin (one trailing newline stripped)")
	return cmd
}

// maxPasswordInput bounds what --password-stdin reads.
const maxPasswordInput = 64 << 10

func runIMAPAuthCheck(ctx context.Context, opts *IMAPAuthCheckOptions) error {
	if opts.passwordArg && opts.PasswordStdin {
		return cli.Usagef("imap-auth check: PASSWORD argument and --password-stdin both given, expected one")
	}
	if !opts.passwordArg && !opts.PasswordStdin {
		return cli.Usagef("imap-auth check: no password, expected a PASSWORD argument or --password-stdin")
	}
	checker, err := opts.Server.checker(0)
	if caFileUnreadable(err) {
		// Exit 1 is check's "no", which ${run} recipes turn into 535
		// (wrong password): a CA bundle that cannot be read is a
		// certificate problem, and those are defer.
		fmt.Fprintln(opts.IO.Out, imapauth.Defer)
		return cli.TemporaryError(fmt.Errorf("imap-auth check: %w", err))
	}
	if err != nil {
		return err
	}
	password := opts.Password
	if opts.PasswordStdin {
		data, err := io.ReadAll(io.LimitReader(opts.IO.In, maxPasswordInput+1))
		if err != nil {
			fmt.Fprintln(opts.IO.Out, imapauth.Defer) // exit 75 always comes with the word
			return cli.TemporaryError(fmt.Errorf("imap-auth check: reading the password from stdin: %w", err))
		}
		if len(data) > maxPasswordInput {
			return cli.Usagef("imap-auth check: stdin holds more than %d bytes, expected one password", maxPasswordInput)
		}
		// One newline: LF or CRLF. A CR alone is part of the password (one
		// IMAP cannot carry), not a line end to drop.
		password = string(data)
		if trimmed, ok := strings.CutSuffix(password, "\n"); ok {
			password = strings.TrimSuffix(trimmed, "\r")
		}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	verdict, reason := checker.Check(ctx, opts.User, password)
	fmt.Fprintln(opts.IO.Out, verdict)
	checker.Close() // the LOGOUT, after the answer is out
	switch verdict {
	case imapauth.Yes:
		return nil
	case imapauth.No:
		return &cli.ExitError{Code: cli.ExitFailure, Err: fmt.Errorf("imap-auth check: %w", reason)}
	default:
		return cli.TemporaryError(fmt.Errorf("imap-auth check: %w", reason))
	}
}

// IMAPAuthServeOptions are the inputs of `imap-auth serve`.
type IMAPAuthServeOptions struct {
	IO            *cli.IOStreams
	Factory       *cli.Factory
	Server        imapServerFlags
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

func newCmdIMAPAuthServe(f *cli.Factory, runF func(*IMAPAuthServeOptions) error) *cobra.Command {
	opts := &IMAPAuthServeOptions{IO: f.IO, Factory: f}
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
			return runIMAPAuthServe(cmd.Context(), opts)
		},
	}
	opts.Server.register(cmd.Flags())
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

func runIMAPAuthServe(ctx context.Context, opts *IMAPAuthServeOptions) error {
	if opts.Warm < 0 || opts.Warm > 64 {
		return cli.Usagef("--warm %d: expected 0 to 64 connections", opts.Warm)
	}
	checker, err := opts.Server.checker(opts.Warm)
	if caFileUnreadable(err) {
		return fmt.Errorf("imap-auth serve: %w", err)
	}
	if err != nil {
		return err
	}
	uids, err := resolveUIDs(opts.AllowUIDs)
	if err != nil {
		return cli.UsageError(err)
	}
	mode, err := strconv.ParseUint(opts.SocketMode, 8, 32)
	if err != nil || mode > 0o777 {
		return cli.Usagef("--socket-mode %q: expected octal permissions such as 0660", opts.SocketMode)
	}
	if opts.CacheTTL < 0 {
		return cli.Usagef("--cache-ttl %s: expected a duration of 0 (off) or more", opts.CacheTTL)
	}
	if opts.MaxConcurrent < 1 {
		return cli.Usagef("--max-concurrent %d: expected at least 1 login at once", opts.MaxConcurrent)
	}
	// The daemon takes 0 for its default, so 0 cannot mean "no queue".
	if opts.MaxQueue < 1 {
		return cli.Usagef("--max-queue %d: expected at least 1 waiting request", opts.MaxQueue)
	}
	if opts.MaxConnections < 0 {
		return cli.Usagef("--max-connections %d: expected 0 (sized from the descriptor limit) or more", opts.MaxConnections)
	}
	if opts.MaxConnectionsPerUID < 0 {
		return cli.Usagef("--max-connections-per-uid %d: expected 0 (half of --max-connections) or more", opts.MaxConnectionsPerUID)
	}
	if opts.MetricsListen != "" {
		if _, _, err := net.SplitHostPort(opts.MetricsListen); err != nil {
			return cli.Usagef("--metrics-listen %q: expected HOST:PORT", opts.MetricsListen)
		}
	}

	logger := opts.Factory.Logger
	if _, err := imapauth.RaiseOpenFileLimit(); err != nil {
		logger.Warn("keeping the descriptor limit", "err", err)
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
		Logger:           logger,
	}
	if opts.MetricsListen != "" {
		server.OtherDescriptors += 1 + metricsMaxConns
	}
	limits, err := server.ConnectionLimits()
	if err != nil {
		if opts.MaxConnections != 0 || opts.MaxConnectionsPerUID != 0 {
			return cli.UsageError(err)
		}
		return fmt.Errorf("imap-auth serve: %w", err)
	}

	getenv := opts.Factory.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	ln, err := imapauth.ActivationListener(getenv)
	if err != nil {
		return fmt.Errorf("imap-auth serve: %w", err)
	}
	if ln == nil {
		if opts.Socket == "" {
			return cli.Usagef("imap-auth serve: --socket: required unless started by systemd socket activation")
		}
		ln, err = imapauth.ListenUnix(opts.Socket, os.FileMode(mode))
		if errors.Is(err, sockfile.ErrTooLong) || errors.Is(err, sockfile.ErrNoFolder) || errors.Is(err, sockfile.ErrNotSocket) {
			// The path as given cannot be a socket: a usage error.
			return cli.UsageError(fmt.Errorf("imap-auth serve: %w", err))
		}
		if err != nil {
			return fmt.Errorf("imap-auth serve: %w", err)
		}
	}
	defer ln.Close()

	if ctx == nil {
		ctx = context.Background()
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	if opts.CacheTTL > 0 {
		server.Cache = imapauth.NewCache(opts.CacheTTL, 0)
	}
	var metricsServer *http.Server
	if opts.MetricsListen != "" {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		server.Metrics = imapauth.NewMetrics(reg)
		metricsLn, err := net.Listen("tcp", opts.MetricsListen)
		if err != nil {
			return fmt.Errorf("imap-auth serve: --metrics-listen: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		metricsServer = newMetricsServer(mux)
		go func() {
			if err := metricsServer.Serve(newLimitListener(metricsLn, metricsMaxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				logger.Error("metrics server stopped", "err", err)
			}
		}()
		logger.Info("serving metrics", "addr", metricsLn.Addr().String())
	}

	logger.Info("serving", "socket", ln.Addr().String(), "imap", checker.Addr(), "tls", opts.Server.tls,
		"max_connections", limits.Total, "max_connections_per_uid", limits.PerUID, "open_files", limits.OpenFiles)
	checker.Prewarm()
	err = server.Serve(ctx, ln)
	checker.Close()
	if metricsServer != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		metricsServer.Shutdown(shutdownCtx)
		cancel()
	}
	if err != nil {
		return fmt.Errorf("imap-auth serve: %w", err)
	}
	logger.Info("stopped")
	return nil
}

// The metrics endpoint is open to every local user (and to the network if
// --metrics-listen says so). Without bounds, idle connections to it took
// descriptors until the socket's accept failed (EMFILE) and Exim's logins
// with it. At most metricsMaxConns are served at once; the others wait in
// the kernel's listen queue, holding no descriptor of the daemon, and a
// connection that sends nothing is closed within seconds.
const metricsMaxConns = 8

func newMetricsServer(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    8 << 10,
	}
}

// limitListener accepts a connection only while fewer than its capacity
// are open.
type limitListener struct {
	net.Listener
	slots  chan struct{}
	closed chan struct{}
	once   sync.Once
}

func newLimitListener(ln net.Listener, capacity int) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, capacity), closed: make(chan struct{})}
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	conn, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: conn, release: func() { <-l.slots }}, nil
}

func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// limitedConn gives its slot back once, on the first Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
