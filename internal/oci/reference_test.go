package oci

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want, err string
	}{
		{in: "node", want: "docker.io/library/node:latest"},
		{in: "node:15-alpine", want: "docker.io/library/node:15-alpine"},
		{in: "library/node:15", want: "docker.io/library/node:15"},
		{in: "docker.io/node:15", want: "docker.io/library/node:15"},
		{in: "index.docker.io/library/node:15", want: "docker.io/library/node:15"},
		{in: "bitnami/nginx:1.25", want: "docker.io/bitnami/nginx:1.25"},
		{in: "127.0.0.1:5000/node:15-alpine", want: "127.0.0.1:5000/node:15-alpine"},
		{in: "127.0.0.1:5001/baseimages/node", want: "127.0.0.1:5001/baseimages/node:latest"},
		{in: "localhost/foo", want: "localhost/foo:latest"},
		{in: "localhost:5000/a/b/c:v1", want: "localhost:5000/a/b/c:v1"},
		{in: "myreg.azurecr.io/hello-world:cf1", want: "myreg.azurecr.io/hello-world:cf1"},
		{in: "mcr.microsoft.com/acr/bash:2ff604c", want: "mcr.microsoft.com/acr/bash:2ff604c"},
		{in: "[::1]:5000/x", want: "[::1]:5000/x:latest"},
		{in: "MyReg.io/x", want: "MyReg.io/x:latest"},
		{in: "node@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", want: "docker.io/library/node@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		{in: "node:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", want: "docker.io/library/node:1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
		{in: "a__b/c--d/e.f_g:T.1-x", want: "docker.io/a__b/c--d/e.f_g:T.1-x"},
		{in: "", err: "empty reference"},
		{in: "Node:15", err: "must be lowercase"},
		{in: "node:", err: "invalid tag"},
		{in: "node:bad tag", err: "invalid tag"},
		{in: "-node", err: "invalid repository name component"},
		{in: "node@sha256:abc", err: "invalid digest"},
		{in: "a//b", err: "invalid repository name component"},
		{in: ":tag", err: "missing repository name"},
		{in: "ex_ample.com/x", err: "invalid registry host"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := Normalize(tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrInvalidReference) {
					t.Fatalf("Normalize(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

// TestNormalizeHost: Docker Hub's spellings fold into docker.io; an empty
// host stays empty (it names no registry, so it is not Docker Hub).
func TestNormalizeHost(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"index.docker.io": "docker.io", "Registry-1.Docker.io": "docker.io", "registry.hub.docker.com": "docker.io",
		"https://index.docker.io/v1/": "docker.io", "Contoso.azurecr.io/": "contoso.azurecr.io", "": "",
	} {
		if got := NormalizeHost(in); got != want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}
