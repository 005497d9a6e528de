package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestLoadEnvValidate(t *testing.T) {
	t.Parallel()
	c := Default()
	err := c.Load(strings.NewReader("version: 1\nlisten: 127.0.0.1:7100\nstorage:\n  fsync: true\n"), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ApplyEnv([]string{"GANTRY_TRIGGERS_COMMITPOLLINTERVAL=500ms", "GANTRY_TASKS_CONCURRENCY=2", "GANTRY_NETWORK_BODYTIMEOUT=2m", "PATH=/bin"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:7100" || !c.Storage.Fsync || c.Triggers.CommitPollInterval != 500*time.Millisecond || c.Tasks.Concurrency != 2 || c.Network.BodyTimeout != 2*time.Minute {
		t.Fatalf("unexpected config: %+v", c)
	}
}

func TestInvalid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, env, want string
	}{
		{"unknown key", "lissten: x\n", "", "field lissten not found"},
		{"bad listen", "listen: nope\n", "", "listen: invalid configuration"},
		{"bad version", "version: 2\n", "", "version: invalid configuration"},
		{"bad env duration", "", "GANTRY_CACHE_TAGTTL=soon", "GANTRY_CACHE_TAGTTL"},
		{"bad level", "log:\n  level: loud\n", "", "log.level"},
		{"domain not a DNS name", "network:\n  domain: gantry_test\n", "", `network.domain (--domain): invalid configuration: "gantry_test" is not a valid DNS name`},
		{"domain an IP", "", "GANTRY_NETWORK_DOMAIN=127.0.0.1", "network.domain (--domain): invalid configuration: \"127.0.0.1\" is an IP address"},
		{"domain label hyphen", "network:\n  domain: -a.test\n", "", "starts or ends with a hyphen"},
		{"external URL without scheme", "network:\n  externalURL: gantry.example.com\n", "", `network.externalURL (--external-url): invalid configuration: "gantry.example.com" has no http:// or https:// scheme`},
		{"external URL with path", "network:\n  externalURL: https://g.example.com/x\n", "", "without a path"},
		{"missing cert file", "network:\n  tls:\n    cert: /nonexistent/c.pem\n    key: /nonexistent/k.pem\n", "", "network.tls.cert (--tls-cert): invalid configuration: stat /nonexistent/c.pem: no such file or directory"},
		{"cert without key", "", "GANTRY_NETWORK_TLS_CERT=/etc/hostname", "give both the certificate and the key file"},
		{"two TLS modes", "network:\n  domain: g.test\n  tls:\n    selfSigned: true\n    acmeEmail: a@b.test\n", "", "give one of --tls-cert/--tls-key, --tls self-signed and --acme-email"},
		{"registry listener without domain", "network:\n  registryListen: :443\n", "", "network.registryListen (--registry-listen): invalid configuration: the shared registry listener serves registries by hostname: give --domain"},
		{"bad proxy", "network:\n  trustedProxies: [10.0.0.0/8, proxy]\n", "", `network.trustedProxies[1] (--trusted-proxy): invalid configuration: "proxy" is not an IP address`},
		{"negative body timeout", "", "GANTRY_NETWORK_BODYTIMEOUT=-1s", "network.bodyTimeout (--body-timeout): invalid configuration: -1s is negative"},
		{"acme without names", "network:\n  tls:\n    acmeEmail: ops@example.com\n", "", "ACME needs names to manage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Default()
			err := c.Load(strings.NewReader(tt.yaml), "f.yaml")
			if err == nil && tt.env != "" {
				err = c.ApplyEnv([]string{tt.env})
			}
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an ErrInvalid mentioning %q", err, tt.want)
			}
		})
	}
}

func TestSecurityLists(t *testing.T) {
	c := Default()
	if err := c.ApplyEnv([]string{"GANTRY_SECURITY_CONTEXTROOTS=/srv/a, /srv/b", "GANTRY_SECURITY_UPSTREAMDENY=10.0.0.0/8"}); err != nil {
		t.Fatal(err)
	}
	if len(c.Security.ContextRoots) != 2 || c.Security.ContextRoots[1] != "/srv/b" || c.Security.UpstreamDeny[0] != "10.0.0.0/8" {
		t.Errorf("security = %+v", c.Security)
	}
	c.Security.ContextRoots = []string{"relative"}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "security.contextRoots[0]") {
		t.Errorf("Validate = %v, want security.contextRoots[0] named", err)
	}
}
