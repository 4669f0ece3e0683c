package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/opsctl/opsctl/internal/cli"
	"github.com/opsctl/opsctl/internal/inputerr"
)

// newCmdSock is the sock group: sock_capture.go holds its verb.
func newCmdSock(f *cli.Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sock",
		Short: "Capture the traffic of a UNIX socket into a pcap file",
		Example: `  opsctl sock capture --socket /run/docker.sock --listen /tmp/docker.proxy -w docker.pcap
  opsctl sock capture --socket /run/app.sock --swap -w - | wireshark -k -i -`,
	}
	cmd.AddCommand(NewCmdSockCapture(f, nil))
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

// sockInputError makes an input sockspy cannot use as given (a path that
// does not exist or is not the kind expected) a usage error.
func sockInputError(err error) error {
	var inputErr *inputerr.Error
	if errors.As(err, &inputErr) {
		return cli.UsageError(err)
	}
	return err
}
