// Package follow holds the ledger's followers: each carries a block the
// ledger recorded (or lifted) into one medium of its own, behind the one
// interface ledger.Follower, so that adding a medium is a new type here
// and one line of wiring in the daemon, and the ledger itself knows none
// of them.
//
//   - HostsDeny: TCP wrappers' hosts.deny line, kept in the record so the
//     lift removes exactly it.
//   - Lines: PortSentry's attackalert lines ("has been blocked",
//     "unblocked", "evicted", ...).
//   - Commands: the external commands (KILL_RUN_CMD), bounded in number,
//     each on a goroutine of its own; also the ledger's ledger.Commands
//     (the commands marked first, and the response "command").
//
// The fleet's follower is internal/fleetlink's.
package follow
