package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/inputerr"
	"github.com/opsctl/opsctl/pkg/sockspy"
)

func newCmdSock(f *cli.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sock",
		Short: "Capture the traffic of a UNIX socket into a pcap file",
		Example: `  opsctl sock capture --socket /run/docker.sock --listen /tmp/docker.proxy -w docker.pcap
  opsctl sock capture --socket /run/app.sock --swap -w - | wireshark -k -i -`,
	}
	cmd.AddCommand(newCmdSockCapture(f, nil))
	return cmd
}

// sockCaptureOptions are the flags of `opsctl sock capture`.
type sockCaptureOptions struct {
	IO     *cli.IOStreams
	Logger func() *slog.Logger

	Socket  string
	Listen  string
	Swap    bool
	Output  string
	Format  string
	Hexdump bool
	Port    int
	DryRun  bool

	NoSplice bool
	// StopAgain, when set, receives the stop signals that arrive while
	// the capture is being finished after the first one.
	StopAgain <-chan os.Signal
}

func newCmdSockCapture(f *cli.Factory, runF func(*sockCaptureOptions) error) *cobra.Command {
	opts := &sockCaptureOptions{IO: f.IO, Logger: func() *slog.Logger { return f.Logger }}
	if f.Getenv != nil {
		// For benchmarks only: every byte through user space, as before splice.
		opts.NoSplice = f.Getenv("OPSCTL_SOCK_NOSPLICE") == "1"
	}
	cmd := &cobra.Command{
		Use:   "capture --socket PATH (--listen PROXY | --swap) [-w FILE|-] [--format pcap|pcapng] [--hexdump] [--port N]",
		Short: "Record what clients and server say over a UNIX socket, as pcap",
		Long: `Proxy a UNIX socket and record its traffic as a pcap or pcapng file.

Each UNIX connection becomes one synthetic TCP connection from 127.0.0.1:<a port
of its own> to 127.0.0.1:--port (default 80), with handshake, sequence numbers
and FIN, so Wireshark's "Follow TCP Stream" and port-based dissectors work.
Datagram sockets become UDP. pcapng also records the socket path and each
client's pid, uid and command.

--listen PROXY serves at PROXY (mode and owner copied from PATH); point clients
at PROXY. --swap serves at PATH itself, keeping the original at
PATH.opsctl-orig, and puts it back on SIGINT, SIGTERM, SIGQUIT or SIGHUP: clients need no
change. @name means an abstract socket. On the first signal the capture is
finished and closed; a second one exits at once (status 1), for a reader of
-w - that stopped reading.

-w FILE is created with mode 0600, or truncated when it is a regular file
with no other hard link; a symbolic link is never followed, and a folder, a
device or a socket is refused. A FIFO, /dev/stdout, /dev/fd/N and /dev/null
are written to as they are. The proxy's socket is made in a private folder
beside its path with its mode and owner, then moved into place.

Stop with Ctrl-C: every packet is written and the file is complete.`,
		Example: `  # Clients talk to /tmp/docker.proxy instead of /run/docker.sock
  opsctl sock capture --socket /run/docker.sock --listen /tmp/docker.proxy -w docker.pcap
  curl --unix-socket /tmp/docker.proxy http://localhost/version

  # Capture in place, without changing any client; watch live in Wireshark
  opsctl sock capture --socket /run/app.sock --swap -w - | wireshark -k -i -

  # A PostgreSQL socket decoded as PostgreSQL, with pids in the file
  opsctl sock capture --socket /run/postgresql/.s.PGSQL.5432 --swap --port 5432 -w pg.pcapng

  # Only look, like socat -x -v
  opsctl sock capture --socket @/tmp/.X11-unix/X0 --listen @x0-proxy --hexdump`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Format = strings.ToLower(opts.Format)
			if runF != nil {
				return runF(opts)
			}
			// Every way of being asked to stop puts a swapped socket back:
			// SIGHUP too (the terminal or ssh session went away), unless
			// it is ignored (nohup).
			// SIGQUIT (Ctrl-\) too: Go's default would end opsctl at once
			// and leave a swapped socket moved aside.
			stopSignals := []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGQUIT}
			if !signal.Ignored(syscall.SIGHUP) {
				stopSignals = append(stopSignals, syscall.SIGHUP)
			}
			ctx, stop := signal.NotifyContext(context.Background(), stopSignals...)
			defer stop()
			again := make(chan os.Signal, 1)
			context.AfterFunc(ctx, func() { signal.Notify(again, stopSignals...) })
			defer signal.Stop(again)
			opts.StopAgain = again
			// Without a handler, Go kills the process with SIGPIPE on a
			// write to a broken stdout or stderr (-w - | wireshark, then
			// Wireshark closed), before the socket is put back. With one,
			// the write fails and the capture stops cleanly.
			// Kept until the process exits: the error that main then
			// prints to a broken stderr must not kill it either (exit
			// status 1, not death by SIGPIPE).
			sigpipe := make(chan os.Signal, 1)
			signal.Notify(sigpipe, syscall.SIGPIPE)
			return sockError(runSockCapture(ctx, opts))
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Socket, "socket", "", "the UNIX socket to capture: a `PATH` or @name (abstract)")
	fl.StringVar(&opts.Listen, "listen", "", "serve at `PROXY` (path or @name) and forward to --socket")
	fl.BoolVar(&opts.Swap, "swap", false, "serve at the socket's own path, the original moved aside and restored on exit")
	fl.StringVarP(&opts.Output, "write", "w", "", "write the capture to `FILE`, or - for stdout (flushed per packet)")
	cli.EnumVar(fl, &opts.Format, "format", "", []string{"pcap", "pcapng"}, "capture format (default pcapng for a .pcapng FILE, else pcap)")
	fl.BoolVar(&opts.Hexdump, "hexdump", false, "print the traffic to stderr like socat -x -v")
	fl.IntVar(&opts.Port, "port", 80, "server `PORT` of the synthetic connections: picks Wireshark's dissector")
	fl.BoolVar(&opts.DryRun, "dry-run", false, "print what would be done and change nothing")
	return cmd
}

// validate turns the flags into a capture config; every error is a usage
// error naming the flag.
func (o *sockCaptureOptions) validate() (sockspy.Config, sockspy.Format, error) {
	var cfg sockspy.Config
	if o.Socket == "" {
		return cfg, 0, cli.Usagef("--socket: expected the socket to capture (a path or @name)")
	}
	if o.Swap && o.Listen != "" {
		return cfg, 0, cli.Usagef("--listen and --swap: expected only one of them")
	}
	if !o.Swap && o.Listen == "" {
		return cfg, 0, cli.Usagef("expected --listen PROXY or --swap")
	}
	if o.Output == "/dev/stdout" {
		o.Output = "-" // the same, terminal check and all
	}
	if o.Output == "" && !o.Hexdump {
		return cfg, 0, cli.Usagef("expected -w FILE, -w - or --hexdump: nothing to record into")
	}
	if o.Output == "-" && o.IO.OutIsTerminal {
		return cfg, 0, cli.Usagef("-w -: stdout is a terminal; pipe the capture (| wireshark -k -i -) or redirect it to a file")
	}
	if o.Port < 1 || o.Port > 65535 {
		return cfg, 0, cli.Usagef("--port %d: expected a TCP port, 1 to 65535", o.Port)
	}
	format := sockspy.FormatPcap
	switch {
	case o.Format != "":
		f, err := sockspy.ParseFormat(o.Format)
		if err != nil {
			return cfg, 0, cli.Usagef("--format %q: expected pcap or pcapng", o.Format)
		}
		format = f
	case strings.HasSuffix(strings.ToLower(o.Output), ".pcapng"):
		format = sockspy.FormatPcapng
	}
	return sockspy.Config{Socket: o.Socket, Listen: o.Listen, Swap: o.Swap}, format, nil
}

func runSockCapture(ctx context.Context, o *sockCaptureOptions) error {
	cfg, format, err := o.validate()
	if err != nil {
		return err
	}
	plan, err := sockspy.NewPlan(cfg)
	if err != nil {
		return sockInputError(err)
	}
	log := o.Logger()
	if o.DryRun {
		for _, step := range plan.Steps() {
			fmt.Fprintln(o.IO.Out, "+ "+step)
		}
		if o.Output != "" {
			fmt.Fprintf(o.IO.Out, "+ write %s as %s, server port %d\n", outputName(o.Output), format, o.Port)
		}
		return nil
	}

	var capture *sockspy.Capture
	var file *sockspy.Output
	if o.Output != "" {
		var out io.Writer = o.IO.Out
		streaming := o.Output == "-"
		if o.Output != "-" {
			// As root, in a folder another user may own: no link is
			// followed and only a regular file is truncated.
			file, err = sockspy.OpenOutput(o.Output)
			if err != nil {
				return sockInputError(err)
			}
			if file.NotPrivate != nil {
				o.Logger().Warn("cannot make the capture file private (mode 0600)", "output", o.Output, "err", file.NotPrivate)
			}
			out = file.File
			streaming = file.Streaming()
		}
		// The file is read elsewhere: name the socket by its absolute path.
		iface := plan.Socket
		if !strings.HasPrefix(iface, "@") {
			if abs, err := filepath.Abs(iface); err == nil {
				iface = abs
			}
		}
		capture, err = sockspy.NewCapture(out, sockspy.CaptureOptions{
			Format: format, Interface: iface, Streaming: streaming,
		})
		if err != nil {
			if file != nil {
				file.Discard()
			}
			return fmt.Errorf("-w %s: %w", o.Output, err)
		}
	}
	var served atomic.Bool
	proxy := &sockspy.Proxy{
		Plan: plan, Capture: capture, Port: uint16(o.Port), Logger: log, Copy: o.NoSplice,
		Ready: func() {
			served.Store(true)
			log.Info("capturing; stop with Ctrl-C", "socket", plan.Socket, "type", plan.Type.String(),
				"listen", plan.Listen, "output", outputName(o.Output))
		},
	}
	if o.Hexdump {
		proxy.Hexdump = sockspy.NewHexdump(o.IO.ErrOut)
	}
	// A write to stdout finds a reader gone (Wireshark closed) only when
	// there is traffic: watch for it meanwhile, so that an idle capture
	// stops too and puts a swapped socket back.
	// The same for a --hexdump that is all there is to record (piped
	// into less, which quit), as socat -x -v ends then.
	var readerGone <-chan struct{}
	goneName := "-w -: stdout"
	watched, watch := o.IO.Out.(*os.File)
	watch = watch && o.Output == "-"
	if errOut, ok := o.IO.ErrOut.(*os.File); ok && o.Hexdump && o.Output == "" {
		watched, watch, goneName = errOut, true, "--hexdump: stderr"
	}
	if watch {
		var cancel context.CancelFunc
		ctx, cancel = context.WithCancel(ctx)
		defer cancel()
		readerGone = watchReaderGone(ctx, watched, cancel)
	}
	finished := make(chan error, 1)
	go func() { finished <- runProxyAndFinish(ctx, o, proxy, capture, file, served.Load) }()
	select {
	case err := <-finished:
		return err
	case <-ctx.Done():
	}
	// Stopping. Finishing the capture may wait for a reader of -w - that
	// stopped reading without going away; asked to stop again, opsctl
	// puts the socket back and leaves without waiting.
	select {
	case err := <-finished:
		select {
		case <-readerGone:
			if err == nil {
				err = fmt.Errorf("sock capture: %s: %w (its reader went away)", goneName, syscall.EPIPE)
			}
		default:
		}
		return err
	case <-o.StopAgain:
		restoreErr := proxy.Restore()
		return errors.Join(fmt.Errorf("sock capture: stopped again while the capture was being finished: %s may lack its last packets", outputName(o.Output)), restoreErr)
	}
}

// runProxyAndFinish serves until ctx ends, then writes what the capture
// still holds and closes the file; served tells whether the proxy got to
// serving (the file of a capture that never started is removed).
func runProxyAndFinish(ctx context.Context, o *sockCaptureOptions, proxy *sockspy.Proxy, capture *sockspy.Capture, file *sockspy.Output, served func() bool) error {
	log := o.Logger()
	runErr := proxy.Run(ctx)
	var capErr error
	if capture != nil {
		if capErr = capture.Close(); capErr != nil {
			capErr = fmt.Errorf("-w %s: %w", outputName(o.Output), capErr)
		}
		// A failure to put the socket back after serving keeps what was
		// captured.
		neverServed := runErr != nil && !served()
		if file != nil && neverServed {
			// Leave no empty capture behind.
			file.Discard()
		} else if file != nil {
			if err := file.Close(); err != nil && capErr == nil {
				capErr = fmt.Errorf("-w %s: %w", o.Output, err)
			}
		}
		if !neverServed && capErr == nil {
			log.Info("capture complete", "packets", capture.Packets(), "output", outputName(o.Output))
		}
	}
	if err := errors.Join(runErr, capErr); err != nil {
		return fmt.Errorf("sock capture: %w", err)
	}
	return nil
}

// sockFlagNames are the flags that fill in sockspy's inputs: errors of the
// package name the inputs, the user reads the flags.
var sockFlagNames = map[string]string{
	"Config.Socket":   "--socket",
	"Config.Listen":   "--listen",
	"Config.Swap":     "--swap",
	"OpenOutput.path": "-w",
}

// sockError shows the flags in an error of sockspy.
func sockError(err error) error { return inputerr.Rename(err, sockFlagNames) }

// sockInputError makes an input sockspy cannot use as given (a path that
// does not exist or is not the kind expected) a usage error.
func sockInputError(err error) error {
	var inputErr *inputerr.Error
	if errors.As(err, &inputErr) {
		return cli.UsageError(err)
	}
	return err
}

func outputName(w string) string {
	if w == "-" {
		return "stdout"
	}
	return w
}

// watchReaderGone closes the returned channel and calls stop when the
// reader of out (a pipe or socket) goes away, until ctx ends.
func watchReaderGone(ctx context.Context, out *os.File, stop func()) <-chan struct{} {
	gone := make(chan struct{})
	fd := int(out.Fd())
	go func() {
		for ctx.Err() == nil {
			// No events asked: only POLLERR (a pipe without reader) or
			// POLLHUP (a socket whose peer closed) wake it.
			fds := []unix.PollFd{{Fd: int32(fd)}}
			n, err := unix.Poll(fds, 200)
			if err != nil && err != unix.EINTR {
				return
			}
			if n > 0 && fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
				close(gone)
				stop()
				return
			}
		}
	}()
	return gone
}
