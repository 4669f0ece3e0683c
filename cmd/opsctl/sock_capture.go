package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/sockspy"
)

// SockCaptureOptions are the inputs of `sock capture`.
type SockCaptureOptions struct {
	*cli.Factory
	Socket  string
	Listen  string
	Swap    bool
	Output  string
	Format  string
	Hexdump bool
	Port    int
	DryRun  bool
}

const sockCaptureLong = `Proxy a UNIX socket and record its traffic as a pcap or pcapng file.

Each UNIX connection becomes one synthetic TCP connection from 127.0.0.1:<a port
of its own> to 127.0.0.1:--port (default 80), with handshake, sequence numbers
and FIN, so Wireshark's "Follow TCP Stream" and port-based dissectors work.
Datagram sockets become UDP. pcapng also records the socket path and each
client's pid, uid and command.

--listen PROXY serves at PROXY (mode and owner copied from PATH, less the
group and other bits that PATH's folders take away); point clients at PROXY.
--swap serves at PATH itself, keeping the original at PATH.opsctl-orig, and
puts it back on SIGINT, SIGTERM, SIGQUIT or SIGHUP: clients need no change.
@name means an abstract socket; an abstract PROXY, which every user may
connect to, is refused for a PATH that not every user may reach. On the
first signal the capture is finished and closed; a second one exits at once
(status 1), for a reader of -w - that stopped reading.

-w FILE is created with mode 0600, or replaced by such a new file when it is
a regular file with no other hard link (never written into: its owner or an
earlier reader could read the capture); a symbolic link is never followed,
and a folder, a device or a socket is refused. A symbolic link on the way to
the folder of FILE, PROXY or a swapped PATH is followed only when nobody but
root can change it. A FIFO, /dev/stdout, /dev/fd/N and /dev/null are written
to as they are. The proxy's socket is made in a private folder beside its
path with its mode and owner, then moved into place.

Stop with Ctrl-C: every packet is written and the file is complete.`

const sockCaptureExample = `  # Clients talk to /tmp/docker.proxy instead of /run/docker.sock
  opsctl sock capture --socket /run/docker.sock --listen /tmp/docker.proxy -w docker.pcap
  curl --unix-socket /tmp/docker.proxy http://localhost/version

  # Capture in place, without changing any client; watch live in Wireshark
  opsctl sock capture --socket /run/app.sock --swap -w - | wireshark -k -i -

  # A PostgreSQL socket decoded as PostgreSQL, with pids in the file
  opsctl sock capture --socket /run/postgresql/.s.PGSQL.5432 --swap --port 5432 -w pg.pcapng

  # Only look, like socat -x -v
  opsctl sock capture --socket @/tmp/.X11-unix/X0 --listen @x0-proxy --hexdump`

// NewCmdSockCapture builds `sock capture`; runF, when set, receives the
// options instead of runSockCapture (tests of the flags).
func NewCmdSockCapture(f *cli.Factory, runF func(*SockCaptureOptions) error) *cobra.Command {
	opts := &SockCaptureOptions{Factory: f}
	cmd := &cobra.Command{
		Use:     "capture --socket PATH (--listen PROXY | --swap) [-w FILE|-] [--format pcap|pcapng] [--hexdump] [--port N]",
		Short:   "Record what clients and server say over a UNIX socket, as pcap",
		Long:    sockCaptureLong,
		Example: sockCaptureExample,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Format = strings.ToLower(opts.Format)
			if runF != nil {
				return runF(opts)
			}
			return sockError(runSockCapture(opts))
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

func runSockCapture(opts *SockCaptureOptions) error {
	ctx, again, stop := sockSignalContext(opts.Factory)
	defer stop()

	cfg, format, err := opts.validate()
	if err != nil {
		return err
	}
	plan, err := sockspy.NewPlan(cfg)
	if err != nil {
		return sockInputError(err)
	}
	if opts.DryRun {
		opts.printPlan(plan, format)
		return nil
	}
	session, err := opts.session(plan, format)
	if err != nil {
		return err
	}
	session.StopAgain = again
	err = session.Run(ctx)
	if errors.Is(err, sockspy.ErrReaderGone) {
		return fmt.Errorf("sock capture: %s: %w (its reader went away)", opts.watchedName(), syscall.EPIPE)
	}
	if err != nil {
		return fmt.Errorf("sock capture: %w", err)
	}
	return nil
}

// validate turns the flags into a capture config; every error is a usage
// error naming the flag.
func (o *SockCaptureOptions) validate() (sockspy.Config, sockspy.Format, error) {
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

// printPlan is --dry-run: the steps, and where the capture would go.
func (o *SockCaptureOptions) printPlan(plan *sockspy.Plan, format sockspy.Format) {
	for _, step := range plan.Steps() {
		fmt.Fprintln(o.IO.Out, "+ "+step)
	}
	if o.Output != "" {
		fmt.Fprintf(o.IO.Out, "+ write %s as %s, server port %d\n", outputName(o.Output), format, o.Port)
	}
}

// session opens the capture's destination and describes the capture.
func (o *SockCaptureOptions) session(plan *sockspy.Plan, format sockspy.Format) (*sockspy.Session, error) {
	s := &sockspy.Session{
		Plan: plan, Format: format, Port: uint16(o.Port), Logger: o.Logger,
		// For benchmarks only: every byte through user space, as before splice.
		Copy: o.Getenv != nil && o.Getenv("OPSCTL_SOCK_NOSPLICE") == "1",
		Ready: func() {
			o.Logger.Info("capturing; stop with Ctrl-C", "socket", plan.Socket, "type", plan.Type.String(),
				"listen", plan.Listen, "output", outputName(o.Output))
		},
	}
	switch o.Output {
	case "":
	case "-":
		s.Stdout = o.IO.Out
	default:
		// As root, in a folder another user may own: no link is followed
		// and only a regular file is replaced.
		out, err := sockspy.OpenOutput(o.Output)
		if err != nil {
			return nil, sockInputError(err)
		}
		s.Output = out
	}
	if o.Hexdump {
		s.Hexdump = o.IO.ErrOut
	}
	s.Watch, _ = o.watched()
	return s, nil
}

// watched is the stream whose reader going away ends the capture: stdout
// of -w -, or stderr when a --hexdump is all there is to record (piped into
// less, which quit), as socat -x -v ends then. Only a file can be watched.
func (o *SockCaptureOptions) watched() (*os.File, bool) {
	if o.Output == "-" {
		f, ok := o.IO.Out.(*os.File)
		return f, ok
	}
	if o.Output == "" && o.Hexdump {
		f, ok := o.IO.ErrOut.(*os.File)
		return f, ok
	}
	return nil, false
}

// watchedName names the stream of watched for the user.
func (o *SockCaptureOptions) watchedName() string {
	if o.Output == "-" {
		return "-w -: stdout"
	}
	return "--hexdump: stderr"
}

func outputName(w string) string {
	if w == "-" {
		return "stdout"
	}
	return w
}
