# Two commands on a fresh Debian 12 machine, as root:
#   make run   installs what is missing, builds, makes a dev PKI and runs exemptd on 127.0.0.1:8443
#   make test  the same set-up, then every test
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_FLAGS ?=
DEPS := g++ cmake make pkg-config git openssl curl sqlite3 ca-certificates \
        libboost1.81-dev libboost-json1.81-dev libssl-dev libsqlite3-dev libyaml-cpp-dev \
        libspdlog-dev libcli11-dev libsystemd-dev catch2 \
        libjemalloc-dev systemd dpkg-dev file ccache

# Only `make fuzz` needs these: clang and its libFuzzer/sanitizer runtimes.
FUZZ_DEPS := clang libclang-rt-14-dev
FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_SECONDS ?= 60
# libFuzzer's per-input timeout counts wall time: on a busy machine a niced fuzzer can wait far
# longer than an input takes, so this is generous (replay a reported timeout to see its real cost).
FUZZ_TIMEOUT ?= 120
FUZZ_TARGETS := posture router policy agreement_document agreement_verify identity audit_chain
FUZZ_DICT_posture := fuzz/dict/json.dict
FUZZ_DICT_router := fuzz/dict/http.dict
FUZZ_DICT_policy := fuzz/dict/yaml.dict
FUZZ_DICT_agreement_document := fuzz/dict/agreement.dict
FUZZ_DICT_agreement_verify := fuzz/dict/agreement.dict
FUZZ_DICT_audit_chain := fuzz/dict/json.dict

.PHONY: deps build test run asan fuzz fuzz-build clean

deps:
	@missing=$$(for p in $(DEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# ccache, when installed, compiles for every build folder. Its cache lives in $HOME, so a fresh
# clone in another folder (CI) reuses earlier compilations: paths under the source folder are
# hashed relative to it, and the working directory is left out of the hash (objects built in
# another clone keep that clone's folder as their debug-info compilation directory).
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := 1
# The project has no C sources, so only the C++ compiler gets the launcher.
LAUNCHER = $(if $(shell command -v ccache),-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)

build: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(LAUNCHER) $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j2

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j2

# The dev PKI and the SQLite database live under ./var (ignored by git).
run: build
	certs/make-dev-pki.sh var/pki
	exec $(BUILD_DIR)/daemon/exemptd --config dev/exemptd.yaml

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer (LeakSanitizer included).
# A Debug build (assertions on) at -O1 -g1: the tests run about twice as fast as at -O0, and
# reports still name file and line.
ASAN_BUILD_DIR ?= build-asan
ASAN_CMAKE_FLAGS := -DEXEMPTD_ENABLE_SANITIZERS=ON "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -g1"
asan:
	$(MAKE) test BUILD_DIR=$(ASAN_BUILD_DIR) BUILD_TYPE=Debug CMAKE_FLAGS='$(ASAN_CMAKE_FLAGS)'

# Builds the fuzz targets with clang, libFuzzer, ASan and UBSan, and runs each for FUZZ_SECONDS
# (niced, one after another) on its seeds in fuzz/corpus/<target>; `make fuzz-run-router` runs one.
# New inputs go to $(FUZZ_BUILD_DIR)/corpus/<target> and crashes to $(FUZZ_BUILD_DIR)/artifacts/,
# so the committed seeds only change on purpose.
fuzz: fuzz-build
	set -e; for t in $(FUZZ_TARGETS); do $(MAKE) --no-print-directory fuzz-run-$$t; done

fuzz-build:
	$(MAKE) deps DEPS="$(DEPS) $(FUZZ_DEPS)"
	cmake -S . -B $(FUZZ_BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
	  -DEXEMPTD_BUILD_FUZZERS=ON -DEXEMPTD_ENABLE_SANITIZERS=ON -DEXEMPTD_BUILD_BENCH=OFF $(CMAKE_FLAGS)
	cmake --build $(FUZZ_BUILD_DIR) -j2 --target fuzzers

fuzz-run-%:
	mkdir -p $(FUZZ_BUILD_DIR)/corpus/$* $(FUZZ_BUILD_DIR)/artifacts
	@echo "== fuzz_$* for $(FUZZ_SECONDS) s"
	nice -n 10 $(FUZZ_BUILD_DIR)/fuzz/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -timeout=$(FUZZ_TIMEOUT) -print_final_stats=1 \
	  $(if $(FUZZ_DICT_$*),-dict=$(FUZZ_DICT_$*)) -artifact_prefix=$(FUZZ_BUILD_DIR)/artifacts/$*- \
	  $(FUZZ_BUILD_DIR)/corpus/$* fuzz/corpus/$*

clean:
	rm -rf $(BUILD_DIR) $(ASAN_BUILD_DIR) $(FUZZ_BUILD_DIR)
