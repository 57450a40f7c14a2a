package firecracker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// client speaks Firecracker's HTTP API on its unix socket. Calls are short except
// InstanceStart, snapshot create and load, which return when done; ctx bounds each.
type client struct {
	http *http.Client
}

func newClient(sock string) *client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		},
		MaxIdleConns: 1,
	}
	return &client{http: &http.Client{Transport: tr}}
}

func (c *client) close() { c.http.CloseIdleConnections() }

// APIError is Firecracker refusing a request: its status and fault_message.
type APIError struct {
	Method, Path string
	Status       int
	Fault        string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("firecracker %s %s: %d: %s", e.Method, e.Path, e.Status, e.Fault)
}

// maxResponse bounds what is read of any API answer.
const maxResponse = 1 << 20

// do sends one request; in (when not nil) is the JSON body and out (when not nil)
// receives a 200's JSON. Any status but 2xx is an *APIError carrying Firecracker's
// fault_message (or the raw body when it is not the documented shape).
func (c *client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://localhost"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("firecracker %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("firecracker %s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var f struct {
			Fault string `json:"fault_message"`
		}
		if json.Unmarshal(raw, &f) != nil || f.Fault == "" {
			f.Fault = string(bytes.TrimSpace(raw))
		}
		return &APIError{Method: method, Path: path, Status: resp.StatusCode, Fault: f.Fault}
	}
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("firecracker %s %s: decode answer: %w", method, path, err)
		}
	}
	return nil
}

// waitReady polls until the API answers GET / or ctx ends.
func (c *client) waitReady(ctx context.Context, exited <-chan struct{}) (instanceInfo, error) {
	var info instanceInfo
	for {
		err := c.do(ctx, http.MethodGet, "/", nil, &info)
		if err == nil {
			return info, nil
		}
		var apiErr *APIError
		if errors.As(err, &apiErr) {
			return info, err
		}
		select {
		case <-ctx.Done():
			return info, fmt.Errorf("firecracker api not ready: %w (last: %v)", ctx.Err(), err)
		case <-exited:
			return info, errors.New("firecracker exited before its api was ready")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Request and answer bodies, as Firecracker's swagger defines them (only the fields
// Wrenn sets).
type (
	instanceInfo struct {
		ID         string `json:"id"`
		State      string `json:"state"`
		VMMVersion string `json:"vmm_version"`
	}
	machineConfig struct {
		VCPUCount       int  `json:"vcpu_count"`
		MemSizeMiB      int  `json:"mem_size_mib"`
		SMT             bool `json:"smt"`
		TrackDirtyPages bool `json:"track_dirty_pages"`
	}
	bootSource struct {
		KernelImagePath string `json:"kernel_image_path"`
		InitrdPath      string `json:"initrd_path,omitempty"`
		BootArgs        string `json:"boot_args"`
	}
	tokenBucket struct {
		Size       int64 `json:"size"`
		RefillTime int64 `json:"refill_time"` // ms
	}
	rateLimiter struct {
		Bandwidth *tokenBucket `json:"bandwidth,omitempty"`
		Ops       *tokenBucket `json:"ops,omitempty"`
	}
	drive struct {
		DriveID      string       `json:"drive_id"`
		PathOnHost   string       `json:"path_on_host"`
		IsRootDevice bool         `json:"is_root_device"`
		IsReadOnly   bool         `json:"is_read_only"`
		RateLimiter  *rateLimiter `json:"rate_limiter,omitempty"`
	}
	networkInterface struct {
		IfaceID     string `json:"iface_id"`
		HostDevName string `json:"host_dev_name"`
		GuestMAC    string `json:"guest_mac,omitempty"`
	}
	mmdsConfig struct {
		Version           string   `json:"version"`
		NetworkInterfaces []string `json:"network_interfaces"`
	}
	entropyDevice struct{}
	action        struct {
		ActionType string `json:"action_type"`
	}
	vmState struct {
		State string `json:"state"`
	}
	snapshotCreate struct {
		SnapshotType string `json:"snapshot_type"`
		SnapshotPath string `json:"snapshot_path"`
		MemFilePath  string `json:"mem_file_path"`
	}
	memBackend struct {
		BackendType string `json:"backend_type"`
		BackendPath string `json:"backend_path"`
	}
	snapshotLoad struct {
		SnapshotPath     string            `json:"snapshot_path"`
		MemBackend       memBackend        `json:"mem_backend"`
		TrackDirtyPages  bool              `json:"track_dirty_pages"`
		ResumeVM         bool              `json:"resume_vm"`
		NetworkOverrides []networkOverride `json:"network_overrides,omitempty"`
	}
	networkOverride struct {
		IfaceID     string `json:"iface_id"`
		HostDevName string `json:"host_dev_name"`
	}
)

// bucket turns a per-second rate into a token bucket refilled every second.
func bucket(perSec int64) *tokenBucket {
	if perSec <= 0 {
		return nil
	}
	return &tokenBucket{Size: perSec, RefillTime: 1000}
}
