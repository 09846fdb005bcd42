package control

import (
	"container/list"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// pool is the connections being served. Those that have not sent a whole
// request yet wait in line, oldest first; when the pool is full a new
// connection takes the place of the oldest waiting one that has nothing
// unread (its request not sent, or what it sent already read), whose read
// is cut short. So connections held open and silent delay nobody: the
// admin's request, sent as soon as it connects, waits unread in its socket
// until its goroutine runs, and that keeps its place however many
// connections arrive meanwhile; a request read whole just as its place
// was given away is answered still. Only when every place is taken by a
// request being answered is a new connection refused (busy).
type pool struct {
	mu      sync.Mutex
	max     int
	held    int        // places taken, by waiting and answering connections
	waiting *list.List // of *member, oldest at the front
}

// member is one connection in the pool.
type member struct {
	c      net.Conn
	el     *list.Element // its place in line while it waits, else nil
	placed bool          // it holds a place (false: given to a newer one)
}

func newPool(max int) *pool {
	return &pool{max: max, waiting: list.New()}
}

// admit gives c a place, taken from a waiting connection if the pool is
// full; false means every place is taken by a request being answered.
func (p *pool) admit(c net.Conn) (*member, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.held >= p.max {
		el := p.victim()
		if el == nil {
			return nil, false
		}
		old := p.waiting.Remove(el).(*member)
		old.el, old.placed = nil, false
		old.c.SetReadDeadline(time.Unix(1, 0)) // its reader gives up now
		p.held--
	}
	p.held++
	m := &member{c: c, placed: true}
	m.el = p.waiting.PushBack(m)
	return m, true
}

// victim is the oldest waiting connection with nothing unread, else the
// oldest waiting one, else nil.
func (p *pool) victim() *list.Element {
	for el := p.waiting.Front(); el != nil; el = el.Next() {
		if unread(el.Value.(*member).c) == 0 {
			return el
		}
	}
	return p.waiting.Front()
}

// unread is how many bytes c's socket holds that were not read yet (0 if
// that cannot be told).
func unread(c net.Conn) int {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0
	}
	n := 0
	rc.Control(func(fd uintptr) {
		n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	})
	return n
}

// answering takes m out of the line once its whole request is read; if
// its place was given away meanwhile it takes one again (the pool may then
// hold one more than max, for as long as that answer takes).
func (p *pool) answering(m *member) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.el != nil {
		p.waiting.Remove(m.el)
		m.el = nil
	}
	if !m.placed {
		m.placed = true
		p.held++
	}
}

// leave closes m and frees its place (if it still has one).
func (p *pool) leave(m *member) {
	m.c.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.el != nil {
		p.waiting.Remove(m.el)
		m.el = nil
	}
	if m.placed {
		m.placed = false
		p.held--
	}
}
