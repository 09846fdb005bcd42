// Package legacy turns a PortSentry configuration (portsentry.conf and the
// ignore file it names) into portsentry-nft's YAML, and says key by key what
// changed on the way.
//
// It exists because admins arrive with years-old PortSentry configs in one
// of three dialects that look alike but do not behave alike:
//
//   - Psionic PortSentry 1.2, as Debian still ships it: the first of two
//     duplicate keys wins, unknown keys are ignored, the mode (-tcp, -stcp,
//     -atcp, -udp, -sudp, -audp) is a command-line flag.
//   - The Psionic PortSentry 2.0 beta: INTERFACE and INTERFACE_ADDRESS, TCP and
//     UDP watched together without modes; the later of two duplicate keys is
//     the one in force.
//   - The revived PortSentry 2.x (2023 on): port ranges such as 1-1813, and
//     any unknown key is fatal; the last duplicate wins.
//
// Parse reads a conf file into a Conf, detecting the dialect from the keys
// present unless one is forced, and reports malformed lines with file:line.
// Import maps a Conf onto the config schema and returns YAML built from
// yaml.v3 nodes, so it is always well-formed and stable: every translated key
// carries a comment quoting the original line, and what cannot be translated
// becomes a warning saying why. Import checks its own output with
// config.Parse, the validation "portsentry-nft check" runs.
//
// docs/migrating.md ("Migrating from PortSentry") holds the key-by-key
// migration table.
package legacy
