// Package api holds Wrenn's REST contract: the OpenAPI 3.1 document of the control
// plane's /v1 routes (openapi.yaml), embedded so the server can serve it and tests can
// validate real traffic against it.
package api

import (
	"bytes"
	_ "embed"
)

//go:embed openapi.yaml
var openAPI []byte

// OpenAPI returns the OpenAPI document (YAML), a fresh copy on each call so no caller
// can change what another sees.
func OpenAPI() []byte { return bytes.Clone(openAPI) }
