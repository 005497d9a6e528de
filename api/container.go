package api

import "time"

// Container instances (the equivalent of Azure Container Instances).
//
//	PUT    /v1/containers/{name}       create or replace (CreateContainerRequest → Container; 201 when created)
//	GET    /v1/containers              list ([]Container)
//	GET    /v1/containers/{name}       show (Container)
//	GET    /v1/containers/{name}/logs  the current container's output, text/plain
//	                                   (?tail=N&follow=true&timestamps=true)
//	DELETE /v1/containers/{name}       delete (204)
//
// Authorization: write on /containers/{name} to create, replace or delete;
// read on it to show or read logs; read on /containers to list. A task
// identity with the role owner on /containers (or /containers/{name}) may
// deploy.

// Container operations reported in Container.Operation.
const (
	ContainerCreated   = "Created"
	ContainerReplaced  = "Replaced"
	ContainerUnchanged = "Unchanged"
)

// CreateContainerRequest is the body of PUT /v1/containers/{name}. Calling
// it again with another image, command, environment, ports or resources
// replaces the running container without downtime; with the same ones it
// changes nothing (Operation "Unchanged"), except that a moved image tag or
// a container that is not running is replaced.
type CreateContainerRequest struct {
	// Image is the image reference to pull, e.g. 127.0.0.1:5003/hello-world:cb1.
	Image string `json:"image"`
	// Command, if set, replaces the image's ENTRYPOINT and CMD.
	Command []string `json:"command,omitempty"`
	// Environment are plain environment variables, shown by show.
	Environment map[string]string `json:"environmentVariables,omitempty"`
	// SecureEnvironment are environment variables whose values are stored
	// encrypted and never shown.
	SecureEnvironment map[string]string `json:"secureEnvironmentVariables,omitempty"`
	// Ports are the ports the container serves (default [{port: 80}]).
	Ports []ContainerPortRequest `json:"ports,omitempty"`
	// RegistryLoginServer is the registry the credentials are for (default:
	// the image's registry).
	RegistryLoginServer string `json:"registryLoginServer,omitempty"`
	RegistryUsername    string `json:"registryUsername,omitempty"`
	// RegistryPassword is stored encrypted, for pulling the image again
	// (after a server restart); it is never shown. Without credentials, those
	// stored by an earlier create are used only when the same principal
	// applies the same image and command again; otherwise the caller's own
	// pull access to a gantry registry is used, or the pull is anonymous.
	RegistryPassword string `json:"registryPassword,omitempty"`
	// CPU is a CPU quota in cores (0: unlimited).
	CPU float64 `json:"cpu,omitempty"`
	// MemoryInGB is a memory limit in GiB (0: unlimited).
	MemoryInGB float64 `json:"memoryInGB,omitempty"`
	// RestartPolicy is Always (default), OnFailure or Never.
	RestartPolicy string `json:"restartPolicy,omitempty"`
	// StartupTimeoutSeconds bounds the wait for the new container to accept
	// connections (0: the server's default, 60 s).
	StartupTimeoutSeconds int `json:"startupTimeoutSeconds,omitempty"`
}

// ContainerPortRequest declares one port of a container.
type ContainerPortRequest struct {
	Port int `json:"port"`
	// Protocol is TCP (the default and only one).
	Protocol string `json:"protocol,omitempty"`
	// FrontPort asks for a specific stable front port on 127.0.0.1; 0 keeps
	// the current one or picks a free one.
	FrontPort int `json:"frontPort,omitempty"`
}

// Container is a container instance, shaped after ACI's `az container show`.
type Container struct {
	Name string `json:"name"`
	// ID is the instance's ID (a new instance of the same name has another).
	ID      string   `json:"id"`
	Image   string   `json:"image"`
	ImageID string   `json:"imageId"`
	Command []string `json:"command,omitempty"`
	// State is Running, Restarting, Pending, Stopped, Failed or Unknown.
	State string `json:"state"`
	// Detail explains a state other than Running (exit code, engine error,
	// a front port that cannot be served).
	Detail string `json:"detail,omitempty"`
	// ExitCode is the last exit code of the container, when it has exited.
	ExitCode      *int      `json:"exitCode,omitempty"`
	RestartCount  int       `json:"restartCount"`
	RestartPolicy string    `json:"restartPolicy"`
	IPAddress     IPAddress `json:"ipAddress"`
	// Environment lists the environment variables by name; secure ones
	// have a null value.
	Environment              []EnvironmentVariable `json:"environmentVariables"`
	ImageRegistryCredentials []RegistryCredential  `json:"imageRegistryCredentials"`
	Resources                ContainerResources    `json:"resources"`
	// ContainerID is the engine's ID of the container serving now.
	ContainerID string     `json:"containerId"`
	StartedAt   *time.Time `json:"startedAt,omitempty"`
	CreatedAt   time.Time  `json:"createdAt"`
	UpdatedAt   time.Time  `json:"updatedAt"`
	// UpdatedBy names who deployed last, e.g. "task:contoso/hello-world".
	UpdatedBy string `json:"updatedBy,omitempty"`
	// Operation is what a create call did (Created, Replaced, Unchanged);
	// only set in its response.
	Operation string `json:"operation,omitempty"`
}

// IPAddress is where a container instance is reached: the stable front
// address on the gantry server's host (the analogue of ACI's public IP).
type IPAddress struct {
	// Type is "Loopback": the front addresses listen on 127.0.0.1.
	Type  string          `json:"type"`
	IP    string          `json:"ip"`
	Ports []ContainerPort `json:"ports"`
	// URL is http://<ip>:<front port of the first port>.
	URL string `json:"url"`
}

// ContainerPort is a declared port and where it is served.
type ContainerPort struct {
	// Port is the declared port (e.g. 80).
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	// FrontPort is the stable port on IP that forwards to the container;
	// it survives replacements and server restarts.
	FrontPort int `json:"frontPort"`
	// Address is IP:FrontPort.
	Address string `json:"address"`
	// ListenPort is where the current container listens ($PORT for the
	// first port, $PORT_<port> for each); it changes with every container.
	ListenPort int `json:"listenPort"`
}

// EnvironmentVariable is one environment variable of a container; the
// value of a secure one is null.
type EnvironmentVariable struct {
	Name   string  `json:"name"`
	Value  *string `json:"value"`
	Secure bool    `json:"secure,omitempty"`
}

// RegistryCredential names the login used to pull the image; the password
// is never shown.
type RegistryCredential struct {
	Server   string `json:"server"`
	Username string `json:"username"`
}

// ContainerResources are the limits of a container (0: unlimited).
type ContainerResources struct {
	CPU        float64 `json:"cpu"`
	MemoryInGB float64 `json:"memoryInGB"`
}
