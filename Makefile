# copyscope — make help lists the targets.
GO        ?= go
BIN       ?= bin/copyscope
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 20s
DEMOFLAGS ?=
BENCHFLAGS ?= --size 1GiB --runs 5

.PHONY: help build generate generate-check test test-short fuzz demo bench lint clean

help: ## list the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-z-]+:.*## /{printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## build bin/copyscope (no clang needed: BPF objects are committed)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/copyscope

generate: ## regenerate the bpf2go objects from bpf/*.bpf.c (needs clang, llvm, libbpf-dev)
	$(GO) generate ./...

generate-check: generate ## regenerate and fail if the committed objects differ
	@git diff --exit-code --stat -- '*_bpfel.go' '*_bpfel.o' || { echo "generated BPF objects are stale: run make generate and commit"; exit 1; }

test: build ## vet, race-enabled tests (privileged ones run as root), itest/ (client libraries), short fuzzing
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 40m ./...
	$(GO) test -count=1 -run '^TestConnectionFlood$$' ./broker/kafka # latency bounds at their real value, without the race detector's slowdown
	cd itest && $(GO) vet ./... && $(GO) test -count=1 -timeout 20m ./... # no -race: kcat-vs-kfake times real speed
	$(MAKE) fuzz

test-short: ## quick tests without race detector or fuzzing
	$(GO) test -short -count=1 ./...
	cd itest && $(GO) test -short -count=1 ./...

fuzz: ## run every fuzz target for FUZZTIME each
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/func //'); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg; \
	  done; \
	done

demo: build ## run the live side-by-side demo (root for exact eBPF counts)
	./$(BIN) demo $(DEMOFLAGS)

bench: build ## sweep every path through the broker and raw, side by side
	./$(BIN) bench $(BENCHFLAGS)

lint: ## gofmt, go vet, and go.mod/go.sum tidy
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "run gofmt -w"; exit 1; }
	$(GO) vet ./...
	@$(GO) mod tidy -diff || { echo "go.mod or go.sum is not tidy: run go mod tidy and commit"; exit 1; }

clean: ## remove build output
	rm -rf bin
