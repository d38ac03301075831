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
	$(SWIFT) test --skip-build --disable-xctest

demo: deps
	$(SWIFT) build --product upkeep
	$$($(SWIFT) build --show-bin-path)/upkeep demo

# Fuzzes the frame decoder briefly (CI); fuzz/run.sh SECONDS for longer runs.
fuzz-smoke:
	fuzz/run.sh 30

clean:
	rm -rf .build
