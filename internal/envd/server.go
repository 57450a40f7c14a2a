// Package envd assembles the in-sandbox daemon: the process and filesystem Connect
// services, the plain-HTTP endpoints (/health, /init, /envs, /metrics, /files), access
// token enforcement and CORS, served over HTTP/1.1 and cleartext HTTP/2 on one port.
//
// POST /init is what turns a booted, resumed or snapshot-restored guest into this
// sandbox. Inside a VM (Config.InVM), by the time it answers 204:
//
//   - the kernel's CRNG has been reseeded from the request's randomSeed (RNDADDENTROPY,
//     then RNDRESEEDCRNG), so clones restored from one memory snapshot read different
//     bytes from /dev/urandom and getrandom(2) from the first read after /init, instead
//     of sharing the snapshot's CRNG state until the kernel's next periodic reseed;
//   - the wall clock is within 1 s of the host's: a guest's clock stands still while it
//     is paused or snapshotted, so when it is more than 50 ms behind (or 1 s ahead of)
//     the request's timestamp plus the time the request has spent in envd, it is stepped
//     to that value.
//
// /init may be sent any number of times (after boot, after every resume) and each request
// with a newer timestamp is applied in full again, reseed and clock included. A reseed
// that the kernel refuses is logged at warn and does not fail /init.
package envd

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/wrennhq/wrenn/gen/envd/filesystem/filesystemconnect"
	"github.com/wrennhq/wrenn/gen/envd/process/processconnect"
	"github.com/wrennhq/wrenn/internal/envd/files"
	"github.com/wrennhq/wrenn/internal/envd/filesystem"
	"github.com/wrennhq/wrenn/internal/envd/httpx"
	"github.com/wrennhq/wrenn/internal/envd/jsoncodec"
	"github.com/wrennhq/wrenn/internal/envd/process"
	"github.com/wrennhq/wrenn/internal/envd/state"
)

// Config says how envd runs.
type Config struct {
	// Version is reported in X-Envd-Version.
	Version string
	// InVM allows changes to the machine itself (system clock, hostname). Off when envd
	// runs on a developer's host or in tests, where it must never touch the host.
	InVM bool
	// RunDir receives the identity files (.E2B_SANDBOX_ID, …); /run/e2b in a guest.
	RunDir string
	Logger *slog.Logger
	// SetClock replaces the system-clock setter (tests); nil means clock_settime.
	SetClock func(time.Time) error
	// Reseed replaces the kernel CRNG reseed from /init's randomSeed (tests); nil means
	// the RNDADDENTROPY and RNDRESEEDCRNG ioctls on /dev/urandom.
	Reseed func(seed []byte) error
	// MaxMessageBytes bounds one message of the Connect services (0 = MaxMessageBytes,
	// the constant); a larger one is refused with resource_exhausted. Tests lower it.
	MaxMessageBytes int
}

// MaxMessageBytes bounds one Connect message envd reads. The largest a client sends
// is stdin the agent relays in one call: at most its own limit (64 MiB of file and
// 1 MiB of envelope, hostagent's read limit), 87 MiB as the JSON codec's base64.
// Files go through /files, which streams to disk, not through these services.
const MaxMessageBytes = 96 << 20

// Server is one envd instance.
type Server struct {
	cfg     Config
	log     *slog.Logger
	st      *state.State
	procs   *process.Service
	fs      *filesystem.Service
	files   *files.Handler
	init    *initHandler
	metrics *metricsHandler
	handler http.Handler
}

// New builds envd with its default state (root user, no token).
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RunDir == "" {
		cfg.RunDir = "/run/e2b"
	}
	if cfg.SetClock == nil {
		cfg.SetClock = setSystemClock
	}
	if cfg.Reseed == nil {
		cfg.Reseed = reseedCRNG
	}
	st := state.New()
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		st:      st,
		procs:   process.New(st, cfg.Logger.With("svc", "process")),
		fs:      filesystem.New(st, cfg.Logger.With("svc", "filesystem")),
		files:   files.New(st, cfg.Logger.With("svc", "files")),
		metrics: newMetricsHandler(),
	}
	s.init = newInitHandler(cfg, st)
	s.handler = s.routes()
	return s
}

// State exposes the daemon's settings (tests, and embedding callers).
func (s *Server) State() *state.State { return s.st }

// Handler is the whole HTTP surface of envd.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	maxMsg := s.cfg.MaxMessageBytes
	if maxMsg <= 0 {
		maxMsg = MaxMessageBytes
	}
	opts := append(jsoncodec.HandlerOptions(), connect.WithInterceptors(userInterceptor{st: s.st}), connect.WithReadMaxBytes(maxMsg))
	mux.Handle(processconnect.NewProcessHandler(s.procs, opts...))
	mux.Handle(filesystemconnect.NewFilesystemHandler(s.fs, opts...))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	})
	mux.Handle("POST /init", s.init)
	mux.HandleFunc("GET /envs", func(w http.ResponseWriter, _ *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, s.st.Env())
	})
	mux.Handle("GET /metrics", s.metrics)
	mux.Handle("/files", s.files)
	return cors(s.requireToken(mux))
}

// exemptFromToken lists the paths that authorise themselves (§2.1).
var exemptFromToken = map[string]bool{"/health": true, "/init": true, "/files": true}

// unauthorizedMessage is E2B's exact text; the SDK shows it to users.
const unauthorizedMessage = "unauthorized access, please provide a valid access token or method signing if supported"

func (s *Server) requireToken(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, set := s.st.Token(); set && !exemptFromToken[r.URL.Path] && r.Method != http.MethodOptions {
			if !s.st.TokenMatches(r.Header.Get("X-Access-Token")) {
				httpx.WriteError(w, http.StatusUnauthorized, unauthorizedMessage)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Serve runs envd on addr until ctx ends, then stops accepting, kills the processes it
// started and closes watchers.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:           s.handler,
		Protocols:         &protocols,
		ReadHeaderTimeout: 30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		// No read/write timeouts: streams run for hours. Idle connections are kept longer
		// than a proxy in front would keep them, so the proxy always closes first.
		IdleTimeout: 640 * time.Second,
		ErrorLog:    slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		s.Close()
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdownCtx) // streams never end by themselves; Close below ends them
	_ = srv.Close()
	s.Close()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close kills every process envd started and stops every watcher.
func (s *Server) Close() {
	s.procs.Close()
	s.fs.Close()
}

// userInterceptor rejects any RPC whose Basic header names an unknown user, including
// the RPCs that do not otherwise act as a user (§2.2).
type userInterceptor struct{ st *state.State }

func (u userInterceptor) check(h http.Header) error {
	name, ok, err := state.BasicUsername(h)
	if err != nil {
		return connect.NewError(connect.CodeUnauthenticated, err)
	}
	if ok && name != "" {
		if _, err := u.st.NamedUser(name); err != nil {
			return connect.NewError(connect.CodeUnauthenticated, err)
		}
	}
	return nil
}

func (u userInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if err := u.check(req.Header()); err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

func (u userInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (u userInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		if err := u.check(conn.RequestHeader()); err != nil {
			return err
		}
		return next(ctx, conn)
	}
}

// cors lets the browser SDK call envd from any origin (§1.1).
func cors(next http.Handler) http.Handler {
	exposed := strings.Join([]string{
		"Connect-Protocol-Version", "Connect-Timeout-Ms", "Connect-Content-Encoding",
		"Connect-Accept-Encoding", "Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin",
		"Content-Encoding", "Location", "Cache-Control", "X-Content-Type-Options",
	}, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", exposed)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "HEAD, GET, POST, PUT, PATCH, DELETE")
			if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
				h.Set("Access-Control-Allow-Headers", req)
			}
			h.Set("Access-Control-Max-Age", "7200")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}
