/// The examples each command's --help ends with (kept here, beside what the commands print).
public enum Examples {
    static func block(_ lines: [(String, String)]) -> String {
        "\n\nExamples:\n" + lines.map { "  \($0.0)\n      \($0.1)" }.joined(separator: "\n")
    }
    public static let stat = block([
        ("heapscope stat 1234", "arenas, free memory by kind, mallinfo2 as the process itself would report it"),
        ("heapscope stat core.1234", "the same from a core file (gcore's, the kernel's)"),
        ("heapscope stat 1234 --json | jq .mallinfo2", "one field for a script"),
    ])
    public static let chunks = block([
        ("heapscope chunks 1234 --state in_use --min-size 1M", "the big chunks in use"),
        ("heapscope chunks 1234 --type 'struct session' --json", "every chunk of one type"),
        ("heapscope chunks 1234 --state tcache --no-types", "what the per-thread caches hold (shorter pause)"),
    ])
    public static let leaks = block([
        ("heapscope leaks 1234", "what nothing points to any more, by class, size and type"),
        ("heapscope leaks 1234 --show reachable --limit 50", "also what is still reachable, largest groups first"),
        ("heapscope leaks 1234 --addresses --json", "every chunk of every group, for why or show"),
    ])
    public static let why = block([
        ("heapscope why 1234 0x55d0c3a2b2c0", "who holds the chunk at this address"),
        ("heapscope why app.snap 0x55d0c3a2b2c0", "the typed path a snapshot recorded"),
    ])
    public static let types = block([
        ("heapscope types 1234", "outstanding memory by type, with the roots that own it"),
        ("heapscope types 1234 --state mmapped --owners 5", "only mmapped chunks, five owners per type"),
    ])
    public static let show = block([
        ("heapscope show 1234 0x55d0c3a2b2c0", "one chunk's fields by name, its pointers, a hex dump"),
        ("heapscope show app.snap 0x55d0c3a2b2c0 --bytes 64", "from a snapshot taken with --contents"),
    ])
    public static let snapshot = block([
        ("heapscope snapshot 1234 -o before.snap", "save one inspection (mode 0600, no contents)"),
        ("heapscope snapshot 1234 -o after.snap --pprof after.pb.gz", "also a pprof heap profile"),
    ])
    public static let diff = block([
        ("heapscope diff before.snap after.snap", "what grew, by type, and why (causes)"),
        ("heapscope diff before.snap after.snap --by owner --pprof d.pb.gz", "by owning root; pprof -diff_base"),
    ])
    public static let watch = block([
        ("heapscope watch 1234 --interval 30s", "a line per sample until Ctrl-C, with the slope of in-use bytes"),
        ("heapscope watch 1234 --interval 1m --out /var/tmp/hs --snapshot-every 10 --older-than 1h", "snapshots, and what never went away"),
    ])
    public static let sym = block([
        ("heapscope sym --pid 1234 0x7f3755a81154", "function, file:line and inlined frames"),
        ("heapscope sym --elf ./app 0x4005d4 --format llvm", "as llvm-symbolizer prints it"),
        ("heapscope sym --pid 1234 --annotate < crash.log", "the log with every address resolved"),
        ("heapscope sym --elf ./app --elf libfoo.so < backtrace.txt", "a pasted backtrace (glibc, gdb, ASan, Valgrind, perf), frame by frame"),
    ])
    public static let gensyms = block([
        ("heapscope gensyms --elf ./app", "every symbol by address, grouped by source file"),
    ])
}
