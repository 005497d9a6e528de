// Command gantry is the gantry server and its command-line client. Called as
// az (a symlink), it is gantry's az: the Azure CLI commands task files use;
// called as docker-credential-gantry, the Docker credential helper of
// gantry's registries.
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
	switch filepath.Base(os.Args[0]) {
	case "az":
		execute = cli.ExecuteAz
	case cli.CredentialHelperName:
		execute = cli.ExecuteCredentialHelper
	}
	code := execute(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
