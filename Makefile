# The README's commands. `make test` is what CI runs (through .ci/run).
SWIFT ?= swift

.PHONY: build test fuzz-smoke demo clean

build:
	$(SWIFT) build

test:
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-xctest

clean:
	rm -rf .build
