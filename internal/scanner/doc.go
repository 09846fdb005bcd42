// Package scanner names the tool that sent a probe from the probe's own
// headers: nmap's raw-packet scans (nmap-syn) and its OS detection probes
// (nmap-os), masscan, ZMap up to 4.0 (zmap) and from 4.1 (zmap-new), the
// Mirai family (mirai), an operating system's own TCP stack (os-stack: nmap
// -sT, a browser, telnet), or unknown.
//
// It exists because an administrator reading a block wants to know what
// kind of scanner it was, and the kernel's copy of the first packet already
// says so: stateless scanners build their packets from templates whose IP
// ID, TTL, window, sequence number and TCP options give them away. Each rule
// is the tool's own construction, checked against packets the tools sent
// here (testdata/scanners):
//
//   - masscan: IP ID = (destination address ^ destination port ^ sequence
//     number), low 16 bits; no options, or MSS 1460 only.
//   - ZMap <= 4.0: IP ID 54321, window 65535, no options or MSS only, a
//     source port in 32768-61000.
//   - ZMap >= 4.1: TTL <= 64, window 65535 and Windows' option order (MSS,
//     NOP, window scale, NOP, NOP, SACK permitted).
//   - Mirai: sequence number = destination IPv4 address, no options.
//   - nmap -O: timestamps of 0xFFFFFFFF, options that do not start with the
//     MSS (every operating system puts it first), or the OS probes' windows
//     with options; its UDP probe is 300 bytes of 'C'.
//   - nmap -sS/-sF/-sN/-sX: window 1024, 2048, 3072 or 4096, no options or
//     MSS 1460 only, TTL <= 64 (IPv6: any hop limit: nmap sends 255).
//   - an OS stack: SACK permitted or timestamps on a SYN.
//
// Identify is a pure function of one packet's fields: no state, no
// allocation, safe on hostile input (the option walk is bounded by the
// bytes captured). The names are few and fixed (Tools), so they can label
// a metric.
//
// What it cannot tell: IPv6 has no IP ID, so masscan and ZMap over IPv6 are
// named by their other fields only (a masscan SYN over IPv6 looks like
// nmap's); a tool that copies another's template is named as that tool; a
// scanner that sends an OS's exact SYN is os-stack. The name is a hint for
// people, never evidence: it decides nothing about a block.
package scanner
