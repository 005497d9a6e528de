package main

import (
	"fmt"
	"syscall"
)

// prefault touches n bytes of fresh anonymous memory, one write per page,
// and unmaps it again.
//
// Why: on a freshly booted VM the hypervisor backs guest memory lazily, and
// the first write to each never-used page costs a host page fault. Blob
// pushes allocate page cache for every byte written, so on such a machine
// they measure the hypervisor (about 0.5 GB/s here) rather than the
// registry. A long-running server recycles page cache that is already
// backed; prefaulting puts both registries under test in that steady state.
// --prefault=0 measures the cold machine instead.
func prefault(n int64) error {
	if n <= 0 {
		return nil
	}
	b, err := syscall.Mmap(-1, 0, int(n), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		return fmt.Errorf("prefault: %w", err)
	}
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	return syscall.Munmap(b)
}
