package docker_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
)

// TestNetworks records what networking does on gantry's engine
// (--bridge=none --iptables=false): user-defined bridges work, with DNS
// between their containers; the default network leaves a container with
// loopback only; macvlan is not supported.
func TestNetworks(t *testing.T) {
	t.Parallel()
	c, base := engine(t)
	ctx := testCtx(t)
	name := dockertest.Name(t, "net")
	id, err := c.CreateNetwork(ctx, name, "", mergeLabels(dockertest.Labels(t), map[string]string{"purpose": "dag"}))
	if err != nil {
		t.Fatalf("create a bridge network: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := ignoreNotFound(c.RemoveNetwork(ctx, id)); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	if _, err := c.CreateNetwork(ctx, name, "bridge", nil); !errors.Is(err, docker.ErrConflict) {
		t.Errorf("create a taken network name: %v, want ErrConflict", err)
	}
	n, err := c.InspectNetwork(ctx, name)
	if err != nil || n.ID != id || n.Driver != "bridge" || n.Labels["purpose"] != "dag" {
		t.Errorf("inspect = %+v, %v", n, err)
	}
	list, err := c.ListNetworks(ctx, "purpose=dag", dockertest.Label+"="+dockertest.LabelValue(t))
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Errorf("list by label = %+v, %v", list, err)
	}

	// Containers on the network reach each other by name (the engine's DNS).
	server := dockertest.Name(t, "web")
	sid, err := c.CreateContainer(ctx, server, docker.ContainerConfig{
		Image: base, Labels: dockertest.Labels(t),
		Cmd: []string{"sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && httpd -f -p 8080 -h /www"},
	}, docker.HostConfig{NetworkMode: name})
	if err != nil {
		t.Fatal(err)
	}
	dockertest.RemoveContainerOnCleanup(t, c, sid)
	if err := c.StartContainer(ctx, sid); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := run(t, c, docker.ContainerConfig{Image: base, Cmd: []string{"sh", "-c",
		"for i in $(seq 1 50); do wget -q -O - http://" + server + ":8080/ && exit 0; sleep 0.1; done; exit 1"}},
		docker.HostConfig{NetworkMode: name})
	if code != 0 || stdout != "hello-from-web\n" {
		t.Errorf("fetch by container name: code %d stdout %q stderr %q", code, stdout, stderr)
	}

	// A network with a container attached cannot be removed.
	err = c.RemoveNetwork(ctx, name)
	if err == nil {
		t.Fatal("removed a network in use")
	}
	if !errors.Is(err, docker.ErrConflict) || !strings.Contains(err.Error(), "active endpoints") {
		t.Errorf("remove a network in use: %v", err)
	}
	if err := c.RemoveContainer(ctx, sid, docker.RemoveContainerOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveNetwork(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := c.RemoveNetwork(ctx, name); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("remove a removed network: %v, want ErrNotFound", err)
	}
	if _, err := c.InspectNetwork(ctx, name); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("inspect a removed network: %v, want ErrNotFound", err)
	}

	// The engine's default network: loopback only.
	stdout, _, _ = run(t, c, docker.ContainerConfig{Image: base, Cmd: []string{"sh", "-c", "ip -o addr | awk '{print $2}' | sort -u"}}, docker.HostConfig{NetworkMode: "default"})
	if strings.TrimSpace(stdout) != "lo" {
		t.Errorf("default network interfaces: %q", stdout)
	}
	if err := c.RemoveNetwork(ctx, "host"); !errors.Is(err, docker.ErrConflict) {
		t.Errorf("remove the host network: %v, want ErrConflict", err)
	}
	// No default bridge network exists.
	if _, err := c.InspectNetwork(ctx, "bridge"); !errors.Is(err, docker.ErrNotFound) {
		t.Errorf("inspect network bridge: %v, want ErrNotFound", err)
	}
	// macvlan (needs a parent interface the engine may not use) fails.
	if nid, err := c.CreateNetwork(ctx, dockertest.Name(t, "mv"), "macvlan", dockertest.Labels(t)); err == nil {
		_ = c.RemoveNetwork(ctx, nid)
		t.Log("macvlan networks work on this engine")
	} else {
		t.Logf("macvlan: %v", err)
	}
}
