# The README's commands. `make test` is what CI runs (through .ci/run).
SWIFT ?= swift

.PHONY: deps build test fuzz-smoke demo clean

# Debian packages the build and the tests need (installed only when missing, and only as root).
deps:
	@scripts/install-deps

build: deps
	$(SWIFT) build

test: deps
	$(SWIFT) build --build-tests
	# Serial: on a 2-core machine parallel suites that block cooperative threads (process waits,
	# file I/O) can starve the Swift concurrency pool; serial runs finish in bounded time.
	$(SWIFT) test --skip-build --disable-xctest --no-parallel

demo: deps
	$(SWIFT) build  # upkeep, upkeep-agent and upkeep-sandbox: the demo runs all three
	$$($(SWIFT) build --show-bin-path)/upkeep demo

# Fuzzes the frame decoder briefly (CI); fuzz/run.sh SECONDS for longer runs.
fuzz-smoke:
	fuzz/run.sh 30

clean:
	rm -rf .build
