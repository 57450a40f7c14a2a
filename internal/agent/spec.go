package agent

import (
	"runtime"

	"github.com/wrennhq/wrenn/internal/ident"
)

// Spec is what a sandbox was created with.
type Spec struct {
	ID            string            `json:"id"`
	Template      string            `json:"template"`
	VCPUs         int               `json:"vcpus"`
	MemoryMiB     int               `json:"memory_mib"`
	DiskMiB       int               `json:"disk_mib"`
	EnvVars       map[string]string `json:"env_vars,omitempty"`
	TimeoutSec    int               `json:"timeout_sec"`
	AllowInternet bool              `json:"allow_internet"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	// Snapshot is the named snapshot the sandbox was restored from ("" = booted from
	// Template, or restored from its warm snapshot).
	Snapshot string `json:"snapshot,omitempty"`
	// AccessToken is the envd token the create installs ("" = a random one). Never
	// written in the spec: the record keeps the token sealed.
	AccessToken string `json:"-"`
}

// DefaultTemplate is the template of a create that names none.
const DefaultTemplate = "base"

// Limits bound a sandbox's size on this host.
type Limits struct {
	MaxVCPUs     int // default: the host's CPU count
	MaxMemoryMiB int // default: 64 GiB
	MaxDiskMiB   int // default: 1 TiB
}

func (l Limits) withDefaults() Limits {
	if l.MaxVCPUs == 0 {
		l.MaxVCPUs = runtime.NumCPU()
	}
	if l.MaxMemoryMiB == 0 {
		l.MaxMemoryMiB = 64 << 10
	}
	if l.MaxDiskMiB == 0 {
		l.MaxDiskMiB = 1 << 20
	}
	return l
}

// maxTimeoutSec is the longest idle timeout a sandbox may ask for (a week).
const maxTimeoutSec = 7 * 24 * 3600

// Validate checks a create request before anything is made and fills in defaults
// (template "base", 1 vCPU, 512 MiB).
func (l Limits) Validate(spec *Spec) error {
	if spec.ID != "" {
		if err := ident.CheckSandboxID(spec.ID); err != nil {
			return invalid("%v", err)
		}
	}
	if spec.Template == "" {
		spec.Template = DefaultTemplate
	}
	if err := ident.CheckTemplate(spec.Template); err != nil {
		return invalid("template: %v", err)
	}
	if spec.VCPUs == 0 {
		spec.VCPUs = 1
	}
	if spec.VCPUs < 1 || spec.VCPUs > l.MaxVCPUs {
		return invalid("vcpus %d out of range 1..%d", spec.VCPUs, l.MaxVCPUs)
	}
	if spec.MemoryMiB == 0 {
		spec.MemoryMiB = 512
	}
	if spec.MemoryMiB < 128 || spec.MemoryMiB > l.MaxMemoryMiB {
		return invalid("memory %d MiB out of range 128..%d", spec.MemoryMiB, l.MaxMemoryMiB)
	}
	if spec.DiskMiB < 0 || spec.DiskMiB > l.MaxDiskMiB {
		return invalid("disk %d MiB out of range 0..%d", spec.DiskMiB, l.MaxDiskMiB)
	}
	if spec.TimeoutSec < 0 || spec.TimeoutSec > maxTimeoutSec {
		return invalid("timeout %d s out of range 0..%d", spec.TimeoutSec, maxTimeoutSec)
	}
	if err := ident.CheckEnvVars(spec.EnvVars); err != nil {
		return invalid("%v", err)
	}
	return nil
}
