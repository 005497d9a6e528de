package cli

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/docker"
)

// contextArchive streams dir as a gzipped tar, honouring .dockerignore.
func contextArchive(dir, dockerfile string) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		zw := gzip.NewWriter(pw)
		err := docker.TarBuildContext(zw, dir, dockerfile)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err)
	}()
	return pr
}

func newQuickRunCmd(o *rootOpts) *cobra.Command {
	var registry, file string
	var sets []string
	var timeout int
	var noLogs, noWait bool
	c := &cobra.Command{
		Use:   "run [CONTEXT]",
		Short: "Run a task file once, like az acr run: -f is relative to CONTEXT, or a local file without one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			values, err := keyValues("--set", sets)
			if err != nil {
				return err
			}
			req := api.QuickRunRequest{File: file, Values: values, TimeoutSeconds: timeout}
			var archive io.Reader
			if len(args) == 1 && args[0] != "/dev/null" {
				dir := args[0]
				b, err := os.ReadFile(filepath.Join(dir, file))
				if err != nil {
					return fmt.Errorf("-f %s in context %s: %w", file, dir, err)
				}
				req.FileContent = b
				archive = contextArchive(dir, "")
			} else {
				b, err := os.ReadFile(file)
				if err != nil {
					return fmt.Errorf("-f %s: %w", file, err)
				}
				req.FileContent, req.File = b, filepath.Base(file)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			run, err := c.QuickRun(cmd.Context(), registry, req, archive)
			if err != nil {
				return hint(err)
			}
			return o.followRun(cmd, c, registry, run, noLogs, noWait)
		},
	}
	c.Flags().StringVarP(&registry, "registry", "r", "", "registry name")
	c.Flags().StringVarP(&file, "file", "f", "acr-task.yaml", "task file")
	c.Flags().StringArrayVar(&sets, "set", nil, "a value KEY=VALUE (repeatable)")
	c.Flags().IntVar(&timeout, "timeout", 0, "run timeout in seconds (default 3600)")
	c.Flags().BoolVar(&noLogs, "no-logs", false, "do not stream the log")
	c.Flags().BoolVar(&noWait, "no-wait", false, "return once queued")
	_ = c.MarkFlagRequired("registry")
	return c
}

func newBuildCmd(o *rootOpts) *cobra.Command {
	var registry, file, target string
	var images, buildArgs []string
	var noPush, noLogs, noWait bool
	var timeout int
	c := &cobra.Command{
		Use:   "build CONTEXT",
		Short: "Build an image from a local context and push it to the registry, like az acr build",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bargs, err := keyValues("--build-arg", buildArgs)
			if err != nil {
				return err
			}
			dir := args[0]
			if _, err := os.Stat(filepath.Join(dir, file)); err != nil {
				return fmt.Errorf("-f %s in context %s: %w", file, dir, err)
			}
			req := api.QuickRunRequest{Build: true, File: file, Images: images, Arguments: bargs, Target: target,
				NoPush: noPush, TimeoutSeconds: timeout}
			c, err := o.client()
			if err != nil {
				return err
			}
			run, err := c.QuickRun(cmd.Context(), registry, req, contextArchive(dir, file))
			if err != nil {
				return hint(err)
			}
			return o.followRun(cmd, c, registry, run, noLogs, noWait)
		},
	}
	c.Flags().StringVarP(&registry, "registry", "r", "", "registry name")
	c.Flags().StringVarP(&file, "file", "f", "Dockerfile", "Dockerfile, relative to the context")
	c.Flags().StringArrayVarP(&images, "image", "t", nil, "image to build and push, repo:tag (the registry is added)")
	c.Flags().StringArrayVar(&buildArgs, "build-arg", nil, "build argument KEY=VALUE (repeatable)")
	c.Flags().StringVar(&target, "target", "", "Dockerfile stage")
	c.Flags().BoolVar(&noPush, "no-push", false, "build only")
	c.Flags().IntVar(&timeout, "timeout", 0, "timeout in seconds")
	c.Flags().BoolVar(&noLogs, "no-logs", false, "do not stream the log")
	c.Flags().BoolVar(&noWait, "no-wait", false, "return once queued")
	_ = c.MarkFlagRequired("registry")
	return c
}
