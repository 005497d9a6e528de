package docker

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"time"
)

// PathStat describes a path in a container (the X-Docker-Container-Path-Stat
// header of the archive endpoint).
type PathStat struct {
	Name       string
	Size       int64
	Mode       fs.FileMode
	Mtime      time.Time
	LinkTarget string `json:"linkTarget"`
}

// CopyToContainer extracts a tar stream into the directory dir of the
// container, which must exist. The container need not be running: copying
// into a created container is how a volume mounted in it is populated.
func (c *Client) CopyToContainer(ctx context.Context, id, dir string, tarStream io.Reader) error {
	q := url.Values{"path": {dir}}
	hdr := http.Header{"Content-Type": {"application/x-tar"}}
	resp, err := c.do(ctx, http.MethodPut, "/containers/"+id+"/archive", q, tarStream, hdr)
	if err != nil {
		return fmt.Errorf("copying into %s of container %q: %w", dir, id, err)
	}
	return drain(resp)
}

// CopyFromContainer returns a tar stream of path in the container (a file,
// or a directory with its contents under its base name) and the path's
// stat. The caller closes the stream.
func (c *Client) CopyFromContainer(ctx context.Context, id, path string) (io.ReadCloser, PathStat, error) {
	resp, err := c.do(ctx, http.MethodGet, "/containers/"+id+"/archive", url.Values{"path": {path}}, nil, nil)
	if err != nil {
		return nil, PathStat{}, fmt.Errorf("copying %s from container %q: %w", path, id, err)
	}
	var st PathStat
	if h := resp.Header.Get("X-Docker-Container-Path-Stat"); h != "" {
		if data, err := base64.StdEncoding.DecodeString(h); err == nil {
			_ = json.Unmarshal(data, &st)
		}
	}
	return resp.Body, st, nil
}
