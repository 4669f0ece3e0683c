// Command opsctl turns five operations recipes into safe, repeatable commands.
package main

import (
	"os"

	"github.com/opsctl/opsctl/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	// Wireshark runs opsctl as an extcap under another name: see
	// sockExtcapArgs.
	os.Exit(run(sockExtcapArgs(os.Args), cli.SystemStreams(), os.Getenv))
}
