package detect

import (
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The detector's entries and index are plain data (no pointers) that live
// as long as the detector and can reach tens of MiB under a spoofed flood.
// They are mapped outside the Go heap: the garbage collector neither scans
// them nor counts them towards its next goal, so a full table does not let
// the heap grow by GOGC percent of it, and a dropped index is returned to
// the kernel at once. Pages cost memory only once they are written.
type mappings struct {
	mu   sync.Mutex
	maps [][]byte
}

// alloc maps n zeroed values of T; T must hold no pointers. If the kernel
// refuses (no address space left), it falls back to the Go heap.
func alloc[T any](m *mappings, n int) []T {
	var zero T
	size := int(unsafe.Sizeof(zero)) * n
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return make([]T, n)
	}
	m.mu.Lock()
	m.maps = append(m.maps, b)
	m.mu.Unlock()
	return unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n)
}

// release unmaps s, which alloc returned.
func release[T any](m *mappings, s []T) {
	if len(s) == 0 {
		return
	}
	p := unsafe.Pointer(unsafe.SliceData(s))
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, b := range m.maps {
		if unsafe.Pointer(unsafe.SliceData(b)) == p {
			if err := unix.Munmap(b); err != nil {
				panic(fmt.Sprintf("detect: munmap: %v", err))
			}
			m.maps = append(m.maps[:i], m.maps[i+1:]...)
			return
		}
	}
}

// releaseAll unmaps everything; it runs when the detector is collected.
func (m *mappings) releaseAll() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.maps {
		unix.Munmap(b)
	}
	m.maps = nil
}

// track arranges for d's mappings to be released when d is collected.
func track(d *Detector) {
	runtime.AddCleanup(d, func(m *mappings) { m.releaseAll() }, d.mem)
}
