// Package demo runs the walkthrough of the ACR Tasks tutorial "consume and
// maintain public content" end to end on one machine: a simulated Docker
// Hub and three registries, a key vault, tokens, three local git
// repositories, the node-public, hello-world and base-import-node tasks, and
// the five stages of the tutorial — initial build and deploy, an Orange
// commit reaching the site through the public base, switching to the vetted
// base, a Green commit passing the gate, a Red commit stopped by it.
//
// It drives a real gantry server (started in-process) through the Go
// client, exactly as the CLI commands of the README do, and checks after
// every stage that the runs, their triggers and the deployed site are what
// the tutorial says. Run returns an error naming the first stage that did
// not end as expected.
package demo

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/gantryhq/gantry/internal/wait"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/client"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/server"
	"github.com/gantryhq/gantry/internal/standin"
)

//go:embed samples
var samples embed.FS

// The tutorial's names.
const (
	dockerHub     = "dockerhub" // the simulated Docker Hub
	publicReg     = "publicregistry"
	baseArtifacts = "contosobaseartifacts"
	appReg        = "contoso"
	keyVault      = "acr-task-credentials"
	aci           = "hello-world-aci"
	aciRG         = "hello-world-aci-rg"
)

// Options configure a demo run.
type Options struct {
	// Data is the directory for the server's data and the git
	// repositories; "" makes a temporary one (removed unless Keep).
	Data string
	// Engine is the container engine (see docker.EndpointFromEnv).
	Engine docker.Endpoint
	// GantryBinary is a static gantry binary for the gantry CLI image.
	GantryBinary string
	// Keep leaves the server, the registries and the site running until
	// ctx ends.
	Keep bool
	// Out receives the walkthrough's narration and tables.
	Out io.Writer
	// Logger receives the server log.
	Logger *slog.Logger
	// PrintRuns prints a registry's runs as the list-runs table.
	PrintRuns func(w io.Writer, runs []api.Run) error
	// StageTimeout bounds each stage (default 3 minutes).
	StageTimeout time.Duration
	// TLS runs the walkthrough over TLS with registry hostnames: the server
	// has a local CA (--tls self-signed) and serves every registry as
	// <name>.gantry.test on one listener. The names must resolve to
	// 127.0.0.1 (/etc/hosts); the engine is made to trust the CA for them
	// (/etc/docker/certs.d, removed at the end).
	TLS bool
}

// Domain is the registries' domain of a walkthrough over TLS.
const Domain = "gantry.test"

// Registries are the walkthrough's registries; over TLS their hostnames
// are <name>.gantry.test.
var Registries = []string{dockerHub, publicReg, baseArtifacts, appReg}

// demo is one walkthrough in progress.
type demo struct {
	o      Options
	c      *client.Client
	out    io.Writer
	dir    string
	git    string
	urls   map[string]string // registry name -> login server
	site   string
	admin  string
	docker *docker.Client
	start  time.Time
	// ca is the local CA over TLS; trusted the engine's CA directories
	// made for it.
	ca      []byte
	trusted []string
	// timings records each stage's commit-to-result time, for the summary.
	timings []timing
}

type timing struct {
	stage   string
	measure string
	d       time.Duration
}

// Run performs the walkthrough.
func Run(ctx context.Context, o Options) (err error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StageTimeout == 0 {
		o.StageTimeout = 3 * time.Minute
	}
	if o.Engine.Host == "" {
		return errors.New("no container engine: set DOCKER_HOST (scripts/demo.sh starts one)")
	}
	if o.TLS {
		if err := checkNames(ctx); err != nil {
			return err
		}
	}
	d := &demo{o: o, out: o.Out, urls: map[string]string{}, start: time.Now()}
	d.dir = o.Data
	if d.dir == "" {
		if d.dir, err = os.MkdirTemp("", "gantry-demo-"); err != nil {
			return err
		}
		if !o.Keep {
			defer os.RemoveAll(d.dir)
		}
	}
	d.git = filepath.Join(d.dir, "git")
	if d.docker, err = docker.New(o.Engine); err != nil {
		return fmt.Errorf("container engine at %s: %w", o.Engine.Host, err)
	}
	defer d.docker.Close()

	srvCtx, stopServer := context.WithCancel(context.WithoutCancel(ctx))
	serverDone := make(chan error, 1)
	ready := make(chan string, 1)
	d.admin = randomPassword()
	cfg := config.Default()
	cfg.Data = filepath.Join(d.dir, "data")
	cfg.Listen = pickAddr("127.0.0.1:7000")
	cfg.Engine = server.EngineConfig(o.Engine)
	// Local repositories are cheap to poll: notice commits within half a
	// second, as a webhook would.
	cfg.Triggers.CommitPollInterval = 500 * time.Millisecond
	if o.TLS {
		cfg.Network = config.Network{TLS: config.TLS{SelfSigned: true}, Domain: Domain, RegistryListen: pickAddr("127.0.0.1:8443")}
	}
	go func() {
		serverDone <- server.Run(srvCtx, cfg, server.Options{
			AdminPassword: d.admin, Logger: o.Logger, GantryBinary: o.GantryBinary,
			Ready: func(addr string) { ready <- addr },
		})
	}()
	defer func() {
		if o.Keep && err == nil {
			d.say("\nEverything keeps running (--keep): control API %s, user admin, password in %s. Ctrl-C stops the server.",
				d.c.Server(), filepath.Join(d.dir, "admin-password"))
			<-ctx.Done()
		} else {
			d.cleanup()
		}
		stopServer()
		if serr := <-serverDone; serr != nil && err == nil {
			err = serr
		}
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-serverDone:
		return fmt.Errorf("starting the server: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	}
	if d.c, err = d.newClient(cfg, addr); err != nil {
		return err
	}
	if o.Keep {
		if err := os.WriteFile(filepath.Join(d.dir, "admin-password"), []byte(d.admin+"\n"), 0o600); err != nil {
			return err
		}
	}
	d.say("gantry demo: the ACR Tasks walkthrough \"consume and maintain public content\", on this machine")
	d.say("control API %s, data in %s", d.c.Server(), d.dir)

	stages := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"Setup: registries, key vault, tokens, git repositories", d.setup},
		{"Stage 1: build node-public and hello-world, deploy the site", d.stage1},
		{"Stage 2: an Orange commit reaches the site through the public base", d.stage2},
		{"Stage 3: gate the base image and build hello-world from the vetted base", d.stage3},
		{"Stage 4: a Green commit passes the gate and reaches the site", d.stage4},
		{"Stage 5: a Red commit fails the gate; nothing is promoted, the site stays Green", d.stage5},
		{"Stage 6: the gate gets a scan step; a base update with a known-vulnerable package fails it, nothing is promoted", d.stage6},
	}
	for _, s := range stages {
		d.say("\n== %s", s.name)
		began := time.Now()
		sctx, cancel := context.WithTimeout(ctx, o.StageTimeout)
		err := s.fn(sctx)
		cancel()
		if err != nil {
			d.say("FAILED: %v", err)
			return fmt.Errorf("%s: %w", s.name, err)
		}
		d.say("   stage took %s", round(time.Since(began)))
	}
	d.summary()
	return nil
}

func (d *demo) say(format string, args ...any) {
	fmt.Fprintf(d.out, format+"\n", args...)
}

func round(t time.Duration) time.Duration { return t.Round(10 * time.Millisecond) }

// pickAddr returns want if it is free, else a free loopback port.
func pickAddr(want string) string {
	if l, err := net.Listen("tcp", want); err == nil {
		l.Close()
		return want
	}
	return "127.0.0.1:0"
}

func randomPassword() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return fmt.Sprintf("%x", b)
}

// setup creates the registries, the simulated public node image, the key
// vault and its secrets, and the git repositories.
func (d *demo) setup(ctx context.Context) error {
	for i, name := range Registries {
		listen := pickAddr(fmt.Sprintf("127.0.0.1:%d", 5000+i))
		if strings.HasSuffix(listen, ":0") || d.o.TLS {
			listen = "" // a free port, or served by hostname only
		}
		r, err := d.c.CreateRegistry(ctx, api.CreateRegistryRequest{Name: name, Listen: listen, AnonymousPull: name == dockerHub})
		if err != nil {
			return err
		}
		d.urls[name] = r.LoginServer
		d.say("   gantry registry create -n %-21s -> %s", name, r.LoginServer)
		if err := d.trust(r.LoginServer); err != nil {
			return err
		}
	}

	// The public node:15-alpine, simulated: a local stand-in pushed to the
	// simulated Docker Hub.
	src, err := standin.NodeImage(ctx, d.docker, "")
	if err != nil {
		return err
	}
	dst := d.urls[dockerHub] + "/node:15-alpine"
	dgst, err := standin.Push(ctx, d.docker, src, dst, &docker.AuthConfig{Username: "admin", Password: d.admin, ServerAddress: d.urls[dockerHub]})
	if err != nil {
		return fmt.Errorf("pushing the node:15-alpine stand-in: %w", err)
	}
	d.say("   %s@%s (a local stand-in for Docker Hub's node:15-alpine)", dst, short(dgst))

	if _, err := d.c.CreateKeyVault(ctx, keyVault); err != nil {
		return err
	}
	d.say("   gantry keyvault create -n %s", keyVault)
	// Docker Hub credentials, as the tutorial stores them: a pull token of
	// the simulated hub.
	hub, err := d.c.CreateToken(ctx, dockerHub, api.CreateTokenRequest{Name: "dockerhub-user", ScopeMap: "_repositories_pull"})
	if err != nil {
		return err
	}
	if err := d.secret(ctx, "registry-dockerhub-user", "dockerhub-user"); err != nil {
		return err
	}
	if err := d.secret(ctx, "registry-dockerhub-password", hub.Credentials.Passwords[0].Value); err != nil {
		return err
	}
	// Local repositories need no token; the tutorial's flow stores one in
	// the vault all the same.
	if err := d.secret(ctx, "github-token", "local-repositories-need-no-token"); err != nil {
		return err
	}
	for _, repo := range []string{"base-image-node", "import-baseimage-node", "hello-world"} {
		if err := d.newRepo(ctx, repo); err != nil {
			return fmt.Errorf("git repository %s: %w", repo, err)
		}
		d.say("   git repository %s#main", d.repoURL(repo))
	}
	return nil
}

func (d *demo) secret(ctx context.Context, name, value string) error {
	if _, err := d.c.SetSecret(ctx, keyVault, name, value); err != nil {
		return err
	}
	d.say("   gantry keyvault secret set --vault-name %s --name %s", keyVault, name)
	return nil
}

// vaultURI is the tutorial's form of a secret's URI.
func vaultURI(name string) string {
	return "https://" + keyVault + ".vault.azure.net/secrets/" + name
}

// grantVault lets a task's identity read the vault's secrets.
func (d *demo) grantVault(ctx context.Context, reg, task string) (string, error) {
	t, err := d.c.GetTask(ctx, reg, task)
	if err != nil {
		return "", err
	}
	if t.Identity == nil {
		return "", fmt.Errorf("task %s has no identity", task)
	}
	if _, err := d.c.SetPolicy(ctx, keyVault, api.VaultPolicy{ObjectID: t.Identity.PrincipalID, SecretPermissions: []string{"get"}}); err != nil {
		return "", err
	}
	d.say("   gantry keyvault set-policy -n %s --object-id <%s identity> --secret-permissions get", keyVault, task)
	return t.Identity.PrincipalID, nil
}

// pullToken creates a token and stores its user and password in the vault
// as registry-<reg>-user and -password, as the tutorial does.
func (d *demo) pullToken(ctx context.Context, reg string, req api.CreateTokenRequest) error {
	req.Name = "registry-" + reg + "-user"
	tok, err := d.c.CreateToken(ctx, reg, req)
	if err != nil {
		return err
	}
	if err := d.secret(ctx, "registry-"+reg+"-user", tok.Name); err != nil {
		return err
	}
	return d.secret(ctx, "registry-"+reg+"-password", tok.Credentials.Passwords[0].Value)
}

func (d *demo) credential(ctx context.Context, reg, task, server, secretPrefix string) error {
	_, err := d.c.AddTaskCredential(ctx, reg, task, api.CredentialRequest{
		LoginServer: server, Username: vaultURI(secretPrefix + "-user"), Password: vaultURI(secretPrefix + "-password"),
		UseIdentity: "[system]",
	})
	if err == nil {
		d.say("   gantry task credential add -n %s -r %s --login-server %s -u %s -p %s --use-identity [system]",
			task, reg, server, vaultURI(secretPrefix+"-user"), vaultURI(secretPrefix+"-password"))
	}
	return err
}

func (d *demo) gitToken(ctx context.Context) (string, error) {
	s, err := d.c.GetSecret(ctx, keyVault, "github-token")
	if err != nil {
		return "", err
	}
	return s.Value, nil
}

// stage1 creates node-public and hello-world and runs them by hand.
func (d *demo) stage1(ctx context.Context) error {
	token, err := d.gitToken(ctx)
	if err != nil {
		return err
	}
	if _, err := d.c.CreateTask(ctx, publicReg, api.CreateTaskRequest{
		Name: "node-public", File: "acr-task.yaml", Context: d.repoURL("base-image-node") + "#main", GitAccessToken: token,
		Values: map[string]string{"REGISTRY_FROM_URL": d.urls[dockerHub] + "/"}, AssignIdentity: true,
	}); err != nil {
		return err
	}
	d.say("   gantry task create -n node-public -r %s -f acr-task.yaml -c <base-image-node>#main --set REGISTRY_FROM_URL=%s/ --assign-identity", publicReg, d.urls[dockerHub])
	if err := d.credential(ctx, publicReg, "node-public", d.urls[dockerHub], "registry-dockerhub"); err != nil {
		return err
	}
	if _, err := d.grantVault(ctx, publicReg, "node-public"); err != nil {
		return err
	}
	if err := d.manualRun(ctx, publicReg, "node-public"); err != nil {
		return err
	}
	tags, err := d.c.ListTags(ctx, publicReg, "node")
	if err != nil {
		return err
	}
	d.say("   gantry repository show-tags -r %s --repository node: %s", publicReg, tagNames(tags))

	if err := d.pullToken(ctx, publicReg, api.CreateTokenRequest{ScopeMap: "_repositories_pull"}); err != nil {
		return err
	}
	if err := d.pullToken(ctx, appReg, api.CreateTokenRequest{Repositories: []api.RepositoryActions{{Repository: "hello-world", Actions: []string{"content/read"}}}}); err != nil {
		return err
	}
	if _, err := d.c.CreateTask(ctx, appReg, api.CreateTaskRequest{
		Name: "hello-world", File: "acr-task.yaml", Context: d.repoURL("hello-world") + "#main", GitAccessToken: token,
		Values: map[string]string{
			"REGISTRY_FROM_URL": d.urls[publicReg] + "/", "KEYVAULT": keyVault, "ACI": aci, "ACI_RG": aciRG,
		},
		AssignIdentity: true,
	}); err != nil {
		return err
	}
	d.say("   gantry task create -n hello-world -r %s -f acr-task.yaml -c <hello-world>#main --set REGISTRY_FROM_URL=%s/ --set KEYVAULT=%s --set ACI=%s --set ACI_RG=%s --assign-identity",
		appReg, d.urls[publicReg], keyVault, aci, aciRG)
	if err := d.credential(ctx, appReg, "hello-world", d.urls[publicReg], "registry-"+publicReg); err != nil {
		return err
	}
	principal, err := d.grantVault(ctx, appReg, "hello-world")
	if err != nil {
		return err
	}
	if _, err := d.c.CreateRoleAssignment(ctx, api.CreateRoleAssignmentRequest{Assignee: principal, Role: "owner", Scope: "/containers"}); err != nil {
		return err
	}
	d.say("   gantry role assignment create --assignee <hello-world identity> --scope /containers --role owner")
	if err := d.manualRun(ctx, appReg, "hello-world"); err != nil {
		return err
	}
	ct, err := d.c.GetContainer(ctx, aci)
	if err != nil {
		return err
	}
	d.site = ct.IPAddress.URL
	d.say("   gantry container show -n %s --query ipAddress.url -o tsv: %s", aci, d.site)
	return d.expectSite(ctx, "DeepSkyBlue", time.Now(), "")
}

// stage2 commits Orange to the public base and follows it to the site.
func (d *demo) stage2(ctx context.Context) error {
	since, err := d.commitColor(ctx, "Orange")
	if err != nil {
		return err
	}
	if _, err := d.waitRun(ctx, publicReg, "node-public", "Commit", since, "Succeeded"); err != nil {
		return err
	}
	if _, err := d.waitRun(ctx, appReg, "hello-world", "Image Update", since, "Succeeded"); err != nil {
		return err
	}
	if err := d.expectSite(ctx, "Orange", since, "Stage 2 (Orange, public base)"); err != nil {
		return err
	}
	d.say("   Not every upstream update is wanted: the next stages put a gate in between.")
	return d.tables(ctx)
}

// stage3 creates the gated import, promotes the current public base and
// switches hello-world to the vetted base.
func (d *demo) stage3(ctx context.Context) error {
	token, err := d.gitToken(ctx)
	if err != nil {
		return err
	}
	if _, err := d.c.CreateTask(ctx, baseArtifacts, api.CreateTaskRequest{
		Name: "base-import-node", File: "acr-task.yaml", Context: d.repoURL("import-baseimage-node") + "#main", GitAccessToken: token,
		Values: map[string]string{"REGISTRY_FROM_URL": d.urls[publicReg] + "/"}, AssignIdentity: true,
	}); err != nil {
		return err
	}
	d.say("   gantry task create -n base-import-node -r %s -f acr-task.yaml -c <import-baseimage-node>#main --set REGISTRY_FROM_URL=%s/ --assign-identity",
		baseArtifacts, d.urls[publicReg])
	if err := d.credential(ctx, baseArtifacts, "base-import-node", d.urls[publicReg], "registry-"+publicReg); err != nil {
		return err
	}
	gate, err := d.grantVault(ctx, baseArtifacts, "base-import-node")
	if err != nil {
		return err
	}
	// The gate's scan step reads the public image with the task's identity.
	if _, err := d.c.CreateRoleAssignment(ctx, api.CreateRoleAssignmentRequest{Assignee: gate, Role: "acrpull", Scope: "/registries/" + publicReg}); err != nil {
		return err
	}
	d.say("   gantry role assignment create --assignee <base-import-node identity> --scope /registries/%s --role acrpull", publicReg)
	if err := d.manualRun(ctx, baseArtifacts, "base-import-node"); err != nil {
		return err
	}
	if err := d.pullToken(ctx, baseArtifacts, api.CreateTokenRequest{Repositories: []api.RepositoryActions{{Repository: "node", Actions: []string{"content/read"}}}}); err != nil {
		return err
	}
	if err := d.credential(ctx, appReg, "hello-world", d.urls[baseArtifacts], "registry-"+baseArtifacts); err != nil {
		return err
	}
	values := map[string]string{"KEYVAULT": keyVault, "REGISTRY_FROM_URL": d.urls[baseArtifacts] + "/", "ACI": aci, "ACI_RG": aciRG}
	if _, err := d.c.UpdateTask(ctx, appReg, "hello-world", api.UpdateTaskRequest{Values: &values}); err != nil {
		return err
	}
	d.say("   gantry task update -n hello-world -r %s --set REGISTRY_FROM_URL=%s/ ...", appReg, d.urls[baseArtifacts])
	if err := d.manualRun(ctx, appReg, "hello-world"); err != nil {
		return err
	}
	t, err := d.c.GetTask(ctx, appReg, "hello-world")
	if err != nil {
		return err
	}
	for _, b := range t.Step.BaseImageDependencies {
		d.say("   hello-world now tracks %s@%s (%s)", b.Image, short(b.Digest), b.Type)
		if b.Type == "RunTime" && !strings.HasPrefix(b.Image, d.urls[baseArtifacts]+"/") {
			return fmt.Errorf("hello-world tracks %s, want a base from %s", b.Image, baseArtifacts)
		}
	}
	return d.expectSite(ctx, "Orange", time.Now(), "")
}

// stage4 commits Green: public base, gate, vetted base, app, site.
func (d *demo) stage4(ctx context.Context) error {
	since, err := d.commitColor(ctx, "Green")
	if err != nil {
		return err
	}
	if _, err := d.waitRun(ctx, publicReg, "node-public", "Commit", since, "Succeeded"); err != nil {
		return err
	}
	if _, err := d.waitRun(ctx, baseArtifacts, "base-import-node", "Image Update", since, "Succeeded"); err != nil {
		return err
	}
	if _, err := d.waitRun(ctx, appReg, "hello-world", "Image Update", since, "Succeeded"); err != nil {
		return err
	}
	if err := d.expectSite(ctx, "Green", since, "Stage 4 (Green, through the gate)"); err != nil {
		return err
	}
	return d.tables(ctx)
}

// stage5 commits Red: the gate fails at validate-base-image, nothing is
// promoted and the site stays Green.
func (d *demo) stage5(ctx context.Context) error {
	gate, err := d.gateStops(ctx, func() (time.Time, error) { return d.commitColor(ctx, "Red") },
		"Stage 5 (Red, stopped by the gate)", "the Red commit",
		"ERROR: Invalid Color: Red", "failed to run step ID: validate-base-image: exit status 1")
	if err != nil {
		return err
	}
	if !strings.Contains(gate.Error, "validate-base-image") {
		return fmt.Errorf("run %s failed with %q, want a failure at validate-base-image", gate.RunID, gate.Error)
	}
	if err := d.expectSite(ctx, "Green", time.Now(), ""); err != nil {
		return err
	}
	return d.tables(ctx)
}

// gateStops makes a base update (commit) and follows it: node-public
// builds it, the gate's Image Update run fails with every line of wants in
// its log (stage names the figure of the summary), and nothing is
// promoted or rebuilt (what names the update in errors). It returns the
// failed gate run.
func (d *demo) gateStops(ctx context.Context, commit func() (time.Time, error), stage, what string, wants ...string) (*api.Run, error) {
	promoted, err := d.c.ListTags(ctx, baseArtifacts, "node")
	if err != nil {
		return nil, err
	}
	since, err := commit()
	if err != nil {
		return nil, err
	}
	if _, err := d.waitRun(ctx, publicReg, "node-public", "Commit", since, "Succeeded"); err != nil {
		return nil, err
	}
	gate, err := d.waitRun(ctx, baseArtifacts, "base-import-node", "Image Update", since, "Failed")
	if err != nil {
		return nil, err
	}
	d.timings = append(d.timings, timing{stage, "commit → gate failed", gate.FinishTime.Sub(since)})
	log, err := d.runLog(ctx, baseArtifacts, gate.RunID)
	if err != nil {
		return nil, err
	}
	for _, want := range wants {
		if !strings.Contains(log, want) {
			return nil, fmt.Errorf("run %s's log lacks %q:\n%s", gate.RunID, want, lastLines(log, 20))
		}
		d.say("   gantry task logs -r %s --run-id %s: ... %s", baseArtifacts, gate.RunID, want)
	}
	return gate, d.nothingPromoted(ctx, since, promoted, what)
}

// nothingPromoted checks, after a failed gate, that the vetted base's
// tags are as they were and that hello-world was not rebuilt since.
func (d *demo) nothingPromoted(ctx context.Context, since time.Time, promoted []api.Tag, what string) error {
	// Nothing may follow: give a wrongly triggered run time to appear.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(3 * time.Second):
	}
	runs, err := d.c.ListRuns(ctx, appReg, client.RunFilter{Task: "hello-world", Top: 5})
	if err != nil {
		return err
	}
	for _, r := range runs {
		if r.CreateTime.After(since) {
			return fmt.Errorf("hello-world run %s (%s) started after %s; the gate should have stopped it", r.RunID, r.Trigger, what)
		}
	}
	now, err := d.c.ListTags(ctx, baseArtifacts, "node")
	if err != nil {
		return err
	}
	if tagNames(now) != tagNames(promoted) || digestOf(now, "15-alpine") != digestOf(promoted, "15-alpine") {
		return fmt.Errorf("%s/node changed after the failed gate: %s", baseArtifacts, tagNames(now))
	}
	d.say("   %s/node:15-alpine is unchanged; hello-world was not rebuilt", baseArtifacts)
	return nil
}

// zlibAdvisory is the advisory stage 6 imports, in the OSV format of
// OSV's Alpine export (written by the demo; the real one is
// ALPINE-CVE-2022-37434).
const zlibAdvisory = `{
  "schema_version": "1.6.0",
  "id": "ALPINE-CVE-2022-37434",
  "aliases": ["CVE-2022-37434"],
  "modified": "2022-08-10T00:00:00Z",
  "published": "2022-08-05T07:15:00Z",
  "summary": "zlib: heap-based buffer over-read or overflow in inflate via a large gzip header extra field",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
  "affected": [{
    "package": {"ecosystem": "Alpine:v3.13", "name": "zlib"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.2.12-r2"}]}]
  }]
}`

// scanStep is the step stage 6 adds to the gate's task file, between the
// functional test and the promotion.
const scanStep = `  - id: scan-base-image
    # only continues if the public image has no known vulnerability
    # of high severity or above (gantry's offline vulnerability database)
    when: ['validate-base-image']
    cmd: gantry scan {{.Values.REGISTRY_FROM_URL}}node:15-alpine --fail-on high
`

// addScanStep inserts scanStep before retag-base-image and makes the
// promotion wait for it (in the file's line endings: the seed's are CRLF).
func addScanStep(b []byte) []byte {
	s := string(b)
	eol := "\n"
	if strings.Contains(s, "\r\n") {
		eol = "\r\n"
	}
	i := strings.Index(s, "  - id: retag-base-image"+eol)
	if i < 0 {
		return b
	}
	rest := strings.Replace(s[i:], "when: ['validate-base-image']", "when: ['scan-base-image']", 1)
	return []byte(s[:i] + strings.ReplaceAll(scanStep, "\n", eol) + rest)
}

// zlibLine adds zlib 1.2.11-r3 to the base image's apk database, as `apk
// add zlib=1.2.11-r3` would.
const zlibLine = `RUN printf 'P:zlib\nV:1.2.11-r3\nA:x86_64\nT:A compression/decompression Library\nL:Zlib\no:zlib\n\n' >> /lib/apk/db/installed`

// stage6 adds a scan step to the gate's task file (a commit to its
// repository, which runs the gate once: the public base, still Red, fails
// the functional test), imports an advisory, then commits a base update that passes the functional test
// (Green again) but carries the vulnerable zlib: the gate's scan step
// fails, nothing is promoted, the site stays Green, and the advisory's
// impact lists the public image.
func (d *demo) stage6(ctx context.Context) error {
	since, err := d.commitFile(ctx, "import-baseimage-node", "acr-task.yaml", addScanStep, "Gate on a security scan")
	if err != nil {
		return err
	}
	// The commit runs the gate on the public base, which is still Red.
	run, err := d.waitRun(ctx, baseArtifacts, "base-import-node", "Commit", since, "Failed")
	if err != nil {
		return err
	}
	if !strings.Contains(run.Error, "validate-base-image") {
		return fmt.Errorf("run %s of the gate failed with %q, want a failure at validate-base-image (the public base is Red)", run.RunID, run.Error)
	}
	d.say("   the public base is still Red: the gate holds it at validate-base-image, before the scan")

	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	w, err := zw.Create("alpine/ALPINE-CVE-2022-37434.json")
	if err == nil {
		_, err = w.Write([]byte(zlibAdvisory))
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return err
	}
	imp, err := d.c.ImportVulnDB(ctx, bytes.NewReader(zb.Bytes()), int64(zb.Len()), "gantry demo: alpine advisories")
	if err != nil {
		return err
	}
	d.say("   gantry vulndb import alpine/: %d added; rescanned %d stored images", imp.Added, imp.Rescan.Images)
	_, err = d.gateStops(ctx, func() (time.Time, error) {
		return d.commitDockerfile(ctx, func(b []byte) []byte {
			b = colorLine.ReplaceAll(b, []byte("ENV BACKGROUND_COLOR Green"))
			return append(bytes.TrimRight(b, "\n"), []byte("\n"+zlibLine+"\n")...)
		}, "Set BACKGROUND_COLOR Green, add zlib 1.2.11-r3")
	}, "Stage 6 (vulnerable zlib, scan step)", "the vulnerable update",
		"Validation Complete - No Known Errors", "1 finding at or above high",
		"ALPINE-CVE-2022-37434 zlib 1.2.11-r3 (fixed in 1.2.12-r2)", "failed to run step ID: scan-base-image: exit status 1")
	if err != nil {
		return err
	}
	im, err := d.c.ScanImpact(ctx, "CVE-2022-37434")
	if err != nil {
		return err
	}
	if len(im.Images) == 0 {
		return fmt.Errorf("gantry scan impact --id CVE-2022-37434 lists no image; want %s's node", publicReg)
	}
	for _, i := range im.Images {
		d.say("   gantry scan impact --id CVE-2022-37434: %s/%s@%s (%s)", i.Registry, i.Repository, short(i.Digest), strings.Join(i.Packages, ", "))
	}
	return d.expectSite(ctx, "Green", time.Now(), "")
}

// manualRun runs a task by hand and waits for it to succeed.
func (d *demo) manualRun(ctx context.Context, reg, task string) error {
	r, err := d.c.RunTask(ctx, reg, task, api.RunTaskRequest{})
	if err != nil {
		return err
	}
	d.say("   gantry task run -r %s -n %s: queued run %s", reg, task, r.RunID)
	done, err := d.wait(ctx, reg, r.RunID)
	if err != nil {
		return err
	}
	d.say("   run %s %s after %s", done.RunID, done.Status, done.Duration)
	if done.Status != "Succeeded" {
		log, _ := d.runLog(ctx, reg, done.RunID)
		return fmt.Errorf("run %s of %s %s: %s\n%s", done.RunID, task, done.Status, done.Error, lastLines(log, 15))
	}
	return nil
}

// wait waits until a run ends.
func (d *demo) wait(ctx context.Context, reg, id string) (*api.Run, error) {
	for {
		r, err := d.c.GetRun(ctx, reg, id)
		if err != nil {
			return nil, err
		}
		if r.Status != "Queued" && r.Status != "Running" {
			return r, nil
		}
		if err := wait.For(ctx, 100*time.Millisecond); err != nil {
			return nil, fmt.Errorf("waiting for run %s: %w", id, err)
		}
	}
}

// waitRun waits for a run of task with the given trigger, created after
// since, to end with status.
func (d *demo) waitRun(ctx context.Context, reg, task, trigger string, since time.Time, status string) (*api.Run, error) {
	for {
		runs, err := d.c.ListRuns(ctx, reg, client.RunFilter{Task: task, Top: 5})
		if err != nil {
			return nil, err
		}
		for i := len(runs) - 1; i >= 0; i-- {
			r := runs[i]
			if !r.CreateTime.After(since) || r.Trigger != trigger {
				continue
			}
			if r.Status == "Queued" || r.Status == "Running" {
				break
			}
			d.say("   %-17s run %-5s %-12s %-9s after %s", task, r.RunID, r.Trigger, r.Status, r.Duration)
			if r.Status != status {
				log, _ := d.runLog(ctx, reg, r.RunID)
				return nil, fmt.Errorf("%s run %s ended %s, want %s: %s\n%s", task, r.RunID, r.Status, status, r.Error, lastLines(log, 15))
			}
			return &r, nil
		}
		if err := wait.For(ctx, 100*time.Millisecond); err != nil {
			return nil, fmt.Errorf("waiting for a %s run of %s: %w", trigger, task, err)
		}
	}
}

func (d *demo) runLog(ctx context.Context, reg, id string) (string, error) {
	body, err := d.c.RunLogs(ctx, reg, id, false)
	if err != nil {
		return "", err
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	return string(b), err
}

var colorRE = regexp.MustCompile(`<b>Background Color:</b> ([A-Za-z]+)`)

// siteColor fetches the deployed site and returns its background color.
func (d *demo) siteColor(ctx context.Context) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.site, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	m := colorRE.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("GET %s: no background color in the page", d.site)
	}
	return string(m[1]), nil
}

// expectSite waits until the site shows color and records the time since
// the commit under label (when label is set).
func (d *demo) expectSite(ctx context.Context, color string, since time.Time, label string) error {
	var last string
	var lastErr error
	for {
		c, err := d.siteColor(ctx)
		if err == nil && c == color {
			d.say("   site %s: background %s", d.site, c)
			if label != "" {
				t := time.Since(since)
				d.timings = append(d.timings, timing{label, "commit → site " + color, t})
				d.say("   commit → site %s: %s", color, round(t))
			}
			return nil
		}
		last, lastErr = c, err
		if err := wait.For(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("site %s did not turn %s (last seen %q, %v): %w", d.site, color, last, lastErr, err)
		}
	}
}

// tables prints the list-runs tables of the three registries.
func (d *demo) tables(ctx context.Context) error {
	if d.o.PrintRuns == nil {
		return nil
	}
	for _, reg := range []string{publicReg, baseArtifacts, appReg} {
		runs, err := d.c.ListRuns(ctx, reg, client.RunFilter{Top: 6})
		if err != nil {
			return err
		}
		if len(runs) == 0 {
			continue
		}
		d.say("\n   gantry task list-runs -r %s -o table", reg)
		if err := d.o.PrintRuns(d.out, runs); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) summary() {
	d.say("\n== The walkthrough ended as the tutorial says (%s in all)", round(time.Since(d.start)))
	for _, t := range d.timings {
		d.say("   %-38s %-26s %s", t.stage, t.measure, round(t.d))
	}
}

// cleanup removes the deployed site; the server's data goes with the
// temporary directory.
func (d *demo) cleanup() {
	if d.c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = d.c.DeleteContainer(ctx, aci)
	for _, dir := range d.trusted {
		_ = os.RemoveAll(dir)
	}
}

// newClient is the demo's client of the control API at addr, trusting the
// server's local CA over TLS.
func (d *demo) newClient(cfg config.Config, addr string) (*client.Client, error) {
	opts := []client.Option{client.WithBasicAuth("admin", d.admin)}
	if !d.o.TLS {
		return client.New("http://"+addr, opts...)
	}
	pem, err := server.LocalCA(cfg.Data)
	if err != nil {
		return nil, err
	}
	d.ca = pem
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	opts = append(opts, client.WithHTTPClient(&http.Client{Transport: tr}))
	return client.New("https://"+addr, opts...)
}

// trust makes the engine trust the local CA for a registry's login server
// (/etc/docker/certs.d/HOST[:PORT]/ca.crt, which dockerd reads at each
// connection), until the walkthrough ends.
func (d *demo) trust(loginServer string) error {
	if !d.o.TLS {
		return nil
	}
	dir := filepath.Join(dockerCerts, loginServer)
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%s exists already: remove it, or it would be removed at the end", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("making the engine trust the local CA: %w (run as root, or trust it by hand)", err)
	}
	d.trusted = append(d.trusted, dir)
	if err := os.WriteFile(filepath.Join(dir, "ca.crt"), d.ca, 0o644); err != nil {
		return err
	}
	d.say("   the engine trusts the local CA for %s (%s, removed at the end)", loginServer, filepath.Join(dir, "ca.crt"))
	return nil
}

// dockerCerts is where dockerd looks for the CA of a registry.
const dockerCerts = "/etc/docker/certs.d"

// checkNames checks that the registries' hostnames resolve to loopback.
func checkNames(ctx context.Context) error {
	var missing []string
	for _, name := range Registries {
		host := name + "." + Domain
		addrs, err := net.DefaultResolver.LookupHost(ctx, host)
		if err != nil || len(addrs) == 0 || !net.ParseIP(addrs[0]).IsLoopback() {
			missing = append(missing, host)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("demo --tls: %s must resolve to 127.0.0.1; add this line to /etc/hosts:\n127.0.0.1 %s",
			strings.Join(missing, ", "), strings.Join(missing, " "))
	}
	return nil
}

// ---- git ----

func (d *demo) repoURL(name string) string { return filepath.Join(d.git, name+".git") }

// newRepo creates a bare repository with the sample's files on main, and a
// working clone the demo commits from.
func (d *demo) newRepo(ctx context.Context, name string) error {
	bare := d.repoURL(name)
	work := filepath.Join(d.git, "work", name)
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	if err := git(ctx, d.git, "init", "-q", "--bare", "-b", "main", bare); err != nil {
		return err
	}
	if err := git(ctx, work, "init", "-q", "-b", "main"); err != nil {
		return err
	}
	err := fs.WalkDir(samples, path.Join("samples", name), func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		b, err := samples.ReadFile(p)
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(p, ".sh") {
			mode = 0o755
		}
		return os.WriteFile(filepath.Join(work, path.Base(p)), b, mode)
	})
	if err != nil {
		return err
	}
	if err := git(ctx, work, "add", "-A"); err != nil {
		return err
	}
	if err := git(ctx, work, "commit", "-q", "-m", "Initial commit of the "+name+" sample"); err != nil {
		return err
	}
	if err := git(ctx, work, "remote", "add", "origin", bare); err != nil {
		return err
	}
	return git(ctx, work, "push", "-q", "origin", "main")
}

var colorLine = regexp.MustCompile(`(?m)^ENV BACKGROUND_COLOR .*$`)

// commitColor sets BACKGROUND_COLOR in base-image-node's Dockerfile,
// commits and pushes, and returns the time just before the push.
func (d *demo) commitColor(ctx context.Context, color string) (time.Time, error) {
	return d.commitDockerfile(ctx, func(b []byte) []byte {
		return colorLine.ReplaceAll(b, []byte("ENV BACKGROUND_COLOR "+color))
	}, "Set BACKGROUND_COLOR "+color)
}

// commitDockerfile edits base-image-node's Dockerfile, commits and pushes
// it, and returns the time of the push.
func (d *demo) commitDockerfile(ctx context.Context, edit func([]byte) []byte, msg string) (time.Time, error) {
	return d.commitFile(ctx, "base-image-node", "Dockerfile", edit, msg)
}

// commitFile edits a file of a sample repository, commits and pushes it,
// and returns the time of the push.
func (d *demo) commitFile(ctx context.Context, repo, file string, edit func([]byte) []byte, msg string) (time.Time, error) {
	work := filepath.Join(d.git, "work", repo)
	p := filepath.Join(work, file)
	b, err := os.ReadFile(p)
	if err != nil {
		return time.Time{}, err
	}
	if err := os.WriteFile(p, edit(b), 0o644); err != nil {
		return time.Time{}, err
	}
	if err := git(ctx, work, "commit", "-q", "-am", msg); err != nil {
		return time.Time{}, err
	}
	since := time.Now()
	if err := git(ctx, work, "push", "-q", "origin", "main"); err != nil {
		return time.Time{}, err
	}
	d.say("   git commit -am \"%s\" && git push   (%s)", msg, repo)
	return since, nil
}

func git(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=gantry demo", "GIT_AUTHOR_EMAIL=demo@gantry.invalid",
		"GIT_COMMITTER_NAME=gantry demo", "GIT_COMMITTER_EMAIL=demo@gantry.invalid",
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// ---- small helpers ----

func short(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func tagNames(ts []api.Tag) string {
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.Name
	}
	return strings.Join(names, " ")
}

func digestOf(ts []api.Tag, tag string) string {
	for _, t := range ts {
		if t.Name == tag {
			return t.Digest
		}
	}
	return ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
