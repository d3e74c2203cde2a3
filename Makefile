# llmscope build. `make` builds build/bin/*; `make test` runs every test;
# `make bench` writes bench/results.md; `make asan|ubsan` build and test
# sanitizer variants in build-<san>/ (`make tsan` the threaded parts); `make fuzz` runs the fuzz targets briefly.

CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
# What profilers and perf need: frame pointers everywhere, symbols, a build id.
# No fp contraction (GCC's ISO mode default; clang's is on): the SIMD paths
# that claim the scalar loops' bits must not get fused multiply-adds unasked.
BASEFLAGS = -std=c11 -D_GNU_SOURCE -fno-omit-frame-pointer -mno-omit-leaf-frame-pointer -ffp-contract=off \
            -Wall -Wextra -Wno-unused-parameter -Wshadow -Wvla -pthread -MMD -MP
LDFLAGS ?=
LDBASE  = -pthread -Wl,--build-id=sha1 -rdynamic
LIBS    = -lpcre2-8 -ljansson -ldw -lelf -lz -lm
SRV_LIBS = -lmicrohttpd

LIB_SRC   := $(sort $(wildcard src/util/*.c src/compute/*.c src/model/*.c src/prof/*.c))
TOOL_SRC  := $(sort $(wildcard src/tools/*.c))
# The server: src/server/main.c holds main(); the rest is linked into tests too.
SRV_SRC   := $(sort $(filter-out src/server/main.c,$(wildcard src/server/*.c)))
SRV_MAIN  := $(wildcard src/server/main.c)
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
FUZZ_SRC  := $(sort $(wildcard fuzz/fuzz_*.c))

LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
TOOL_OBJ  := $(TOOL_SRC:%.c=$(BUILD)/obj/%.o)
SRV_OBJ   := $(SRV_SRC:%.c=$(BUILD)/obj/%.o)
SRV_BIN   := $(if $(SRV_MAIN),$(BUILD)/bin/llm-server)
TEST_BIN  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
LIBA      := $(BUILD)/libllmscope.a

.PHONY: all test bench asan ubsan tsan fuzz clean run
all: $(BUILD)/bin/llmscope $(SRV_BIN) $(TEST_BIN)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -Isrc -c $< -o $@

$(LIBA): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/llmscope: $(TOOL_OBJ) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) $(LDBASE) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(LIBA) $(LIBS)

$(BUILD)/bin/llm-server: $(BUILD)/obj/src/server/main.o $(SRV_OBJ) $(LIBA)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) $(LDBASE) $(LDFLAGS) -o $@ $^ $(LIBS) $(SRV_LIBS)

# Unit tests link the library and the server's objects (not its main).
$(BUILD)/tests/%: tests/%.c tests/harness.h $(LIBA) $(SRV_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASEFLAGS) $(CFLAGS) -Isrc -Itests $(LDBASE) $(LDFLAGS) -o $@ $< $(SRV_OBJ) $(LIBA) $(LIBS) $(SRV_LIBS)

# Tests find the shared models through MODELS (default ../shared/models).
MODELS ?= $(abspath ../shared/models)
export MODELS
test: all
	@LLMSCOPE_BIN=$(abspath $(BUILD)/bin) scripts/run-tests.sh $(TEST_BIN)

run: all
	scripts/run.sh

bench: all
	scripts/bench.sh
	scripts/bench-serve.sh
	scripts/bench-instruments.sh
	scripts/bench-lab.sh

asan:
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fsanitize=address -fno-sanitize-recover=all" LDFLAGS="-fsanitize=address" test
ubsan:
	$(MAKE) BUILD=build-ubsan CFLAGS="-O1 -g -fsanitize=undefined -fno-sanitize-recover=all" LDFLAGS="-fsanitize=undefined" test
# TSan covers the threaded parts: the named primitives, profilers, tracer,
# counters, threadpool and forward pass, the load generator, and the server
# over loopback (a report makes a test binary, or the server's exit, fail).
TSAN_TESTS = test_sync test_prof test_trace test_ops test_matmul test_model test_pmu test_load
tsan:
	$(MAKE) BUILD=build-tsan CFLAGS="-O1 -g -fsanitize=thread" LDFLAGS="-fsanitize=thread" all
	LLMSCOPE_SANITIZER=thread TESTS_SH="test_server.sh" LLMSCOPE_BIN=$(abspath build-tsan/bin) \
	  scripts/run-tests.sh $(TSAN_TESTS:%=build-tsan/tests/%)

# Fuzz targets: clang + libFuzzer with ASan/UBSan, each run for FUZZ_SECONDS over fuzz/corpus/<name>.
FUZZ_SECONDS ?= 30
# The sources are compiled once (coverage-instrumented, not linked with the
# fuzzer's main) and linked into every target.
FUZZ_DIR ?= build-fuzz
FUZZ_FLAGS = -std=c11 -D_GNU_SOURCE -ffp-contract=off -O1 -g -fno-omit-frame-pointer -fno-sanitize-recover=all -Isrc -pthread
FUZZ_SAN = address,undefined
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_DIR)/%)
FUZZ_OBJ := $(LIB_SRC:%.c=$(FUZZ_DIR)/obj/%.o) $(SRV_SRC:%.c=$(FUZZ_DIR)/obj/%.o)
$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SAN) -MMD -MP -c -o $@ $<
$(FUZZ_DIR)/%: fuzz/%.c $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -fsanitize=fuzzer,$(FUZZ_SAN) -MMD -MP -o $@ $< $(FUZZ_OBJ) $(LIBS) $(SRV_LIBS)
fuzz: $(FUZZ_BIN)
	scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BIN)
.SECONDARY: $(FUZZ_OBJ)
-include $(FUZZ_OBJ:.o=.d) $(FUZZ_BIN:=.d)

clean:
	rm -rf build build-asan build-ubsan build-tsan build-fuzz

# Every object's and test's header dependencies (the server's main too: a
# header that changes a struct must rebuild every object that lays it out).
-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(SRV_OBJ:.o=.d) $(BUILD)/obj/src/server/main.d $(TEST_BIN:=.d)
