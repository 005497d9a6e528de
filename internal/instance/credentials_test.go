package instance_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/instance"
)

// TestStoredCredentialsServeTheirPrincipal is issue 12's S8 at the
// manager: principal A deploys a private image with its pull credential;
// principal B, without credentials, cannot replace the instance (another
// command that would read the image, or the same one), nor can A run
// another command without giving credentials again. Each refusal leaves
// the instance as it was: same container, same record, still serving. A
// restart-like update by A reuses the credential; B gets through with
// credentials of its own or its own pull access, and A's credential is not
// kept for B's deployment.
func TestStoredCredentialsServeTheirPrincipal(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	v1 := e.image("v1")
	m := e.manager(instance.WithResyncInterval(0))
	c := ctx(t)
	name := dockertest.Name(t, "alpha-web")
	const alice, bob = "principal-a", "principal-b"
	creds := func() *instance.Credentials {
		return &instance.Credentials{Username: e.reg.Username, Password: e.reg.Password}
	}
	// What B would run with A's credential: the image's files, read out.
	steal := []string{"sh", "-c", `cat /build-id; MSG=stolen exec sh /serve.sh`}

	in, _, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Env: map[string]string{"MSG": "alice"},
		Registry: creds(), Principal: alice, By: "task:alpha/deploy"})
	if err != nil {
		t.Fatal(err)
	}
	if in.UpdatedByPrincipal != alice || in.RegistryPrincipal != alice || in.RegistryUsername != e.reg.Username {
		t.Fatalf("created: set by %q, credentials of %q (%q)", in.UpdatedByPrincipal, in.RegistryPrincipal, in.RegistryUsername)
	}
	url := in.URL()
	mustFetch(t, url, "v1 alice")
	before := rowDigest(t, e, name)

	for _, tc := range []struct {
		name string
		spec instance.Spec
	}{
		{"B, another command", instance.Spec{Name: name, Image: v1, Command: steal, Principal: bob, By: "task:beta/deploy"}},
		{"B, the same image and command", instance.Spec{Name: name, Image: v1, Env: map[string]string{"MSG": "bob"}, Principal: bob}},
		{"B, exactly A's spec", instance.Spec{Name: name, Image: v1, Env: map[string]string{"MSG": "alice"}, Principal: bob}},
		{"A, another command", instance.Spec{Name: name, Image: v1, Command: steal, Principal: alice}},
		{"no principal", instance.Spec{Name: name, Image: v1, Env: map[string]string{"MSG": "anyone"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := m.Apply(c, tc.spec)
			if !errors.Is(err, instance.ErrCredentialsRequired) || !errors.Is(err, auth.ErrDenied) {
				t.Fatalf("apply: %v, want ErrCredentialsRequired", err)
			}
			t.Logf("refused: %v", err)
			for _, want := range []string{fmt.Sprintf("container %q: replacing image %s needs pull credentials", name, v1),
				"--registry-username and --registry-password", "identity with pull access"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q: %v", want, err)
				}
			}
			mustFetch(t, url, "v1 alice")
			got, err := m.Get(c, name)
			if err != nil || got.ContainerID != in.ContainerID || got.State != instance.StateRunning || len(got.Command) != 0 {
				t.Fatalf("after the refusal: %v %+v", err, got)
			}
			if after := rowDigest(t, e, name); after != before {
				t.Errorf("the refusal changed the stored instance")
			}
			list, err := e.engine.ListContainers(c, docker.ListContainersOptions{All: true, Labels: []string{instance.LabelID + "=" + in.ID}})
			if err != nil || len(list) != 1 || list[0].ID != in.ContainerID {
				t.Errorf("containers of the instance: %v %+v", err, list)
			}
		})
	}

	// A, same image and command (an update of the environment): the
	// stored credential pulls, as before.
	in2, outcome, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Env: map[string]string{"MSG": "again"}, Principal: alice})
	if err != nil || outcome != instance.Replaced {
		t.Fatalf("A's update with the stored credential: %s %v", outcome, err)
	}
	mustFetch(t, url, "v1 again")
	if in2.RegistryPrincipal != alice || in2.RegistryUsername != e.reg.Username {
		t.Errorf("after A's update: credentials of %q (%q)", in2.RegistryPrincipal, in2.RegistryUsername)
	}

	// B with credentials of its own: allowed, and they replace A's.
	in3, outcome, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Command: steal, Registry: creds(), Principal: bob})
	if err != nil || outcome != instance.Replaced {
		t.Fatalf("B with its own credentials: %s %v", outcome, err)
	}
	mustFetch(t, url, "v1 stolen")
	if in3.RegistryPrincipal != bob || in3.UpdatedByPrincipal != bob {
		t.Errorf("after B's replace: set by %q, credentials of %q", in3.UpdatedByPrincipal, in3.RegistryPrincipal)
	}

	// A deploys again with its credential; B, with its own pull access,
	// replaces the instance: pulled with B's credentials, which are not
	// stored, and A's credential is dropped.
	if _, _, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Env: map[string]string{"MSG": "alice"}, Registry: creds(), Principal: alice}); err != nil {
		t.Fatal(err)
	}
	mustFetch(t, url, "v1 alice")
	wrong := &instance.Credentials{Username: e.reg.Username, Password: "wrong-" + e.reg.Password}
	if _, _, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Command: steal, CallerCredentials: wrong, Principal: bob}); !errors.Is(err, instance.ErrImage) {
		t.Fatalf("B whose own credentials the registry refuses: %v", err)
	}
	mustFetch(t, url, "v1 alice")
	in4, outcome, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Command: steal, CallerCredentials: creds(), Principal: bob})
	if err != nil || outcome != instance.Replaced {
		t.Fatalf("B with its own pull access: %s %v", outcome, err)
	}
	mustFetch(t, url, "v1 stolen")
	if in4.RegistryUsername != "" || in4.RegistryPrincipal != "" || in4.UpdatedByPrincipal != bob {
		t.Errorf("after B's replace with its own access: credentials %q of %q, set by %q", in4.RegistryUsername, in4.RegistryPrincipal, in4.UpdatedByPrincipal)
	}
	var stored []byte
	if err := e.db.R.QueryRowContext(c, `SELECT registry_password FROM container_instances WHERE name = ?`, name).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if len(stored) != 0 {
		t.Errorf("A's credential is still stored after B's deployment")
	}
	// Nothing is left to reuse: A must give its credential again.
	if _, _, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Principal: alice}); !errors.Is(err, instance.ErrImage) {
		t.Errorf("A without credentials after B's deployment: %v", err)
	}
	if strings.Contains(e.logs.String(), e.reg.Password) {
		t.Errorf("a password reached the log")
	}
}

// rowDigest is a digest of the stored row of the named instance, but its
// last observed state.
func rowDigest(t *testing.T, e *env, name string) string {
	t.Helper()
	rows, err := e.db.R.QueryContext(ctx(t), `SELECT * FROM container_instances WHERE name = ?`, name)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	if !rows.Next() {
		t.Fatalf("container %s is not stored: %v", name, rows.Err())
	}
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for i, col := range cols {
		if col != "state" {
			fmt.Fprintf(h, "%s=%q\n", col, vals[i])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TestLoginExchange: with a login exchange, a pull presents the identity
// token it returns instead of the password (a bogus token makes the
// registry refuse the pull); a login it does not exchange keeps the
// password.
func TestLoginExchange(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	v1 := e.image("v1")
	c := ctx(t)
	var asked []string
	exchange := func(tok string, ok bool) instance.LoginExchange {
		return func(_ context.Context, server, user, password string) (string, bool) {
			asked = append(asked, server+" "+user+" "+password)
			return tok, ok
		}
	}
	creds := &instance.Credentials{Username: e.reg.Username, Password: e.reg.Password}

	m := e.manager(instance.WithResyncInterval(0), instance.WithLoginExchange(exchange("bogus-identity-token", true)))
	name := dockertest.Name(t, "exchanged")
	if _, _, err := m.Apply(c, instance.Spec{Name: name, Image: v1, Registry: creds, Principal: "p"}); err == nil {
		t.Fatalf("the pull succeeded with a bogus identity token: the password was presented")
	}
	if len(asked) != 1 || !strings.HasSuffix(asked[0], e.reg.Username+" "+e.reg.Password) {
		t.Fatalf("exchange asked %q", asked)
	}

	m2 := e.manager(instance.WithResyncInterval(0), instance.WithLoginExchange(exchange("", false)))
	name2 := dockertest.Name(t, "kept")
	in, _, err := m2.Apply(c, instance.Spec{Name: name2, Image: v1, Registry: creds, Principal: "p"})
	if err != nil {
		t.Fatalf("a login the exchange declines should pull with the password: %v", err)
	}
	mustFetch(t, in.URL(), "v1")
	if err := m2.Delete(c, name2); err != nil {
		t.Fatal(err)
	}
}
