// Package control is the daemon's local admin interface: a Unix socket
// (root only) that answers status and list, and takes block and unblock.
// One JSON request per connection, one JSON response: simple to script
// with the CLI's --json, and nothing to keep in sync between versions but
// these types.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// DefaultSocket is where the daemon listens (README, "Names fixed for
// users").
const DefaultSocket = "/run/portsentry-nft/control.sock"

// Request is what the CLI sends.
type Request struct {
	Cmd string `json:"cmd"` // status, list, block, unblock
	// Addrs are the addresses of block and unblock (Addr: one, as older
	// clients send it).
	Addrs   []string `json:"addrs,omitempty"`
	Addr    string   `json:"addr,omitempty"`
	All     bool     `json:"all,omitempty"`     // unblock: every block
	Timeout string   `json:"timeout,omitempty"` // block; "" means block.timeout
	// Stream asks list to stream its blocks (see ListItem) rather than
	// answer with all of them in one Response: a million blocks are then
	// never all in memory, neither in the daemon nor the CLI.
	Stream bool `json:"stream,omitempty"`
}

// addrs is every address of the request.
func (r Request) addrs() []string {
	if r.Addr != "" {
		return append([]string{r.Addr}, r.Addrs...)
	}
	return r.Addrs
}

// Response is what the daemon answers.
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Count is how many addresses block blocked or unblock lifted.
	Count int `json:"count"`
	// NotDurable: block or unblock was carried out (the kernel enforces
	// it now) but is not on disk, so a restart or a reboot before the
	// daemon rewrites its journal undoes it; Warning says so and why. OK
	// is true; the CLI warns and exits 1.
	NotDurable bool    `json:"not_durable,omitempty"`
	Warning    string  `json:"warning,omitempty"`
	Status     *Status `json:"status,omitempty"`
	Blocks     []Block `json:"blocks,omitempty"`
	// Stream: ListItem lines follow (list, asked with Request.Stream;
	// a daemon older than it answers with Blocks).
	Stream bool `json:"stream,omitempty"`
}

// ListItem is one line of a streamed list after its Response: a block,
// or the end with the count of blocks, or the error that cut it short.
type ListItem struct {
	Block *Block `json:"block,omitempty"`
	End   bool   `json:"end,omitempty"`
	Count int    `json:"count,omitempty"`
	Error string `json:"error,omitempty"`
}

// Status is the daemon's state and counters.
type Status struct {
	Version     string            `json:"version"`
	PID         int               `json:"pid"`
	StartedAt   time.Time         `json:"started_at"`
	Uptime      string            `json:"uptime"`
	ConfigFile  string            `json:"config_file"`
	CaptureMode string            `json:"capture_mode"`
	NFLOGGroup  int               `json:"nflog_group"`
	Counters    map[string]uint64 `json:"counters"`
	Probes      map[string]uint64 `json:"probes_by_scan_type"`
	Tools       map[string]uint64 `json:"probes_by_tool"`
	SetSizes    map[string]int    `json:"set_sizes"`
	SetCap      int               `json:"set_size_cap"`
	Protected   map[string]string `json:"protected"`
}

// Block is one blocked address as list shows it.
type Block struct {
	Addr             string    `json:"addr"`
	Set              string    `json:"set"`
	Remaining        string    `json:"remaining"`
	RemainingSeconds float64   `json:"remaining_seconds"`
	Timeout          string    `json:"timeout,omitempty"`
	ScanType         string    `json:"scan_type,omitempty"`
	Proto            string    `json:"proto,omitempty"`
	Ports            []uint16  `json:"ports,omitempty"`
	FirstSeen        time.Time `json:"first_seen,omitzero"`
	LastSeen         time.Time `json:"last_seen,omitzero"`
	TimesBlocked     int       `json:"times_blocked,omitempty"`
	Host             string    `json:"host,omitempty"`
	// Origin is who decided the block: detect, manual, ...
	Origin string `json:"origin,omitempty"`
	// Tool is the scanner that sent the probe (nmap-syn, masscan, ...,
	// unknown); absent when no probe is known.
	Tool string `json:"tool,omitempty"`
}

// ErrNotDurable is what a Handler's Block or Unblock wrap (errors.Is)
// when they were carried out but are not on disk: the answer is then OK,
// with NotDurable and the error as its Warning.
var ErrNotDurable = errors.New("in force now, but not on disk: a restart or a reboot before the daemon can rewrite its journal undoes it")

// Handler is what the daemon provides to the socket.
type Handler interface {
	Status() Status
	// List calls each with every blocked address, in no order when there
	// are many, and stops at the first error each returns.
	List(ctx context.Context, each func(Block) error) error
	// Block blocks every address, or none (the error says which address
	// was refused and why); it returns how many. An error wrapping
	// ErrNotDurable: blocked, but not on disk.
	Block(ctx context.Context, addrs []string, timeout string) (int, error)
	// Unblock lifts the blocks of addrs, or of every block when all is
	// set; it returns how many blocks it lifted. An error wrapping
	// ErrNotDurable: lifted, but not on disk.
	Unblock(ctx context.Context, addrs []string, all bool) (int, error)
}

// Listen creates the socket (its directory 0700, the socket 0600, a stale
// socket from a crashed run replaced).
func Listen(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another daemon is listening", path)
	}
	os.Remove(path)
	old := syscall.Umask(0o177)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	// Close must not unlink by name: a successor may own the path by then
	// (see Remove).
	l.SetUnlinkOnClose(false)
	return l, nil
}

// Bound is the socket file as Listen made it.
type Bound struct {
	Path string
	file os.FileInfo
}

// Bind records the socket file at path just after Listen.
func Bind(path string) Bound {
	fi, _ := os.Stat(path)
	return Bound{Path: path, file: fi}
}

// Remove removes the socket file if it is still the one bound: a daemon
// that stops late must not take away its successor's socket.
func (b Bound) Remove() {
	cur, err := os.Stat(b.Path)
	// The inode of a removed file is soon reused (tmpfs): the time of
	// creation, to the nanosecond, tells the two apart.
	if err == nil && b.file != nil && os.SameFile(cur, b.file) && cur.ModTime().Equal(b.file.ModTime()) {
		os.Remove(b.Path)
	}
}

func peerUID(c *net.UnixConn) (uint32, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *syscall.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return cred.Uid, nil
}

// ErrNotRunning means nothing listens on the socket.
var ErrNotRunning = errors.New("the daemon is not running")

// CallList asks the daemon at path for its blocks, streamed, and calls
// each with every one as it is read.
func CallList(ctx context.Context, path string, each func(Block) error) error {
	c, resp, dec, err := dial(ctx, path, Request{Cmd: "list", Stream: true})
	if err != nil {
		return err
	}
	defer c.Close()
	if !resp.Stream {
		// A daemon older than streaming.
		for _, b := range resp.Blocks {
			if err := each(b); err != nil {
				return err
			}
		}
		return nil
	}
	for n := 0; ; n++ {
		var it ListItem
		if err := dec.Decode(&it); err != nil {
			return fmt.Errorf("read from %s after %d blocks: %w", path, n, err)
		}
		switch {
		case it.Error != "":
			return errors.New(it.Error)
		case it.End:
			if it.Count != n {
				return fmt.Errorf("read %d blocks from %s, the daemon sent %d", n, path, it.Count)
			}
			return nil
		case it.Block == nil:
			return fmt.Errorf("read from %s: a line of the list without a block", path)
		}
		if err := each(*it.Block); err != nil {
			return err
		}
	}
}

// Call sends one request to the daemon at path and returns its answer.
func Call(ctx context.Context, path string, req Request) (*Response, error) {
	c, resp, _, err := dial(ctx, path, req)
	if c != nil {
		c.Close()
	}
	return resp, err
}

// dial sends req and reads the Response; the connection stays open for
// what follows it (a streamed list) when err is nil.
func dial(ctx context.Context, path string, req Request) (net.Conn, *Response, *json.Decoder, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, nil, fmt.Errorf("%w (no one listens on %s; start it with: systemctl start portsentry-nft)", ErrNotRunning, path)
		}
		return nil, nil, nil, fmt.Errorf("connect to %s: %w", path, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	sendErr := json.NewEncoder(c).Encode(req)
	// A daemon that refuses at once (busy) answers and closes before the
	// request is sent: its answer is still there to read.
	var resp Response
	dec := json.NewDecoder(c)
	if err := dec.Decode(&resp); err != nil {
		c.Close()
		if sendErr != nil {
			return nil, nil, nil, fmt.Errorf("send to %s: %w", path, sendErr)
		}
		return nil, nil, nil, fmt.Errorf("read from %s: %w", path, err)
	}
	if !resp.OK {
		c.Close()
		return nil, &resp, nil, errors.New(resp.Error)
	}
	return c, &resp, dec, nil
}
