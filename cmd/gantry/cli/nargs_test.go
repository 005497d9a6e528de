package cli

import (
	"slices"
	"testing"
)

func TestJoinNargs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want []string
	}{
		{[]string{"token", "create", "--repository", "hello", "content/read", "content/write", "-n", "x"},
			[]string{"token", "create", "--repository", "hello,content/read,content/write", "-n", "x"}},
		{[]string{"--repository", "a", "content/read", "--repository", "b/*", "metadata/read"},
			[]string{"--repository", "a,content/read", "--repository", "b/*,metadata/read"}},
		{[]string{"keyvault", "set-policy", "--secret-permissions", "get", "list"},
			[]string{"keyvault", "set-policy", "--secret-permissions", "get,list"}},
		{[]string{"task", "credential", "add", "--use-identity", "[system]", "-o", "none"},
			[]string{"task", "credential", "add", "--use-identity=[system]", "-o", "none"}},
		{[]string{"--use-identity", "-o", "none"}, []string{"--use-identity", "-o", "none"}},
		{[]string{"registry", "update", "-n", "r", "--scan-on-push", "false"}, []string{"registry", "update", "-n", "r", "--scan-on-push=false"}},
		{[]string{"registry", "update", "-n", "r", "--scan-on-push", "--quarantine-severity", "high"}, []string{"registry", "update", "-n", "r", "--scan-on-push", "--quarantine-severity", "high"}},
		{[]string{"run", "--", "--repository", "x"}, []string{"run", "--", "--repository", "x"}},
	}
	for _, tt := range tests {
		if got := joinNargs(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("joinNargs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
