package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/wrennhq/wrenn/internal/netslot"
)

// DirectSlots creates each slot on demand (no pool): the first index from First on
// whose namespace does not exist.
type DirectSlots struct {
	Config netslot.Config
	First  int

	mu sync.Mutex // serialises index choice within this process
}

func (d *DirectSlots) Get(_ context.Context, _ bool) (*netslot.Slot, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := max(d.First, 1); i <= netslot.MaxIndex; i++ {
		a, err := d.Config.Addrs(i)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat("/var/run/netns/" + a.NetNS); err == nil {
			continue
		}
		s, err := d.Config.Create(i)
		if err == nil {
			return s, nil
		}
		if _, statErr := os.Stat("/var/run/netns/" + a.NetNS); statErr == nil {
			continue // taken by another process meanwhile
		}
		return nil, fmt.Errorf("network slot %d: %w", i, err)
	}
	return nil, errors.New("no free network slot")
}

func (d *DirectSlots) Release(s *netslot.Slot) error { return s.Destroy() }

func (d *DirectSlots) Adopt(index int, _ bool) (*netslot.Slot, error) {
	a, err := d.Config.Addrs(index)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat("/var/run/netns/" + a.NetNS); err != nil {
		return nil, fmt.Errorf("slot %d: %w", index, err)
	}
	return &netslot.Slot{Addrs: a}, nil
}
