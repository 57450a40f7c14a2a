// Package metrics keeps one sandbox's sampled metrics in memory, at three resolutions:
// every sample (fine), 30 s (medium) and 5 min (coarse), each a fixed-size ring that
// never grows. A coarser point is the average of the samples of its interval, with
// their maximum kept for CPU and memory; an interval without samples (the sandbox was
// paused, or the sampler stopped) has no point at all, so a gap shows as a gap and
// never as made-up zeros. Nothing here knows where samples come from: the host agent
// feeds it, and the control plane can read the same types.
package metrics

import (
	"fmt"
	"time"
)

// Tier is one of a sandbox's rings. Its numbers are hostagent.v1.MetricTier's.
type Tier int8

const (
	Fine   Tier = 1 // every sample, 500 ms apart: the last 10 minutes
	Medium Tier = 2 // 30 s apart: the last 2 hours
	Coarse Tier = 3 // 5 min apart: the last 24 hours
)

// Tiers lists the tiers, finest first.
func Tiers() []Tier { return []Tier{Fine, Medium, Coarse} }

// Step is how far apart the tier's points are. For Fine it is the sampler's interval:
// the fine ring holds samples as they come, and its span assumes they come that often.
func (t Tier) Step() time.Duration {
	switch t {
	case Fine:
		return 500 * time.Millisecond
	case Medium:
		return 30 * time.Second
	case Coarse:
		return 5 * time.Minute
	}
	return 0
}

// Len is how many points the tier holds.
func (t Tier) Len() int {
	switch t {
	case Fine:
		return 1200
	case Medium:
		return 240
	case Coarse:
		return 288
	}
	return 0
}

// Span is how far back the tier reaches when full.
func (t Tier) Span() time.Duration { return time.Duration(t.Len()) * t.Step() }

func (t Tier) String() string {
	switch t {
	case Fine:
		return "fine"
	case Medium:
		return "medium"
	case Coarse:
		return "coarse"
	}
	return fmt.Sprintf("tier(%d)", int(t))
}

// For returns the finest tier whose span covers d (Coarse for anything longer than a
// fine or medium span, even past Coarse's own).
func For(d time.Duration) Tier {
	for _, t := range Tiers() {
		if d <= t.Span() {
			return t
		}
	}
	return Coarse
}

// Guest is the guest's own view of itself (envd's GET /metrics).
type Guest struct {
	CPUPct   float64
	CPUCount int
	MemUsed  int64
	MemTotal int64
	MemCache int64
	DiskUsed int64
	// DiskTotal is the size of the guest's root filesystem.
	DiskTotal int64
}

// Sample is one measurement of a sandbox.
type Sample struct {
	Time time.Time
	// CPUPct is the VM process's CPU time over the last interval as a percentage of
	// its vCPUs (0-100).
	CPUPct float64
	// MemBytes is the VM process's resident memory.
	MemBytes int64
	// DiskBytes is what the sandbox's own disk allocates on the host.
	DiskBytes int64
	// HasGuest: Guest holds an answer of the guest; false when it did not answer.
	HasGuest bool
	Guest    Guest
}

// Point is one point of a tier: a sample in Fine, or the summary of an interval's
// samples in a coarser tier. How each field is summarised:
//
//   - CPUPct, MemBytes: the average; CPUPctMax, MemBytesMax: the maximum.
//   - DiskBytes: the last sample's. A disk's allocation is a level that mostly grows,
//     and "how big is it now" is what a reader wants, not the interval's mean.
//   - Guest: over the samples that had a guest answer (HasGuest when any did): CPUPct,
//     MemUsed and MemCache averaged, the rest (CPU count, totals, disk used) the
//     last answer's, for the same reason as DiskBytes.
//
// Byte counts are kept in KiB (what /proc reports in) as 32-bit numbers to keep points
// small, so they read back as multiples of 1 KiB and saturate at 4 TiB.
type Point struct {
	// Time is the sample's time (Fine) or the start of the point's interval, a
	// multiple of the tier's step since the Unix epoch, so every sandbox's points line
	// up. Millisecond precision.
	Time        time.Time
	CPUPct      float64
	CPUPctMax   float64
	MemBytes    int64
	MemBytesMax int64
	DiskBytes   int64
	HasGuest    bool
	Guest       Guest
}

// Series is the points of one tier, oldest first.
type Series struct {
	Tier   Tier
	Step   time.Duration
	Points []Point
}
