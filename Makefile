# swarmvpn — build, test, fuzz and benchmark.

GO       ?= go
BIN      ?= bin/swarmvpn
FUZZTIME ?= 20s
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

.PHONY: build test cross fuzz bench bench-cmd clean e2e e2e-utp

build:
	$(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o $(BIN) ./cmd/swarmvpn

# The project's whole check: formatting, vet, builds and vets for Windows
# and macOS, every test with the race detector (the go-yamux fork's in
# third_party too), then the soak, which the
# race detector cannot run (too many goroutines); SWARMVPN_SOAK_DURATION
# shortens its 60s hold.
test:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(MAKE) --no-print-directory cross
	$(GO) test -race -timeout 20m ./...
	cd third_party/go-yamux && $(GO) test -race -count=1 -timeout 5m .
	$(GO) test -count=1 -timeout 5m -run '^TestSoak' ./internal/testnet/

# The code and its tests must keep building on the other systems users run
# it on: build and vet (tests included) for Windows and macOS.
CROSS_OS ?= windows darwin
cross:
	@set -e; for os in $(CROSS_OS); do \
	  echo "GOOS=$$os go build ./... && go vet ./..."; \
	  GOOS=$$os $(GO) build ./...; \
	  GOOS=$$os $(GO) vet ./...; \
	done

# Runs every fuzz target for FUZZTIME each. New crashers land in the
# package's testdata/fuzz and become regression tests.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "== $$pkg $$t"; \
	    $(GO) test -run='^$$' -fuzz="^$$t$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

# End-to-end suite in network namespaces with real torrent clients (root;
# installs qbittorrent-nox, python3-libtorrent, opentracker, mktorrent,
# iproute2, nftables, curl when missing). E2E_ARGS picks scenarios.
e2e:
	bash e2e/run.sh $(E2E_ARGS)

# uTP through swarmvpn against the direct routed path, across network
# namespaces (root; needs python3-libtorrent, iproute2, curl). Env: ROUNDS,
# SIZE_MIB, RATE (tbf on every veth), LEECH_RCVBUF.
e2e-utp:
	bash e2e/utpbench.sh

bench:
	$(GO) test -run='^$$' -bench=. -benchmem -count=5 ./... | tee bench.txt

# The whole path, measured by the binary itself against the direct
# baseline (see BENCHMARKS.md for comparisons with ssh -D).
bench-cmd: build
	$(BIN) bench --direct

clean:
	rm -rf bin bench.txt
