import ArgumentParser
import Inspect
import Output

/// Where addresses are looked up: a live process or ELF files.
struct SymbolSourceOptions: ParsableArguments {
    @Option(help: "Resolve in this running process (modules from /proc/PID/maps; no ptrace stop).")
    var pid: Int32?
    @Option(name: .customLong("elf"), help: ArgumentHelp(
        "Resolve in this ELF file (repeatable; input lines 'FILE ADDR' pick another file).", valueName: "path"))
    var elves: [String] = []
    @Option(help: ArgumentHelp("Resolve in the process this core file was taken of (gcore's, the kernel's; its modules' files are read from disk where their build-id matches).", valueName: "path"))
    var core: String?
    @Flag(help: "Do not use separate debug files (build-id, .gnu_debuglink); ELF symbols only.")
    var noDebuginfo = false

    func validate() throws {
        let sources = (pid == nil ? 0 : 1) + (elves.isEmpty ? 0 : 1) + (core == nil ? 0 : 1)
        if sources == 0 { throw ValidationError("say where to look: --pid PID, --core FILE or --elf PATH") }
        if sources > 1 { throw ValidationError("--pid, --core and --elf cannot be combined") }
        if let p = pid, p <= 0 { throw ValidationError("pid must be a positive process id, got \(p)") }
    }

    var useDebugInfo: Bool { !noDebuginfo && Environment.debugInfoEnabled }

    /// Open the sessions; a failure ends the command with its documented exit code.
    func open() throws -> Sessions {
        var s = Sessions(useDebugInfo: useDebugInfo)
        if let pid {
            try s.openProcess(pid)
        } else if let core {
            try s.openCore(core)
        } else {
            for e in elves { _ = try s.file(e) }
            s.defaultFile = elves.first
        }
        return s
    }
}

extension SymFormat: ExpressibleByArgument {}

struct Sym: ParsableCommand, JSONCommand {
    static let configuration = CommandConfiguration(
        abstract: "Resolve addresses to module, symbol+offset, source file:line:column and inlined frames.",
        discussion: """
        Addresses are hexadecimal, with or without 0x. Without ADDR arguments, reads one per line \
        from standard input; a line 'FILE ADDR' looks ADDR up in FILE (an ELF file). With --pid, \
        addresses are the process's run-time addresses; with --elf, the file's virtual addresses \
        (or file offsets with --file-offset). An address that cannot be resolved still gets an answer, \
        with the reason.

        Backtraces pasted as other tools print them are read too: glibc's backtrace_symbols \
        ('./prog(func+0x1a) [0x...]', 'lib.so(+0x1234) [0x...]'), gdb's bt, AddressSanitizer \
        ('#3 0x... in f (/lib/x.so+0x1234)'), Valgrind ('==1== by 0x...: f (in /lib/x.so)'), perf \
        script ('55d4c3a1b189 f+0x1a (/bin/prog)') and 'module+0xOFF'. A frame with a module and an \
        offset is resolved in that module (an --elf file of that path or base name, or the \
        process's module), else at its run-time address. Every frame but the innermost of a \
        backtrace holds a return address, which is looked up at address - 1, as gdb does (the line \
        of the call; --no-adjust looks up the address as given).

        --annotate copies standard input to standard output: a line that is a frame gets ' \
        [resolution]' at its end; in other lines every 0x-prefixed hex number that resolves to a \
        symbol does; everything else is left as it was.

        Formats: text (default), llvm (exactly llvm-symbolizer's default output), gensyms (grouped \
        under 'Src: FILE'), --json (one JSON object per line, per address).
        """ + Examples.sym)

    @OptionGroup var source: SymbolSourceOptions
    @Flag(help: "Addresses are file offsets in the --elf file, not virtual addresses.") var fileOffset = false
    @Flag(help: "One JSON object per address, one per line.") var json = false
    @Option(help: "Output format: \(SymFormat.allCases.map(\.rawValue).joined(separator: ", ")).") var format: SymFormat = .text
    @Flag(help: "Copy standard input to standard output with each resolvable address annotated.") var annotate = false
    @Flag(help: "Look up return addresses of pasted backtraces as given, not at address - 1.") var noAdjust = false
    @Argument(help: "Addresses (hex). Default: one per line from standard input.") var addresses: [String] = []

    func validate() throws {
        if fileOffset && source.elves.isEmpty { throw ValidationError("--file-offset needs --elf") }
        if annotate && !addresses.isEmpty { throw ValidationError("--annotate reads standard input; give no addresses") }
    }

    var wantsJSON: Bool { json }

    func run() throws {
        var sessions = try source.open()
        if annotate { return Annotate.run(&sessions, adjust: !noAdjust) }
        SymPipeline.run(addresses: addresses, sessions: &sessions, json: json, format: format, fileOffset: fileOffset, adjust: !noAdjust)
    }
}

struct Gensyms: ParsableCommand, JSONCommand {
    static let configuration = CommandConfiguration(
        abstract: "List every symbol, sorted by address, with type, size and source file (AIX gensyms style).",
        discussion: Examples.gensyms)
    @OptionGroup var source: SymbolSourceOptions
    @Flag(help: "One JSON object per symbol, one per line.") var json = false

    var wantsJSON: Bool { json }

    func run() throws {
        var sessions = try source.open()
        GensymsFormat.write(&sessions, files: source.elves, json: json)
    }
}
