package image

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// GuestParams are the kernel command-line parameters Wrenn's initramfs and wrenn-init read.
// The VMM driver appends KernelArgs() to its own arguments (console, tsc_early_khz, …).
type GuestParams struct {
	IP       netip.Prefix // guest address on eth0, e.g. 169.254.0.21/30; zero = no network
	Gateway  netip.Addr   // default route; zero = none
	Hostname string       // default "sandbox" (set by wrenn-init)
	DNS      []netip.Addr // nameservers for /etc/resolv.conf; none = no nameserver lines
	Debug    bool         // verbose initramfs output on the console
}

// KernelArgs renders the parameters as kernel command-line words. Values are validated so
// nothing unexpected can reach the guest's init scripts.
func (p GuestParams) KernelArgs() ([]string, error) {
	var args []string
	if p.IP.IsValid() {
		if !p.IP.Addr().Is4() {
			return nil, fmt.Errorf("guest IP %s: only IPv4 is configured by the initramfs", p.IP)
		}
		args = append(args, "wrenn.ip="+p.IP.String())
	}
	if p.Gateway.IsValid() {
		if !p.IP.IsValid() {
			return nil, fmt.Errorf("a gateway (%s) needs a guest IP", p.Gateway)
		}
		args = append(args, "wrenn.gw="+p.Gateway.String())
	}
	if p.Hostname != "" {
		if !regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`).MatchString(p.Hostname) {
			return nil, fmt.Errorf("invalid guest hostname %q", p.Hostname)
		}
		args = append(args, "wrenn.hostname="+p.Hostname)
	}
	if len(p.DNS) > 0 {
		ns := make([]string, 0, len(p.DNS))
		for _, a := range p.DNS {
			if !a.IsValid() {
				return nil, fmt.Errorf("invalid nameserver %v", a)
			}
			ns = append(ns, a.String())
		}
		args = append(args, "wrenn.dns="+strings.Join(ns, ","))
	}
	if p.Debug {
		args = append(args, "wrenn.debug=1")
	}
	return args, nil
}
