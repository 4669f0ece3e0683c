package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/inputerr"
)

// newCmdSock is the sock group: sock_capture.go holds its verb, and
// sock_extcap*.go the Wireshark extcap group.
func newCmdSock(f *cli.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sock",
		Short: "Capture the traffic of a UNIX socket into a pcap file",
		Example: `  opsctl sock capture --socket /run/docker.sock --listen /tmp/docker.proxy -w docker.pcap
  opsctl sock capture --socket /run/app.sock --swap -w - | wireshark -k -i -
  sudo opsctl sock extcap install    # then: wireshark, interface opsctl_sock`,
	}
	cmd.AddCommand(NewCmdSockCapture(f, nil), newCmdSockExtcap(f))
	return cmd
}

// sockFlagNames are the flags that fill in sockspy's inputs: errors of the
// package name the inputs, the user reads the flags.
var sockFlagNames = map[string]string{
	"Config.Socket":   "--socket",
	"Config.Listen":   "--listen",
	"Config.Swap":     "--swap",
	"OpenOutput.path": "-w",
	"Session.Output":  "-w",
	"Session.Stdout":  "-w stdout",
}

// sockError shows the flags in an error of sockspy.
func sockError(err error) error { return inputerr.Rename(err, sockFlagNames) }

// sockSignalContext is the context of a running capture. Every way of
// being asked to stop puts a swapped socket back: SIGINT and SIGTERM,
// SIGHUP too (the terminal or ssh session went away) unless it is ignored
// (nohup), SIGQUIT (Ctrl-\) too, whose default would end opsctl at once
// and leave a swapped socket moved aside. The signals after the first one
// arrive on again (Session.StopAgain), for a reader that stopped reading.
func sockSignalContext(f *cli.Factory) (ctx context.Context, again <-chan os.Signal, stop context.CancelFunc) {
	extra := []os.Signal{syscall.SIGQUIT}
	if !signal.Ignored(syscall.SIGHUP) {
		extra = append(extra, syscall.SIGHUP)
	}
	stopAgain := make(chan os.Signal, 1)
	ctx, stop = f.SignalContext(stopAgain, extra...)
	// Without a handler, Go kills the process with SIGPIPE on a write to a
	// broken stdout or stderr (-w - | wireshark, then Wireshark closed),
	// before the socket is put back. With one, the write fails and the
	// capture stops cleanly. Kept until the process exits: the error that
	// main then prints to a broken stderr must not kill it either (exit
	// status 1, not death by SIGPIPE). The one signal.Notify of cmd/
	// besides SignalContext.
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	return ctx, stopAgain, stop
}

// sockInputError makes an input sockspy cannot use as given (a path that
// does not exist or is not the kind expected) a usage error.
func sockInputError(err error) error {
	var inputErr *inputerr.Error
	if errors.As(err, &inputErr) {
		return cli.UsageError(err)
	}
	return err
}
