package vmproc

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// OpenTAP attaches to the existing TAP device name in the network namespace at netns
// ("" = the caller's) and returns its queue, to hand to a VMM as a file descriptor:
// a VMM that gets the descriptor needs neither root nor /dev/net/tun. The queue has
// IFF_VNET_HDR, as a VMM that opens the TAP itself sets it (QEMU, Firecracker), so
// the guest sees the same NIC features either way.
func OpenTAP(netns, name string) (*os.File, error) {
	var f *os.File
	open := func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("tap name %q: %w", name, err)
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			unix.Close(fd)
			return fmt.Errorf("attach to tap %s: %w", name, err)
		}
		f = os.NewFile(uintptr(fd), "tap:"+name)
		return nil
	}
	var err error
	if netns == "" {
		err = open()
	} else {
		err = InNetNS(netns, open)
	}
	if err != nil {
		return nil, err
	}
	return f, nil
}
