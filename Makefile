# The two commands of the README: `make serve` and `make test`. Both do all set-up first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup setup-sdks serve test lint protos browser vendor-js api-baseline bench-latency bench-locomo \
	bench-load bench-chaos bench-stream bench-export

# The Go and TypeScript SDKs' tools (see clients/go/README.md, clients/typescript/README.md).
# protoc-gen-go's version is the google.golang.org/protobuf of clients/go/go.mod (generated code
# needs that runtime); protoc-gen-go-grpc is its own module. Both go into a git-ignored .tools/bin,
# rebuilt only when a version changes (the stamp's name holds both).
GO_SDK := clients/go
TS_SDK := clients/typescript
TOOLS_BIN := $(CURDIR)/.tools/bin
PROTOC_GEN_GO_VERSION := $(shell awk '$$1 == "google.golang.org/protobuf" { print $$2 }' $(GO_SDK)/go.mod)
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GO_TOOLS_STAMP := .tools/stamps/protoc-gen-go-$(PROTOC_GEN_GO_VERSION)-grpc-$(PROTOC_GEN_GO_GRPC_VERSION)
NPM_STAMP := $(TS_SDK)/node_modules/.installed-stamp

# Reinstall when a dependency list changes; editable installs pick up code changes by themselves.
$(STAMP): pyproject.toml clients/python/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e clients/python -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

$(GO_TOOLS_STAMP):
	GOBIN=$(TOOLS_BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	GOBIN=$(TOOLS_BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
	mkdir -p .tools/stamps && rm -f .tools/stamps/protoc-gen-go-* && touch $@

# npm ci empties node_modules first, so the stamp inside it goes too when the lock changes.
$(NPM_STAMP): $(TS_SDK)/package.json $(TS_SDK)/package-lock.json
	cd $(TS_SDK) && npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup-sdks: $(GO_TOOLS_STAMP) $(NPM_STAMP)

serve: setup
	$(BIN)/persona serve

# Static checks first (fast), then the Go and TypeScript SDKs' unit tests, then the whole test
# suite (Neo4j, the SDKs' end-to-end tests against a live server and the viewer's browser test
# included; `slow` is opt-in).
test: setup setup-sdks browser lint
	cd $(GO_SDK) && go test -count=1 ./...
	cd $(TS_SDK) && npm test --silent
	$(BIN)/pytest -q

# Debian's headless Chromium and its driver, for the viewer's browser test (skipped when there).
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; else \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			chromium chromium-driver; \
	fi

lint: setup setup-sdks
	$(BIN)/python scripts/gen_protos.py --check
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code
	$(BIN)/buf breaking --against $(API_BASELINE)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	test -z "$$(gofmt -l $(GO_SDK))" || { gofmt -l $(GO_SDK); exit 1; }
	cd $(GO_SDK) && go vet -tags e2e ./...
	cd $(TS_SDK) && node_modules/.bin/tsc --noEmit
	$(BIN)/python scripts/vendor_js.py --check

# The released contract that `make lint` holds the protos to (buf breaking, FILE rules). Take a
# new baseline after an additive change has landed; a breaking one needs a new package (v2).
API_BASELINE := api/v1-baseline.json
api-baseline: setup
	$(BIN)/buf build --exclude-source-info -o $(API_BASELINE)

# The viewer's graph library, copied again from its npm lock (after changing the version).
vendor-js: setup
	$(BIN)/python scripts/vendor_js.py

# Regenerates the code of all three SDKs (Python, Go, TypeScript) from protos/.
protos: setup setup-sdks
	$(BIN)/buf format -w
	$(BIN)/python scripts/gen_protos.py

# Benchmarks (see BENCHMARKS.md): figures are printed and written to bench/results/.
bench-locomo: setup
	$(BIN)/python bench/locomo.py ../shared/locomo/dev --out /tmp/persona-locomo-dev.json

bench-latency: setup
	$(BIN)/python bench/latency.py --sizes 1000,10000,100000 --out bench/results/latency_sqlite.json

# The gRPC load tool of bench/load.py, pinned, from the Go module proxy into .tools/bin.
GHZ_VERSION := v0.121.0
GHZ := $(TOOLS_BIN)/ghz
GHZ_STAMP := .tools/stamps/ghz-$(GHZ_VERSION)
$(GHZ_STAMP):
	GOBIN=$(TOOLS_BIN) go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)
	mkdir -p .tools/stamps && touch $@

bench-load: setup $(GHZ_STAMP)
	$(BIN)/python bench/load.py --ghz $(GHZ) --out bench/results/load.json

bench-chaos: setup
	$(BIN)/python bench/chaos.py --out bench/results/chaos.json

bench-stream: setup
	$(BIN)/python bench/stream.py --out bench/results/stream.json

bench-export: setup
	$(BIN)/python bench/export_memory.py --sizes 10000,100000 --out bench/results/export_memory.json
