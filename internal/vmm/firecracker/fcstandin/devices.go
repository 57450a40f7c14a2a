package fcstandin

import (
	"encoding/json"
	"slices"
)

// device applies the configuration endpoints: most are pre-boot only, their PATCH
// counterparts post-boot only, and some need a device configured earlier.
func (s *Server) device(op string, params map[string]string, body []byte) (any, *fault) {
	preBoot := map[string]bool{
		"PUT /machine-config": true, "PATCH /machine-config": true, "PUT /cpu-config": true,
		"PUT /boot-source": true, "PUT /drives/{drive_id}": true, "PUT /pmem/{id}": true,
		"PUT /network-interfaces/{iface_id}": true, "PUT /mmds/config": true, "PUT /entropy": true,
		"PUT /balloon": true, "PUT /vsock": true, "PUT /serial": true, "PUT /hotplug/memory": true,
	}
	postBoot := map[string]bool{
		"PATCH /drives/{drive_id}": true, "PATCH /network-interfaces/{iface_id}": true,
		"PATCH /pmem/{id}": true, "PATCH /hotplug/memory": true,
	}
	if preBoot[op] {
		if f := s.preBootOnly(op); f != nil {
			return nil, f
		}
		resp, f := s.configure(op, params, body)
		if f == nil {
			s.configured = true // snapshot/load is refused from now on
		}
		return resp, f
	}
	if postBoot[op] {
		if f := s.postBootOnly(op); f != nil {
			return nil, f
		}
	}
	return s.configure(op, params, body)
}

func (s *Server) configure(op string, params map[string]string, body []byte) (any, *fault) {
	switch op {
	case "PUT /machine-config", "PATCH /machine-config":
		mc := s.machine
		if op == "PUT /machine-config" {
			mc = machineConfig{HugePages: "None"} // omitted optional fields reset to defaults
		}
		if f := decode(body, &mc); f != nil {
			return nil, f
		}
		switch {
		case mc.MemSizeMiB <= 0:
			return nil, refuse("%s: mem_size_mib must be positive, got %d", op, mc.MemSizeMiB)
		case mc.Smt && mc.VcpuCount > 1 && mc.VcpuCount%2 != 0:
			return nil, refuse("%s: with smt the vcpu_count must be 1 or even, got %d", op, mc.VcpuCount)
		case mc.HugePages == "2M" && mc.MemSizeMiB%2 != 0:
			return nil, refuse("%s: with 2M huge pages mem_size_mib must be a multiple of 2, got %d", op, mc.MemSizeMiB)
		}
		s.machine = mc
	case "PUT /boot-source":
		s.bootSource = json.RawMessage(compactJSON(body))
	case "PUT /drives/{drive_id}":
		var d struct {
			IsRoot     bool    `json:"is_root_device"`
			PathOnHost *string `json:"path_on_host"`
			Socket     *string `json:"socket"`
		}
		if f := decode(body, &d); f != nil {
			return nil, f
		}
		id := params["drive_id"]
		if (d.PathOnHost == nil) == (d.Socket == nil) {
			return nil, refuse("%s: a drive needs exactly one of path_on_host (virtio-block) and socket (vhost-user-block)", op)
		}
		if d.IsRoot && s.rootDrive != "" && s.rootDrive != id {
			return nil, refuse("%s: a root block device already exists (%q); only one drive may have is_root_device", op, s.rootDrive)
		}
		if d.IsRoot {
			s.rootDrive = id
		} else if s.rootDrive == id {
			s.rootDrive = ""
		}
		s.drives[id] = json.RawMessage(compactJSON(body))
	case "PATCH /drives/{drive_id}":
		if _, ok := s.drives[params["drive_id"]]; !ok {
			return nil, refuse("%s: no drive %q was configured", op, params["drive_id"])
		}
	case "PUT /pmem/{id}":
		s.pmem[params["id"]] = true
	case "PATCH /pmem/{id}":
		if !s.pmem[params["id"]] {
			return nil, refuse("%s: no pmem device %q was configured", op, params["id"])
		}
	case "PUT /network-interfaces/{iface_id}":
		var n struct {
			HostDevName string `json:"host_dev_name"`
			GuestMAC    string `json:"guest_mac"`
		}
		if f := decode(body, &n); f != nil {
			return nil, f
		}
		id := params["iface_id"]
		for other, raw := range s.ifaces {
			var o struct {
				HostDevName string `json:"host_dev_name"`
				GuestMAC    string `json:"guest_mac"`
			}
			_ = json.Unmarshal(raw, &o)
			if other == id {
				continue
			}
			if o.HostDevName == n.HostDevName {
				return nil, refuse("%s: the host device %q is already used by interface %q", op, n.HostDevName, other)
			}
			if n.GuestMAC != "" && o.GuestMAC == n.GuestMAC {
				return nil, refuse("%s: the guest MAC %s is already used by interface %q", op, n.GuestMAC, other)
			}
		}
		s.ifaces[id] = json.RawMessage(compactJSON(body))
	case "PATCH /network-interfaces/{iface_id}":
		if _, ok := s.ifaces[params["iface_id"]]; !ok {
			return nil, refuse("%s: no network interface %q was configured", op, params["iface_id"])
		}
	case "PUT /mmds/config":
		var c struct {
			NetworkInterfaces []string `json:"network_interfaces"`
		}
		if f := decode(body, &c); f != nil {
			return nil, f
		}
		if len(c.NetworkInterfaces) == 0 {
			return nil, refuse("%s: network_interfaces must name at least one interface", op)
		}
		for _, id := range c.NetworkInterfaces {
			if _, ok := s.ifaces[id]; !ok {
				return nil, refuse("%s: the network interface %q in network_interfaces does not exist yet (PUT /network-interfaces/%s first)", op, id, id)
			}
		}
		s.mmdsConfig = json.RawMessage(compactJSON(body))
	case "PUT /vsock":
		s.vsock = true
	case "PUT /hotplug/memory":
		s.hotplug = true
	case "PATCH /hotplug/memory", "GET /hotplug/memory":
		if !s.hotplug {
			return nil, refuse("%s: hotpluggable memory was not configured", op)
		}
		if op == "GET /hotplug/memory" {
			return map[string]int{"total_size_mib": 0, "plugged_size_mib": 0, "requested_size_mib": 0}, nil
		}
	case "PUT /balloon":
		b := &balloonState{}
		if f := decode(body, b); f != nil {
			return nil, f
		}
		if b.AmountMiB > s.machine.MemSizeMiB {
			return nil, refuse("%s: amount_mib %d exceeds the guest memory of %d MiB", op, b.AmountMiB, s.machine.MemSizeMiB)
		}
		s.balloon = b
	default:
		return s.balloonOp(op, body)
	}
	return nil, nil
}

// balloonOp handles the balloon requests other than PUT, which need the device.
func (s *Server) balloonOp(op string, body []byte) (any, *fault) {
	if !slices.Contains([]string{"GET /balloon", "PATCH /balloon", "GET /balloon/statistics", "PATCH /balloon/statistics",
		"PATCH /balloon/hinting/start", "GET /balloon/hinting/status", "PATCH /balloon/hinting/stop"}, op) {
		return nil, nil // PUT /entropy, PUT /serial, PUT /cpu-config: nothing to simulate
	}
	if s.balloon == nil {
		return nil, refuse("%s: no balloon device was configured (PUT /balloon before boot)", op)
	}
	switch op {
	case "GET /balloon":
		return s.balloon, nil
	case "PATCH /balloon":
		var u struct {
			AmountMiB int `json:"amount_mib"`
		}
		if f := decode(body, &u); f != nil {
			return nil, f
		}
		if u.AmountMiB > s.machine.MemSizeMiB {
			return nil, refuse("%s: amount_mib %d exceeds the guest memory of %d MiB", op, u.AmountMiB, s.machine.MemSizeMiB)
		}
		s.balloon.AmountMiB = u.AmountMiB
	case "GET /balloon/statistics", "PATCH /balloon/statistics":
		if s.balloon.StatsPollingS == 0 {
			return nil, refuse("%s: balloon statistics were not enabled when the device was configured", op)
		}
		if op == "PATCH /balloon/statistics" {
			var u struct {
				Interval int `json:"stats_polling_interval_s"`
			}
			if f := decode(body, &u); f != nil {
				return nil, f
			}
			if u.Interval == 0 && (s.started || s.loaded) {
				return nil, refuse("%s: statistics cannot be turned off after boot", op)
			}
			s.balloon.StatsPollingS = u.Interval
			return nil, nil
		}
		pages := s.balloon.AmountMiB << 8
		return map[string]int{"target_pages": pages, "actual_pages": pages, "target_mib": s.balloon.AmountMiB, "actual_mib": s.balloon.AmountMiB}, nil
	default:
		if !s.balloon.FreePageHinting {
			return nil, refuse("%s: free page hinting was not enabled when the balloon was configured", op)
		}
		if op == "GET /balloon/hinting/status" {
			return map[string]int{"host_cmd": 0, "guest_cmd": 0}, nil
		}
	}
	return nil, nil
}
