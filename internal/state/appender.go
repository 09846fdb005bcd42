package state

import (
	"fmt"
	"os"
	"time"
)

// appender appends lines to one of PortSentry's text files (history,
// blocked), kept open: opening it for every line cost a 10,000-address
// "block --file" two opens per block, 40% of its time. A file moved or
// removed (logrotate) is noticed within reopenCheck and opened anew (let go
// of at once if nothing is written: Store.Expire runs every second); one
// truncated in place (copytruncate) needs nothing, as writes append.
type appender struct {
	path    string
	f       *os.File
	info    os.FileInfo
	checked time.Time
}

const reopenCheck = time.Second

func (a *appender) append(line string, now time.Time) error {
	a.letGo(now)
	if a.f == nil {
		f, err := os.OpenFile(a.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return fmt.Errorf("append to %s: %w", a.path, err)
		}
		info, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("append to %s: %w", a.path, err)
		}
		a.f, a.info, a.checked = f, info, now
	}
	if _, err := a.f.WriteString(line + "\n"); err != nil {
		a.close() // opened anew next time
		return fmt.Errorf("append to %s: %w", a.path, err)
	}
	return nil
}

// letGo closes the file if it was moved or removed (checked at most once
// per reopenCheck): a rotation on a quiet host must not hold the old
// file's space until the next block.
func (a *appender) letGo(now time.Time) {
	if a.f == nil || now.Sub(a.checked) < reopenCheck {
		return
	}
	a.checked = now
	if cur, err := os.Stat(a.path); err != nil || !os.SameFile(cur, a.info) {
		a.close()
	}
}

func (a *appender) close() {
	if a.f != nil {
		a.f.Close()
		a.f = nil
	}
}
