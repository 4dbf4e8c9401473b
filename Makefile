# blkmirror: see README.md.  `make` builds, `make check` runs every test,
# `make demo` shows the main job, `make bench` measures against peer systems.
PREFIX  ?= /usr/local
DESTDIR ?=
B       ?= build
PKGS    := liburing libnl-genl-3.0 openssl cunit inih json-c
DEBS    := build-essential pkg-config liburing-dev libnl-genl-3-dev libssl-dev \
           libcunit1-dev libinih-dev libjson-c-dev libnbd-bin python3-libnbd \
           qemu-utils nbdkit fio mandoc iproute2 procps \
           qemu-system-x86 qemu-system-common busybox-static kmod cpio xz-utils zstd e2fsprogs \
           libfiu-dev fiu-utils nftables libtsan2 dmsetup

# The fuzz targets (tests/fuzz/, make fuzz): clang's libFuzzer.
DEBS    += clang-14 libclang-rt-14-dev

# The OCF agent's test: ocf-tester, ocf-shellfuncs, and xmllint for meta-data.
DEBS    += resource-agents libxml2-utils
# The cluster and database tests in the VM (tests/vm/test-vm-pacemaker.sh,
# test-vm-postgres.sh) run the host's Pacemaker, Corosync and PostgreSQL.
DEBS    += pacemaker corosync pacemaker-cli-utils crmsh postgresql python3-psycopg2

CFLAGS  ?= -O2 -g
WFLAGS  := -std=gnu11 -Wall -Wextra -Werror -Wno-unused-parameter \
           -Wmissing-prototypes -Wshadow -Wno-format-truncation -fno-strict-aliasing
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -O1
LDFLAGS += -fsanitize=address,undefined
endif
# ThreadSanitizer (gcc's libtsan): `make TSAN=1 B=build/tsan`, for
# `make check-tsan`.  ASan and TSan cannot share a binary.
ifeq ($(TSAN),1)
ifeq ($(SAN),1)
$(error SAN=1 and TSAN=1 are mutually exclusive: build them in separate B= directories)
endif
CFLAGS  += -fsanitize=thread -fno-omit-frame-pointer -O1
LDFLAGS += -fsanitize=thread
endif
# Failpoints (lib/fault.h, Debian's libfiu): in the test builds only.
FIU     ?= $(if $(filter 1,$(SAN) $(TSAN)),1,0)
ifeq ($(FIU),1)
CPPFLAGS += -DFIU_ENABLE
LDLIBS  += -lfiu
endif
CPPFLAGS += -D_GNU_SOURCE -I. $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lpthread

LIB_SRC    := $(wildcard lib/*.c)
UBLK_SRC   := $(wildcard ublk/*.c)
PROTO_SRC  := $(wildcard proto/*.c)
DAEMON_SRC := $(filter-out daemon/mirrord.c,$(wildcard daemon/*.c))
CORE_OBJ   := $(patsubst %.c,$(B)/%.o,$(LIB_SRC) $(UBLK_SRC) $(PROTO_SRC) $(DAEMON_SRC))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))

Q := @
ifeq ($(V),1)
Q :=
endif

.PHONY: fuzz fuzz-smoke fuzz-build fuzz-bins
.PHONY: all check check-unit check-integration check-vm check-tsan soak demo bench install deps lint clean
all: $(B)/mirrord $(B)/mirrorctl

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(WFLAGS) -MMD -MP -c -o $@ $<

$(B)/core.a: $(CORE_OBJ)
	$(Q)rm -f $@ && $(AR) rcs $@ $^

$(B)/mirrord: $(B)/daemon/mirrord.o $(B)/core.a
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/mirrorctl: $(B)/tools/mirrorctl.o $(B)/core.a
	@echo "  LD      $@"
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(B)/tests/%: $(B)/tests/unit/%.o $(B)/core.a
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

units: $(UNIT_BIN)

.SECONDARY:

-include $(shell find $(B) -name '*.d' -type f 2>/dev/null)

# Every test runs against the sanitizer build.
check: deps
	$(Q)$(MAKE) --no-print-directory B=build/asan SAN=1 all units
	$(Q)tests/run --bin build/asan $(TESTS)

check-unit: deps
	$(Q)$(MAKE) --no-print-directory B=build/asan SAN=1 all units
	$(Q)tests/run --bin build/asan unit

check-integration: deps
	$(Q)$(MAKE) --no-print-directory B=build/asan SAN=1 all units
	$(Q)tests/run --bin build/asan integration

# The replication tests against the ThreadSanitizer build (build/tsan); any
# TSan report fails the test.  make check runs two of them under TSan
# (tests/integration/test-tsan.sh).
TSAN_TESTS := test-repl-protocols test-repl-resync test-repl-crash test-repl-verify \
              test-repl-pullahead test-fencing test-repl-switchover test-repl-outdated
check-tsan: deps
	$(Q)$(MAKE) --no-print-directory B=build/tsan TSAN=1 all
	$(Q)tests/run --bin build/tsan $(TSAN_TESTS)

# The long run of the fault-injection suite, by hand (README.md, Tests):
# the crash loop with SOAK_POINTS crash points, the network and disk fault
# tests SOAK_ROUNDS times each (those that draw at random print their seed), the generation model
# to depth SOAK_GEN_DEPTH, the replication tests under TSan, then every fuzz
# target for SOAK_FUZZ_SECONDS.  Stops at the first failing step; each
# round prints the seed that replays it.
SOAK_POINTS ?= 500
SOAK_ROUNDS ?= 5
SOAK_GEN_DEPTH ?= 10
SOAK_FUZZ_SECONDS ?= 600
SOAK_FAULT_TESTS := test-net-partition test-repl-async-crash test-fencing test-repl-switchover-crash \
                    $(notdir $(basename $(wildcard tests/integration/test-disk-faults-random.sh)))
soak: deps
	$(Q)$(MAKE) --no-print-directory B=build/asan SAN=1 all units
	$(Q)CRASH_POINTS=$(SOAK_POINTS) TEST_TIMEOUT_SCALE=$$(( ($(SOAK_POINTS) + 53) / 54 + 1 )) \
	    tests/run --bin build/asan test-crashloop
	$(Q)for i in $$(seq $(SOAK_ROUNDS)); do \
	    echo "soak round $$i of $(SOAK_ROUNDS)"; \
	    tests/run --bin build/asan $(SOAK_FAULT_TESTS) || exit 1; \
	done
	$(Q)GEN_MODEL_DEPTH=$(SOAK_GEN_DEPTH) TEST_TIMEOUT=7200 tests/run --bin build/asan test_gen_model
	$(Q)$(MAKE) --no-print-directory check-tsan
	$(Q)$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(SOAK_FUZZ_SECONDS)

# The kernel front ends, in a VM (tests/vm/lib.sh).
check-vm: deps
	$(Q)$(MAKE) --no-print-directory B=build/asan SAN=1 all units
	$(Q)tests/run --bin build/asan vm

demo: deps all
	$(Q)./demo.sh $(B)

# The benchmark's own peers: DRBD's tools for the VM part (only what they
# depend on: their recommended mail system is not needed).
BENCH_DEBS := drbd-utils qemu-system-common

bench: deps all
	$(Q)missing=""; for p in $(BENCH_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    echo "  DEPS   $$missing"; \
	    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	$(Q)bench/run --bin $(B) --vm

# Fuzzing (README.md, Tests; tests/fuzz/run): the targets link the project's objects
# built with clang into build/fuzz, instrumented for libFuzzer.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SAN     := address,undefined
FUZZ_CFLAGS  := -O1 -g -fno-omit-frame-pointer -Wno-unknown-warning-option \
		-fsanitize=fuzzer-no-link,$(FUZZ_SAN) -fno-sanitize-recover=undefined

fuzz-bins: $(patsubst %,$(B)/fuzz/fuzz_%,$(FUZZ_TARGETS))

$(B)/fuzz/fuzz_%: $(B)/tests/fuzz/fuzz_%.o $(B)/core.a
	@mkdir -p $(dir $@)
	@echo "  LD      $@"
	$(Q)$(CC) -fsanitize=fuzzer,$(FUZZ_SAN) -o $@ $^ $(LDLIBS)

fuzz-build: deps
	$(Q)$(MAKE) --no-print-directory B=build/fuzz CC=$(FUZZ_CC) SAN=0 FIU=0 \
	    CFLAGS="$(FUZZ_CFLAGS)" fuzz-bins

# Each target for FUZZ_SECONDS, one after the other.
fuzz: fuzz-build
	$(Q)tests/fuzz/run --bin build/fuzz --seconds $(FUZZ_SECONDS)

# Each target over its corpus and for a few seconds more (make check runs
# it as tests/integration/test-fuzz-smoke.sh).
fuzz-smoke: fuzz-build
	$(Q)tests/fuzz/run --bin build/fuzz --seconds 5

lint:
	$(Q)mandoc -Tlint -W warning man/*.[0-9]

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/share/man/man8 \
	    $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 0755 $(B)/mirrord $(B)/mirrorctl tools/ocf/blkmirror-cluster-hook $(DESTDIR)$(PREFIX)/sbin/
	install -m 0644 man/*.8 $(DESTDIR)$(PREFIX)/share/man/man8/
	install -m 0644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/
	-install -m 0644 man/*.7 $(DESTDIR)$(PREFIX)/share/man/man7/ 2>/dev/null
	install -d $(DESTDIR)/usr/lib/ocf/resource.d/blkmirror $(DESTDIR)/lib/systemd/system
	sed 's|^sbindir=.*|sbindir=$(PREFIX)/sbin|' tools/ocf/blkmirror \
	    >$(DESTDIR)/usr/lib/ocf/resource.d/blkmirror/blkmirror
	chmod 0755 $(DESTDIR)/usr/lib/ocf/resource.d/blkmirror/blkmirror
	sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' tools/systemd/mirrord@.service \
	    >$(DESTDIR)/lib/systemd/system/mirrord@.service
	chmod 0644 $(DESTDIR)/lib/systemd/system/mirrord@.service

# Installs the Debian packages the project needs, only when one is missing.
deps:
	$(Q)missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	    echo "  DEPS   $$missing"; \
	    SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

clean:
	rm -rf build
