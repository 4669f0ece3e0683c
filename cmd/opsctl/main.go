// Command opsctl turns five operations recipes into safe, repeatable commands.
package main

import (
	"os"

	"github.com/opsctl/opsctl/internal/cli"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], cli.SystemStreams(), os.Getenv))
}
