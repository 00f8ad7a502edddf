# heapscope — see README.md. `make demo` and `make test` work on a fresh Debian 12 as root.
SWIFT      ?= swift
CC         ?= gcc
PKGS       := libdw-dev libelf-dev zlib1g-dev protobuf-compiler libiberty-dev elfutils gcc g++ binutils valgrind libc6-dbg pkg-config libjemalloc2 musl-tools llvm time xz-utils strace util-linux libcap2-bin debootstrap python3 python3-dbg perl gcc-multilib gdb linux-perf
TT         := TestTargets/build
# Address-resolution targets: several compile units, -O2 inlining, C++, a dlopen'ed library,
# a stripped copy (.dynsym only), a copy whose DWARF is in a separate file found by debuglink, and
# a stripped copy with MiniDebugInfo (the local function symbols, xz-compressed in .gnu_debugdata).
SYMTT      := $(TT)/symbols $(TT)/libsymplugin.so $(TT)/symbols_stripped $(TT)/symbols_debuglink $(TT)/symbols_minidebuginfo
SYMSRC     := TestTargets/sym
CFLAGS_TT  := -g -O0 -Wall -Wno-unused-function
# Targets that record every allocation of the process by wrapping malloc (see TestTargets/manifest.h)
TRACKED    := heap_kinds threads corrupt corruptions heap_fuzz locked noncontig leaks resemble pool
BINARIES   := $(addprefix $(TT)/,$(TRACKED) bigheap demo heap_kinds_static heap_kinds_stripped heap_kinds_static_stripped heap_kinds_static_nobanner heap_kinds_static_nobanner_stripped) $(TT)/own_malloc $(TT)/plain_wait $(TT)/plain_wait_musl $(TT)/plain_wait_32 $(TT)/no_malloc $(TT)/types $(TT)/typed $(TT)/typedbig $(TT)/phases $(TT)/stubborn $(TT)/reserve $(TT)/sleepers $(TT)/soak $(TT)/typedef_cycle $(TT)/frames $(TT)/frames_asan $(TT)/cxxstd \
             $(SYMTT)

.PHONY: all deps build debug targets test demo bench clean matrix dist fuzz

all: build

# Install missing Debian packages (no-op when all are present).
deps:
	@missing=""; for p in $(PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

build: deps
	$(SWIFT) build -c release --product heapscope

debug: deps
	$(SWIFT) build

targets: deps $(BINARIES)

$(TT):
	mkdir -p $(TT)
$(addprefix $(TT)/,$(TRACKED)): $(TT)/%: TestTargets/%.c TestTargets/manifest.h | $(TT)
	$(CC) $(CFLAGS_TT) -DINTERPOSE -o $@ $< -lpthread
$(TT)/bigheap: $(TT)/%: TestTargets/%.c TestTargets/manifest.h | $(TT)
	$(CC) $(CFLAGS_TT) -O2 -o $@ $< -lpthread
$(TT)/demo: TestTargets/demo.c | $(TT)
	$(CC) $(CFLAGS_TT) -o $@ $< -lpthread
# A known call chain for pasted backtraces (-rdynamic: backtrace_symbols names its functions).
$(TT)/frames: TestTargets/frames.c | $(TT)
	$(CC) $(CFLAGS_TT) -rdynamic -o $@ $<
$(TT)/frames_asan: TestTargets/frames.c | $(TT)
	$(CC) $(CFLAGS_TT) -fsanitize=address -o $@ $<
WRAP       := -DWRAP -Wl,--wrap=malloc,--wrap=free,--wrap=calloc,--wrap=realloc,--wrap=memalign
$(TT)/heap_kinds_static: TestTargets/heap_kinds.c TestTargets/manifest.h | $(TT)
	$(CC) $(CFLAGS_TT) -static $(WRAP) -o $@ $< -lpthread
# As most static programs: glibc's version string is not linked in (the layout is told apart instead).
$(TT)/heap_kinds_static_nobanner: TestTargets/heap_kinds.c TestTargets/manifest.h | $(TT)
	$(CC) $(CFLAGS_TT) -static -DHS_NO_BANNER $(WRAP) -o $@ $< -lpthread
$(TT)/heap_kinds_static_nobanner_stripped: $(TT)/heap_kinds_static_nobanner
	strip -o $@ $<
$(TT)/heap_kinds_stripped: $(TT)/heap_kinds
	strip -o $@ $<
$(TT)/heap_kinds_static_stripped: $(TT)/heap_kinds_static
	strip -o $@ $<

# The glibc matrix: Debian roots (other glibc versions) built once with debootstrap and cached
# outside the checkout; the tests build and run their targets in each (Tests/MatrixTests.swift).
HEAPSCOPE_ROOTS ?= /var/cache/heapscope/roots
MATRIX     := bullseye trixie sid experimental
export HEAPSCOPE_ROOTS
matrix: deps
	@for r in $(MATRIX); do Tests/matrix/make-root.sh $$r || exit 1; done

# A hung test must fail the run with its output, not stall CI: the whole suite gets 25 minutes.
# Suites run one after another: most tests block on real processes, and run side by side on 2
# cores they starved quick suites past their time limits (5 minutes in all, serially).
test: deps targets matrix dist
	$(SWIFT) build
	timeout -k 30 1500 $(SWIFT) test --no-parallel

# A binary for hosts without Swift: the Swift runtime, libstdc++, libdw, libelf, zlib, liblzma and
# libbz2 linked in (Debian's -dev packages ship their .a files), so it needs only glibc (>= the
# build host's, 2.36 on Debian 12) and libgcc_s. SwiftPM links what pkg-config names; a private
# pkg-config directory names the static archives instead. Output: $(DISTTAR).
VERSION    := $(shell sed -n 's/.*number = "\(.*\)"/\1/p' Sources/Inspect/Version.swift)
DIST       := .build/dist
DISTNAME   := heapscope-$(VERSION)-x86_64-linux
DISTTAR    := $(DIST)/$(DISTNAME).tar.gz
LIBDIR     := /usr/lib/x86_64-linux-gnu
dist: deps
	rm -rf $(DIST)/link $(DIST)/$(DISTNAME) && mkdir -p $(DIST)/link $(DIST)/$(DISTNAME)/bin
	for l in dw elf z lzma bz2; do test -f $(LIBDIR)/lib$$l.a || { echo "dist: $(LIBDIR)/lib$$l.a is missing" >&2; exit 1; }; \
	  ln -s $(LIBDIR)/lib$$l.a $(DIST)/link/; done
	ln -s $$($(CC) -print-file-name=libstdc++.a) $(DIST)/link/
	printf 'Name: libdw\nDescription: static\nVersion: 0\nLibs: -L%s -ldw -lelf -lbz2 -llzma -lz\n' $(CURDIR)/$(DIST)/link > $(DIST)/link/libdw.pc
	printf 'Name: zlib\nDescription: static\nVersion: 0\nLibs: -L%s -lz\n' $(CURDIR)/$(DIST)/link > $(DIST)/link/zlib.pc
	PKG_CONFIG_PATH=$(CURDIR)/$(DIST)/link $(SWIFT) build -c release --product heapscope --scratch-path $(DIST)/build \
	  --static-swift-stdlib -Xlinker -L$(CURDIR)/$(DIST)/link
	cp $(DIST)/build/release/heapscope $(DIST)/$(DISTNAME)/bin/
	strip $(DIST)/$(DISTNAME)/bin/heapscope
	cp README.md $(DIST)/$(DISTNAME)/
	@libs=$$(ldd $(DIST)/$(DISTNAME)/bin/heapscope | awk '{print $$1}' | grep -vE '^(linux-vdso|/lib64/ld-linux-x86-64|libc|libm|libgcc_s)\.so' || true); \
	  if [ -n "$$libs" ]; then echo "dist: the binary still needs $$libs" >&2; exit 1; fi
	tar -C $(DIST) -czf $(DISTTAR) $(DISTNAME)
	@echo "dist: $(DISTTAR) ($$(du -h $(DISTTAR) | cut -f1)); needs glibc >= $$(objdump -T $(DIST)/$(DISTNAME)/bin/heapscope | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1 | cut -d_ -f2)"

# The fuzz harnesses for longer (FUZZ_SECONDS each: snapshot files, ELF/DWARF, sym's input text, core files);
# make test runs them for a bounded number of cases.
FUZZ_SECONDS ?= 600
fuzz: deps targets
	$(SWIFT) build
	HEAPSCOPE_FUZZ_SECONDS=$(FUZZ_SECONDS) timeout -k 30 $$(( 3 * $(FUZZ_SECONDS) + 900 )) $(SWIFT) test --no-parallel --filter FuzzTests

demo: build targets
	@./TestTargets/demo.sh .build/release/heapscope $(TT)/demo

# BENCH_ARGS: --quick (smaller inputs), --only heap|types|sym|pauses. The sym part also resolves addresses in
# heapscope's own debug build, so that is built too.
bench: deps targets
	$(SWIFT) build
	$(SWIFT) build -c release
	.build/release/heapscope-bench $(BENCH_ARGS)

# Record Tests/Images anew (when the walker's input changes): the recorded-image tests' recorder
# writes each image of this run there.
record-images: deps targets
	$(SWIFT) build --build-tests
	HEAPSCOPE_RECORD_IMAGES=$(CURDIR)/Tests/Images $(SWIFT) test --skip-build --filter 'RecordedImageTests/recorder'

clean:
	rm -rf .build $(TT)

$(TT)/types: TestTargets/types.cpp TestTargets/manifest.h | $(TT)
	g++ -g -O0 -Wall -Wno-unused-function -DINTERPOSE -o $@ $< -lpthread
# The C++ standard library as release builds have it: -O2 -g.
$(TT)/cxxstd: TestTargets/cxxstd.cpp TestTargets/manifest.h | $(TT)
	g++ -g -O2 -Wall -Wno-unused-function -DINTERPOSE -o $@ $< -lpthread

# Declared types: -O0 keeps every local in its frame; only the program's own allocations are recorded.
$(TT)/typed: TestTargets/typed.c TestTargets/manifest.h $(TT)/libtypedlib.so | $(TT)
	$(CC) $(CFLAGS_TT) -o $@ $< -L$(TT) -ltypedlib -Wl,-rpath,'$$ORIGIN' -lpthread
$(TT)/libtypedlib.so: TestTargets/typedlib.c | $(TT)
	$(CC) $(CFLAGS_TT) -shared -fPIC -o $@ $<

$(TT)/typedbig: TestTargets/typedbig.c TestTargets/manifest.h | $(TT)
	$(CC) -g -O2 -Wall -Wno-unused-function -o $@ $<

$(TT)/own_malloc: TestTargets/own_malloc.c | $(TT)
	$(CC) $(CFLAGS_TT) -o $@ $<

$(TT)/plain_wait: TestTargets/plain_wait.c | $(TT)
	$(CC) $(CFLAGS_TT) -o $@ $<
# A program that never calls malloc (exit 7).
$(TT)/no_malloc: TestTargets/plain_wait.c | $(TT)
	$(CC) $(CFLAGS_TT) -DNO_MALLOC -o $@ $<
# A 32-bit process: refused (exit 6) before it is stopped.
$(TT)/plain_wait_32: TestTargets/plain_wait.c | $(TT)
	$(CC) -m32 $(CFLAGS_TT) -o $@ $<
$(TT)/plain_wait_musl: TestTargets/plain_wait.c | $(TT)
	musl-gcc -static -O0 -g -o $@ $<

$(addprefix $(TT)/sym_,main.o util.o): $(TT)/sym_%.o: $(SYMSRC)/symbols_%.c $(SYMSRC)/symbols.h | $(TT)
	$(CC) -g -O2 -Wall -c -o $@ $<
$(TT)/sym_cxx.o: $(SYMSRC)/symbols_cxx.cpp | $(TT)
	g++ -g -O2 -Wall -c -o $@ $<
# (no -g: its functions are named by the symbol table only, under Rust mangled names)
$(TT)/sym_rust.o: $(SYMSRC)/symbols_rust.c | $(TT)
	$(CC) -O2 -Wall -c -o $@ $<
$(TT)/symbols: $(TT)/sym_main.o $(TT)/sym_util.o $(TT)/sym_cxx.o $(TT)/sym_rust.o
	g++ -g -O2 -rdynamic -o $@ $^ -ldl
$(TT)/libsymplugin.so: $(SYMSRC)/symbols_plugin.c $(SYMSRC)/symbols.h | $(TT)
	$(CC) -g -O2 -Wall -shared -fPIC -o $@ $<
$(TT)/symbols_stripped: $(TT)/symbols
	strip --strip-all -o $@ $<
$(TT)/symbols_debuglink: $(TT)/symbols
	objcopy --only-keep-debug $< $@.debug
	strip --strip-unneeded -o $@ $<
	cd $(TT) && objcopy --add-gnu-debuglink=symbols_debuglink.debug symbols_debuglink
# MiniDebugInfo as Fedora builds it: the function symbols missing from .dynsym, in a symbol-only
# ELF file, xz-compressed into .gnu_debugdata of the stripped binary.
$(TT)/symbols_minidebuginfo: $(TT)/symbols
	nm -D $< --format=posix --defined-only | awk '{print $$1}' | sort > $@.dynsyms
	nm $< --format=posix --defined-only | awk '$$2 == "T" || $$2 == "t" {print $$1}' | sort > $@.funcsyms
	comm -13 $@.dynsyms $@.funcsyms > $@.keep
	objcopy --only-keep-debug $< $@.debug
	objcopy -S --remove-section .gdb_index --remove-section .comment --keep-symbols=$@.keep $@.debug $@.mini
	rm -f $@.mini.xz && xz $@.mini
	strip --strip-all -o $@.tmp $<
	objcopy --add-section .gnu_debugdata=$@.mini.xz $@.tmp $@
	rm -f $@.dynsyms $@.funcsyms $@.keep $@.debug $@.mini.xz $@.tmp

# Snapshot diffs: a heap that changes in three phases, one per SIGUSR1.
$(TT)/phases: TestTargets/phases.c TestTargets/manifest.h | $(TT)
	$(CC) $(CFLAGS_TT) -o $@ $< -lpthread

# Hard to stop or hold: a thread in vfork (D state), a leader that called pthread_exit, sleeping threads.
$(TT)/stubborn: TestTargets/stubborn.c TestTargets/manifest.h | $(TT)
	$(CC) $(CFLAGS_TT) -o $@ $< -lpthread

# What a leak check copies: reservations, shared memory, many mappings, many threads.
$(TT)/reserve: TestTargets/reserve.c TestTargets/manifest.h | $(TT)
	$(CC) $(CFLAGS_TT) -o $@ $< -lpthread

# Threads asleep in nanosleep, epoll_wait and read, with and without a seccomp filter.
$(TT)/sleepers: TestTargets/sleepers.c TestTargets/manifest.h | $(TT)
	$(CC) $(CFLAGS_TT) -o $@ $< -lpthread

# The soak test's target: allocating, forking, creating threads, receiving signals, asleep in every way.
$(TT)/soak: TestTargets/soak.c TestTargets/manifest.h | $(TT)
	$(CC) $(CFLAGS_TT) -O2 -o $@ $< -lpthread

# A typedef reached again through its own struct's members (the DWARF type reader must not trap).
$(TT)/typedef_cycle: TestTargets/typedef_cycle.c TestTargets/manifest.h | $(TT)
	$(CC) $(CFLAGS_TT) -o $@ $<
