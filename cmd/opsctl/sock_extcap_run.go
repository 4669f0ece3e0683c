package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/pkg/sockspy"
)

// SockExtcapRunOptions are the arguments Wireshark passes to an extcap,
// and the options of opsctl's capture (sockspy.WriteExtcapConfig).
type SockExtcapRunOptions struct {
	*cli.Factory
	// Wireshark's calls.
	Interfaces       bool
	WiresharkVersion string
	Interface        string
	DLTs             bool
	Config           bool
	ReloadOption     string
	Capture          bool
	CaptureFilter    string
	FIFO             string
	// The toolbar controls' pipes: opsctl offers no control.
	ControlIn, ControlOut string
	// The capture's options.
	Socket     string
	SocketPath string
	Mode       string
	Proxy      string
	Port       int
}

const sockExtcapRunLong = `Answer one call of Wireshark's extcap protocol. Wireshark runs this through
the link that install puts in its extcap folder (opsctl-sock, which opsctl
knows by its name), or as opsctl --extcap-interfaces ...:

  --extcap-interfaces                         the interface ` + sockspy.ExtcapInterface + `
  --extcap-interface ` + sockspy.ExtcapInterface + ` --extcap-dlts      its link-layer type (RAW)
  --extcap-interface ` + sockspy.ExtcapInterface + ` --extcap-config    its options: --socket (the host's
                                              listening UNIX sockets), --socket-path,
                                              --mode swap|listen, --proxy, --port
  --extcap-interface ` + sockspy.ExtcapInterface + ` --capture --fifo PATH [options]

The capture is sock capture's, written as pcapng into the FIFO Wireshark
made: --mode swap (the default) serves at the socket's own path and puts the
original back at the end, --mode listen serves at --proxy. It stops when
Wireshark stops reading or sends SIGTERM. Errors are one line on stderr,
which Wireshark shows, and a non-zero exit status; nothing else is written
there.`

// NewCmdSockExtcapRun builds `sock extcap run`; runF, when set, receives
// the options instead of runSockExtcap (tests of the flags).
func NewCmdSockExtcapRun(f *cli.Factory, runF func(*SockExtcapRunOptions) error) *cobra.Command {
	opts := &SockExtcapRunOptions{Factory: f}
	cmd := &cobra.Command{
		Use:   "run EXTCAP-ARGUMENTS",
		Short: "Answer Wireshark's extcap calls (Wireshark runs this)",
		Long:  sockExtcapRunLong,
		Example: `  opsctl --extcap-interfaces
  opsctl --extcap-interface ` + sockspy.ExtcapInterface + ` --extcap-config
  mkfifo /tmp/f; opsctl sock extcap run --extcap-interface ` + sockspy.ExtcapInterface + ` --capture --fifo /tmp/f \
      --socket /run/app.sock & tshark -r /tmp/f`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if runF != nil {
				return runF(opts)
			}
			return runSockExtcap(opts)
		},
	}
	// Wireshark adds arguments from one release to the next: an unknown
	// one must not fail a call.
	cmd.FParseErrWhitelist.UnknownFlags = true
	fl := cmd.Flags()
	fl.BoolVar(&opts.Interfaces, "extcap-interfaces", false, "list the interface")
	fl.StringVar(&opts.WiresharkVersion, "extcap-version", "", "the `VERSION` of the Wireshark that asks")
	fl.StringVar(&opts.Interface, "extcap-interface", "", "the interface asked about: "+sockspy.ExtcapInterface+" (`NAME`)")
	fl.BoolVar(&opts.DLTs, "extcap-dlts", false, "list the interface's link-layer types")
	fl.BoolVar(&opts.Config, "extcap-config", false, "list the interface's options")
	fl.StringVar(&opts.ReloadOption, "extcap-reload-option", "", "with --extcap-config: list again the values of `OPTION` (socket)")
	fl.BoolVar(&opts.Capture, "capture", false, "capture into --fifo")
	fl.StringVar(&opts.CaptureFilter, "extcap-capture-filter", "", "a capture `FILTER`: none is taken (use a display filter)")
	fl.StringVar(&opts.FIFO, "fifo", "", "the FIFO Wireshark made and reads (`PATH`)")
	fl.StringVar(&opts.ControlIn, "extcap-control-in", "", "toolbar controls' pipe (`PATH`): not used")
	fl.StringVar(&opts.ControlOut, "extcap-control-out", "", "toolbar controls' pipe (`PATH`): not used")
	fl.StringVar(&opts.Socket, sockspy.ExtcapSocket, "", "the UNIX socket to capture: a `PATH` or @name")
	fl.StringVar(&opts.SocketPath, sockspy.ExtcapSocketPath, "", "a socket not in Wireshark's list (`PATH` or @name); wins over --socket")
	cli.EnumVar(fl, &opts.Mode, sockspy.ExtcapMode, sockspy.ExtcapModeSwap, []string{sockspy.ExtcapModeSwap, sockspy.ExtcapModeListen},
		"swap: serve at the socket's own path; listen: serve at --proxy")
	fl.StringVar(&opts.Proxy, sockspy.ExtcapProxy, "", "where the proxy serves with --mode listen: a `PROXY` path or @name")
	fl.IntVar(&opts.Port, sockspy.ExtcapPort, 80, "server `PORT` of the synthetic connections: picks Wireshark's dissector")
	return cmd
}

func runSockExtcap(opts *SockExtcapRunOptions) error {
	out := opts.IO.Out
	switch {
	case opts.Interfaces:
		return sockspy.WriteExtcapInterfaces(out, opts.Version)
	case opts.CaptureFilter != "" && !opts.Capture:
		// Wireshark checks a capture filter so: any line on stdout says
		// it is not valid, and is shown.
		_, err := fmt.Fprintln(out, "opsctl takes no capture filter: it records whole connections; use a display filter")
		return err
	}
	if opts.Interface != sockspy.ExtcapInterface {
		return cli.Usagef("--extcap-interface %q: expected %s, the one interface of opsctl", opts.Interface, sockspy.ExtcapInterface)
	}
	switch {
	case opts.DLTs:
		return sockspy.WriteExtcapDLTs(out)
	case opts.Config:
		// Without /proc the list is empty; a socket can still be typed.
		sockets, _ := sockspy.ListeningSockets()
		if opts.ReloadOption != "" {
			return sockspy.WriteExtcapReload(out, opts.ReloadOption, sockets)
		}
		return sockspy.WriteExtcapConfig(out, sockets)
	case opts.Capture:
		return extcapError(runSockExtcapCapture(opts))
	}
	return cli.Usagef("expected --extcap-interfaces, --extcap-dlts, --extcap-config or --capture: the calls of Wireshark's extcap protocol")
}

// runSockExtcapCapture captures for Wireshark. Whatever goes wrong once
// the FIFO is open, it is closed before the error is shown: Wireshark
// waits for its end, then shows what opsctl wrote on stderr.
func runSockExtcapCapture(opts *SockExtcapRunOptions) error {
	if opts.FIFO == "" {
		return cli.Usagef("--fifo: required with --capture: the FIFO Wireshark reads")
	}
	ctx, again, stop := sockSignalContext(opts.Factory)
	defer stop()
	fifo, err := sockspy.OpenFIFO(ctx, opts.FIFO)
	if err != nil {
		return sockInputError(err)
	}
	plan, err := opts.plan()
	if err != nil {
		fifo.Close()
		return err
	}
	session := &sockspy.Session{
		Plan: plan, Output: fifo, Format: sockspy.FormatPcapng, Port: uint16(opts.Port),
		// Wireshark closing the FIFO is one way it ends a capture.
		Watch:     fifo.File,
		StopAgain: again,
		// No log: Wireshark shows whatever comes on stderr as an error.
	}
	err = session.Run(ctx)
	if errors.Is(err, sockspy.ErrReaderGone) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sock extcap: %w", err)
	}
	return nil
}

// plan checks the capture's options and the socket.
func (opts *SockExtcapRunOptions) plan() (*sockspy.Plan, error) {
	if opts.CaptureFilter != "" {
		return nil, cli.Usagef("--extcap-capture-filter %q: opsctl takes no capture filter, it records whole connections; use a display filter", opts.CaptureFilter)
	}
	socket := opts.SocketPath
	if socket == "" {
		socket = opts.Socket
	}
	if socket == "" {
		return nil, cli.Usagef("--%s: expected the socket to capture: choose one in the list or type a path or @name", sockspy.ExtcapSocket)
	}
	if opts.Port < 1 || opts.Port > 65535 {
		return nil, cli.Usagef("--%s %d: expected a TCP port, 1 to 65535", sockspy.ExtcapPort, opts.Port)
	}
	cfg := sockspy.Config{Socket: socket, Swap: opts.Mode != sockspy.ExtcapModeListen}
	if !cfg.Swap {
		// A --proxy left from an earlier capture is ignored in swap mode:
		// Wireshark passes every option it has a value of.
		if opts.Proxy == "" {
			return nil, cli.Usagef("--%s: expected where the proxy serves with --%s %s (a path or @name)", sockspy.ExtcapProxy, sockspy.ExtcapMode, sockspy.ExtcapModeListen)
		}
		cfg.Listen = opts.Proxy
	}
	plan, err := sockspy.NewPlan(cfg)
	if err != nil {
		return nil, sockInputError(err)
	}
	return plan, nil
}
