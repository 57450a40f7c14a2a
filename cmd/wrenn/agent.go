package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"github.com/wrennhq/wrenn/internal/cgroup"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/wrennhq/wrenn/gen/hostagent/v1/hostagentv1connect"
	"github.com/wrennhq/wrenn/internal/agent"
	"github.com/wrennhq/wrenn/internal/agent/proxy"
	"github.com/wrennhq/wrenn/internal/agent/rpc"
	"github.com/wrennhq/wrenn/internal/config"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/httplimit"
	"github.com/wrennhq/wrenn/internal/netslot"
	"github.com/wrennhq/wrenn/internal/promx"
	"github.com/wrennhq/wrenn/internal/rootfs"
	"github.com/wrennhq/wrenn/internal/version"
	"github.com/wrennhq/wrenn/internal/vmm"
	"github.com/wrennhq/wrenn/internal/vmm/drivers"
)

func agentCmd(ctx context.Context, log *slog.Logger, args []string) error {
	cfg, err := config.LoadAgent(args, os.Getenv)
	if err != nil {
		return err
	}
	log = cfg.Log.New(os.Stderr)
	log.Info("starting agent", "version", version.Version, "config", cfg)
	vmmOpts := vmm.Options{Logger: log, Binary: cfg.VMMBinary}
	driver, err := drivers.Open(cfg.VMM, vmmOpts)
	if err != nil {
		return err
	}
	log.Info("vmm driver", "name", driver.Name(), "asked", cfg.VMM, "not usable here", drivers.Default().Unusable(vmmOpts))
	access, metricsLn, err := openMetrics(metricsSetting{listen: cfg.MetricsListen, token: cfg.MetricsToken,
		tokenFile: cfg.MetricsTokenFile, tokenFileVar: "WRENN_AGENT_METRICS_TOKEN_FILE"})
	if err != nil {
		return err
	}
	if metricsLn != nil {
		defer metricsLn.Close() // until it serves; closing it again then is harmless
	}
	logMetrics(log, access)
	// One agent per WRENN_DIR: a second would adopt, and fight over, the first's sandboxes.
	unlock, err := lockDir(cfg.Dir)
	if err != nil {
		return err
	}
	defer unlock()
	// The key sealing sandbox records, kept with the agent's other credentials; a
	// damaged one stops the agent here rather than failing every sandbox on recovery.
	recordKey, err := agent.LoadOrCreateRecordKey(cfg.StateDir)
	if err != nil {
		return err
	}
	id, err := agentIdentity(ctx, log, identityOptions{
		dir: cfg.StateDir, secret: cfg.Secret, secretFile: cfg.SecretFile, server: cfg.Server, token: cfg.Token,
		advertise: cfg.Advertise, listen: cfg.Listen, capacity: hostCapacity(cfg.CPUOvercommit),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	ready, readyInternet := cfg.SlotPool, 0
	if cfg.AllowInternetDefault {
		ready, readyInternet = 1, cfg.SlotPool
	}
	confinement, err := agentConfinement(cfg)
	if err != nil {
		return err
	}
	log.Info("vmm confinement", "jail", cfg.Jail, "uid_base", confinement.UIDBase, "cgroup", cfg.Cgroup,
		"memory_overhead_mib", confinement.MemoryOverheadMiB, "pids", confinement.Pids,
		"disk_mib_per_sec", cfg.DiskMiBPerSec, "disk_iops", cfg.DiskIOPS)
	mcfg := agent.Config{Dir: cfg.Dir, Driver: driver, RecordKey: recordKey, Log: log, AllowInternetDefault: cfg.AllowInternetDefault, WarmStart: cfg.WarmStart, Confinement: confinement, FaultPoint: cfg.FaultPoint}
	// Metrics are collected only when something may read them.
	reg := promx.NewRegistry()
	var metrics *promx.Agent
	if access.Enabled() {
		if metrics, err = promx.NewAgent(reg); err != nil {
			return err
		}
		mcfg.Ops = metrics
	}
	m, pool, err := newManager(cfg.EgressAllow, cfg.EgressDeny, netslot.PoolOptions{
		Size: ready, InternetSize: readyInternet, FirstIndex: cfg.FirstSlot, LastIndex: cfg.LastSlot,
	}, mcfg)
	if err != nil {
		return err
	}
	// Ready slots are destroyed on exit; slots of running sandboxes stay for the next agent.
	defer func() {
		if err := pool.Close(); err != nil {
			log.Warn("close slot pool", "err", err)
		}
	}()
	if metrics != nil {
		if err := metrics.Watch(promx.AgentSources{Sandboxes: m, Slots: pool, Sampler: m}); err != nil {
			return err
		}
	}
	rep, err := m.Recover(ctx)
	if err != nil {
		return err
	}
	// Namespaces in our range that no adopted sandbox owns are leftovers of a crash.
	if err := pool.Reclaim(m.InUse); err != nil {
		log.Warn("reclaim leftover network slots", "err", err)
	}
	log.Info("recovered sandboxes", "adopted", len(rep.Adopted), "cleaned", len(rep.Cleaned))
	m.StartReaper(cfg.ReapInterval)
	defer m.Close()
	// The default create's warm snapshot, built now rather than after the first
	// create boots cold: from the first sandbox on, creates restore.
	m.Prewarm(agent.DefaultTemplate)

	srv := httplimit.Agent.Server(access.Wrap(reg, log, agentHandler(m, id.allowed, log, httplimit.Agent.StreamIdle)))
	if id.tls != nil {
		// A registered agent serves TLS with the certificate the control plane pinned.
		srv.TLSConfig = id.tls
		ln = tls.NewListener(ln, id.tls)
	} else {
		var protocols http.Protocols
		protocols.SetHTTP1(true)
		protocols.SetUnencryptedHTTP2(true) // client streams (file uploads) need HTTP/2
		srv.Protocols = &protocols
	}
	if id.heartbeat != nil {
		id.heartbeat.Report = func() hostproto.HeartbeatRequest {
			return hostproto.HeartbeatRequest{Version: version.Version, Capacity: hostCapacity(cfg.CPUOvercommit), Sandboxes: len(m.List())}
		}
		go id.heartbeat.Run(ctx)
	}
	if metricsLn != nil {
		serveMetrics(ctx, log, access, reg, metricsLn)
	}
	// Sandboxes keep running across an agent restart; only the API goes away.
	return serve(ctx, log.With("dir", cfg.Dir), "agent", srv, ln, 5*time.Second)
}

// agentHandler serves the Connect API and the port proxy. The client stream (file
// uploads) and proxied traffic run as long as they keep moving (httplimit.Streamed);
// every other call has the server's whole-request deadline. Both check the caller's
// credential before reading a body, so an unknown caller never gets the longer wait.
func agentHandler(m *agent.Manager, allowed func(string) bool, log *slog.Logger, streamIdle time.Duration) http.Handler {
	mux := http.NewServeMux()
	rpcPath, rpcHandler := rpc.Handler(m, allowed)
	mux.Handle(rpcPath, rpcHandler)
	mux.Handle(hostagentv1connect.HostAgentServiceWriteFileStreamProcedure, httplimit.Streamed(streamIdle, rpcHandler))
	return proxy.Routes(mux, httplimit.Streamed(streamIdle, proxy.New(m, allowed, log)))
}

// newManager makes this host's sandbox manager over a new slot pool, with disks
// cloned from the templates in cfg.Dir: the wiring `wrenn agent` and `wrenn vm run`
// share. The caller closes the pool when done; on error nothing is left open.
func newManager(egressAllow, egressDeny []netip.Prefix, slots netslot.PoolOptions, cfg agent.Config) (*agent.Manager, *netslot.Pool, error) {
	netCfg := netslot.DefaultConfig()
	netCfg.Allow, netCfg.Deny = egressAllow, egressDeny
	pool, err := netslot.NewPool(netCfg, slots)
	if err != nil {
		return nil, nil, err
	}
	cfg.Slots, cfg.Disks = pool, rootfs.CloneDisks{}
	m, err := agent.New(cfg)
	if err != nil {
		return nil, nil, errors.Join(err, pool.Close())
	}
	return m, pool, nil
}

// agentConfinement is how the agent confines VMMs, from its settings.
func agentConfinement(cfg config.Agent) (agent.Confinement, error) {
	c := agent.Confinement{MemoryOverheadMiB: cfg.VMMMemoryOverhead, Pids: int64(cfg.VMMPids),
		DiskRate: vmm.RateLimit{BytesPerSec: int64(cfg.DiskMiBPerSec) << 20, OpsPerSec: int64(cfg.DiskIOPS)}}
	if cfg.Jail {
		c.UIDBase = uint32(cfg.JailUIDBase)
	}
	if cfg.Cgroup != "" {
		cg, err := cgroup.New("/" + cfg.Cgroup)
		if err != nil {
			return c, fmt.Errorf("--cgroup/WRENN_AGENT_CGROUP: %w", err)
		}
		c.Cgroups = cg
	}
	return c, nil
}

// lockDir takes an exclusive lock on dir/agent.lock (released when the process exits).
func lockDir(dir string) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "agent.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another agent runs on %s (%s is locked): one agent per WRENN_DIR", dir, f.Name())
	}
	return func() { f.Close() }, nil
}
