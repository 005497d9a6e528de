package instance

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/db"
	"github.com/gantryhq/gantry/internal/errdefs"
	"github.com/gantryhq/gantry/internal/oci"
)

// Sentinel errors, matched with errors.Is. ErrNotFound also matches
// db.ErrNotFound, ErrPortInUse and ErrNoContainer also match db.ErrConflict,
// ErrCredentialsRequired also matches auth.ErrDenied.
var (
	// ErrNotFound: no instance has that name.
	ErrNotFound = errdefs.New("not found", db.ErrNotFound)
	// ErrInvalid: a field of the request is wrong (name, image, port,
	// environment variable, ...).
	ErrInvalid = errdefs.New("invalid container instance", errdefs.ErrInvalid)
	// ErrImage: the image could not be pulled (unknown, credentials
	// refused, registry unreachable).
	ErrImage = errors.New("image not available")
	// ErrNotReady: the new container exited or did not accept connections
	// on its ports within the startup timeout. The previous container, if
	// any, is still serving.
	ErrNotReady = errors.New("container did not become ready")
	// ErrPortInUse: a front port asked for is taken.
	ErrPortInUse = errdefs.New("front port in use", db.ErrConflict)
	// ErrNoContainer: the instance has no container right now (logs of an
	// instance whose container is gone).
	ErrNoContainer = errdefs.New("no container", db.ErrConflict)
	// ErrCredentialsRequired: the instance's stored pull credential may
	// not be used for this Apply (another caller, image or command), and
	// the image could not be pulled without it. The instance is unchanged.
	ErrCredentialsRequired = fmt.Errorf("pull credentials required: %w", auth.ErrDenied)
)

// States of an instance, as reported by [Instance].State.
const (
	StateRunning    = "Running"    // the container runs
	StateRestarting = "Restarting" // it exited and the engine is restarting it
	StatePending    = "Pending"    // created, not started yet
	StateStopped    = "Stopped"    // it exited with code 0
	StateFailed     = "Failed"     // it exited with an error, was killed, or is missing
	StateUnknown    = "Unknown"    // the engine could not be asked
)

// Restart policies (ACI's names), applied by the engine when the container
// exits.
const (
	RestartAlways    = "Always"    // restart whatever the exit code (default)
	RestartOnFailure = "OnFailure" // restart on a non-zero exit code
	RestartNever     = "Never"     // never restart
)

// ProtocolTCP is the only protocol supported: the front proxies forward TCP.
const ProtocolTCP = "TCP"

// DefaultPort is the port declared when a Spec declares none (as az does).
const DefaultPort = 80

// Outcome says what Apply did.
type Outcome string

// Outcomes of Apply.
const (
	Created   Outcome = "Created"   // a new instance
	Replaced  Outcome = "Replaced"  // a new container replaced the previous one
	Unchanged Outcome = "Unchanged" // the running container already matched
)

// Port is a port the container serves, as declared at create.
type Port struct {
	// Port is the declared port (ACI's --ports), e.g. 80.
	Port int
	// Protocol is "TCP" (the default); UDP is not supported.
	Protocol string
	// FrontPort asks for a specific front port on the front host. 0 keeps
	// the current one, or picks a free one for a new port.
	FrontPort int
}

// Credentials log in to the registry the image is pulled from.
type Credentials struct {
	// Server is the registry host[:port]; empty means the image's registry.
	Server   string
	Username string
	Password string
}

// String hides the password.
func (c Credentials) String() string {
	return fmt.Sprintf("Credentials{Server:%q Username:%q}", c.Server, c.Username)
}

// Spec is the desired state of one instance, as given to Apply.
type Spec struct {
	// Name is 1-63 lower-case letters, digits and hyphens, starting and
	// ending with a letter or digit (ACI's rule).
	Name string
	// Image is the reference to pull, e.g. 127.0.0.1:5003/hello-world:cb1.
	Image string
	// Command, if set, replaces the image's ENTRYPOINT and CMD (as ACI's
	// --command-line does).
	Command []string
	// Env are plain environment variables; they are shown by Get.
	Env map[string]string
	// SecureEnv are environment variables whose values are stored sealed
	// and never shown.
	SecureEnv map[string]string
	// Ports are the ports the container serves (default: 80).
	Ports []Port
	// Registry, if set, are the credentials to pull Image with; they are
	// stored (sealed), owned by Principal, for pulling again later. When
	// nil, the credentials stored by an earlier Apply are used again only
	// by the principal that gave them, for the same Image and Command, and
	// when the registry server is the same; any other Apply drops them
	// (see the package documentation, "Pull credentials").
	Registry *Credentials
	// CallerCredentials, if set, are the caller's own credentials, given
	// because the caller itself may pull Image (the control API checks the
	// caller's grants on the repository). When Registry is nil, Image is
	// pulled with them; they are never stored.
	CallerCredentials *Credentials
	// CPU is a CPU quota in cores (0: unlimited).
	CPU float64
	// MemoryGB is a memory limit in GB (0: unlimited).
	MemoryGB float64
	// RestartPolicy is Always (default), OnFailure or Never.
	RestartPolicy string
	// StartupTimeout bounds the wait for a new container to answer (0: the
	// manager's default).
	StartupTimeout time.Duration
	// By names the caller, for the record (e.g. "admin",
	// "task:contoso/hello-world").
	By string
	// Principal is the caller's principal ID (see package auth). It is
	// recorded as the one who last set the instance, and as the owner of
	// the credentials given in Registry. Callers without one (tests,
	// in-process callers) leave it empty; they count as one principal.
	Principal string
}

// Binding is a declared port and where it is served.
type Binding struct {
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	// FrontPort is the stable front port on the front host.
	FrontPort int `json:"frontPort"`
	// ListenPort is where the current container listens (its PORT).
	ListenPort int `json:"listenPort"`
}

// Instance is an instance as stored, with its container's live state.
type Instance struct {
	ID      string
	Name    string
	Image   string
	ImageID string
	Command []string
	// Env are the plain environment variables.
	Env map[string]string
	// SecureEnvNames are the names of the secure environment variables.
	SecureEnvNames []string
	// Host is the front host (127.0.0.1).
	Host             string
	Ports            []Binding
	RegistryServer   string
	RegistryUsername string
	CPU              float64
	MemoryGB         float64
	RestartPolicy    string
	ContainerID      string
	// State is the container's state (see the State constants); Detail
	// explains a state that is not Running (exit code, engine error).
	State        string
	Detail       string
	ExitCode     int
	RestartCount int
	StartedAt    time.Time
	FinishedAt   time.Time
	CreatedAt    time.Time
	UpdatedAt    time.Time
	UpdatedBy    string
	// UpdatedByPrincipal is the principal ID of the caller that last set
	// the instance ("" for callers without one).
	UpdatedByPrincipal string
	// RegistryPrincipal is the principal ID of the caller that gave the
	// stored registry credentials (shown by RegistryUsername).
	RegistryPrincipal string
}

// URL returns http://host:frontPort of the first port, or "" without ports.
func (in Instance) URL() string {
	if len(in.Ports) == 0 {
		return ""
	}
	return "http://" + in.Host + ":" + strconv.Itoa(in.Ports[0].FrontPort)
}

// nameRE is ACI's rule for container group names.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// envNameRE is a portable environment variable name.
var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// reservedEnv matches the names gantry sets itself.
var reservedEnv = regexp.MustCompile(`^PORT(_[0-9]+)?$`)

// ValidName reports whether name is a valid instance name.
func ValidName(name string) bool { return nameRE.MatchString(name) }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), ErrInvalid)
}

// normalize checks s and fills in defaults: port 80, protocol TCP, restart
// policy Always. It returns a copy; s is not changed.
func (s Spec) normalize() (Spec, error) {
	if !nameRE.MatchString(s.Name) {
		return s, invalid("name %q: use 1-63 lower-case letters, digits and hyphens, starting and ending with a letter or digit", s.Name)
	}
	if s.Image == "" {
		return s, invalid("container %q: an image is required", s.Name)
	}
	if _, err := oci.ParseReference(s.Image); err != nil {
		return s, invalid("container %q: image: %v", s.Name, err)
	}
	if len(s.Command) > 0 && s.Command[0] == "" {
		return s, invalid("container %q: command: empty executable", s.Name)
	}
	for _, env := range []map[string]string{s.Env, s.SecureEnv} {
		for k := range env {
			switch {
			case !envNameRE.MatchString(k):
				return s, invalid("container %q: environment variable name %q: use letters, digits and _, not starting with a digit", s.Name, k)
			case reservedEnv.MatchString(k):
				return s, invalid("container %q: environment variable %s is set by gantry (the port the container must listen on)", s.Name, k)
			}
		}
	}
	for k := range s.SecureEnv {
		if _, ok := s.Env[k]; ok {
			return s, invalid("container %q: environment variable %s is both plain and secure", s.Name, k)
		}
	}
	out := s
	out.Env = maps.Clone(s.Env)
	out.SecureEnv = maps.Clone(s.SecureEnv)
	out.Command = slices.Clone(s.Command)
	out.Ports = slices.Clone(s.Ports)
	if len(out.Ports) == 0 {
		out.Ports = []Port{{Port: DefaultPort}}
	}
	seen := map[int]bool{}
	fronts := map[int]bool{}
	for i := range out.Ports {
		p := &out.Ports[i]
		if p.Port < 1 || p.Port > 65535 {
			return s, invalid("container %q: port %d: want 1-65535", s.Name, p.Port)
		}
		if seen[p.Port] {
			return s, invalid("container %q: port %d declared twice", s.Name, p.Port)
		}
		seen[p.Port] = true
		switch strings.ToUpper(p.Protocol) {
		case "", ProtocolTCP:
			p.Protocol = ProtocolTCP
		default:
			return s, invalid("container %q: port %d: protocol %q is not supported (only TCP)", s.Name, p.Port, p.Protocol)
		}
		if p.FrontPort < 0 || p.FrontPort > 65535 {
			return s, invalid("container %q: front port %d: want 1-65535 (or 0 for any)", s.Name, p.FrontPort)
		}
		if p.FrontPort != 0 {
			if fronts[p.FrontPort] {
				return s, invalid("container %q: front port %d asked for twice", s.Name, p.FrontPort)
			}
			fronts[p.FrontPort] = true
		}
	}
	switch strings.ToLower(s.RestartPolicy) {
	case "", "always":
		out.RestartPolicy = RestartAlways
	case "onfailure":
		out.RestartPolicy = RestartOnFailure
	case "never":
		out.RestartPolicy = RestartNever
	default:
		return s, invalid("container %q: restart policy %q: want Always, OnFailure or Never", s.Name, s.RestartPolicy)
	}
	if s.CPU < 0 || s.MemoryGB < 0 {
		return s, invalid("container %q: cpu and memory must not be negative", s.Name)
	}
	if s.StartupTimeout < 0 {
		return s, invalid("container %q: startup timeout must not be negative", s.Name)
	}
	if s.Registry != nil {
		c := *s.Registry
		if c.Username == "" && c.Password == "" {
			out.Registry = nil
		} else {
			if c.Username == "" || c.Password == "" {
				return s, invalid("container %q: give both a registry user name and a password", s.Name)
			}
			if c.Server == "" {
				c.Server = registryHost(s.Image)
			}
			out.Registry = &c
		}
	}
	if s.CallerCredentials != nil {
		c := *s.CallerCredentials
		if c.Server == "" {
			c.Server = registryHost(s.Image)
		}
		out.CallerCredentials = &c
		if c.Username == "" || c.Password == "" || c.Server != registryHost(s.Image) {
			out.CallerCredentials = nil // of no use for this image
		}
	}
	return out, nil
}

// registryHost returns the registry host of an image reference (docker.io
// when it names none).
func registryHost(image string) string {
	ref, err := oci.ParseReference(image)
	if err != nil || ref.Domain == "" {
		return oci.DockerHub
	}
	return ref.Domain
}

// dockerRestart maps a restart policy to the engine's name.
func dockerRestart(policy string) string {
	switch policy {
	case RestartOnFailure:
		return "on-failure"
	case RestartNever:
		return "no"
	default:
		return "always"
	}
}
