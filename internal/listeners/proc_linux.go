package listeners

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Bounds of one search through /proc: a host with very many processes or
// descriptors gets an empty answer rather than a long stall of the caller.
const (
	procScanBudget = time.Second
	procScanMaxFDs = 1 << 20
)

// ProcessName is the name (/proc/PID/comm) of a process holding the socket
// with this inode, or "" when none is found (inode 0, the process is gone
// or in another PID namespace, or the search ran out of its bounds). It
// reads every /proc/PID/fd, so call it when something changed, not per
// packet.
func ProcessName(inode uint32) string {
	_, name := Process(inode)
	return name
}

// Process is ProcessName that also returns the PID (0 when not found).
func Process(inode uint32) (pid int, name string) {
	if inode == 0 {
		return 0, ""
	}
	pid = findInode(inode)
	if pid == 0 {
		return 0, ""
	}
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return 0, ""
	}
	return pid, strings.TrimSpace(string(comm))
}

// findInode returns the first PID with a descriptor "socket:[inode]".
func findInode(inode uint32) int {
	proc, err := os.Open("/proc")
	if err != nil {
		return 0
	}
	names, err := proc.Readdirnames(-1)
	proc.Close()
	if err != nil {
		return 0
	}
	want := []byte("socket:[" + strconv.FormatUint(uint64(inode), 10) + "]")
	buf := make([]byte, 64)
	deadline := time.Now().Add(procScanBudget)
	seen := 0
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || pid <= 0 {
			continue
		}
		if time.Now().After(deadline) || seen > procScanMaxFDs {
			return 0
		}
		fdDir, err := os.Open("/proc/" + n + "/fd")
		if err != nil {
			continue // gone, or not ours to read
		}
		fds, _ := fdDir.Readdirnames(-1)
		dirfd := int(fdDir.Fd())
		found := false
		for _, fd := range fds {
			seen++
			k, err := unix.Readlinkat(dirfd, fd, buf)
			if err == nil && bytes.Equal(buf[:k], want) {
				found = true
				break
			}
		}
		fdDir.Close()
		if found {
			return pid
		}
	}
	return 0
}
