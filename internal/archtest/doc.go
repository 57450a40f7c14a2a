// Package archtest holds no code: its test guards the import graph, failing when the
// control plane imports host-agent code, production code imports a test helper, or
// the guest daemon imports host code.
package archtest
