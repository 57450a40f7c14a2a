# Wrenn build, test and code generation. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/wrennhq/wrenn/internal/version.Version=$(VERSION)

# Code generators, pinned; installed into ./bin from the Go module proxy (seconds, no buf).
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION := v1.21.1
SQLC_VERSION := v1.31.1

# The web dashboard (web/; rules below build).
WEB_SRC := $(shell find web/src web/static -type f 2>/dev/null) web/package.json web/svelte.config.js web/vite.config.ts web/tsconfig.json
WEB_DEPS := web/node_modules/.ci-stamp
WEB_INDEX := web/build/index.html
# Node.js new enough for vite 7 (^20.19 || >=22.12), or a message saying what is missing.
WEB_NODE_OK = node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>22||(a==22&&b>=12)||(a==20&&b>=19)?0:1)' 2>/dev/null

.PHONY: help build envd wrenn image up down test test-steps prereqs test-vm test-go test-fuzz test-sdk soak lint generate check-protoc check-generate bench clean tools swagger-ui web web-types web-check

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

# One go build for both: the package graph is loaded and checked once (make up runs this
# on every start, where nothing changed is the common case). The dashboard is built first
# (only when its sources changed): the wrenn binary embeds it (package web).
build: $(WEB_INDEX) ## Build every binary into ./bin (and the web dashboard they embed)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/envd ./cmd/wrenn

wrenn: ## Build ./bin/wrenn (server, agent, CLI; static)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/wrenn ./cmd/wrenn

envd: ## Build the static guest daemon ./bin/envd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/envd ./cmd/envd

# The web dashboard (web/, SvelteKit): npm ci only when node_modules is older than the
# lock file, the vite build only when a source changed (make's timestamps, so a warm
# `make build` runs neither). Its output, web/build, is embedded by web/embed.go and never
# committed; a binary built without it (no Node.js 20.19+) serves a "not built" page.
$(WEB_DEPS): web/package-lock.json
	@if ! $(WEB_NODE_OK) || ! command -v npm >/dev/null; then \
	  v=$$(node --version 2>/dev/null); \
	  echo "warning: Node.js 20.19+ and npm are needed to build the dashboard (found node $${v:-none}): building wrenn without it" >&2; \
	else cd web && npm ci --no-audit --no-fund --loglevel=error && touch $(CURDIR)/$@; fi

$(WEB_INDEX): $(WEB_DEPS) $(WEB_SRC)
	@if [ -f $(WEB_DEPS) ]; then cd web && npm run -s build >/dev/null && echo "web: dashboard built (web/build)"; fi

web: $(WEB_INDEX) ## Build the web dashboard into web/build (make build does, when it changed)

web-types: $(WEB_DEPS) ## Regenerate the dashboard's API types (web/src/lib/api/schema.d.ts) from api/openapi.yaml
	cd web && npm run -s types >/dev/null

web-check: $(WEB_DEPS) ## Type-check the dashboard (svelte-check)
	cd web && npm run -s check

# Persistent across runs on one machine, so only the first run pays for debootstrap.
WRENN_TEST_DIR ?= /var/lib/wrenn-test

# make test runs test-steps with its whole output also in a log (.test-logs/), then
# scans that log and the logs the tests leave for keys, tokens and passwords
# (scripts/test-all.sh, internal/secretscan): a step's failure stays the reported one.
test: ## Run every test (CI runs this), then fail if their logs hold a secret
	@MAKE='$(MAKE)' GO='$(GO)' WRENN_TEST_DIR='$(WRENN_TEST_DIR)' bash scripts/test-all.sh

test-steps: prereqs lint check-generate build web-check test-go test-fuzz test-vm test-sdk

prereqs: ## Say which system prerequisite of `make test` is missing (scripts/install-deps.sh installs them)
	@bash scripts/check-prereqs.sh

test-go: envd ## Go unit and process tests (privileged ones need root)
	WRENN_ENVD_BIN=$(BIN)/envd WRENN_TEST_CACHE_DIR=$(WRENN_TEST_DIR)/cache \
	  $(GO) test -count=1 -timeout 20m $$($(GO) list ./... | grep -v /test/e2e)

# FUZZTIME bounds each fuzz target's exploration (longer runs: make test-fuzz FUZZTIME=10m).
# A count, not a duration, in make test: Go before 1.27 can fail a duration-bounded run
# with a bare "context deadline exceeded" at its end (go.dev/issue/75804).
FUZZTIME ?= 5000x
test-fuzz: envd ## Explore every Go fuzz target for FUZZTIME each (their corpus already runs in test-go)
	WRENN_ENVD_BIN=$(BIN)/envd FUZZTIME=$(FUZZTIME) GO=$(GO) bash scripts/fuzz.sh

# SOAK is how long `make soak` cycles sandboxes (make test runs the same test for 60 s).
SOAK ?= 30m
soak: build ## Create/exec/pause/resume/destroy cycles for SOAK (30m), watching server and agent memory and files
	WRENN_ENVD_BIN=$(BIN)/envd WRENN_TEST_DIR=$(WRENN_TEST_DIR) WRENN_SOAK_DURATION=$(SOAK) \
	  $(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./test/e2e/

test-vm: envd ## End-to-end tests on real microVMs, one at a time (builds the base template once)
	WRENN_ENVD_BIN=$(BIN)/envd WRENN_TEST_DIR=$(WRENN_TEST_DIR) $(GO) test -count=1 -p 1 -timeout 30m -v ./test/e2e/... 2>&1 | \
	  grep -v '^=== \(RUN\|PAUSE\|CONT\)'; exit $${PIPESTATUS[0]}

# DETACH=1: return once a sandbox answered, leaving Wrenn running (make down stops it).
DETACH ?=
up: ## Set up and run Wrenn on this machine (root): deps, build, template, databases, agent, server; Ctrl-C stops it (DETACH=1: leave it running)
	@DETACH=$(DETACH) python3 scripts/foreground.py bash scripts/up.sh

down: ## Stop what make up started (foreground or DETACH=1): server, agent, databases; sandboxes keep running
	@bash scripts/up.sh down

image: build ## Build the base template into WRENN_DIR (default /var/lib/wrenn)
	$(BIN)/wrenn image build --envd $(BIN)/envd

test-sdk: envd ## Drive envd with the official e2b JS SDK in an isolated namespace
	bash test/sdk/run.sh $(BIN)/envd

lint: ## go vet + gofmt
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' ; git ls-files -o --exclude-standard '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

tools: $(BIN)/protoc-gen-go $(BIN)/protoc-gen-connect-go $(BIN)/sqlc

$(BIN)/protoc-gen-go:
	GOBIN=$(BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(BIN)/protoc-gen-connect-go:
	GOBIN=$(BIN) $(GO) install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(PROTOC_GEN_CONNECT_GO_VERSION)

# sqlc builds cgo-free (its PostgreSQL parser runs as WebAssembly); about two minutes, once.
$(BIN)/sqlc:
	CGO_ENABLED=0 GOBIN=$(BIN) $(GO) install github.com/sqlc-dev/sqlc/cmd/sqlc@$(SQLC_VERSION)

generate: tools check-protoc web-types ## Regenerate gen/ from proto/ and db/ (protoc from apt + pinned Go plugins, sqlc), README's settings and the dashboard's API types
	rm -rf gen/envd gen/hostagent && mkdir -p gen
	cd proto && PATH=$(BIN):$$PATH protoc -I . \
	  --go_out=../gen --go_opt=module=github.com/wrennhq/wrenn/gen \
	  --connect-go_out=../gen --connect-go_opt=module=github.com/wrennhq/wrenn/gen \
	  process/process.proto filesystem/filesystem.proto hostagent/v1/hostagent.proto
	rm -rf gen/db
	$(BIN)/sqlc generate
	$(GO) generate ./internal/config

# protoc finds the well-known types (google/protobuf/*.proto) only in the include dir next
# to itself; Debian ships them in libprotobuf-dev, which protobuf-compiler merely recommends.
check-protoc:
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler"; exit 1; }
	@wkt=$$(dirname "$$(dirname "$$(readlink -f "$$(command -v protoc)")")")/include/google/protobuf/timestamp.proto; \
	  [ -f "$$wkt" ] || { echo "protobuf's well-known types missing: $$wkt not found (apt-get install libprotobuf-dev)"; exit 1; }

# The dashboard's types come from the openapi-typescript in web/node_modules (npm ci from
# the lock file, the same install make build does next), so the check needs no other tool.
check-generate: generate ## Fail when gen/ or the dashboard's API types differ from what proto/, db/ and api/openapi.yaml generate
	@if [ -n "$$(git status --porcelain -- gen/ web/src/lib/api/schema.d.ts)" ]; then \
	  git status --short -- gen/ web/src/lib/api/schema.d.ts; echo "generated code is stale: run 'make generate' and commit"; exit 1; fi

swagger-ui: ## Re-vendor Swagger UI (pinned version + integrity in the script) for /docs
	bash scripts/vendor-swagger-ui.sh

bench: envd ## Benchmarks (printed figures, ratios against baselines)
	WRENN_ENVD_BIN=$(BIN)/envd WRENN_TEST_DIR=$(WRENN_TEST_DIR) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./bench/...

clean:
	rm -rf $(BIN) web/.svelte-kit
	find web/build -mindepth 1 ! -name .gitkeep -delete 2>/dev/null || true
