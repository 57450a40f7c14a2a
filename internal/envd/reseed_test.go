package envd

import (
	"bytes"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/wrennhq/wrenn/internal/envd/envdapi"
	"github.com/wrennhq/wrenn/internal/testutil"
	"golang.org/x/sys/unix"
)

// reseedRecorder stands in for the kernel CRNG reseed and remembers every seed.
type reseedRecorder struct {
	seeds [][]byte
	err   error
}

func (r *reseedRecorder) reseed(seed []byte) error {
	r.seeds = append(r.seeds, bytes.Clone(seed))
	return r.err
}

// Every /init with a seed reseeds — the first after boot or restore and each later one
// after a resume — with the same token and new env vars accepted as a re-init; a replay
// of an older request does not reseed.
func TestInitReseedsOnEveryInit(t *testing.T) {
	var rs reseedRecorder
	var clock clockRecorder
	srv := New(Config{InVM: true, RunDir: t.TempDir(), SetClock: clock.setClock, Reseed: rs.reseed})
	defer srv.Close()

	token := "tok"
	t1 := time.Now().Round(0)
	t2 := t1.Add(time.Second)
	seedA, seedB, seedC := []byte("seed-A-0123456789abcdef"), []byte("seed-B-0123456789abcdef"), []byte("seed-C")
	inits := []envdapi.InitRequest{
		{AccessToken: &token, Timestamp: &t1, RandomSeed: seedA, EnvVars: map[string]string{"A": "1"}},
		// After a resume: same token, newer timestamp, new env vars and a new seed.
		{AccessToken: &token, Timestamp: &t2, RandomSeed: seedB, EnvVars: map[string]string{"B": "2"}},
		// A late replay of the first request: acknowledged, not applied.
		{AccessToken: &token, Timestamp: &t1, RandomSeed: seedC, EnvVars: map[string]string{"C": "3"}},
	}
	for i, req := range inits {
		if code := postInit(t, srv, req); code != http.StatusNoContent {
			t.Fatalf("/init %d: status %d", i, code)
		}
	}
	if len(rs.seeds) != 2 || !bytes.Equal(rs.seeds[0], seedA) || !bytes.Equal(rs.seeds[1], seedB) {
		t.Errorf("reseeded with %q, want %q then %q", rs.seeds, seedA, seedB)
	}
	env := srv.State().Env()
	if env["A"] != "" || env["B"] != "2" || env["C"] != "" {
		t.Errorf("env after re-init and replay: %v", env)
	}
	if !srv.State().TokenMatches(token) {
		t.Error("token lost on re-init")
	}
}

// A failed reseed (not root, an old kernel) is logged at warn and never fails /init: the
// sandbox is still usable, and the agent retrying would not make the kernel say yes.
func TestInitReseedFailureDoesNotFailInit(t *testing.T) {
	var logs bytes.Buffer
	rs := reseedRecorder{err: errors.New("ioctl RNDADDENTROPY: operation not permitted")}
	srv := New(Config{
		InVM: true, RunDir: t.TempDir(), Reseed: rs.reseed,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	defer srv.Close()
	env := map[string]string{"K": "v"}
	if code := postInit(t, srv, envdapi.InitRequest{RandomSeed: []byte("seed"), EnvVars: env}); code != http.StatusNoContent {
		t.Fatalf("status %d", code)
	}
	if len(rs.seeds) != 1 {
		t.Fatalf("reseed called %d times", len(rs.seeds))
	}
	if srv.State().Env()["K"] != "v" {
		t.Error("the rest of /init was not applied")
	}
	if out := logs.String(); !strings.Contains(out, "level=WARN") || !strings.Contains(out, "CRNG not reseeded") || !strings.Contains(out, "operation not permitted") {
		t.Errorf("log: %q", out)
	}
}

// Outside a VM envd never changes the kernel of the machine it runs on.
func TestInitReseedsOnlyInVM(t *testing.T) {
	var rs reseedRecorder
	srv := New(Config{InVM: false, RunDir: t.TempDir(), Reseed: rs.reseed})
	defer srv.Close()
	if code := postInit(t, srv, envdapi.InitRequest{RandomSeed: []byte("seed")}); code != http.StatusNoContent {
		t.Fatalf("status %d", code)
	}
	if len(rs.seeds) != 0 {
		t.Errorf("reseeded outside a VM: %q", rs.seeds)
	}
}

// The real ioctls: as root, RNDADDENTROPY (with the hand-built rand_pool_info) and
// RNDRESEEDCRNG must both succeed. This touches the test machine's kernel, harmlessly: it
// mixes in 32 bytes from this process's own CSPRNG and reseeds, which the kernel also
// does by itself every minute. Whether the CRNG state really changed cannot be observed
// from user space; the VM tests check that two clones read different bytes.
func TestReseedCRNGKernel(t *testing.T) {
	testutil.RequireRoot(t, "RNDADDENTROPY and RNDRESEEDCRNG need CAP_SYS_ADMIN")
	seed := make([]byte, 32)
	if _, err := rand.Read(seed); err != nil {
		t.Fatal(err)
	}
	err := reseedCRNG(seed)
	if errors.Is(err, unix.EPERM) {
		t.Skipf("root without CAP_SYS_ADMIN (a container?): %v", err)
	}
	if err != nil {
		t.Fatalf("reseedCRNG: %v", err)
	}
	// The credit alone, with a seed longer than the cap, also goes through.
	fd, err := unix.Open("/dev/urandom", unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	long := make([]byte, maxCreditBits/8+100)
	if _, err := rand.Read(long); err != nil {
		t.Fatal(err)
	}
	if err := addEntropy(fd, long); err != nil {
		t.Errorf("addEntropy with %d bytes: %v", len(long), err)
	}
}
