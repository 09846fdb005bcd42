package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/portsentry-nft/portsentry-nft/internal/legacy"
)

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

// importFlags holds the flag values of portsentry-nft import.
type importFlags struct {
	ignore, defaults, out string
	modes                 stringsFlag
	dialect               legacy.Dialect
}

// newImportFlags declares the flags of import, with its help text, apart
// from cmdImport so that the command reads as parse, resolve, import, write.
func newImportFlags(stderr io.Writer) (*flag.FlagSet, *importFlags) {
	fs := newFlags("import", "[--ignore FILE] [--mode MODE | --defaults FILE] [--dialect D] [-o OUT] portsentry.conf",
		`Converts a PortSentry configuration (1.2 as Debian ships it, the 2.0 beta, or the
revived 2.x) to portsentry-nft's YAML, written to stdout or OUT. Each translated key
carries a comment quoting its original line; what does not translate is a warning on
stderr (file:line: warning: ...). Errors (file:line: error: ...) exit 1 and write
nothing. "-" reads the conf from stdin.

PortSentry 1.2 ran one process per protocol with a mode flag: say which with --mode
(tcp, stcp, atcp, udp, sudp, audp; repeat it or separate with commas, e.g.
--mode atcp,sudp; a protocol left out is not monitored), or let --defaults read
TCP_MODE/UDP_MODE from Debian's /etc/default/portsentry. Without either, -tcp and
-udp are assumed.`, stderr)
	f := &importFlags{dialect: legacy.DialectAuto}
	fs.StringVar(&f.ignore, "ignore", "", "read this ignore `file` instead of the conf's IGNORE_FILE")
	fs.Var(&f.modes, "mode", "PortSentry 1.2 `mode`(s): tcp, stcp, atcp, udp, sudp, audp (repeatable, comma-separated)")
	fs.StringVar(&f.defaults, "defaults", "", "read the modes from a Debian /etc/default/portsentry `file`")
	fs.Var(&f.dialect, "dialect", "conf `dialect`: auto, 1.2, 2.0-beta or 2.x (default auto: detected from the keys)")
	fs.StringVar(&f.out, "o", "", "write the YAML to `file` instead of stdout")
	fs.StringVar(&f.out, "output", "", "write the YAML to `file` (same as -o)")
	return fs, f
}

// cmdImport converts a PortSentry conf: flags, then the modes (--defaults,
// --mode), then the conf itself, then the YAML to stdout or -o.
func cmdImport(args []string, stdout, stderr io.Writer) int {
	fs, f := newImportFlags(stderr)
	confPath, code, ok := importArg(fs, args, stderr)
	if !ok {
		return code
	}
	opts, diags, code, ok := f.options(stderr)
	if !ok {
		return code
	}
	data, confPath, err := readConf(confPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", confPath, trimPath(err))
		return 1
	}
	conf, err := legacy.Parse(confPath, data, f.dialect)
	if err != nil {
		return failImport(stderr, diags, err)
	}
	res, err := legacy.Import(conf, opts)
	if err != nil {
		return failImport(stderr, diags, err)
	}
	printDiags(stderr, append(diags, res.Warnings...))
	return writeImport(stdout, stderr, f.out, confPath, res.YAML)
}

// importArg parses args, where flags may come before or after the conf
// file, and returns the one conf path; when it returns false the command
// stops with the exit code given (help, bad flags, not one conf).
func importArg(fs *flag.FlagSet, args []string, stderr io.Writer) (string, int, bool) {
	pos, code, ok := parseArgs(fs, args)
	if !ok {
		return "", code, false
	}
	if len(pos) != 1 {
		fmt.Fprintf(stderr, "portsentry-nft import: want exactly one portsentry.conf, got %d\n\n", len(pos))
		fs.Usage()
		return "", 2, false
	}
	return pos[0], 0, true
}

// options turns the flags into legacy.Options: the 1.2 modes come from
// --mode, else from --defaults. The warnings found on the way come back to
// be printed with the import's; when it returns false the command stops
// with the exit code given, the message already written.
func (f *importFlags) options(stderr io.Writer) (legacy.Options, legacy.Diags, int, bool) {
	opts := legacy.Options{IgnoreFile: f.ignore}
	var diags legacy.Diags
	if f.defaults != "" {
		m, ds, ok := readDefaults(f.defaults, stderr)
		diags = append(diags, ds...)
		if !ok {
			return opts, diags, 1, false
		}
		if len(f.modes) == 0 {
			opts.Modes, opts.ModesFrom = &m, f.defaults
		} else {
			diags = append(diags, legacy.Diag{File: f.defaults, Severity: legacy.Warning,
				Msg: fmt.Sprintf("--mode %s overrides TCP_MODE/UDP_MODE of this file (%s)", f.modes.String(), m)})
		}
	}
	if len(f.modes) > 0 {
		m, err := legacy.ParseModes(f.modes)
		if err != nil {
			fmt.Fprintf(stderr, "portsentry-nft import: --mode: %v\n", err)
			return opts, diags, 2, false
		}
		opts.Modes, opts.ModesFrom = &m, "--mode "+f.modes.String()
	}
	return opts, diags, 0, true
}

// readDefaults reads the modes from a Debian /etc/default/portsentry. Its
// errors are written to stderr here, since only this file names them; its
// warnings are returned, to be printed in order with the import's.
func readDefaults(name string, stderr io.Writer) (legacy.Modes, legacy.Diags, bool) {
	data, err := readLimited(name)
	if err != nil {
		fmt.Fprintf(stderr, "%s: error: %v\n", name, trimPath(err))
		return legacy.Modes{}, nil, false
	}
	m, ds, err := legacy.ParseDefaults(name, data)
	if err != nil {
		var es legacy.Diags
		if errors.As(err, &es) {
			printDiags(stderr, es)
		} else {
			fmt.Fprintf(stderr, "%s: error: %v\n", name, err)
		}
		return m, ds, false
	}
	return m, ds, true
}

// readConf reads the conf to import, "-" meaning stdin; it returns the
// name to use in messages and in the YAML header.
func readConf(path string) ([]byte, string, error) {
	if path == "-" {
		data, err := readAllLimited(os.Stdin)
		return data, "<stdin>", err
	}
	data, err := readLimited(path)
	return data, path, err
}

// writeImport writes the YAML to stdout ("" or "-") or atomically to the
// file out, and returns the exit code.
func writeImport(stdout, stderr io.Writer, out, confPath string, data []byte) int {
	if out == "" || out == "-" {
		if _, err := stdout.Write(data); err != nil {
			fmt.Fprintf(stderr, "portsentry-nft import: %v\n", err)
			return 1
		}
		return 0
	}
	if err := writeFileAtomic(out, confPath, data); err != nil {
		fmt.Fprintf(stderr, "portsentry-nft import: %v\n", err)
		return 1
	}
	return 0
}

func failImport(stderr io.Writer, diags legacy.Diags, err error) int {
	var es legacy.Diags
	if errors.As(err, &es) {
		printDiags(stderr, append(diags, es...))
	} else {
		printDiags(stderr, diags)
		fmt.Fprintf(stderr, "portsentry-nft import: %v\n", err)
	}
	return 1
}

func printDiags(w io.Writer, ds legacy.Diags) {
	for _, d := range ds {
		fmt.Fprintln(w, d)
	}
}

const maxImportInput = 16 << 20

// readLimited reads a file named on the command line (a pipe such as
// <(ssh host cat /etc/portsentry/portsentry.conf) is fine), up to 16 MiB.
func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAllLimited(f)
}

func readAllLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxImportInput+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxImportInput {
		return nil, fmt.Errorf("larger than %d MiB: not a PortSentry file", maxImportInput>>20)
	}
	return data, nil
}

// trimPath keeps "open: no such file or directory" from naming the path twice.
func trimPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so a failed import never leaves a half-written file; it
// refuses to overwrite the conf being imported.
func writeFileAtomic(path, input string, data []byte) error {
	if a, err := os.Stat(path); err == nil {
		if b, err := os.Stat(input); err == nil && os.SameFile(a, b) {
			return fmt.Errorf("-o %s would overwrite the conf being imported", path)
		}
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
