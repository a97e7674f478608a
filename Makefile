# make test: everything CI runs. Integration suites need bin/consul (built
# here from the pinned tools module) and prometheus on PATH.
#
# Two modules: the library (this directory) and the reference binary
# (examples/prome-shard, with its own go.mod so that its command line,
# TLS and browser-test dependencies stay out of the library's). Each
# target runs in both.
GO          ?= go
CONSUL      := bin/consul
STATICCHECK := $(CURDIR)/bin/staticcheck
PKGS        := ./...
BINARY      := examples/prome-shard
INBIN       := $(GO) -C $(BINARY)

.PHONY: test test-lib test-bin fmt vet lint deploy unit bench fuzz chaos scale consul clean prome-shard

# The binary's end-to-end suite is the longest; it runs beside the
# library's packages.
test: fmt vet lint deploy $(CONSUL)
	$(MAKE) --no-print-directory -j2 --output-sync=target test-lib test-bin

test-lib: $(CONSUL)
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-bin: $(CONSUL)
	$(INBIN) test -race -count=1 -timeout 20m $(PKGS)

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt -l reports:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)
	$(INBIN) vet $(PKGS)

# lint: staticcheck with its default checks, pinned in tools/lint/go.mod.
lint: $(STATICCHECK)
	$(STATICCHECK) $(PKGS)
	cd $(BINARY) && $(STATICCHECK) $(PKGS)

$(STATICCHECK): tools/lint/go.mod tools/lint/go.sum
	mkdir -p bin
	cd tools/lint && $(GO) build -o $(STATICCHECK) honnef.co/go/tools/cmd/staticcheck
	touch $(STATICCHECK)

# deploy: the operations kit beside the binary. The alerting rules pass
# promtool check and their unit tests; the systemd unit passes
# systemd-analyze verify where systemd is installed (pointed at the binary
# built here). The dashboard is checked against a live /metrics by the
# binary's end-to-end test.
DEPLOY := $(BINARY)/deploy
deploy: bin/prome-shard
	promtool check rules $(DEPLOY)/rules.yml
	cd $(DEPLOY) && promtool test rules rules_test.yml
	@if command -v systemd-analyze >/dev/null 2>&1; then \
		mkdir -p bin/unit && sed 's#/usr/local/bin/prome-shard#$(CURDIR)/bin/prome-shard#g' $(DEPLOY)/prome-shard.service > bin/unit/prome-shard.service && \
		echo "systemd-analyze verify prome-shard.service" && systemd-analyze verify bin/unit/prome-shard.service; \
	else echo "no systemd-analyze here: the unit is not verified"; fi

# prome-shard: the binary, with its version, revision, branch and build
# date stamped as prometheus/common/version reads them. TAGS adds service
# discoveries: make prome-shard TAGS=promsd_kubernetes (or promsd_all).
TAGS     ?=
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
VPKG     := github.com/prometheus/common/version
LDFLAGS  := -X $(VPKG).Version=$(VERSION) -X $(VPKG).Revision=$(shell git rev-parse HEAD 2>/dev/null) \
	-X $(VPKG).Branch=$(shell git rev-parse --abbrev-ref HEAD 2>/dev/null) -X $(VPKG).BuildUser=$(shell id -un)@$(shell hostname) \
	-X $(VPKG).BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)
prome-shard: bin/prome-shard
bin/prome-shard: FORCE
	mkdir -p bin
	$(INBIN) build -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(CURDIR)/bin/prome-shard .
FORCE:

# unit: the fast tests only, without the real Consul and Prometheus.
unit:
	$(GO) test -race -short $(PKGS)
	$(INBIN) test -race -short $(PKGS)

# fuzz: each fuzz target for FUZZTIME; a crasher lands in the package's
# testdata/fuzz and from then on runs with every go test.
FUZZTIME ?= 30s
FUZZ := FuzzParseFileSD:./targets FuzzHTTPBody:./targets FuzzMarshalRoundTrip:./filesd FuzzLoadConfig:./$(BINARY)
fuzz:
	@for f in $(FUZZ); do \
		echo "== $${f%%:*} ($(FUZZTIME))"; \
		d=$${f#*:}; m=.; case $$d in ./$(BINARY)*) m=$(BINARY); d=.;; esac; \
		$(GO) -C $$m test -run '^$$' -fuzz "^$${f%%:*}$$" -fuzztime $(FUZZTIME) $$d || exit 1; \
	done

# chaos: real Consul, real Prometheus and the binary while something goes
# wrong (a flapping collector, a truncated source, Consul restarted, a hung
# reload beside a dying collector); prints the figures the README quotes.
chaos: $(CONSUL)
	@PROMSHARD_CHAOS=1 $(INBIN) test -count=1 -run '^TestChaos' -v -timeout 20m . > bin/chaos.log 2>&1; \
	s=$$?; grep -E '^(--- |ok|FAIL)|chaos:' bin/chaos.log; exit $$s

# scale: the binary on a million targets in one file_sd file and 100
# collectors (the pool is generated, nothing is kept): first reshard,
# unchanged refreshes, a changed reshard, RSS and peak RSS. Prints the
# figures the README quotes.
scale:
	@PROMSHARD_SCALE=1 $(INBIN) test -count=1 -run '^TestScale$$' -v -timeout 20m . > bin/scale.log 2>&1; \
	s=$$?; grep -E '^(--- |ok|FAIL)|scale:' bin/scale.log; exit $$s

# bench: every benchmark on one core; the README holds the numbers.
bench:
	$(GO) test -run '^$$' -bench . -cpu 1 -count 1 -timeout 60m $(PKGS)
	$(INBIN) test -run '^$$' -bench . -cpu 1 -count 1 -timeout 60m $(PKGS)

consul: $(CONSUL)

# The Consul server, pinned in tools/go.mod and built from the Go module
# proxy (about 5 minutes cold). The main go.mod stays free of it.
$(CONSUL): tools/go.mod tools/go.sum
	mkdir -p bin
	cd tools && $(GO) build -o ../$(CONSUL) github.com/hashicorp/consul
	touch $(CONSUL)

clean:
	rm -rf bin out
