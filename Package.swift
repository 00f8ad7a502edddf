// swift-tools-version:6.0
import PackageDescription

// Architecture (each folder one job; see README "Architecture"):
//   CShim          tiny C: ptrace (variadic), waitpid status macros, process_vm_readv
//   CLibdw         system library: elfutils libdw / libelf (pkg-config libdw)
//   ProcessAccess  attach / stop every thread / copy memory / detach, /proc parsing
//   Symbols        ELF + DWARF symbols through libdwfl
//   HeapModel      allocator-independent chunk table, states, stats (what analysis sees)
//   Allocator      the seam a heap walker implements (detect and plan, capture while stopped, walk)
//   GlibcMalloc    the glibc ptmalloc2 walker (the only code that knows glibc internals)
//   Analysis       allocator-independent analysis on HeapModel: reachability (leaks)
//   Snapshot       the snapshot file format (write, read, checks)
//   Inspect        sources (pid, core, snapshot file) to results: attach, copy, detach, walk,
//                  analyse; snapshots, diff, watch, why; Failure and the exit codes
//   Output         text and JSON (one JSONWriter) of every result
//   heapscope      the command-line interface: arguments in, one library call, Output out
let package = Package(
    name: "heapscope",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "heapscope", targets: ["heapscope"]),
        .library(name: "HeapscopeKit", targets: ["Inspect", "HeapModel"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(name: "CShim", path: "Sources/CShim", linkerSettings: [.linkedLibrary("stdc++"), .linkedLibrary("iberty")]),
        .systemLibrary(name: "CLibdw", path: "Sources/CLibdw", pkgConfig: "libdw",
                       providers: [.apt(["libdw-dev", "libelf-dev"])]),
        // zlib, for gzip (pprof profiles are gzipped protobuf). libdw links it already.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .target(name: "ProcessAccess", dependencies: ["CShim"], path: "Sources/ProcessAccess"),
        // Exclusivity is checked at compile time only in Symbols: the run-time checks on its index
        // classes cost 9% of `sym` (measured with perf on 1M addresses); the code is single-threaded
        // under SymbolSession.lock.
        .target(name: "Symbols", dependencies: ["CLibdw", "CShim", "ProcessAccess", "HeapModel"], path: "Sources/Symbols",
                swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]),
        .target(name: "HeapModel", path: "Sources/HeapModel"),
        // The snapshot file format (no dependency on how a snapshot was taken; GlibcMalloc only for
        // the kinds of chunk that files of format 1, which predate recording them, hold).
        .target(name: "Snapshot", dependencies: ["HeapModel", "GlibcMalloc", "CZlib", "CShim"], path: "Sources/Snapshot"),
        // The allocator seam: what a heap walker implements (AllocatorTarget, AllocatorCapture).
        .target(name: "Allocator", dependencies: ["HeapModel", "ProcessAccess"], path: "Sources/Allocator"),
        .target(name: "GlibcMalloc", dependencies: ["Allocator", "HeapModel", "ProcessAccess", "Symbols"], path: "Sources/GlibcMalloc"),
        // Analysis: the same compile-time-only exclusivity checking, for the scanner's hot loop.
        .target(name: "Analysis", dependencies: ["HeapModel", "ProcessAccess"], path: "Sources/Analysis",
                swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]),
        // Inspect: the same (per-block loops over the copied heap when labelling types: 5% of `leaks`).
        .target(name: "Inspect", dependencies: ["Allocator", "ProcessAccess", "Symbols", "HeapModel", "GlibcMalloc", "Analysis", "Snapshot"],
                path: "Sources/Inspect", swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]),
        // Output: text and JSON of every result (what the command line prints), leak groups, why's names.
        // The same compile-time-only exclusivity checking: `sym`'s printers read resolved batches
        // (a class) per field, and the run-time checks were 2% of `sym --json`.
        .target(name: "Output", dependencies: ["Inspect", "HeapModel", "Symbols", "Analysis", "ProcessAccess", "Snapshot", "CShim"],
                path: "Sources/Output", swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"])]),
        // The command line: parses arguments, calls one library function per command, formats
        // its result through Output (LintTests keep its imports to these).
        .executableTarget(name: "heapscope", dependencies: [
            "Output", "Inspect", "HeapModel",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], path: "Sources/heapscope"),
        .executableTarget(name: "heapscope-bench", dependencies: ["Inspect", "HeapModel", "ProcessAccess"],
                          path: "Tests/Benchmarks"),
        // Fuzz harnesses (Tests/Fuzz/main.swift): snapshot files, ELF/DWARF for sym, sym's input text, core files.
        .executableTarget(name: "heapscope-fuzz", dependencies: ["Inspect", "HeapModel", "Snapshot", "Analysis", "ProcessAccess"], path: "Tests/Fuzz"),
        .testTarget(name: "HeapscopeTests", dependencies: ["Inspect", "HeapModel", "ProcessAccess", "GlibcMalloc", "Analysis", "Snapshot", "Symbols", "Output"],
                    path: "Tests/HeapscopeTests"),
    ],
    swiftLanguageModes: [.v6]
)
