# The two commands a user needs: `make demo` and `make test`. Both install missing
# Debian packages first (scripts/install-deps), then configure and build.
JOBS ?= $(shell nproc)
# Tests run more at a time than there are cores: the end-to-end tests spend most of their
# time waiting for probe intervals and timeouts (measured: the release suite 142 s with
# 2 at a time, 88 s with 4; ASan 240 s -> 183 s).
CTEST_JOBS ?= $(shell echo $$(( $$(nproc) * 2 )))
BUILD_DIR ?= build
ASAN_DIR ?= build-asan
FUZZ_DIR ?= build-fuzz
FUZZ_SECONDS ?= 45

.PHONY: all deps build build-asan demo test test-release test-asan test-package package fuzz bench-rules
.PHONY: bench bench-smoke bench-binaries check-format clean

all: build

deps:
	@scripts/install-deps

# Debug information is line tables only (-g1): file:line in sanitizer reports, backtraces
# and perf, for about 30% less compile time than full -g (measured on responder.cc,
# config.cc and metrics_test.cc: 8.8 -> 6.1 s, 7.0 -> 5.0 s, 5.2 -> 3.3 s).
$(BUILD_DIR)/build.ninja $(BUILD_DIR)/Makefile:
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
	  -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG"

build: deps $(BUILD_DIR)/Makefile
	cmake --build $(BUILD_DIR) -j $(JOBS)

$(ASAN_DIR)/Makefile:
	cmake -S . -B $(ASAN_DIR) -DCMAKE_BUILD_TYPE=Debug -DROLLGUARD_SANITIZE=ON \
	  -DCMAKE_CXX_FLAGS_DEBUG="-g1" -DCMAKE_C_FLAGS_DEBUG="-g1"

build-asan: deps $(ASAN_DIR)/Makefile
	cmake --build $(ASAN_DIR) -j $(JOBS)

# Runs the daemon on examples/quickstart against a bundled demo service on loopback.
demo: build
	examples/quickstart/run-demo $(BUILD_DIR)/daemon/rollguard

# The whole suite: every source file against .clang-format, the rule parser under
# libFuzzer for FUZZ_SECONDS, the .deb installed, upgraded and purged once, then every
# test twice, in an optimised build and under AddressSanitizer + UBSan (ctest's summary
# comes last).
test: check-format fuzz test-package bench-smoke test-release test-asan

test-release: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(CTEST_JOBS)

test-asan: build-asan
	cd $(ASAN_DIR) && ctest --output-on-failure -j $(CTEST_JOBS)

# The .deb (and an .rpm where rpmbuild exists) of the optimised build, in
# $(BUILD_DIR)/packages/: packaging/CMakeLists.txt.
package: build
	cd $(BUILD_DIR) && cpack

# lintian, then install, upgrade, remove and purge that package on this machine (as root,
# through sudo otherwise; the package is purged even when the test fails):
# tests/package/test-package.
test-package: package
	$(if $(filter 0,$(shell id -u)),,sudo) tests/package/test-package $(BUILD_DIR)

$(FUZZ_DIR)/Makefile:
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DROLLGUARD_FUZZ=ON -DROLLGUARD_TESTS=OFF

# libFuzzer on the rule language (tests/fuzz), starting from the checked-in seed corpus.
# Any crash, hang (>10s on one input), leak or sanitizer report fails the run; the input
# that caused it is left in $(FUZZ_DIR)/artifacts/ (reproduce: rule_parser_fuzz FILE).
fuzz: deps $(FUZZ_DIR)/Makefile
	cmake --build $(FUZZ_DIR) --target rule_parser_fuzz -j $(JOBS)
	rm -rf $(FUZZ_DIR)/corpus $(FUZZ_DIR)/artifacts
	mkdir -p $(FUZZ_DIR)/corpus $(FUZZ_DIR)/artifacts
	$(FUZZ_DIR)/tests/fuzz/rule_parser_fuzz -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	  -rss_limit_mb=2048 -dict=tests/fuzz/rule_parser.dict -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_DIR)/artifacts/ $(FUZZ_DIR)/corpus tests/fuzz/corpus/rule_parser

# The benchmark suite (bench/bench.py, figures in bench/RESULTS.md): rollguard beside
# blackbox_exporter and a bare libcurl loop on a loopback nginx, schedule lateness,
# memory, detection-to-action, rule evaluation. BENCH_SECONDS is each throughput window
# (about 5 minutes in all with the default); BENCH_ARGS passes more, e.g. --only schedule.
BENCH_SECONDS ?= 10
BENCH_ARGS ?=

bench-binaries: deps $(BUILD_DIR)/Makefile
	cmake --build $(BUILD_DIR) --target rollguard curl_ceiling rule_eval_bench -j $(JOBS)

bench: bench-binaries
	bench/bench.py --build $(BUILD_DIR) --seconds $(BENCH_SECONDS) $(BENCH_ARGS)

# Every scenario at a tiny scale (seconds): `make test` runs it so the suite never rots.
bench-smoke: bench-binaries
	bench/bench.py --build $(BUILD_DIR) --smoke

# Rule evaluation throughput (bench/rule_eval_bench.cc) in the optimised build; not a test.
bench-rules: deps $(BUILD_DIR)/Makefile
	cmake --build $(BUILD_DIR) --target rule_eval_bench -j $(JOBS)
	$(BUILD_DIR)/bench/rule_eval_bench

check-format: deps
	clang-format --dry-run --Werror $$(git ls-files '*.cc' '*.h')

clean:
	rm -rf $(BUILD_DIR) $(ASAN_DIR) $(FUZZ_DIR)
