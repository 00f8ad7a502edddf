import ArgumentParser
import Glibc
import Symbols

/// Where addresses are looked up: a live process or ELF files.
struct SymbolSourceOptions: ParsableArguments {
    @Option(help: "Resolve in this running process (modules from /proc/PID/maps; no ptrace stop).")
    var pid: Int32?
    @Option(name: .customLong("elf"), help: ArgumentHelp(
        "Resolve in this ELF file (repeatable; input lines 'FILE ADDR' pick another file).", valueName: "path"))
    var elves: [String] = []
    @Flag(help: "Do not use separate debug files (build-id, .gnu_debuglink); ELF symbols only.")
    var noDebuginfo = false

    func validate() throws {
        if pid == nil && elves.isEmpty { throw ValidationError("say where to look: --pid PID or --elf PATH") }
        if pid != nil && !elves.isEmpty { throw ValidationError("--pid and --elf cannot be combined") }
        if let p = pid, p <= 0 { throw ValidationError("pid must be a positive process id, got \(p)") }
    }

    var useDebugInfo: Bool { !noDebuginfo && getenv("HEAPSCOPE_NO_DEBUGINFO").map { String(cString: $0) != "1" } ?? true }

    /// Open the sessions; errors end the command with the documented exit codes.
    func open() throws -> Sessions {
        var s = Sessions(useDebugInfo: useDebugInfo)
        if let pid {
            try s.openProcess(pid)
        } else {
            for e in elves { _ = try s.file(e) }
            s.defaultFile = elves.first
        }
        return s
    }
}

/// The open libdwfl sessions of one command: the process, or the files named so far.
struct Sessions {
    let useDebugInfo: Bool
    var process: SymbolSession?
    var files: [String: SymbolSession] = [:]
    var defaultFile: String?

    init(useDebugInfo: Bool) { self.useDebugInfo = useDebugInfo }

    mutating func openProcess(_ pid: Int32) throws {
        if kill(pid, 0) != 0 && errno == ESRCH {
            FileHandleErr.write("heapscope: no such process: \(pid)\n"); throw ExitCode(3)
        }
        if let st = try? String(procStatOf: pid), st == "Z" || st == "X" {
            FileHandleErr.write("heapscope: process \(pid) has exited (zombie); its mappings are gone\n"); throw ExitCode(5)
        }
        if access("/proc/\(pid)/maps", R_OK) != 0 || Glibc.open("/proc/\(pid)/maps", O_RDONLY | O_CLOEXEC).closing() < 0 {
            FileHandleErr.write("heapscope: permission denied reading /proc/\(pid)/maps: run as the process's user or as root (CAP_SYS_PTRACE)\n")
            throw ExitCode(4)
        }
        do { process = try SymbolSession(pid: pid, useDebugInfo: useDebugInfo) } catch {
            if case .processGone = error { FileHandleErr.write("heapscope: \(error.description)\n"); throw ExitCode(5) }
            if kill(pid, 0) != 0 { FileHandleErr.write("heapscope: process \(pid) exited\n"); throw ExitCode(5) }
            FileHandleErr.write("heapscope: \(error.description)\n"); throw ExitCode(1)
        }
    }

    mutating func file(_ path: String) throws -> SymbolSession {
        if let s = files[path] { return s }
        var st = stat()
        if stat(path, &st) != 0 {
            FileHandleErr.write("heapscope: \(path): \(String(cString: strerror(errno)))\n"); throw ExitCode(1)
        }
        do {
            let s = try SymbolSession(file: path, useDebugInfo: useDebugInfo)
            files[path] = s
            return s
        } catch {
            FileHandleErr.write("heapscope: \(path) is not an ELF file libdw can read (\(error.description))\n"); throw ExitCode(1)
        }
    }
}

extension Int32 {
    /// Close a descriptor just opened as a probe; returns it (or -1).
    func closing() -> Int32 { if self >= 0 { close(self) }; return self }
}

extension String {
    /// The state letter of /proc/PID/stat.
    init(procStatOf pid: Int32) throws {
        let fd = Glibc.open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ExitCode(3) }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 512)
        let n = read(fd, &buf, buf.count)
        guard n > 0, let close = buf[0..<n].lastIndex(of: UInt8(ascii: ")")), close + 2 < n else { throw ExitCode(1) }
        self = String(UnicodeScalar(buf[close + 2]))
    }
}

enum SymFormat: String, ExpressibleByArgument, CaseIterable {
    case text, llvm, gensyms
}

struct Sym: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Resolve addresses to module, symbol+offset, source file:line:column and inlined frames.",
        discussion: """
        Addresses are hexadecimal, with or without 0x. Without ADDR arguments, reads one per line \
        from standard input; a line 'FILE ADDR' looks ADDR up in FILE (an ELF file). With --pid, \
        addresses are the process's run-time addresses; with --elf, the file's virtual addresses \
        (or file offsets with --file-offset). An address that cannot be resolved still gets an answer, \
        with the reason.

        --annotate copies standard input to standard output and appends ' [resolution]' after every \
        0x-prefixed hex number that resolves to a symbol; everything else is left as it was.

        Formats: text (default), llvm (exactly llvm-symbolizer's default output), gensyms (grouped \
        under 'Src: FILE'), --json (one JSON object per line, per address).
        """)

    @OptionGroup var source: SymbolSourceOptions
    @Flag(help: "Addresses are file offsets in the --elf file, not virtual addresses.") var fileOffset = false
    @Flag(help: "One JSON object per address, one per line.") var json = false
    @Option(help: "Output format: \(SymFormat.allCases.map(\.rawValue).joined(separator: ", ")).") var format: SymFormat = .text
    @Flag(help: "Copy standard input to standard output with each resolvable address annotated.") var annotate = false
    @Argument(help: "Addresses (hex). Default: one per line from standard input.") var addresses: [String] = []

    func validate() throws {
        if fileOffset && source.elves.isEmpty { throw ValidationError("--file-offset needs --elf") }
        if annotate && !addresses.isEmpty { throw ValidationError("--annotate reads standard input; give no addresses") }
    }

    func run() throws {
        var sessions = try source.open()
        if annotate { return try Annotate.run(&sessions) }
        var requests: [SymRequest] = []
        if addresses.isEmpty {
            while let line = readLine(strippingNewline: true) { requests.append(SymRequest(line: line, fileOffset: fileOffset)) }
        } else {
            requests = addresses.map { SymRequest(line: $0, fileOffset: fileOffset) }
        }
        let answers = try SymRequest.resolve(requests, &sessions)
        var out = OutputBuffer()
        if json {
            for a in answers { out.write(SymOutput.json(a)); out.write("\n") }
        } else {
            switch format {
            case .text: for a in answers { SymOutput.text(a, into: &out) }
            case .llvm: for a in answers { SymOutput.llvm(a, into: &out) }
            case .gensyms: SymOutput.gensyms(answers, into: &out)
            }
        }
        out.flush()
        if answers.contains(where: { $0.resolution.reason != nil }) { throw ExitCode(SymRequest.someUnresolved) }
    }
}

/// One input address: its text, the file it names (if any), the parsed value or why not.
struct SymRequest {
    static let someUnresolved: Int32 = 0   // unresolved addresses are answers, not failures
    var text: String
    var file: String?
    var value: UInt64?
    var error: String?
    var fileOffset: Bool

    init(line: String, fileOffset: Bool) {
        self.fileOffset = fileOffset
        let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        switch parts.count {
        case 0: text = line; error = "empty line"
        case 1: text = parts[0]
        case 2: file = parts[0]; text = parts[1]
        default: text = line; error = "not an address: expected 'ADDR' or 'FILE ADDR'"
        }
        if error == nil {
            switch parseHexAddress(text) {
            case .success(let v): value = v
            case .failure(let e): error = e.message
            }
        }
    }

    /// Resolve every request, grouped by session, each session in one batch.
    static func resolve(_ reqs: [SymRequest], _ sessions: inout Sessions) throws -> [SymAnswer] {
        var answers = reqs.map { r -> SymAnswer in
            var res = Resolution(address: r.value ?? 0)
            res.reason = r.error
            return SymAnswer(input: r.text, file: r.file, parsed: r.value != nil, resolution: res)
        }
        // session key -> request indexes
        var groups: [String: [Int]] = [:]
        for (i, r) in reqs.enumerated() where r.error == nil {
            if r.file != nil && sessions.process != nil {
                answers[i].resolution.reason = "a 'FILE ADDR' line needs --elf, not --pid"; continue
            }
            groups[r.file ?? sessions.defaultFile ?? "", default: []].append(i)
        }
        for (key, idxs) in groups.sorted(by: { $0.key < $1.key }) {
            let session: SymbolSession
            if key.isEmpty, let p = sessions.process { session = p } else {
                do { session = try sessions.file(key) } catch {
                    for i in idxs { answers[i].resolution.reason = "cannot read \(key)" }
                    continue
                }
            }
            var addrs: [UInt64] = []
            var live: [Int] = []
            for i in idxs {
                var a = reqs[i].value!
                if reqs[i].fileOffset {
                    guard let v = session.address(ofFileOffset: a) else {
                        answers[i].resolution.reason = "file offset 0x\(String(a, radix: 16)) is in no loadable segment of \(key)"
                        continue
                    }
                    a = v
                }
                addrs.append(a); live.append(i)
            }
            let res = session.resolve(addrs)
            for (k, i) in live.enumerated() { answers[i].resolution = res[k] }
        }
        return answers
    }
}

struct SymAnswer {
    var input: String
    var file: String?
    var parsed: Bool       // false: the input was not an address (JSON address is null)
    var resolution: Resolution
}

struct AddressParseError: Error { let message: String }

/// Hex with or without 0x; at most 64 bits.
func parseHexAddress(_ s: String) -> Result<UInt64, AddressParseError> {
    var body = Substring(s)
    if body.hasPrefix("0x") || body.hasPrefix("0X") { body = body.dropFirst(2) }
    guard !body.isEmpty, body.allSatisfy(\.isHexDigit) else { return .failure(AddressParseError(message: "not an address: '\(s)'")) }
    let digits = body.drop(while: { $0 == "0" })
    guard digits.count <= 16, let v = UInt64(digits.isEmpty ? "0" : String(digits), radix: 16) else {
        return .failure(AddressParseError(message: "not an address: '\(s)' is wider than 64 bits"))
    }
    return .success(v)
}

enum SymOutput {
    static func hex16(_ v: UInt64) -> String { "0x" + pad(String(v, radix: 16), 16).replacingSpaces() }

    /// `symbol+0xoff`, or `??`.
    static func symbolText(_ r: Resolution) -> String {
        guard let s = r.symbol else { return "??" }
        return r.offset == 0 ? s : "\(s)+0x\(String(r.offset, radix: 16))"
    }

    static func position(_ f: SourceFrame) -> String {
        "\(f.file ?? "??"):\(f.line)" + (f.column > 0 ? ":\(f.column)" : "")
    }

    static func text(_ a: SymAnswer, into out: inout OutputBuffer) {
        let r = a.resolution
        if let why = r.reason, r.symbol == nil && r.frames.isEmpty {
            out.write("\(a.input)  ?? (\(why))\n"); return
        }
        var head = "\(hex(r.address))  \(symbolText(r))"
        if let t = r.type { head += "  (\(t)" + (r.size > 0 ? ", \(r.size) bytes" : "") + ")" }
        if let m = r.module { head += "  in \(m)" }
        out.write(head + "\n")
        for (k, f) in r.frames.enumerated() {
            out.write("    \(f.function) at \(position(f))" + (k < r.frames.count - 1 ? " (inlined)" : "") + "\n")
        }
        if r.frames.isEmpty, let f = r.symbolFile { out.write("    (no line information; symbol from \(f))\n") }
    }

    /// llvm-symbolizer's default output: for each frame, the function and file:line:column; a blank line.
    static func llvm(_ a: SymAnswer, into out: inout OutputBuffer) {
        let r = a.resolution
        if r.frames.isEmpty {
            out.write("\(r.symbol ?? "??")\n\(r.symbolFile ?? "??"):0:0\n\n")
            return
        }
        for f in r.frames { out.write("\(f.function)\n\(f.file ?? "??"):\(f.line):\(f.column)\n") }
        out.write("\n")
    }

    static func gensyms(_ answers: [SymAnswer], into out: inout OutputBuffer) {
        var groups: [String: [SymAnswer]] = [:]
        var order: [String] = []
        for a in answers {
            let r = a.resolution
            let src = r.frames.last?.file ?? r.symbolFile ?? (r.reason != nil ? "(unresolved)" : "(unknown source)")
            if groups[src] == nil { order.append(src) }
            groups[src, default: []].append(a)
        }
        for src in order {
            out.write("Src: \(src)\n")
            for a in groups[src]! {
                let r = a.resolution
                var line = "  \(hex16(r.address))  \(r.type.map(String.init) ?? "?")  \(symbolText(r))"
                if let f = r.frames.first { line += "  \(f.file.map(basename) ?? "??"):\(f.line)" }
                if r.frames.count > 1 { line += "  inlined: " + r.frames.dropLast().map(\.function).joined(separator: " < ") }
                if let why = r.reason { line += "  (\(why))" }
                out.write(line + "\n")
            }
        }
    }

    static func json(_ a: SymAnswer) -> String {
        let r = a.resolution
        func str(_ s: String?) -> String { s.map(jsonString) ?? "null" }
        func frame(_ f: SourceFrame) -> String {
            "{\"function\":\(jsonString(f.function)),\"file\":\(str(f.file)),\"line\":\(f.line),\"column\":\(f.column)}"
        }
        let inner = r.frames.first
        var s = "{\"input\":\(jsonString(a.input)),\"address\":\(a.parsed ? jsonString(hex(r.address)) : "null")"
        s += ",\"module\":\(str(r.module)),\"build_id\":\(str(r.buildID))"
        s += ",\"symbol\":\(str(r.symbol)),\"mangled\":\(str(r.mangled)),\"type\":\(str(r.type.map(String.init)))"
        s += ",\"offset\":\(r.offset),\"size\":\(r.size)"
        s += ",\"function\":\(str(inner?.function)),\"file\":\(str(inner?.file ?? r.symbolFile))"
        s += ",\"line\":\(inner.map { String($0.line) } ?? "null"),\"column\":\(inner.map { String($0.column) } ?? "null")"
        s += ",\"inlined\":[" + r.frames.map(frame).joined(separator: ",") + "]"
        s += ",\"source\":\(str(r.source)),\"reason\":\(str(r.reason))}"
        return s
    }
}

func basename(_ p: String) -> String { p.split(separator: "/").last.map(String.init) ?? p }

/// `--annotate`: append resolutions after 0x-prefixed hex numbers in free text.
enum Annotate {
    static func run(_ sessions: inout Sessions) throws {
        var lines: [String] = []
        while let l = readLine(strippingNewline: false) { lines.append(l) }
        // Every candidate, in order: (line, end index in utf8, value)
        var spots: [(line: Int, end: Int, value: UInt64, text: String)] = []
        for (i, l) in lines.enumerated() {
            let u = Array(l.utf8)
            var k = 0
            while k + 2 < u.count {
                if u[k] == UInt8(ascii: "0"), u[k + 1] | 0x20 == UInt8(ascii: "x"),
                   k == 0 || !isWordByte(u[k - 1]) {
                    var e = k + 2
                    while e < u.count && isHexByte(u[e]) { e += 1 }
                    if e > k + 2 && (e == u.count || !isWordByte(u[e])) {
                        let t = String(decoding: u[k..<e], as: UTF8.self)
                        if case .success(let v) = parseHexAddress(t) { spots.append((i, e, v, t)) }
                    }
                    k = e; continue
                }
                k += 1
            }
        }
        let reqs = spots.map { SymRequest(line: $0.text, fileOffset: false) }
        let answers = try SymRequest.resolve(reqs, &sessions)
        var out = OutputBuffer()
        var s = 0
        for (i, l) in lines.enumerated() {
            let u = Array(l.utf8)
            var from = 0
            while s < spots.count && spots[s].line == i {
                let r = answers[s].resolution
                if r.symbol != nil || !r.frames.isEmpty {
                    out.write(String(decoding: u[from..<spots[s].end], as: UTF8.self))
                    out.write(" [" + short(r) + "]")
                    from = spots[s].end
                }
                s += 1
            }
            out.write(String(decoding: u[from...], as: UTF8.self))
        }
        out.flush()
    }

    static func short(_ r: Resolution) -> String {
        var t = SymOutput.symbolText(r)
        if let f = r.frames.first { t += " \(f.file.map(basename) ?? "??"):\(f.line)" }
        if r.frames.count > 1 { t += " inlined " + r.frames.dropLast().map(\.function).joined(separator: " < ") }
        return t
    }

    static func isHexByte(_ b: UInt8) -> Bool {
        (b >= 48 && b <= 57) || (b | 0x20 >= 97 && b | 0x20 <= 102)
    }
    static func isWordByte(_ b: UInt8) -> Bool {
        isHexByte(b) || (b | 0x20 >= 97 && b | 0x20 <= 122) || b == UInt8(ascii: "_")
    }
}

struct Gensyms: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List every symbol, sorted by address, with type, size and source file (AIX gensyms style).")
    @OptionGroup var source: SymbolSourceOptions
    @Flag(help: "One JSON object per symbol, one per line.") var json = false

    func run() throws {
        var sessions = try source.open()
        var out = OutputBuffer()
        let list: [SymbolSession] = sessions.process.map { [$0] } ?? source.elves.compactMap { try? sessions.file($0) }
        for session in list {
            let (syms, mods) = session.allSymbols()
            if !json {
                for m in mods {
                    out.write("Module: \(m.name)" + (m.buildID.map { "  build-id \($0)" } ?? "") + "  symbols from \(m.source)\n")
                }
            }
            var lastSrc: String?? = .none
            for s in syms {
                if json {
                    out.write("{\"module\":\(jsonString(s.module)),\"address\":\(jsonString(hex(s.address))),\"size\":\(s.size)"
                              + ",\"type\":\(jsonString(String(s.type))),\"name\":\(jsonString(s.name))"
                              + ",\"file\":\(s.file.map(jsonString) ?? "null")}\n")
                    continue
                }
                if lastSrc != .some(s.file) {
                    out.write("Src: \(s.file ?? "(none)")\n")
                    lastSrc = .some(s.file)
                }
                out.write("  \(SymOutput.hex16(s.address))  \(pad(String(s.size), 8))  \(s.type)  \(s.name)\n")
            }
        }
        out.flush()
    }
}
