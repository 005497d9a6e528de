package docker

import (
	"context"
	"fmt"

	"github.com/moby/moby/api/types/volume"
	"github.com/moby/moby/client"
)

// Volume is a named volume of the engine.
type Volume struct {
	Name       string
	Driver     string
	Mountpoint string // path on the engine's host
	Labels     map[string]string
	CreatedAt  string // RFC 3339, as the engine reports it
}

func volumeOf(v volume.Volume) Volume {
	return Volume{Name: v.Name, Driver: v.Driver, Mountpoint: v.Mountpoint, Labels: v.Labels, CreatedAt: v.CreatedAt}
}

// CreateVolume creates a local volume. Creating a volume that exists returns
// the existing one (the engine's behaviour).
func (c *Client) CreateVolume(ctx context.Context, name string, labels map[string]string) (Volume, error) {
	if err := c.ready(ctx); err != nil {
		return Volume{}, err
	}
	res, err := c.api.VolumeCreate(ctx, client.VolumeCreateOptions{Name: name, Driver: "local", Labels: labels})
	if err != nil {
		return Volume{}, fmt.Errorf("creating volume %q: %w", name, wrap(err))
	}
	return volumeOf(res.Volume), nil
}

// InspectVolume returns the named volume.
func (c *Client) InspectVolume(ctx context.Context, name string) (Volume, error) {
	if err := c.ready(ctx); err != nil {
		return Volume{}, err
	}
	res, err := c.api.VolumeInspect(ctx, name, client.VolumeInspectOptions{})
	if err != nil {
		return Volume{}, fmt.Errorf("inspecting volume %q: %w", name, wrap(err))
	}
	return volumeOf(res.Volume), nil
}

// RemoveVolume removes a volume. A volume in use fails with ErrConflict (also
// with force, which only ignores driver errors); a missing one with
// ErrNotFound unless force.
func (c *Client) RemoveVolume(ctx context.Context, name string, force bool) error {
	if err := c.ready(ctx); err != nil {
		return err
	}
	if _, err := c.api.VolumeRemove(ctx, name, client.VolumeRemoveOptions{Force: force}); err != nil {
		return fmt.Errorf("removing volume %q: %w", name, wrap(err))
	}
	return nil
}

// ListVolumes lists volumes carrying all of the labels ("key" or
// "key=value"); with none, all volumes.
func (c *Client) ListVolumes(ctx context.Context, labels ...string) ([]Volume, error) {
	if err := c.ready(ctx); err != nil {
		return nil, err
	}
	res, err := c.api.VolumeList(ctx, client.VolumeListOptions{Filters: labelFilters(labels, "", "")})
	if err != nil {
		return nil, fmt.Errorf("listing volumes: %w", wrap(err))
	}
	out := make([]Volume, 0, len(res.Items))
	for _, v := range res.Items {
		out = append(out, volumeOf(v))
	}
	return out, nil
}
