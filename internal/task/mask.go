package task

import (
	"bytes"
	"io"
	"sort"
	"sync"
)

// maskingWriter replaces secret values with *** in what it writes. The
// engine writes whole lines, so a secret is never split across writes.
type maskingWriter struct {
	w io.Writer

	mu      sync.Mutex
	secrets []string
}

// add registers a value to mask. Values shorter than 4 bytes are not
// masked: replacing them would garble ordinary text and hides little.
func (m *maskingWriter) add(v string) {
	if len(v) < 4 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.secrets {
		if s == v {
			return
		}
	}
	m.secrets = append(m.secrets, v)
	// Longest first, so a secret containing another is masked whole.
	sort.Slice(m.secrets, func(i, j int) bool { return len(m.secrets[i]) > len(m.secrets[j]) })
}

func (m *maskingWriter) Write(p []byte) (int, error) {
	m.mu.Lock()
	secrets := m.secrets
	m.mu.Unlock()
	out := p
	for _, s := range secrets {
		if bytes.Contains(out, []byte(s)) {
			out = bytes.ReplaceAll(out, []byte(s), []byte("***"))
		}
	}
	if _, err := m.w.Write(out); err != nil {
		return 0, err
	}
	return len(p), nil
}
