package plan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gantryhq/gantry/internal/oci"
)

// DockerImage is the first word of a cmd that makes it an engine command: in ACR,
// "docker" is the runner's docker CLI image, which acts on the host engine.
const DockerImage = "docker"

// DockerCommand is a cmd step of the form "docker <subcommand> ...", which the
// executor performs on the engine itself instead of starting a container.
//
// Supported subcommands (and their "docker image ..." spellings): pull, tag, push,
// images (image ls), inspect (image inspect), rmi (image rm), login, logout and
// build. docker run and every other subcommand are rejected at plan time: run the
// image directly with cmd: <image> args instead.
type DockerCommand struct {
	// Subcommand is one of pull, tag, push, images, inspect, rmi, login, logout, build.
	Subcommand string
	// Flags are the subcommand's flags in long form, in order.
	Flags []Flag
	// Operands are the positional arguments: the image for pull and push, source
	// and target for tag, names for inspect and rmi, the server for login/logout.
	Operands []string
	// Build is the parsed build for docker build.
	Build *Build
}

// Flag returns the last value of a flag (long form, e.g. "--platform") and whether
// it was given.
func (d *DockerCommand) Flag(name string) (string, bool) {
	for i := len(d.Flags) - 1; i >= 0; i-- {
		if d.Flags[i].Name == name {
			return d.Flags[i].Value, true
		}
	}
	return "", false
}

// Bool reports whether a boolean flag was given as true.
func (d *DockerCommand) Bool(name string) bool {
	v, ok := d.Flag(name)
	return ok && v == "true"
}

// dockerSubcommand describes one supported subcommand.
type dockerSubcommand struct {
	flags       []flagSpec
	min, max    int  // operand counts; max < 0 means unbounded
	imageRefs   bool // operands are image references to validate
	description string
}

var dockerSubcommands = map[string]dockerSubcommand{
	"pull": {
		flags: []flagSpec{{long: "--platform", value: true}, {long: "--quiet", short: "-q"}, {long: "--all-tags", short: "-a"}, {long: "--disable-content-trust"}},
		min:   1, max: 1, imageRefs: true, description: "docker pull IMAGE",
	},
	"tag": {min: 2, max: 2, imageRefs: true, description: "docker tag SOURCE TARGET"},
	"push": {
		flags: []flagSpec{{long: "--quiet", short: "-q"}, {long: "--all-tags", short: "-a"}, {long: "--disable-content-trust"}},
		min:   1, max: 1, imageRefs: true, description: "docker push IMAGE",
	},
	"images": {
		flags: []flagSpec{
			{long: "--all", short: "-a"}, {long: "--quiet", short: "-q"}, {long: "--digests"}, {long: "--no-trunc"},
			{long: "--filter", short: "-f", value: true}, {long: "--format", value: true},
		},
		min: 0, max: 1, description: "docker images [REPOSITORY[:TAG]]",
	},
	"inspect": {
		flags: []flagSpec{{long: "--format", short: "-f", value: true}, {long: "--size", short: "-s"}, {long: "--type", value: true}},
		min:   1, max: -1, description: "docker inspect NAME...",
	},
	"rmi": {
		flags: []flagSpec{{long: "--force", short: "-f"}, {long: "--no-prune"}},
		min:   1, max: -1, imageRefs: true, description: "docker rmi IMAGE...",
	},
	"login": {
		flags: []flagSpec{{long: "--username", short: "-u", value: true}, {long: "--password", short: "-p", value: true}, {long: "--password-stdin"}},
		min:   0, max: 1, description: "docker login [SERVER] -u USER -p PASSWORD",
	},
	"logout": {min: 0, max: 1, description: "docker logout [SERVER]"},
}

// imageSubcommands maps "docker image <x>" to the short subcommand.
var imageSubcommands = map[string]string{
	"pull": "pull", "tag": "tag", "push": "push", "ls": "images", "list": "images",
	"inspect": "inspect", "rm": "rmi", "remove": "rmi", "build": "build",
}

// SupportedDockerSubcommands lists the docker subcommands a cmd step may use.
func SupportedDockerSubcommands() []string {
	out := []string{"build"}
	for k := range dockerSubcommands {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func parseDocker(args []string, workdir string) (*DockerCommand, error) {
	supported := strings.Join(SupportedDockerSubcommands(), ", ")
	if len(args) == 0 {
		return nil, fmt.Errorf("docker needs a subcommand (supported: %s)", supported)
	}
	sub, rest := args[0], args[1:]
	if strings.HasPrefix(sub, "-") {
		return nil, fmt.Errorf("docker global options such as %q are not supported (supported subcommands: %s)", sub, supported)
	}
	if sub == "image" && len(rest) > 0 {
		if s, ok := imageSubcommands[rest[0]]; ok {
			sub, rest = s, rest[1:]
		}
	}
	if sub == "build" {
		b, err := parseBuild(rest, workdir)
		if err != nil {
			return nil, err
		}
		return &DockerCommand{Subcommand: "build", Operands: []string{b.Context}, Build: b}, nil
	}
	spec, ok := dockerSubcommands[sub]
	if !ok {
		if sub == "run" {
			return nil, fmt.Errorf("docker run is not supported as an engine command: run the image directly with cmd: <image> [args] (supported subcommands: %s)", supported)
		}
		return nil, fmt.Errorf("docker %s is not supported (supported subcommands: %s)", sub, supported)
	}
	flags, operands, err := parseFlags(rest, spec.flags, "docker "+sub)
	if err != nil {
		return nil, err
	}
	if len(operands) < spec.min || (spec.max >= 0 && len(operands) > spec.max) {
		return nil, fmt.Errorf("docker %s takes %s, got %d argument(s)", sub, strings.TrimPrefix(spec.description, "docker "+sub+" "), len(operands))
	}
	if spec.imageRefs {
		for _, o := range operands {
			if _, err := oci.ParseReference(o); err != nil {
				return nil, fmt.Errorf("docker %s: %w", sub, err)
			}
		}
	}
	d := &DockerCommand{Subcommand: sub, Flags: flags, Operands: operands}
	if sub == "login" {
		if _, ok := d.Flag("--password-stdin"); ok {
			return nil, fmt.Errorf("docker login --password-stdin is not supported (a cmd step has no stdin): use -p, or register the registry's credentials with gantry task credential add")
		}
	}
	return d, nil
}
