package instance

import (
	"errors"
	"strings"
	"testing"

	"github.com/gantryhq/gantry/internal/auth"
)

// plainSealer "seals" by prefixing the binding, so that a value opened
// under another binding fails as with the vault.
type plainSealer struct{}

func (plainSealer) Seal(p []byte, binding string) ([]byte, error) {
	return append([]byte(binding+"|"), p...), nil
}

func (plainSealer) Open(sealed []byte, binding string) ([]byte, error) {
	rest, ok := strings.CutPrefix(string(sealed), binding+"|")
	if !ok {
		return nil, errors.New("wrong binding")
	}
	return []byte(rest), nil
}

// TestPullPlan checks which credentials an Apply pulls with and stores
// (issue 12, S8: a stored pull credential serves only the principal that
// gave it, for the image and command it was given for).
func TestPullPlan(t *testing.T) {
	t.Parallel()
	m := &Manager{sealer: plainSealer{}}
	const (
		image   = "127.0.0.1:5003/alpha-private:1"
		server  = "127.0.0.1:5003"
		alice   = "principal-a"
		bob     = "principal-b"
		command = "httpd"
	)
	stored := &Credentials{Server: server, Username: "alpha-puller", Password: "alpha-secret"}
	cur := &record{ID: "id-1", Name: "alpha-web", Image: image, Spec: recordSpec{Command: []string{command}}}
	if err := m.sealCredentials(cur, stored, alice); err != nil {
		t.Fatal(err)
	}
	if cur.CredentialPrincipal != alice || cur.RegistryUsername != "alpha-puller" {
		t.Fatalf("sealed record: %+v", cur)
	}
	given := &Credentials{Server: server, Username: "bob-puller", Password: "bob-secret"}
	callers := &Credentials{Server: server, Username: "gantry-run", Password: "gantryrun.bob"}
	spec := func(principal string, f func(*Spec)) Spec {
		s := Spec{Name: "alpha-web", Image: image, Command: []string{command}, Principal: principal}
		if f != nil {
			f(&s)
		}
		n, err := s.normalize()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	otherCommand := func(s *Spec) { s.Command = []string{"sh", "-c", "cat /secret.txt"} }
	for _, tc := range []struct {
		name        string
		spec        Spec
		cur         *record
		pull, store *Credentials
		owner       string
		dropped     bool
	}{
		{"create, no credentials", spec(alice, nil), nil, nil, nil, "", false},
		{"create with credentials", spec(alice, func(s *Spec) { s.Registry = stored }), nil, stored, stored, alice, false},
		{"same principal, image and command: stored reused", spec(alice, func(s *Spec) { s.Env = map[string]string{"A": "1"} }), cur, stored, stored, alice, false},
		{"same principal, other command", spec(alice, otherCommand), cur, nil, nil, "", true},
		{"same principal, no command", spec(alice, func(s *Spec) { s.Command = nil }), cur, nil, nil, "", true},
		{"same principal, other image", spec(alice, func(s *Spec) { s.Image = server + "/alpha-private:2" }), cur, nil, nil, "", true},
		{"other principal, same image and command", spec(bob, nil), cur, nil, nil, "", true},
		{"other principal, other command", spec(bob, otherCommand), cur, nil, nil, "", true},
		{"no principal (legacy caller) and a principal's credentials", spec("", nil), cur, nil, nil, "", true},
		{"other principal with its own credentials", spec(bob, func(s *Spec) { otherCommand(s); s.Registry = given }), cur, given, given, bob, false},
		{"other principal with pull access", spec(bob, func(s *Spec) { otherCommand(s); s.CallerCredentials = callers }), cur, callers, nil, "", true},
		{"same principal with pull access keeps the stored ones", spec(alice, func(s *Spec) { s.CallerCredentials = callers }), cur, callers, stored, alice, false},
		{"other registry: stored ones not for it", spec(alice, func(s *Spec) { s.Image = "127.0.0.1:5999/x:1" }), cur, nil, nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := m.pullPlanFor(tc.spec, tc.cur)
			if err != nil {
				t.Fatal(err)
			}
			if !sameCredentials(p.pull, tc.pull) || !sameCredentials(p.store, tc.store) || p.owner != tc.owner || p.dropped != tc.dropped {
				t.Errorf("plan: pull %v, store %v, owner %q, dropped %v; want pull %v, store %v, owner %q, dropped %v",
					p.pull, p.store, p.owner, p.dropped, tc.pull, tc.store, tc.owner, tc.dropped)
			}
		})
	}
	// A legacy record (credentials of no principal) serves callers without
	// one only.
	legacy := *cur
	legacy.CredentialPrincipal = ""
	if p, _ := m.pullPlanFor(spec("", nil), &legacy); !sameCredentials(p.pull, stored) {
		t.Errorf("legacy record, caller without a principal: pull %v", p.pull)
	}
	if p, _ := m.pullPlanFor(spec(alice, nil), &legacy); p.pull != nil || !p.dropped {
		t.Errorf("legacy record, caller with a principal: pull %v dropped %v", p.pull, p.dropped)
	}
}

func sameCredentials(a, b *Credentials) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func TestCallerCredentialsNormalized(t *testing.T) {
	t.Parallel()
	s := Spec{Name: "web", Image: "127.0.0.1:5003/app:1", CallerCredentials: &Credentials{Username: "admin", Password: "pw"}}
	n, err := s.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if n.CallerCredentials == nil || n.CallerCredentials.Server != "127.0.0.1:5003" {
		t.Errorf("caller credentials: %v", n.CallerCredentials)
	}
	s.CallerCredentials = &Credentials{Server: "other:5000", Username: "admin", Password: "pw"}
	if n, _ := s.normalize(); n.CallerCredentials != nil {
		t.Errorf("caller credentials for another registry kept: %v", n.CallerCredentials)
	}
}

func TestCredentialsRequiredError(t *testing.T) {
	t.Parallel()
	err := credentialsRequired(Spec{Name: "alpha-web", Image: "127.0.0.1:5003/alpha-private:1"}, errors.New("unauthorized"))
	if !errors.Is(err, ErrCredentialsRequired) || !errors.Is(err, auth.ErrDenied) {
		t.Errorf("error chain: %v", err)
	}
	for _, want := range []string{`container "alpha-web"`, "replacing image 127.0.0.1:5003/alpha-private:1 needs pull credentials",
		"--registry-username", "--registry-password", "identity with pull access"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}
