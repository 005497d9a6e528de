package docker

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/moby/moby/client"
)

// PathStat describes a path in a container.
type PathStat struct {
	Name       string
	Size       int64
	Mode       fs.FileMode
	Mtime      time.Time
	LinkTarget string
}

// CopyToContainer extracts a tar stream into the directory dir of the
// container, which must exist. The container need not be running: copying
// into a created container is how a volume mounted in it is populated.
func (c *Client) CopyToContainer(ctx context.Context, id, dir string, tarStream io.Reader) error {
	if err := c.ready(ctx); err != nil {
		return err
	}
	if _, err := c.api.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: dir, Content: tarStream}); err != nil {
		return fmt.Errorf("copying into %s of container %q: %w", dir, id, wrap(err))
	}
	return nil
}

// CopyFromContainer returns a tar stream of path in the container (a file,
// or a directory with its contents under its base name) and the path's
// stat. The caller closes the stream.
func (c *Client) CopyFromContainer(ctx context.Context, id, path string) (io.ReadCloser, PathStat, error) {
	if err := c.ready(ctx); err != nil {
		return nil, PathStat{}, err
	}
	res, err := c.api.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: path})
	if err != nil {
		return nil, PathStat{}, fmt.Errorf("copying %s from container %q: %w", path, id, wrap(err))
	}
	st := res.Stat
	return res.Content, PathStat{Name: st.Name, Size: st.Size, Mode: st.Mode, Mtime: st.Mtime, LinkTarget: st.LinkTarget}, nil
}
