# The README's commands. `make test` is what CI runs (through .ci/run).
SWIFT ?= swift

.PHONY: build test fuzz-smoke demo clean

build:
	$(SWIFT) build

test:
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-xctest

# Fuzzes the frame decoder briefly (CI); fuzz/run.sh SECONDS for longer runs.
fuzz-smoke:
	fuzz/run.sh 30

clean:
	rm -rf .build
