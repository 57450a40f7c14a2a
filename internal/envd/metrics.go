package envd

import (
	"bufio"
	"bytes"
	"math"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/envd/httpx"
	"golang.org/x/sys/unix"
)

// metricsHandler reports CPU use since the previous call (or over a short sample on the
// first one), like a `top` refresh.
type metricsHandler struct {
	mu         sync.Mutex
	busy, idle uint64
}

func newMetricsHandler() *metricsHandler { return &metricsHandler{} }

func (m *metricsHandler) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	out := envdapi.Metrics{Timestamp: time.Now().Unix(), CPUCount: runtime.NumCPU()}
	out.CPUUsedPct = m.cpuPercent()
	if mem, err := readMeminfo(); err == nil {
		out.MemTotal = mem["MemTotal"]
		out.MemUsed = mem["MemTotal"] - mem["MemAvailable"]
		out.MemCache = mem["Cached"] + mem["Buffers"]
		out.MemTotalMiB, out.MemUsedMiB = out.MemTotal>>20, out.MemUsed>>20
	}
	var fs unix.Statfs_t
	if err := unix.Statfs("/", &fs); err == nil {
		out.DiskTotal = fs.Blocks * uint64(fs.Bsize)
		out.DiskUsed = out.DiskTotal - fs.Bavail*uint64(fs.Bsize)
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (m *metricsHandler) cpuPercent() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	busy, idle, err := readCPUTimes()
	if err != nil {
		return 0
	}
	if m.busy == 0 && m.idle == 0 {
		m.busy, m.idle = busy, idle
		time.Sleep(100 * time.Millisecond)
		if busy, idle, err = readCPUTimes(); err != nil {
			return 0
		}
	}
	db, di := float64(busy-m.busy), float64(idle-m.idle)
	m.busy, m.idle = busy, idle
	if db+di <= 0 {
		return 0
	}
	return math.Round(db/(db+di)*10000) / 100
}

// readCPUTimes sums the aggregate line of /proc/stat into busy and idle jiffies.
func readCPUTimes() (busy, idle uint64, err error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := bytes.Cut(data, []byte("\n"))
	fields := strings.Fields(string(line))
	for i, f := range fields[1:] {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			continue
		}
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		} else if i < 8 { // user nice system irq softirq steal; guest time is already in user
			busy += n
		}
	}
	return busy, idle, nil
}

// readMeminfo returns /proc/meminfo in bytes.
func readMeminfo() (map[string]uint64, error) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) > 1 && fields[1] == "kB" {
			n *= 1024
		}
		out[key] = n
	}
	return out, sc.Err()
}
