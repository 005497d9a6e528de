package task

import (
	"hash/fnv"
	"strings"
)

// Run IDs look like ACR's: a two-letter prefix per registry and a counter in
// base 35 (digits 0-9 then a-y), so a registry's runs read ca1, ca2, ...,
// ca9, caa, ..., cay, ca10, ca11. IDs are short, increase per registry and
// differ between registries of one server.
const runIDDigits = "0123456789abcdefghijklmnopqrstuvwxy"

// runIDPrefix derives a registry's two-letter prefix from its name.
func runIDPrefix(registry string) string {
	h := fnv.New32a()
	h.Write([]byte(registry))
	v := h.Sum32()
	return string([]byte{byte('a' + v%26), byte('a' + (v/26)%26)})
}

// formatRunID returns the ID of a registry's n-th run (n >= 1).
func formatRunID(registry string, n int64) string {
	var b strings.Builder
	b.WriteString(runIDPrefix(registry))
	var digits []byte
	for n > 0 {
		digits = append(digits, runIDDigits[n%35])
		n /= 35
	}
	for i := len(digits) - 1; i >= 0; i-- {
		b.WriteByte(digits[i])
	}
	return b.String()
}
