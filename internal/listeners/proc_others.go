//go:build !linux

package listeners

// ProcessName is "" on systems without /proc/PID/fd.
func ProcessName(inode uint32) string { return "" }

// Process is ProcessName with the PID; it finds nothing here.
func Process(inode uint32) (pid int, name string) { return 0, "" }
