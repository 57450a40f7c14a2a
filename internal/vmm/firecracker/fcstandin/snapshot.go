package fcstandin

import (
	"encoding/json"
	"errors"
	"maps"
	"os"
	"slices"
)

func (s *Server) snapshotCreate(body []byte) *fault {
	const op = "PUT /snapshot/create"
	var p struct {
		MemFilePath  string `json:"mem_file_path"`
		SnapshotPath string `json:"snapshot_path"`
		SnapshotType string `json:"snapshot_type"`
	}
	if f := decode(body, &p); f != nil {
		return f
	}
	if p.SnapshotType == "" {
		p.SnapshotType = "Full"
	}
	switch {
	case !s.started && !s.loaded:
		return refuse("%s: the microVM was neither started nor restored; there is nothing to snapshot", op)
	case !s.paused:
		return refuse("%s: the microVM must be Paused to create a snapshot, it is %s (PATCH /vm {\"state\":\"Paused\"} first)", op, s.state())
	case p.SnapshotType == "Diff" && !s.machine.TrackDirtyPages:
		return refuse("%s: a Diff snapshot needs dirty page tracking: set track_dirty_pages in PUT /machine-config (or in PUT /snapshot/load when restoring)", op)
	}
	if err := s.mem.writeFile(p.MemFilePath, p.SnapshotType == "Diff"); err != nil {
		return refuse("%s: cannot write the memory file: %v", op, err)
	}
	st := snapshotState{
		Format: stateFormat, SnapshotType: p.SnapshotType,
		MemSizeMiB: s.machine.MemSizeMiB, VcpuCount: s.machine.VcpuCount,
		MemorySHA256: s.mem.sum(), Generation: s.mem.gen,
		Drives:            slices.Sorted(maps.Keys(s.drives)),
		NetworkInterfaces: slices.Sorted(maps.Keys(s.ifaces)),
		MmdsConfig:        s.mmdsConfig, Vsock: s.vsock, Balloon: s.balloon,
	}
	raw, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return refuse("%s: %v", op, err)
	}
	if err := os.WriteFile(p.SnapshotPath, append(raw, '\n'), 0o644); err != nil {
		return refuse("%s: cannot write the snapshot state file: %v", op, err)
	}
	s.mem.clean()
	return nil
}

func (s *Server) snapshotLoad(body []byte) *fault {
	const op = "PUT /snapshot/load"
	var p struct {
		SnapshotPath string  `json:"snapshot_path"`
		MemFilePath  *string `json:"mem_file_path"`
		MemBackend   *struct {
			BackendType string `json:"backend_type"`
			BackendPath string `json:"backend_path"`
		} `json:"mem_backend"`
		TrackDirtyPages     bool   `json:"track_dirty_pages"`
		EnableDiffSnapshots bool   `json:"enable_diff_snapshots"`
		ResumeVM            bool   `json:"resume_vm"`
		HugePages           string `json:"huge_pages"`
		NetworkOverrides    []struct {
			IfaceID string `json:"iface_id"`
		} `json:"network_overrides"`
		VsockOverride *struct{} `json:"vsock_override"`
	}
	if f := decode(body, &p); f != nil {
		return f
	}
	switch {
	case s.started:
		return refuse("%s: loading a snapshot is not allowed after the microVM was started", op)
	case s.loaded:
		return refuse("%s: a snapshot was already loaded into this process; a load needs a fresh Firecracker process", op)
	case s.configured:
		return refuse("%s: loading a snapshot is only allowed on a fresh Firecracker process (nothing but /logger and /metrics configured before it)", op)
	case (p.MemFilePath == nil) == (p.MemBackend == nil):
		return refuse("%s: exactly one of mem_backend and mem_file_path must be present", op)
	case p.HugePages == "2M" && (p.MemBackend == nil || p.MemBackend.BackendType != "Uffd"):
		return refuse("%s: huge_pages 2M needs the Uffd memory backend", op)
	}
	// From here on a failure is the VMM's, and Firecracker exits after answering.
	fail := func(format string, args ...any) *fault {
		s.exitWith(1)
		return refuse(format, args...)
	}
	st, err := readState(p.SnapshotPath)
	if err != nil {
		return fail("%s: %v", op, err)
	}
	for _, o := range p.NetworkOverrides {
		if !slices.Contains(st.NetworkInterfaces, o.IfaceID) {
			return fail("%s: network_overrides names the interface %q, which the snapshot does not have (it has %v)", op, o.IfaceID, st.NetworkInterfaces)
		}
	}
	if p.VsockOverride != nil && !st.Vsock {
		return fail("%s: vsock_override given, but the snapshot has no vsock device", op)
	}
	size := st.MemSizeMiB << 20
	if p.MemBackend != nil && p.MemBackend.BackendType == "Uffd" {
		m, sum, conn, err := loadThroughUffd(p.MemBackend.BackendPath, size, s.UffdTimeout)
		if err != nil {
			if errors.Is(err, errUffdTimeout) {
				return fail("%s: %v (waited %v)", op, err, s.UffdTimeout)
			}
			return fail("%s: %v", op, err)
		}
		if sum != st.MemorySHA256 {
			conn.Close()
			m.close()
			return fail("%s: memory served through uffd differs from the snapshot (sha256 %s, the snapshot's is %s)", op, sum, st.MemorySHA256)
		}
		s.mem, s.uffdConn = m, conn
	} else {
		path := ""
		if p.MemFilePath != nil {
			path = *p.MemFilePath
		} else {
			path = p.MemBackend.BackendPath
		}
		m, err := loadFromFile(path, size)
		if err != nil {
			return fail("%s: %v", op, err)
		}
		if sum := m.sum(); sum != st.MemorySHA256 {
			m.close()
			return fail("%s: the memory file %s differs from the snapshot's memory (sha256 %s, the snapshot's is %s); was a Diff not merged onto its base?", op, path, sum, st.MemorySHA256)
		}
		s.mem = m
	}
	s.mem.gen = st.Generation
	s.loaded, s.paused = true, true
	s.machine = machineConfig{VcpuCount: st.VcpuCount, MemSizeMiB: st.MemSizeMiB, TrackDirtyPages: p.TrackDirtyPages || p.EnableDiffSnapshots, HugePages: "None"}
	s.ifaces = map[string]json.RawMessage{}
	for _, id := range st.NetworkInterfaces {
		s.ifaces[id], _ = json.Marshal(map[string]string{"iface_id": id})
	}
	s.drives = map[string]json.RawMessage{}
	for _, id := range st.Drives {
		s.drives[id], _ = json.Marshal(map[string]string{"drive_id": id})
	}
	s.mmdsConfig, s.vsock, s.balloon = st.MmdsConfig, st.Vsock, st.Balloon
	s.mmdsData = nil // the MMDS data store is not part of a snapshot
	if p.ResumeVM {
		s.paused = false
		s.mem.run()
	}
	return nil
}
