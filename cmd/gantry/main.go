// Command gantry is the gantry server and its command-line client. Called as
// az (a symlink), it is gantry's az: the Azure CLI commands task files use.
package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/gantryhq/gantry/cmd/gantry/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	execute := cli.Execute
	if filepath.Base(os.Args[0]) == "az" {
		execute = cli.ExecuteAz
	}
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
