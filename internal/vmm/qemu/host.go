package qemu

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// hostTSCKHz returns the host's TSC rate in kHz, or 0 when it cannot be found.
//
// Why: under TCG the guest's TSC ticks at the host's rate, and the guest kernel's PIT
// fast calibration fails at random on QEMU microvm (boots hang); tsc_early_khz skips the
// calibration. A wrong value is worse than none, so we only return rates from sources
// that mean "TSC frequency", best first:
//  1. /sys/devices/system/cpu/cpu0/tsc_freq_khz (exists on some kernels, exact);
//  2. the kernel log's own calibration ("tsc: Refined TSC clocksource calibration" or
//     "tsc: Detected N MHz processor"), readable by root;
//  3. /proc/cpuinfo "cpu MHz" when the host has no cpufreq driver (then it is the
//     calibrated TSC rate, not a momentary core clock);
//  4. the nominal "@ N.NNGHz" of an Intel model name (Intel's TSC runs at base clock).
func hostTSCKHz() int64 {
	if runtime.GOARCH != "amd64" {
		return 0
	}
	if b, err := os.ReadFile("/sys/devices/system/cpu/cpu0/tsc_freq_khz"); err == nil {
		if v, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && plausibleKHz(v) {
			return v
		}
	}
	if v := tscFromKernelLog(readKernelLog()); v > 0 {
		return v
	}
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	_, cpufreqErr := os.Stat("/sys/devices/system/cpu/cpu0/cpufreq")
	return tscFromCPUInfo(f, cpufreqErr != nil)
}

func plausibleKHz(v int64) bool { return v >= 100_000 && v <= 10_000_000 }

// readKernelLog returns the kernel ring buffer (as dmesg would), or nil.
func readKernelLog() []byte {
	const sizeBuffer, readAll = 10, 3 // SYSLOG_ACTION_SIZE_BUFFER, SYSLOG_ACTION_READ_ALL
	size, err := unix.Klogctl(sizeBuffer, nil)
	if err != nil || size <= 0 {
		return nil
	}
	if size > 16<<20 {
		size = 16 << 20
	}
	buf := make([]byte, size)
	n, err := unix.Klogctl(readAll, buf)
	if err != nil || n <= 0 {
		return nil
	}
	return buf[:n]
}

var (
	refinedTSC  = regexp.MustCompile(`tsc: Refined TSC clocksource calibration: ([0-9]+(?:\.[0-9]+)?) MHz`)
	detectedTSC = regexp.MustCompile(`tsc: Detected ([0-9]+(?:\.[0-9]+)?) MHz processor`)
	nominalGHz  = regexp.MustCompile(`@ ([0-9]+(?:\.[0-9]+)?)GHz`)
)

func tscFromKernelLog(log []byte) int64 {
	for _, re := range []*regexp.Regexp{refinedTSC, detectedTSC} {
		if m := re.FindAllSubmatch(log, -1); len(m) > 0 {
			if v := mhzToKHz(string(m[len(m)-1][1])); v > 0 {
				return v
			}
		}
	}
	return 0
}

// tscFromCPUInfo parses /proc/cpuinfo. cpuMHzIsTSC says the host has no cpufreq
// driver, so "cpu MHz" is the kernel's calibrated cpu_khz (equal to the TSC rate).
func tscFromCPUInfo(r io.Reader, cpuMHzIsTSC bool) int64 {
	var mhz, model string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		key := strings.TrimSpace(string(k))
		switch {
		case key == "cpu MHz" && mhz == "":
			mhz = strings.TrimSpace(string(v))
		case key == "model name" && model == "":
			model = strings.TrimSpace(string(v))
		}
	}
	if cpuMHzIsTSC && mhz != "" {
		return mhzToKHz(mhz)
	}
	if m := nominalGHz.FindStringSubmatch(model); m != nil && strings.Contains(model, "Intel") {
		if ghz, err := strconv.ParseFloat(m[1], 64); err == nil {
			if v := int64(ghz * 1_000_000); plausibleKHz(v) {
				return v
			}
		}
	}
	return 0
}

func mhzToKHz(s string) int64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0
	}
	v := int64(f*1000 + 0.5)
	if !plausibleKHz(v) {
		return 0
	}
	return v
}
