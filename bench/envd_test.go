package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"connectrpc.com/connect"
	pb "github.com/wrennhq/wrenn/gen/envd/process"
	"github.com/wrennhq/wrenn/gen/envd/process/processconnect"
	"github.com/wrennhq/wrenn/internal/envd/envdtest"
	"github.com/wrennhq/wrenn/internal/envd/jsoncodec"
)

// The SDKs call envd over HTTP/1.1 with the JSON codec and without asking for gzip;
// so do these benchmarks (with Wrenn's JSON codec, so the client's decoding is not what
// is measured).
func startEnvd(b *testing.B) (*envdtest.Envd, processconnect.ProcessClient) {
	e := envdtest.Start(b)
	e.Init(b, `{"defaultUser":"user","defaultWorkdir":"/home/user"}`)
	opts := append(jsoncodec.ClientOptions(), connect.WithAcceptCompression("gzip", nil, nil))
	return e, processconnect.NewProcessClient(e.HTTP, e.URL, opts...)
}

func runToEnd(b *testing.B, c processconnect.ProcessClient, cfg *pb.ProcessConfig) int {
	stream, err := c.Start(context.Background(), connect.NewRequest(&pb.StartRequest{Process: cfg, Stdin: new(bool)}))
	if err != nil {
		b.Fatal(err)
	}
	defer stream.Close()
	n := 0
	var end *pb.ProcessEvent_EndEvent
	for stream.Receive() {
		ev := stream.Msg().GetEvent()
		n += len(ev.GetData().GetStdout())
		if ev.GetEnd() != nil {
			end = ev.GetEnd()
		}
	}
	if stream.Err() != nil || end == nil || end.GetExitCode() != 0 {
		b.Fatalf("run %s: err %v end %v", cfg.GetCmd(), stream.Err(), end)
	}
	return n
}

// latencies times f n times and returns the p50 and p99.
func latencies(n int, f func()) (p50, p99 time.Duration) {
	d := make([]time.Duration, n)
	for i := range d {
		start := time.Now()
		f()
		d[i] = time.Since(start)
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[n/2], d[n*99/100]
}

func reportLatency(b *testing.B, name string, p50, p99, base time.Duration) {
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(p50)/float64(base), "x-baseline")
	b.Logf("%s: p50 %v p99 %v; baseline (fork+exec+wait in-process) p50 %v; ratio %.1fx", name, p50, p99, base, float64(p50)/float64(base))
}

// BenchmarkExecRoundTrip measures Start → start event → end event through envd,
// against fork/exec/wait of the same command in the benchmark process itself.
func BenchmarkExecRoundTrip(b *testing.B) {
	_, c := startEnvd(b)
	for _, tc := range []struct {
		name string
		cfg  *pb.ProcessConfig
		argv []string
	}{
		{"true", &pb.ProcessConfig{Cmd: "/bin/true"}, []string{"/bin/true"}},
		{"bash-l-c-true", &pb.ProcessConfig{Cmd: "/bin/bash", Args: []string{"-l", "-c", "true"}}, []string{"/bin/bash", "-l", "-c", "true"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			home := b.TempDir() // the namespace's homes are empty too: no profile scripts
			base, _ := latencies(200, func() {
				cmd := exec.Command(tc.argv[0], tc.argv[1:]...)
				cmd.Env = []string{"HOME=" + home, "PATH=/usr/local/bin:/usr/bin:/bin"}
				if err := cmd.Run(); err != nil {
					b.Fatal(err)
				}
			})
			n := max(b.N, 200)
			b.ResetTimer()
			p50, p99 := latencies(n, func() { runToEnd(b, c, tc.cfg) })
			reportLatency(b, tc.name, p50, p99, base)
		})
	}
}

// BenchmarkStdoutThroughput streams 256 MiB of stdout through envd, against reading the
// same command's stdout from a pipe directly.
func BenchmarkStdoutThroughput(b *testing.B) {
	_, c := startEnvd(b)
	const size = 256 << 20
	script := "head -c " + strconv.Itoa(size) + " /dev/zero"
	base := timeIt(func() {
		cmd := exec.Command("/bin/sh", "-c", script)
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, out)
		_ = cmd.Wait()
		if n != size {
			b.Fatalf("baseline read %d bytes", n)
		}
	})
	b.SetBytes(size)
	b.ResetTimer()
	var total time.Duration
	for range b.N {
		total += timeIt(func() {
			if n := runToEnd(b, c, &pb.ProcessConfig{Cmd: "/bin/sh", Args: []string{"-c", script}}); n != size {
				b.Fatalf("got %d bytes", n)
			}
		})
	}
	reportThroughput(b, "stdout", size, total/time.Duration(b.N), base)
}

func timeIt(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

func reportThroughput(b *testing.B, name string, size int, per, base time.Duration) {
	mbps := float64(size) / per.Seconds() / 1e6
	baseMBps := float64(size) / base.Seconds() / 1e6
	b.ReportMetric(mbps, "MB/s")
	b.ReportMetric(mbps/baseMBps, "x-baseline")
	b.Logf("%s: %.0f MB/s; baseline %.0f MB/s; ratio %.2f", name, mbps, baseMBps, mbps/baseMBps)
}

// BenchmarkFiles uploads and downloads 256 MiB through /files (octet-stream, as the SDK
// streams), against writing and reading the same bytes to the same disk directly.
func BenchmarkFiles(b *testing.B) {
	e, _ := startEnvd(b)
	const size = 256 << 20
	payload := bytes.Repeat([]byte("wrenn-benchmark-"), size/16)
	dir := b.TempDir()
	baseUp := timeIt(func() {
		if err := os.WriteFile(filepath.Join(dir, "f"), payload, 0o644); err != nil {
			b.Fatal(err)
		}
	})
	baseDown := timeIt(func() {
		f, err := os.Open(filepath.Join(dir, "f"))
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, f)
		f.Close()
	})
	url := e.URL + "/files?path=/home/user/bench.bin"
	b.Run("upload", func(b *testing.B) {
		b.SetBytes(size)
		var total time.Duration
		for range b.N {
			total += timeIt(func() {
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(payload))
				req.Header.Set("Content-Type", "application/octet-stream")
				resp, err := e.HTTP.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("upload: %d %s", resp.StatusCode, body)
				}
			})
		}
		reportThroughput(b, "upload", size, total/time.Duration(b.N), baseUp)
	})
	b.Run("download", func(b *testing.B) {
		b.SetBytes(size)
		var total time.Duration
		for range b.N {
			total += timeIt(func() {
				resp, err := e.HTTP.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				n, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || n != size {
					b.Fatalf("download: %d, %d bytes", resp.StatusCode, n)
				}
			})
		}
		reportThroughput(b, "download", size, total/time.Duration(b.N), baseDown)
	})
}
