// Package config is the portsentry-nft configuration: the YAML schema, its
// defaults (an embedded file that runs when no config exists), the named
// PortSentry port presets, and validation.
//
// It exists so that every other package receives a checked, fully defaulted
// Config and never parses YAML itself, and so that an admin's mistake is
// reported once, precisely: every error names the file, line, column and key
// (see Error), and an unknown key is rejected with the nearest valid name.
package config
