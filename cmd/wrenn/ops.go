package main

import (
	"github.com/spf13/cobra"
)

// newServerCmd and newAgentCmd hand their whole command line to the program, which
// reads its own flags and WRENN_* settings (internal/config) and prints its own -h.
func newServerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "server [flags]",
		Short: "Run the control plane (REST /v1, E2B routes, dashboard; PostgreSQL and Redis)",
		Long: `Run the control plane: the REST API (/v1 and E2B's routes), sign-in, teams,
hosts and scheduling, the audit log, metrics and the sandbox port proxy. Its settings
are flags or WRENN_* variables: 'wrenn server -h' lists them.`,
		Example:            "  WRENN_DATABASE_URL=postgres://… WRENN_REDIS_URL=redis://… wrenn server --listen :8080",
		DisableFlagParsing: true,
		Annotations:        map[string]string{ownSettings: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			return serverCmd(cmd.Context(), nil, args)
		},
	}
}

func newAgentCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "agent [flags]",
		Short: "Run the host agent (root): registers with --server/--token, then serves its sandboxes",
		Long: `Run the host agent on this machine (as root): it boots, pauses and destroys the
sandboxes the control plane places here. The first start registers with --server and
a one-time --token (from 'wrenn host create'); later starts reuse the identity kept
in WRENN_DIR/agent. 'wrenn agent -h' lists its settings.`,
		Example:            "  wrenn agent --server https://wrenn.example.com --token TOKEN --advertise 10.0.0.5:50051",
		DisableFlagParsing: true,
		Annotations:        map[string]string{ownSettings: "yes"},
		RunE: func(cmd *cobra.Command, args []string) error {
			return agentCmd(cmd.Context(), nil, args)
		},
	}
}
