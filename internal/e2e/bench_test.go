package e2e

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portsentry-nft/portsentry-nft/internal/netnstest"
)

func pct(ds []time.Duration, q int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*q + 99) / 100
	return s[max(0, min(i, len(s))-1)]
}

// rawSocketIn opens an IPPROTO_RAW socket inside ns: it stays there after
// the thread returns to its own namespace.
func rawSocketIn(b testing.TB, ns *netnstest.NS) int {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		b.Fatal(err)
	}
	defer self.Close()
	target := ns.Open()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		b.Fatal(err)
	}
	fd, serr := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		panic("cannot return to own network namespace: " + err.Error())
	}
	if serr != nil {
		b.Fatal(serr)
	}
	return fd
}

// sendSYN sends one TCP SYN (no options, like nmap -sS) from src.
func sendSYN(b testing.TB, fd int, src, dst netip.Addr, port uint16) {
	sa := &unix.SockaddrInet4{Addr: dst.As4()}
	if err := unix.Sendto(fd, synPacket(src, dst, port), 0, sa); err != nil {
		b.Fatal(err)
	}
}

// synPacket is the IPv4 packet of a TCP SYN (no options) from src.
func synPacket(src, dst netip.Addr, port uint16) []byte {
	pkt := make([]byte, 40)
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], 40)
	pkt[8] = 64
	pkt[9] = unix.IPPROTO_TCP
	s4, d4 := src.As4(), dst.As4()
	copy(pkt[12:16], s4[:])
	copy(pkt[16:20], d4[:])
	binary.BigEndian.PutUint16(pkt[10:], checksum(pkt[:20], 0))
	tcp := pkt[20:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], port)
	binary.BigEndian.PutUint32(tcp[4:], 1)
	tcp[12] = 5 << 4
	tcp[13] = 0x02
	binary.BigEndian.PutUint16(tcp[14:], 1024)
	var pseudo uint32
	for i := 0; i < 4; i += 2 {
		pseudo += uint32(binary.BigEndian.Uint16(s4[i:])) + uint32(binary.BigEndian.Uint16(d4[i:]))
	}
	pseudo += unix.IPPROTO_TCP + 20
	binary.BigEndian.PutUint16(tcp[16:], checksum(tcp, pseudo))
	return pkt
}

func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func rssKiB(b *testing.B, pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

func closeFD(fd int) { unix.Close(fd) }
