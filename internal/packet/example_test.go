package packet_test

import (
	"errors"
	"fmt"

	"github.com/portsentry-nft/portsentry-nft/internal/packet"
)

func ExampleDecode() {
	// An nmap -sS probe as NFLOG delivers it: the IPv4 header, then a TCP
	// SYN whose only option is an MSS.
	pkt := []byte{
		0x45, 0x00, 0x00, 0x2c, 0x42, 0x42, 0x00, 0x00, // IPv4, 44 bytes
		0x40, 0x06, 0x02, 0x05, // TTL 64, TCP
		0x0a, 0x10, 0x11, 0x01, // 10.16.17.1
		0x0a, 0x10, 0x11, 0x65, // 10.16.17.101
		0x11, 0x4b, 0x07, 0xd0, // port 4427 -> 2000
		0x1a, 0x2b, 0x3c, 0x4d, 0x00, 0x00, 0x00, 0x00,
		0x60, 0x02, 0x04, 0x00, // 24-byte header, SYN
		0xee, 0x0d, 0x00, 0x00,
		0x02, 0x04, 0x05, 0xb4, // MSS 1460
	}

	var p packet.Probe // reuse one Probe for every packet: Decode does not allocate
	if err := packet.Decode(pkt, &p); err != nil {
		fmt.Println("drop:", err)
		return
	}
	if p.Kind != packet.KindNone {
		fmt.Printf("attackalert: %v from host %v/%v to %v port: %d from %v port: %d\n",
			p.Kind, p.Src, p.Src, p.Proto, p.DstPort, p.Proto, p.SrcPort)
	}
	fmt.Println("flags:", p.Flags)

	// A copy cut inside the TCP header (by the snap length: the IP header
	// says the packet is 44 bytes) still tells who sent it.
	err := packet.Decode(pkt[:30], &p)
	fmt.Println(errors.Is(err, packet.ErrTransportUnreachable), p.Src, p.DstPort)

	// A copy cut inside the IP header cannot be decoded.
	err = packet.Decode(pkt[:19], &p)
	fmt.Println(errors.Is(err, packet.ErrTruncated), err)

	// Output:
	// attackalert: TCP SYN scan from host 10.16.17.1/10.16.17.1 to TCP port: 2000 from TCP port: 4427
	// flags: SYN
	// true 10.16.17.1 0
	// true packet: truncated
}

func ExampleClassify() {
	fmt.Println(packet.Classify(packet.FlagSYN, false))
	fmt.Println(packet.Classify(packet.FlagSYN, true))
	fmt.Println(packet.Classify(packet.FlagFIN|packet.FlagPSH|packet.FlagURG, false))
	fmt.Println(packet.Classify(packet.FlagSYN|packet.FlagACK, false))
	// Output:
	// TCP SYN scan
	// TCP connect
	// TCP XMAS scan
	// not a probe
}
