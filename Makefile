# The README's commands. `make test` is what CI runs (through .ci/run).
SWIFT ?= swift

.PHONY: deps build test fuzz-smoke demo packages clean

# Debian packages the build and the tests need (installed only when missing, and only as root).
deps:
	@scripts/install-deps

build: deps
	$(SWIFT) build

test: deps
	$(SWIFT) build --build-tests
	# Serial inside each process: on a 2-core machine parallel suites that block cooperative
	# threads (process waits, file I/O) can starve the Swift concurrency pool. Two processes side
	# by side, the end-to-end suites and the rest, each with its own pool (scripts/run-tests).
	scripts/run-tests $(SWIFT)

demo: deps
	$(SWIFT) build  # upkeep, upkeep-agent and upkeep-sandbox: the demo runs all three
	$$($(SWIFT) build --show-bin-path)/upkeep demo

# Fuzzes the frame decoder briefly (CI); fuzz/run.sh SECONDS for longer runs.
fuzz-smoke:
	fuzz/run.sh 30

# Debian packages upkeep and upkeep-agent (amd64) and a tarball of the same binaries, in dist/
# (docs/install.md). Release builds with a static Swift runtime: long on a small machine.
packages:
	@scripts/install-deps --packaging
	scripts/build-packages

clean:
	rm -rf .build dist
