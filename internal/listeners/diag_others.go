//go:build !linux

package listeners

import (
	"errors"
	"os"
)

// Dump needs Linux sock_diag.
func Dump(netns *os.File) ([]Socket, error) { return nil, errors.ErrUnsupported }

type dumper struct{}

func dial(netns *os.File) (*dumper, error) { return nil, errors.ErrUnsupported }
func (d *dumper) close() error             { return nil }
func (d *dumper) dump() ([]Socket, error)  { return nil, errors.ErrUnsupported }
