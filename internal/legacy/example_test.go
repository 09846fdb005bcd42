package legacy_test

import (
	"fmt"
	"log"

	"github.com/portsentry-nft/portsentry-nft/internal/legacy"
)

func ExampleImport() {
	conf := []byte(`# PortSentry 1.2, run as portsentry -stcp and portsentry -sudp
TCP_PORTS="1,11,15,110,111,143,540,635,1080,1524,2000,12345,12346,20034,32771,32772,32773,32774,49724,54320"
UDP_PORTS="1,7,9,69"
BLOCK_TCP="1"
BLOCK_UDP="0"
KILL_ROUTE="/sbin/iptables -I INPUT -s $TARGET$ -j DROP"
KILL_RUN_CMD="/usr/local/bin/notify-admin $TARGET$ $PORT$"
`)
	c, err := legacy.Parse("portsentry.conf", conf, legacy.DialectAuto)
	if err != nil {
		log.Fatal(err)
	}
	modes, err := legacy.ParseModes([]string{"stcp,sudp"})
	if err != nil {
		log.Fatal(err)
	}
	res, err := legacy.Import(c, legacy.Options{Modes: &modes})
	if err != nil {
		log.Fatal(err)
	}
	for _, w := range res.Warnings {
		fmt.Println(w)
	}
	fmt.Print(string(res.YAML))
	// Output:
	// portsentry.conf:6: warning: KILL_ROUTE "/sbin/iptables -I INPUT -s $TARGET$ -j DROP" (iptables) is replaced by native blocking: response: block adds the source to the nftables set inet portsentry blocked (blocked6 for IPv6) for block.timeout (1h unless set), where the old block lasted until a reboot or flush
	// # Imported from portsentry.conf (PortSentry 1.2) by portsentry-nft import.
	// # Dialect: no port ranges and no INTERFACE keys.
	// # PortSentry ran -stcp -sudp (from --mode).
	// # Each key quotes the line it came from; keys not written here keep
	// # portsentry-nft's defaults. Validate with: portsentry-nft check --config FILE
	//
	// # TCP: PortSentry ran -stcp (from --mode).
	// tcp:
	//   # TCP_PORTS="1,11,15,110,111,143,540,635,1080,1524,2000,12345,1234...32773,32774,49724,54320" (line 2)
	//   # the same ports as PortSentry 1.2's "bare-bones" TCP list: written as the preset bare-bones
	//   ports: [bare-bones]
	//   # BLOCK_TCP="1" (line 4)
	//   # KILL_ROUTE (line 6, iptables) is replaced by this native blocking
	//   response: block
	// # UDP: PortSentry ran -sudp (from --mode).
	// udp:
	//   # UDP_PORTS="1,7,9,69" (line 3)
	//   ports: [1, 7, 9, 69]
	//   # BLOCK_UDP="0" (line 5)
	//   response: log
	// commands:
	//   # KILL_RUN_CMD="/usr/local/bin/notify-admin $TARGET$ $PORT$" (line 7)
	//   - argv: [/usr/local/bin/notify-admin, "$TARGET$", "$PORT$"]
	//     first: false
}
