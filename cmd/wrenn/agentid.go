package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/wrennhq/wrenn/internal/agent/hostreg"
	"github.com/wrennhq/wrenn/internal/agent/rpc"
	"github.com/wrennhq/wrenn/internal/hostproto"
	"github.com/wrennhq/wrenn/internal/version"
)

// agentID is how the agent proves itself and checks its callers: registered with a
// control plane (TLS with a pinned certificate, the control plane's per-host secret,
// a heartbeat), or standalone with a shared secret over h2c.
type agentID struct {
	allowed   func(bearer string) bool
	tls       *tls.Config        // nil: standalone, plain h2c
	heartbeat *hostreg.Heartbeat // nil: standalone
}

type identityOptions struct {
	dir, secret, secretFile, server, token, advertise, listen string
	capacity                                                  hostproto.Capacity
}

// agentIdentity picks the mode: saved credentials, else registration with --token,
// else a standalone shared secret.
func agentIdentity(ctx context.Context, log *slog.Logger, o identityOptions) (*agentID, error) {
	dir := o.dir
	hc := &http.Client{Timeout: 30 * time.Second}
	creds, err := hostreg.LoadCredentials(dir)
	switch {
	case err == nil:
		if o.token != "" {
			log.Warn("already registered: ignoring --token", "host", creds.HostID)
		}
		// A new certificate would not match the pinned one: refuse rather than make one.
		if _, err := os.Stat(filepath.Join(dir, "tls.key")); err != nil {
			return nil, fmt.Errorf("registered as host %s but the TLS identity in %s is gone (%v): the control plane pinned its certificate; delete the host and register again", creds.HostID, dir, err)
		}
	case errors.Is(err, os.ErrNotExist) && o.token != "":
		if o.server == "" {
			return nil, errors.New("--token needs --server (the control plane's URL)")
		}
		ident, err := hostreg.LoadOrCreateIdentity(dir)
		if err != nil {
			return nil, err
		}
		addr := o.advertise
		if addr == "" {
			addr = o.listen
		}
		if host, _, err := net.SplitHostPort(addr); err != nil || host == "" || net.ParseIP(host).IsUnspecified() {
			return nil, fmt.Errorf("cannot tell the control plane where to reach this agent from %q: pass --advertise host:port", addr)
		}
		creds, err = hostreg.Register(ctx, hc, o.server, dir, hostproto.RegisterRequest{
			Token: o.token, Address: addr, CertFingerprint: ident.Fingerprint, Version: version.Version, Capacity: o.capacity,
		})
		if err != nil {
			return nil, err
		}
		log.Info("registered with the control plane", "host", creds.HostID, "server", creds.Server, "address", addr)
	case errors.Is(err, os.ErrNotExist):
		return standaloneID(o.secret, o.secretFile)
	default:
		return nil, err
	}
	ident, err := hostreg.LoadOrCreateIdentity(dir)
	if err != nil {
		return nil, err
	}
	hb := hostreg.NewHeartbeat(dir, creds, hc, log, nil)
	hb.Fingerprint = ident.Fingerprint
	return &agentID{
		// The secret checked is the saved one; a refresh never changes it.
		allowed:   creds.CheckSecret,
		tls:       &tls.Config{Certificates: []tls.Certificate{ident.Cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{"h2", "http/1.1"}},
		heartbeat: hb,
	}, nil
}

func standaloneID(secret, secretFile string) (*agentID, error) {
	if secretFile != "" {
		b, err := os.ReadFile(secretFile)
		if err != nil {
			return nil, fmt.Errorf("read secret: %w", err)
		}
		secret = strings.TrimSpace(string(b))
	}
	if len(secret) < 16 {
		return nil, errors.New("the agent is not registered: pass --server URL --token TOKEN (from POST /v1/hosts), " +
			"or run standalone with a secret of at least 16 characters (WRENN_AGENT_SECRET or --secret-file)")
	}
	return &agentID{allowed: rpc.SharedSecret(secret)}, nil
}

// hostCapacity is what this host offers: its CPUs times the overcommit, and its memory.
func hostCapacity(cpuOvercommit int) hostproto.Capacity {
	c := hostproto.Capacity{VCPUs: runtime.NumCPU() * max(cpuOvercommit, 1)}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return c
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			c.MemoryMB = kb / 1024
		}
	}
	return c
}
