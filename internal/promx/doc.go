// Package promx is Wrenn's Prometheus plumbing for operators, shared by the control
// plane and the host agent: a registry per program (with the Go runtime's and the
// process's collectors), the /metrics handler and who may read it (Access: a listener
// of its own, or a bearer token on the program's main listener; neither means no
// metrics), and each program's metrics — ControlPlane and Agent.
//
// The packages that do the work do not import Prometheus: each defines a small
// observer interface (api.RequestObserver, sandboxes.PlacementObserver,
// proxy.Observer, agent.OpObserver) that the types here implement, and the counts
// read at scrape time come through interfaces too. Nothing registers with Prometheus's
// global default registry, so every program and every test builds its own.
package promx
