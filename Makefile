# The two commands a user needs: `make demo` and `make test`. Both install missing
# Debian packages first (scripts/install-deps), then configure and build.
JOBS ?= $(shell nproc)
BUILD_DIR ?= build
ASAN_DIR ?= build-asan

.PHONY: all deps build build-asan demo test test-release test-asan check-format clean

all: build

deps:
	@scripts/install-deps

$(BUILD_DIR)/build.ninja $(BUILD_DIR)/Makefile:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD_DIR)/Makefile
	cmake --build $(BUILD_DIR) -j $(JOBS)

$(ASAN_DIR)/Makefile:
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DROLLGUARD_SANITIZE=ON

build-asan: deps $(ASAN_DIR)/Makefile
	cmake --build $(ASAN_DIR) -j $(JOBS)

# Runs the daemon on examples/quickstart against a bundled demo service on loopback.
demo: build
	examples/quickstart/run-demo $(BUILD_DIR)/daemon/rollguard

# The whole suite, twice: an optimised build, and under AddressSanitizer + UBSan.
test: test-release test-asan

test-release: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(ASAN_DIR) && ctest --output-on-failure -j $(JOBS)

check-format:
	clang-format --dry-run --Werror $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR)
