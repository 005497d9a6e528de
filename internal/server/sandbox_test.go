package server_test

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gantryhq/gantry/api"
	"github.com/gantryhq/gantry/internal/auth"
	"github.com/gantryhq/gantry/internal/config"
	"github.com/gantryhq/gantry/internal/docker"
	"github.com/gantryhq/gantry/internal/docker/dockertest"
	"github.com/gantryhq/gantry/internal/engine"
)

// The tests of this file reproduce the findings S1, S2, S3, S5 and S6 of
// the sandbox review (docs/security.md) against a real server and engine:
// each fails on the code before the fix.

// sniffer is a packet sniffer, as the review ran in a step: it opens a
// packet socket (which needs CAP_NET_RAW) and looks for an HTTP
// Authorization header on any interface of the host network for 8 seconds.
const sniffer = `package main

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"time"
)

func main() {
	fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_RAW, 0x0300) // htons(ETH_P_ALL)
	if err != nil {
		fmt.Println("SNIFFER-DENIED:", err)
		return
	}
	tv := syscall.Timeval{Sec: 1}
	syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	buf := make([]byte, 1<<16)
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); {
		n, _, err := syscall.Recvfrom(fd, buf, 0)
		if err != nil || n <= 0 {
			continue
		}
		if i := bytes.Index(buf[:n], []byte("Authorization: Basic ")); i >= 0 {
			fmt.Println("SNIFFER-CAPTURED an Authorization header")
			os.Exit(0)
		}
	}
	fmt.Println("SNIFFER-NOTHING")
}
`

// sniffRun builds the sniffer into dir and quick-runs dir in registry
// while the admin works (the run must succeed), and returns the run's log.
func sniffRun(t *testing.T, srv *testServer, registry, dir string) string {
	t.Helper()
	buildSniffer(t, dir)
	stop := adminTraffic(srv)
	out, code := quickRun(t, registry, dir)
	stop()
	if code != 0 {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	return out
}

// buildSniffer compiles the sniffer, statically, into dir.
func buildSniffer(t *testing.T, dir string) {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(sniffer), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module sniff\n\ngo 1.22\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "sniff"), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the sniffer: %v\n%s", err, out)
	}
}

// writeFiles writes name -> content into a new directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// quickRun runs `gantry run -r reg dir` (the task file acr-task.yaml) with
// --set values and returns its output and exit code.
func quickRun(t *testing.T, reg, dir string, sets ...string) (string, int) {
	t.Helper()
	args := []string{"run", "-r", reg, "--timeout", "600"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, errOut, code := gantryCLI(append(args, dir)...)
	return out + errOut, code
}

// TestSandboxStepCannotSniff (S1): a step on the host network cannot open
// a packet socket, so it cannot read the admin's credentials off loopback
// while the admin uses the control API; its capabilities are the short
// list and no-new-privileges is set.
func TestSandboxStepCannotSniff(t *testing.T) {
	srv, base := startEngineServer(t, serverOptions{})
	cliAsAdmin(t, srv)
	srv.createRegistry("sniff", false)
	dir := writeFiles(t, map[string]string{"acr-task.yaml": "version: v1.1.0\nsteps:\n" +
		"  - id: status\n    cmd: " + base + " grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status\n" +
		"  - id: sniff\n    cmd: " + base + " /workspace/sniff\n"})
	out := sniffRun(t, srv, "sniff", dir)
	if strings.Contains(out, "SNIFFER-CAPTURED") || !strings.Contains(out, "SNIFFER-DENIED") {
		t.Errorf("the step could open a packet socket on the host network:\n%s", out)
	}
	if strings.Contains(out, srv.adminPassword) {
		t.Errorf("the admin password is in the run log")
	}
	m := regexp.MustCompile(`CapEff:\s+([0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no CapEff in the log:\n%s", out)
	}
	caps, _ := strconv.ParseUint(m[1], 16, 64)
	const netRaw, netBind, mknod = 1 << 13, 1 << 10, 1 << 27
	if caps&(netRaw|netBind|mknod) != 0 {
		t.Errorf("CapEff %s still has NET_RAW, NET_BIND_SERVICE or MKNOD", m[1])
	}
	if !regexp.MustCompile(`NoNewPrivs:\s+1`).MatchString(out) {
		t.Errorf("no-new-privileges is not set:\n%s", out)
	}
}

// TestSandboxBuildCannotSniff (S1, builds): a build's RUN instruction keeps
// the builder's capabilities, but runs without the host network (the
// server's engine.buildNetwork, none by default), so a sniffer there sees
// nothing of the admin's traffic on loopback.
func TestSandboxBuildCannotSniff(t *testing.T) {
	srv, base := startEngineServer(t, serverOptions{})
	cliAsAdmin(t, srv)
	srv.createRegistry("bsniff", false)
	dir := writeFiles(t, map[string]string{
		"acr-task.yaml": "version: v1.1.0\nsteps:\n  - build: --build-arg BUST={{.Run.ID}} -t {{.Run.Registry}}/sniffed:1 .\n",
		"Dockerfile":    "FROM " + base + "\nARG BUST\nCOPY sniff /sniff\nRUN echo $BUST && /sniff\n",
	})
	out := sniffRun(t, srv, "bsniff", dir)
	if strings.Contains(out, "SNIFFER-CAPTURED") || !strings.Contains(out, "SNIFFER-NOTHING") {
		t.Errorf("the build's RUN saw the admin's traffic (or did not run):\n%s", out)
	}
	if !strings.Contains(out, "RUN instructions have no network") {
		t.Errorf("the run log does not say that RUN has no network:\n%s", out)
	}
}

// adminTraffic makes the admin call the control API with Basic
// credentials every 50 ms until the returned function is called.
func adminTraffic(srv *testServer) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.url("/v1/registries"), nil)
			req.SetBasicAuth("admin", srv.adminPassword)
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return func() { cancel(); wg.Wait() }
}

// TestSandboxPrivilegedRefused (S6): privileged: true, network: host and a
// build with --network host are refused with the setting that would allow
// them, and nothing runs; a registry the admin allows runs privileged.
func TestSandboxPrivilegedRefused(t *testing.T) {
	srv, base := startEngineServer(t, serverOptions{
		security: config.Security{PrivilegedRegistries: []string{"trusted"}}})
	cliAsAdmin(t, srv)
	srv.createRegistry("plain", false)
	srv.createRegistry("trusted", false)
	file := "version: v1.1.0\nsteps:\n" +
		"  - id: priv\n    cmd: " + base + " grep CapEff /proc/self/status\n    privileged: true\n" +
		"  - id: hostnet\n    cmd: " + base + " echo ran-hostnet\n    network: host\n" +
		"  - id: build\n    build: --network host -t x:1 .\n" +
		"  - id: build-default\n    build: --network default -t x:1 .\n" +
		"  - id: build-peer\n    build: --network container:peer -t x:1 .\n"
	dir := writeFiles(t, map[string]string{"acr-task.yaml": file, "Dockerfile": "FROM " + base + "\n"})
	out, code := quickRun(t, "plain", dir)
	if code == 0 {
		t.Fatalf("a privileged task ran on a registry that does not allow it:\n%s", out)
	}
	for _, want := range []string{
		"acr-task.yaml:5:17: steps[0].privileged: step priv: privileged: true",
		"steps[1].network: step hostnet: network: host",
		"steps[2].build: step build: --network host",
		"steps[3].build: step build-default: --network default",
		"steps[4].build: step build-peer: --network container:peer",
		"gantry server --allow-privileged-steps plain",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ran-hostnet") || strings.Contains(out, "CapEff") {
		t.Errorf("a step ran:\n%s", out)
	}

	// The allowed registry plans the same file and runs it; this machine's
	// runtime itself refuses privileged containers, so the host-network
	// steps run alone.
	out, _ = quickRun(t, "trusted", dir)
	if strings.Contains(out, "--allow-privileged-steps") {
		t.Errorf("the allowed registry's run was refused:\n%s", out)
	}
	dir = writeFiles(t, map[string]string{"acr-task.yaml": "version: v1.1.0\nsteps:\n" +
		"  - id: hostnet\n    cmd: " + base + " echo ran-hostnet\n    network: host\n  - id: build\n    build: --network host -t x:1 .\n",
		"Dockerfile": "FROM " + base + "\n"})
	if out, code = quickRun(t, "trusted", dir); code != 0 || !strings.Contains(out, "ran-hostnet") {
		t.Errorf("the allowed registry's host-network run failed: exit %d\n%s", code, out)
	}
}

// TestSandboxRunCredentials (S5): the credential in every step's Docker
// config works on the run's registry and is refused by the control API;
// only the gantry alias step gets GANTRY_TOKEN, which the control API
// accepts.
func TestSandboxRunCredentials(t *testing.T) {
	srv, base := startEngineServer(t, serverOptions{gantryBinary: staticGantry(t)})
	cliAsAdmin(t, srv)
	srv.createRegistry("creds", false)
	probe := `#!/bin/sh
auth=$(tr -d ' \n' < $HOME/.docker/config.json | sed 's/.*"auth":"\([^"]*\)".*/\1/')
echo "token-in-env=${GANTRY_TOKEN:-none}"
if wget -q -O - --header "Authorization: Basic $auth" http://` + srv.addr + `/v1/whoami; then echo CONTROL-API-ACCEPTED; else echo CONTROL-API-REFUSED; fi
`
	// az acr login saves the alias step's credential (the run's control-API
	// token) in its Docker config; the probe after it must not find it.
	file := "version: v1.1.0\nsteps:\n" +
		"  - id: azlogin\n    cmd: az acr login -n {{.Run.Registry}}\n" +
		"  - id: probe\n    cmd: " + base + " sh /workspace/probe.sh\n" +
		"  - id: build\n    build: -t {{.Run.Registry}}/probe:{{.Run.ID}} .\n" +
		"  - push: ['{{.Run.Registry}}/probe:{{.Run.ID}}']\n" +
		"  - id: alias\n    cmd: gantry login --identity -o tsv --query name\n"
	dir := writeFiles(t, map[string]string{"acr-task.yaml": file, "probe.sh": probe, "Dockerfile": "FROM " + base + "\n"})
	out, code := quickRun(t, "creds", dir)
	if code != 0 {
		t.Fatalf("run: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "azlogin | Login Succeeded") {
		t.Errorf("az acr login did not save the login:\n%s", out)
	}
	if !strings.Contains(out, "CONTROL-API-REFUSED") || strings.Contains(out, "CONTROL-API-ACCEPTED") {
		t.Errorf("the Docker config's credential works on the control API:\n%s", out)
	}
	if !strings.Contains(out, "token-in-env=none") {
		t.Errorf("a non-alias step has GANTRY_TOKEN:\n%s", out)
	}
	if !strings.Contains(out, "Successfully pushed image") {
		t.Errorf("the registry credential did not push:\n%s", out)
	}
	if !regexp.MustCompile(`alias \| run:creds/`).MatchString(out) {
		t.Errorf("the alias step's control-API credential did not log in:\n%s", out)
	}
}

// TestSandboxImagesScoped (S2): a run of one registry cannot use, retag,
// list or push the engine's copy of another registry's image, cannot
// replace the gantry CLI image, and the gantry alias runs the image the
// server built even when its tag was replaced on the engine.
func TestSandboxImagesScoped(t *testing.T) {
	srv, base := startEngineServer(t, serverOptions{gantryBinary: staticGantry(t)})
	cliAsAdmin(t, srv)
	alpha := srv.createRegistry("alpha", false)
	srv.createRegistry("beta", false)

	// The engine holds alpha's private image, as while an alpha run uses it.
	dc := dockertest.Engine(t)
	private := alpha + "/alpha-private:1"
	dockertest.BuildImage(t, dc, private, map[string]string{
		"Dockerfile": "FROM " + base + "\nRUN echo alpha-secret-content > /secret.txt\n"})

	// A first run builds the CLI image.
	dir := writeFiles(t, map[string]string{"acr-task.yaml": "version: v1.1.0\nsteps:\n  - cmd: gantry version -o tsv\n"})
	if out, code := quickRun(t, "alpha", dir); code != 0 {
		t.Fatalf("first alias run: exit %d\n%s", code, out)
	}
	cliTag := ""
	imgs, err := dc.ListImages(context.Background(), docker.ListImagesOptions{Labels: []string{engine.LabelCLI}})
	if err != nil {
		t.Fatal(err)
	}
	for _, im := range imgs {
		for _, tag := range im.RepoTags {
			if strings.HasPrefix(tag, engine.DefaultCLIImage+":") {
				cliTag = tag
			}
		}
	}
	if cliTag == "" {
		t.Fatalf("no gantry CLI image on the engine: %+v", imgs)
	}

	file := "version: v1.1.0\nsteps:\n" +
		"  - id: run-other\n    cmd: " + private + " cat /secret.txt\n    ignoreErrors: true\n" +
		"  - id: tag-other\n    cmd: docker tag " + private + " {{.Run.Registry}}/stolen:1\n    ignoreErrors: true\n" +
		"  - id: list\n    cmd: docker images\n    ignoreErrors: true\n" +
		"  - id: inspect-other\n    cmd: docker inspect " + private + "\n    ignoreErrors: true\n" +
		"  - id: replace-cli\n    build: -t " + cliTag + " .\n    ignoreErrors: true\n" +
		"  - id: tag-cli\n    cmd: docker tag " + base + " " + cliTag + "\n    ignoreErrors: true\n" +
		"  - id: replace-base\n    build: -t " + base + " .\n    ignoreErrors: true\n" +
		"  - id: rmi-base\n    cmd: docker rmi " + base + "\n    ignoreErrors: true\n"
	dir = writeFiles(t, map[string]string{"acr-task.yaml": file, "Dockerfile": "FROM " + base + "\nRUN echo replaced > /replaced\n"})
	out, _ := quickRun(t, "beta", dir)
	if strings.Contains(out, "alpha-secret-content") {
		t.Errorf("beta's step ran alpha's private image from the engine's copy:\n%s", out)
	}
	if strings.Contains(out, "using the local copy") {
		t.Errorf("a refused pull fell back to the local copy:\n%s", out)
	}
	for _, want := range []string{
		"tag-other | Error response from daemon: No such image: " + private,
		"inspect-other | Error response from daemon: No such object: " + private,
		"replace-cli",
		"the repository is gantry's own and cannot be written by a task",
		"is shared by every run and was not created by this one",
		"rmi-base | Error response from daemon: No such image: " + base,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the beta run's log does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "list | "+alpha) || strings.Contains(out, "list | "+engine.DefaultCLIImage) {
		t.Errorf("docker images in a beta step lists images beta did not make:\n%s", out)
	}
	if _, err := dc.InspectImage(context.Background(), base); err != nil {
		t.Errorf("the shared base image was removed by a step: %v", err)
	}

	// The CLI tag replaced on the engine (as a step could before): the
	// alias still runs the CLI the server built.
	if err := dc.TagImage(context.Background(), base, cliTag); err != nil {
		t.Fatal(err)
	}
	dir = writeFiles(t, map[string]string{"acr-task.yaml": "version: v1.1.0\nsteps:\n  - id: cli\n    cmd: gantry version -o tsv\n"})
	out, code := quickRun(t, "alpha", dir)
	if code != 0 || !regexp.MustCompile(`cli \| \S+`).MatchString(out) {
		t.Errorf("the gantry alias did not run the server's CLI image after its tag was replaced: exit %d\n%s", code, out)
	}
}

// TestSandboxContexts (S3): a registry owner's run cannot create a task
// whose context is the server's data directory (or any folder outside the
// context roots); nothing is created; the admin cannot name the data
// directory either, and a folder under a context root is accepted.
func TestSandboxContexts(t *testing.T) {
	root := t.TempDir()
	srv, _ := startEngineServer(t, serverOptions{gantryBinary: staticGantry(t),
		security: config.Security{ContextRoots: []string{root}}})
	cliAsAdmin(t, srv)
	srv.createRegistry("ctx", false)
	ctx := context.Background()
	adm := srv.admin()
	task, err := adm.CreateTask(ctx, "ctx", api.CreateTaskRequest{Name: "owner-task", AssignIdentity: true, File: "acr-task.yaml",
		FileContent: []byte("version: v1.1.0\nsteps:\n" +
			"  - id: steal\n    cmd: gantry task create -r ctx -n stealkeys -c {{.Values.keys}} -f acr-task.yaml\n    ignoreErrors: true\n" +
			"  - id: outside\n    cmd: gantry task create -r ctx -n outside -c {{.Values.other}} -f acr-task.yaml\n    ignoreErrors: true\n" +
			"  - id: ok\n    cmd: gantry task create -r ctx -n rooted -c {{.Values.root}} -f acr-task.yaml -o none\n")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateRoleAssignment(ctx, api.CreateRoleAssignmentRequest{
		Assignee: task.Identity.PrincipalID, Role: "owner", Scope: "/registries/ctx"}); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(srv.cfg.Data, "keys")
	other := t.TempDir()
	app := filepath.Join(root, "app")
	if err := os.Mkdir(app, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "acr-task.yaml"), []byte("version: v1.1.0\nsteps:\n  - cmd: gantry version -o none\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := gantryCLI("task", "run", "-r", "ctx", "-n", "owner-task",
		"--set", "keys="+keys, "--set", "root="+app, "--set", "other="+other)
	out += errOut
	if code != 0 {
		t.Fatalf("owner-task: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "reads the server's data directory") {
		t.Errorf("the owner's task create with the keys folder was not refused as reading the data directory:\n%s", out)
	}
	if !strings.Contains(out, "is not under a context root") || !strings.Contains(out, "gantry server --context-root DIR") {
		t.Errorf("the owner's task create outside the context roots was not refused naming the setting:\n%s", out)
	}
	for _, name := range []string{"stealkeys", "outside"} {
		if _, err := adm.GetTask(ctx, "ctx", name); err == nil {
			t.Errorf("the refused task %s was created", name)
		}
	}
	if _, err := adm.GetTask(ctx, "ctx", "rooted"); err != nil {
		t.Errorf("the task under the context root was not created: %v", err)
	}
	// The check is made again when a run starts: the folder, replaced by a
	// link to the keys, is refused.
	if err := os.RemoveAll(app); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(keys, app); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = gantryCLI("task", "run", "-r", "ctx", "-n", "rooted")
	if code == 0 || !strings.Contains(out+errOut, "data directory") {
		t.Errorf("a run of the task whose context now leads to the keys: exit %d\n%s%s", code, out, errOut)
	}

	// The admin may name any folder but the data directory.
	for i, c := range []string{other, "file://" + other, keys} {
		_, errOut, code = gantryCLI("task", "create", "-r", "ctx", "-n", "admin-"+strconv.Itoa(i), "-c", c, "-f", "acr-task.yaml")
		switch {
		case c == keys && (code == 0 || !strings.Contains(errOut, "data directory")):
			t.Errorf("the admin could name the data directory's keys as a context: exit %d %s", code, errOut)
		case c != keys && code != 0:
			t.Errorf("the admin could not name %s as a context: exit %d %s", c, code, errOut)
		}
	}
}

// TestSandboxTaskTokenCredential (S5, the task's own credentials): a task
// credential with a token of another gantry registry serves the run's
// pulls and builds, exchanged for a refresh token that expires with the
// run, and no step finds it in its Docker config.
func TestSandboxTaskTokenCredential(t *testing.T) {
	srv, base := startEngineServer(t, serverOptions{})
	cliAsAdmin(t, srv)
	alpha := srv.createRegistry("alpha", false)
	srv.createRegistry("beta", false)
	ctx := context.Background()
	adm := srv.admin()

	// alpha holds a private image; beta's task pulls it with a pull token.
	dir := writeFiles(t, map[string]string{
		"acr-task.yaml": "version: v1.1.0\nsteps:\n  - build: -t {{.Run.Registry}}/private:1 .\n  - push: ['{{.Run.Registry}}/private:1']\n",
		"Dockerfile":    "FROM " + base + "\nRUN echo private-content > /private.txt\n"})
	if out, code := quickRun(t, "alpha", dir); code != 0 {
		t.Fatalf("alpha push: exit %d\n%s", code, out)
	}
	tok, err := adm.CreateToken(ctx, "alpha", api.CreateTokenRequest{Name: "beta-pull", ScopeMap: auth.ScopeMapPull})
	if err != nil {
		t.Fatal(err)
	}
	password := tok.Credentials.Passwords[0].Value
	if _, err := adm.CreateTask(ctx, "beta", api.CreateTaskRequest{Name: "uses-alpha", File: "acr-task.yaml",
		FileContent: []byte("version: v1.1.0\nsteps:\n" +
			"  - id: run\n    cmd: " + alpha + "/private:1 cat /private.txt\n" +
			"  - id: config\n    cmd: " + base + " cat /acb/home/.docker/config.json\n")}); err != nil {
		t.Fatal(err)
	}
	if _, err := adm.AddTaskCredential(ctx, "beta", "uses-alpha", api.CredentialRequest{
		LoginServer: alpha, Username: "beta-pull", Password: password}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := gantryCLI("task", "run", "-r", "beta", "-n", "uses-alpha")
	out += errOut
	if code != 0 || !strings.Contains(out, "run | private-content") {
		t.Fatalf("the task did not pull with its token credential: exit %d\n%s", code, out)
	}
	if strings.Contains(out, `"`+alpha+`"`) {
		t.Errorf("the token credential is in a step's Docker config:\n%s", out)
	}
	if strings.Contains(out, password) {
		t.Errorf("the token password is in the run log")
	}
	if strings.Contains(srv.log.String(), "task credential not exchanged") {
		t.Errorf("the credential was not exchanged for a refresh token:\n%s", srv.log.String())
	}
}
