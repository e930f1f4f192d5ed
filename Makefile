# Two commands on a fresh Debian 12 machine, as root:
#   make run   installs what is missing, builds, makes a dev PKI and runs exemptd on 127.0.0.1:8443
#   make test  the same set-up, then every test
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
CMAKE_FLAGS ?=
DEPS := g++ cmake make pkg-config git openssl curl sqlite3 ca-certificates \
        libboost1.81-dev libboost-json1.81-dev libssl-dev libsqlite3-dev libyaml-cpp-dev \
        libspdlog-dev libcli11-dev libsystemd-dev catch2 \
        systemd dpkg-dev file

.PHONY: deps build test run asan clean

deps:
	@missing=$$(for p in $(DEPS); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

build: deps
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR) -j2

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j2

# The dev PKI and the SQLite database live under ./var (ignored by git).
run: build
	certs/make-dev-pki.sh var/pki
	exec $(BUILD_DIR)/daemon/exemptd --config dev/exemptd.yaml

# The whole suite under AddressSanitizer and UndefinedBehaviorSanitizer.
asan:
	$(MAKE) test BUILD_DIR=build-asan BUILD_TYPE=Debug CMAKE_FLAGS=-DEXEMPTD_ENABLE_SANITIZERS=ON

clean:
	rm -rf $(BUILD_DIR) build-asan
