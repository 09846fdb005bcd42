// Package config is the portsentry-nft configuration: the YAML schema, its
// defaults (an embedded file that runs when no config exists), the named
// PortSentry port presets, and validation.
//
// It exists so that every other package receives a checked, fully defaulted
// Config and never parses YAML itself, and so that an admin's mistake is
// reported once, precisely: every error names the file, line, column and key
// (see Error), and an unknown key is rejected with the nearest valid name.
//
// Parse (which Load calls with the file's contents) runs five steps:
// decoding over the embedded defaults (load.go), reading the files the
// configuration names (the ignore files, readIgnoreFiles in load.go, and
// fleet.password_file and crowdsec.lapi.password_file, readPasswordFile
// in secrets.go, and
// crowdsec.api_keys_file, readKeysFile in crowdsec.go: the only file
// reading besides Load's own), validation, one check per section that
// reports and changes nothing (validate.go, validate_block.go,
// validate_daemon.go, fleet.go), once the configuration is valid,
// derivation of the fields without a yaml tag and of the defaults that
// depend on other settings (derive.go), and last the warnings about the
// fleet's and the bouncers' secrets (secretWarnings in secrets.go: a file
// holding one that others may read, a password or key sent in clear),
// which stat the files that hold them.
//
// A secret (Secret: the fleet's password, a bouncer's API key, the CrowdSec
// machine's password) prints as
// "[redacted]" with any fmt verb and in JSON, so a configuration logged
// whole shows none.
package config
