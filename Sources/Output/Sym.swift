import Dispatch
import Glibc
import Inspect
import ProcessAccess
import Symbols

/// An error of `sym`/`gensyms` set-up, with the exit code the command line documents.

/// `sym`'s output formats.
public enum SymFormat: String, CaseIterable, Sendable {
    case text, llvm, gensyms
}

public enum SymPipeline {
    /// Resolve `addresses` (or, with none, standard input in batches, resolved on a second
    /// thread while the last batch prints) and print the answers in `format`.
    public static func run(addresses: [String], sessions: inout Sessions, json: Bool, format: SymFormat, fileOffset: Bool, adjust: Bool = true) {
        var out = OutputBuffer()
        var grouped: [SymAnswer] = []   // --format gensyms groups all answers by source file
        func print(_ requests: [SymRequest], _ res: SymResults) {
            if format == .gensyms && !json {
                grouped.append(contentsOf: requests.indices.map { res.answer(requests, $0) }); return
            }
            for i in requests.indices {
                let a = res.answer(requests, i)
                if json { SymOutput.json(a, into: &out); out.write(byte: 0x0a) }
                else if format == .text { SymOutput.text(a, into: &out) }
                else { SymOutput.llvm(a, into: &out) }
                out.flushIfFull()
            }
        }
        if addresses.isEmpty {
            // Standard input is answered in batches, so memory stays bounded on any input size; a
            // second thread reads and resolves the next batch while this one prints the last.
            let pipe = BatchPipe(depth: 2)
            let box = SessionsBox(sessions)
            DispatchQueue(label: "heapscope.sym.resolve").async {
                var reader = LineReader(fd: 0)
                var run = PastedFrame.Run()
                while true {
                    var batch: [SymRequest] = []
                    batch.reserveCapacity(SymRequest.batchSize)
                    while batch.count < SymRequest.batchSize, let line = reader.next() {
                        batch.append(SymRequest(line: line, fileOffset: fileOffset, run: &run, adjust: adjust))
                    }
                    if batch.isEmpty { pipe.put(nil); return }
                    pipe.put((batch, SymRequest.resolve(batch, &box.sessions)))
                }
            }
            while let (requests, res) = pipe.take() { print(requests, res) }
        } else {
            var run = PastedFrame.Run()
            let requests = addresses.map { SymRequest(line: $0, fileOffset: fileOffset, run: &run, adjust: adjust) }
            print(requests, SymRequest.resolve(requests, &sessions))
        }
        if format == .gensyms && !json { SymOutput.gensyms(grouped, into: &out) }
        out.flush()
    }
}

/// The open libdwfl sessions of one command: the process, or the files named so far.
public struct Sessions {
    public let useDebugInfo: Bool
    /// Errors also as JSON on stdout.
    public var json = false
    public var process: SymbolSession?
    public var files: [String: SymbolSession] = [:]
    public var defaultFile: String?

    public init(useDebugInfo: Bool) { self.useDebugInfo = useDebugInfo }

    /// Modules per session (key "" is the process), listed once.
    var modulesOf: [String: [LoadedModule]] = [:]

    /// Where a pasted frame is looked up: its module's offset (or symbol and offset) in the
    /// session holding that module — an --elf file of the same path or base name, the process's
    /// module of that name, or (without a process) the file at that path — else its run-time
    /// address in the process.
    public mutating func locate(_ f: PastedFrame) -> Result<(session: String, address: UInt64), AddressParseError> {
        if let name = f.module, f.moduleOffset != nil || (f.symbol != nil && f.symbolOffset != nil) {
            if let (key, m) = module(named: name) {
                if let off = f.moduleOffset { return .success((key, m.bias &+ off)) }
                let s = key.isEmpty ? process : files[key]
                if let sym = f.symbol, let a = s?.address(ofSymbol: sym, inModuleAt: m.low) {
                    return .success((key, a &+ (f.symbolOffset ?? 0)))
                }
                if f.address == nil || process == nil {
                    return .failure(AddressParseError(message: "no symbol \(f.symbol ?? "?") in \(m.path)"))
                }
            } else if f.address == nil || process == nil {
                return .failure(AddressParseError(message: "module \(name) is \(process == nil ? "not among the --elf files" : "not loaded in the process")"))
            }
        }
        guard let a = f.address else { return .failure(AddressParseError(message: "this frame gives no address")) }
        if process != nil { return .success(("", a)) }
        // A run-time address means nothing in a file, unless the file is where it was loaded:
        // an executable linked at fixed addresses, named by the line or the only --elf file.
        return .success((defaultFile ?? "", a))
    }

    /// The session and module a pasted frame's module name stands for.
    mutating func module(named name: String) -> (String, LoadedModule)? {
        let want = baseName(name)
        if let p = process {
            if modulesOf[""] == nil { modulesOf[""] = p.loadedModules() }
            let mods = modulesOf[""]!
            if let m = mods.first(where: { $0.path == name }) ?? mods.first(where: { baseName($0.path) == want }) { return ("", m) }
            return nil
        }
        var key = files.keys.first { $0 == name } ?? files.keys.sorted().first { baseName($0) == want }
        if key == nil, name.hasPrefix("/"), (try? file(name)) != nil { key = name }
        guard let k = key, let s = files[k] else { return nil }
        if modulesOf[k] == nil { modulesOf[k] = s.loadedModules() }
        guard let m = modulesOf[k]!.first else { return nil }
        return (k, m)
    }

    public mutating func openProcess(_ pid: Int32) throws(Failure) {
        if kill(pid, 0) != 0 && errno == ESRCH {
            throw Failure("no such process: \(pid)", code: ExitStatus.noSuchProcess.rawValue)
        }
        if let what = ProcFS.notAProcess(pid) {
            throw Failure("\(ProcessError.notAProcess(pid: pid, what: what).description)", code: ExitStatus.noSuchProcess.rawValue)
        }
        if let st = try? String(procStatOf: pid), st == "Z" || st == "X" {
            throw Failure("process \(pid) has exited (zombie); its mappings are gone", code: ExitStatus.targetExited.rawValue)
        }
        if access("/proc/\(pid)/maps", R_OK) != 0 || Glibc.open("/proc/\(pid)/maps", O_RDONLY | O_CLOEXEC).closing() < 0 {
            throw Failure("permission denied reading /proc/\(pid)/maps: run as the process's user or as root (CAP_SYS_PTRACE)", code: ExitStatus.permissionDenied.rawValue)
        }
        do { process = try SymbolSession(pid: pid, useDebugInfo: useDebugInfo) } catch {
            if case .processGone = error { throw Failure("\(error.description)", code: ExitStatus.targetExited.rawValue) }
            if kill(pid, 0) != 0 && errno == ESRCH { throw Failure("process \(pid) exited", code: ExitStatus.targetExited.rawValue) }
            throw Failure("\(error.description)", code: ExitStatus.otherError.rawValue)
        }
    }

    public mutating func openCore(_ path: String) throws(Failure) {
        let core: CoreFile
        do { core = try CoreFile(path: path) } catch {
            throw Failure(error.description, code: ExitStatus.badInputFile.rawValue)
        }
        do { process = try SymbolSession.lock.locked { try SymbolSession(core: core, useDebugInfo: useDebugInfo) } } catch {
            throw Failure("\(error)", code: ExitStatus.badInputFile.rawValue)
        }
    }

    public mutating func file(_ path: String) throws(Failure) -> SymbolSession {
        if let s = files[path] { return s }
        var st = stat()
        if stat(path, &st) != 0 {
            throw Failure("\(path): \(String(cString: strerror(errno)))", code: ExitStatus.otherError.rawValue)
        }
        do {
            let s = try SymbolSession(file: path, useDebugInfo: useDebugInfo)
            files[path] = s
            return s
        } catch {
            throw Failure("\(path) is not an ELF file libdw can read (\(error.description))", code: ExitStatus.otherError.rawValue)
        }
    }
}

public extension Int32 {
    /// Close a descriptor just opened as a probe; returns it (or -1).
    func closing() -> Int32 { if self >= 0 { close(self) }; return self }
}

public extension String {
    /// The state letter of /proc/PID/stat.
    init(procStatOf pid: Int32) throws {
        let fd = Glibc.open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Failure("no such process: \(pid)", code: ExitStatus.noSuchProcess.rawValue) }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 512)
        let n = read(fd, &buf, buf.count)
        guard n > 0, let close = buf[0..<n].lastIndex(of: UInt8(ascii: ")")), close + 2 < n else { throw Failure("cannot read /proc/\(pid)/stat", code: ExitStatus.otherError.rawValue) }
        self = String(UnicodeScalar(buf[close + 2]))
    }
}

/// The sessions, handed to the resolving thread (used by it alone from then on).
public final class SessionsBox: @unchecked Sendable {
    public var sessions: Sessions
    public init(_ s: Sessions) { sessions = s }
}

/// A bounded hand-over of resolved batches from the resolving thread to the printing one;
/// nil marks the end.
public final class BatchPipe: @unchecked Sendable {
    public typealias Batch = ([SymRequest], SymResults)
    private var items: [Batch?] = []
    private let lock = Mutex()
    private let slots: DispatchSemaphore, filled = DispatchSemaphore(value: 0)
    public init(depth: Int) { slots = DispatchSemaphore(value: depth) }
    public func put(_ b: Batch?) {
        slots.wait()
        lock.locked { items.append(b) }
        filled.signal()
    }
    public func take() -> Batch? {
        filled.wait()
        let b = lock.locked { items.removeFirst() }
        slots.signal()
        return b
    }
}


/// One input address: its text, the file it names (if any), the parsed value or why not.
public struct SymRequest {
    /// Lines of standard input answered together (sorted, deduplicated, resolved, printed).
    public static let batchSize = 1 << 16
    public var text: String
    public var file: String?
    public var value: UInt64?
    public var error: String?
    public var fileOffset: Bool
    /// A frame of a pasted backtrace (module, offsets, its place), nil for a plain address
    /// (boxed: plain addresses, by far the most common, keep the request small).
    public var pasted: PastedFrame? {
        get { pastedBox?.frame }
        set { pastedBox = newValue.map(PastedBox.init) }
    }
    private var pastedBox: PastedBox?
    private final class PastedBox { let frame: PastedFrame; init(_ f: PastedFrame) { frame = f } }
    /// The frame's place in its backtrace (0: innermost), and whether it is looked up at
    /// address − 1 (a return address: every frame but the innermost, unless --no-adjust).
    public var frame: Int?
    public var adjusted = false

    /// One line of input: a plain address ("ADDR", "FILE ADDR") or a frame of a pasted backtrace;
    /// `run` carries the place in the backtrace from line to line.
    public init(line: String, fileOffset: Bool, run: inout PastedFrame.Run, adjust: Bool = true) {
        var special = false
        for b in line.utf8 where b == 0x28 || b == 0x5b || b == 0x23 || b == 0x3d || b == 0x2b || b == 0x2a { special = true; break }
        if special, let f = PastedFrame.parse(line) {
            self.init(text: String(Substring(line).trimmingBlanks()))
            pasted = f
            let place = run.place(f)
            frame = place
            adjusted = adjust && place > 0 && f.format != .valgrind
            value = f.address
            if f.address == nil && f.moduleOffset == nil && (f.symbol == nil || f.module == nil) {
                error = "this frame gives no address (nor a module and an offset)"
            }
            return
        }
        _ = run.place(nil)
        self.init(line: line, fileOffset: fileOffset)
    }

    private init(text: String) { self.text = text; fileOffset = false }

    public init(line: String, fileOffset: Bool) {
        self.fileOffset = fileOffset
        // Up to two fields separated by blanks: ADDR, or FILE ADDR.
        var fields: (Range<Int>?, Range<Int>?) = (nil, nil)
        var count = 0
        var line = line
        line.withUTF8 { u in
            var i = 0
            while i < u.count {
                while i < u.count && (u[i] == 0x20 || u[i] == 0x09) { i += 1 }
                guard i < u.count else { break }
                let start = i
                while i < u.count && u[i] != 0x20 && u[i] != 0x09 { i += 1 }
                if count == 0 { fields.0 = start..<i } else if count == 1 { fields.1 = start..<i }
                count += 1
            }
        }
        func field(_ r: Range<Int>) -> String { line.withUTF8 { String(decoding: UnsafeBufferPointer(rebasing: $0[r]), as: UTF8.self) } }
        switch count {
        case 0: text = line; error = "empty line"
        case 1: text = fields.0!.count == line.utf8.count ? line : field(fields.0!)
        case 2: file = field(fields.0!); text = field(fields.1!)
        default: text = line; error = "not an address: expected 'ADDR' or 'FILE ADDR'"
        }
        if error == nil {
            switch parseHexAddress(text) {
            case .success(let v): value = v
            case .failure(let e): error = e.message
            }
        }
    }

    /// Resolve every request, grouped by session, each session in one batch (return addresses of
    /// pasted backtraces in a batch of their own, looked up at address − 1); one answer per request.
    public static func resolve(_ reqs: [SymRequest], _ sessions: inout Sessions) -> SymResults {
        var results = SymResults(batches: [ResolvedBatch()], ref: Array(repeating: (0, 0), count: reqs.count))
        func fail(_ i: Int, _ why: String) {
            results.ref[i] = (0, Int32(results.batches[0].append(reqs[i].value ?? 0, reason: why)))
        }
        // session key -> request indexes; a pasted frame's address in that session.
        var groups: [String: [Int]] = [:]
        var located: [Int: UInt64] = [:]
        for (i, r) in reqs.enumerated() {
            if let e = r.error { fail(i, e); continue }
            if let f = r.pasted {
                switch sessions.locate(f) {
                case .success(let at): located[i] = at.address; groups[at.session, default: []].append(i)
                case .failure(let why): fail(i, why.message)
                }
                continue
            }
            if r.file != nil && sessions.process != nil { fail(i, "a 'FILE ADDR' line needs --elf, not --pid"); continue }
            groups[r.file ?? sessions.defaultFile ?? "", default: []].append(i)
        }
        for (key, idxs) in groups.sorted(by: { $0.key < $1.key }) {
            let session: SymbolSession
            if key.isEmpty, let p = sessions.process { session = p } else {
                do { session = try sessions.file(key) } catch {
                    for i in idxs { fail(i, "cannot read \(key)") }
                    continue
                }
            }
            for adjusted in [false, true] {
                var addrs: [UInt64] = []
                var live: [Int] = []
                for i in idxs where reqs[i].adjusted == adjusted {
                    var a = located[i] ?? reqs[i].value!
                    if reqs[i].fileOffset {
                        guard let v = session.address(ofFileOffset: a) else {
                            fail(i, "file offset 0x\(String(a, radix: 16)) is in no loadable segment of \(key)")
                            continue
                        }
                        a = v
                    }
                    if adjusted && a == 0 { fail(i, "return address 0"); continue }
                    addrs.append(adjusted ? a - 1 : a); live.append(i)
                }
                guard !live.isEmpty else { continue }
                let batch = ResolvedBatch()
                let index = session.resolve(addrs, into: batch)
                // Each entry once: printed at the address given, with the line of the call.
                if adjusted { for k in 0..<batch.count { batch.shift(k, by: 1) } }
                let b = Int32(results.batches.count)
                results.batches.append(batch)
                for (k, i) in live.enumerated() { results.ref[i] = (b, index[k]) }
            }
        }
        return results
    }
}

/// The answers of a batch of requests: per request, a batch and an entry in it (batch 0 holds
/// the requests that failed before lookup).
public struct SymResults {
    public var batches: [ResolvedBatch]
    public var ref: [(batch: Int32, entry: Int32)]
    public func answer(_ reqs: [SymRequest], _ i: Int) -> SymAnswer {
        SymAnswer(input: reqs[i].text, parsed: reqs[i].value != nil || (reqs[i].pasted != nil && ref[i].batch > 0),
                  batch: batches[Int(ref[i].batch)], k: Int(ref[i].entry), frame: reqs[i].frame, adjusted: reqs[i].adjusted)
    }
}

/// Entry `k` of a batch, its fields read out once.
public struct Entry {
    public let address: UInt64, offset: UInt64, size: UInt64
    public let moduleID: Int32, buildIDID: Int32, symbolID: Int32, mangledID: Int32, symbolFileID: Int32, sourceID: Int32
    public let typeLetter: UInt8
    public let reason: String?
    public let frames: ArraySlice<SourceFrame>
    public init(_ b: ResolvedBatch, _ k: Int) {
        address = b.address[k]; offset = b.offset[k]; size = b.size[k]
        moduleID = b.moduleID[k]; buildIDID = b.buildIDID[k]; symbolID = b.symbolID[k]; mangledID = b.mangledID[k]
        symbolFileID = b.symbolFileID[k]; sourceID = b.sourceID[k]; typeLetter = b.typeLetter[k]; reason = b.reason[k]
        frames = b.frames[Int(b.frameStart[k])..<Int(b.frameStart[k] + b.frameCount[k])]
    }
}

public struct SymAnswer {
    public var input: String
    public var parsed: Bool       // false: the input was not an address (JSON address is null)
    public var batch: ResolvedBatch
    public var k: Int
    /// A pasted frame's place in its backtrace, and whether it was looked up at address − 1.
    public var frame: Int? = nil
    public var adjusted = false
    public var resolution: Resolution { batch.resolution(k) }
}

public struct AddressParseError: Error { public let message: String }

/// "libc.so.6" of "/usr/lib/x86_64-linux-gnu/libc.so.6", "prog" of "./prog"; " (deleted)" dropped.
func baseName(_ path: String) -> String {
    var p = Substring(path)
    if p.hasSuffix(" (deleted)") { p = p.dropLast(10) }
    return String(p.split(separator: "/").last ?? p)
}


/// Hex with or without 0x; at most 64 bits.
public func parseHexAddress(_ s: String) -> Result<UInt64, AddressParseError> {
    var s = s
    enum Outcome { case value(UInt64), notHex, tooWide }
    let o: Outcome = s.withUTF8 { u in
        var i = 0
        if u.count >= 2 && u[0] == 0x30 && (u[1] | 0x20) == 0x78 { i = 2 }
        guard i < u.count else { return .notHex }
        var v: UInt64 = 0
        var significant = 0
        while i < u.count {
            let b = u[i]
            let d: UInt8
            switch b {
            case 0x30...0x39: d = b - 0x30
            case 0x41...0x46, 0x61...0x66: d = (b | 0x20) - 0x61 + 10
            default: return .notHex
            }
            if significant > 0 || d != 0 { significant += 1 }
            v = v &<< 4 | UInt64(d)
            i += 1
        }
        return significant > 16 ? .tooWide : .value(v)
    }
    switch o {
    case .value(let v): return .success(v)
    case .notHex: return .failure(AddressParseError(message: "not an address: '\(quoted(s))'"))
    case .tooWide: return .failure(AddressParseError(message: "not an address: '\(quoted(s))' is wider than 64 bits"))
    }
}

/// Lines of a file descriptor, read in large blocks (no trailing newline; a final CR is dropped).
public struct LineReader {
    public let fd: Int32
    private var buf = [UInt8](repeating: 0, count: 1 << 20)
    private var start = 0, end = 0, eof = false

    public init(fd: Int32) { self.fd = fd }

    public mutating func next() -> String? {
        while true {
            if let nl = buf[start..<end].firstIndex(of: 0x0a) {
                var e = nl
                if e > start && buf[e - 1] == 0x0d { e -= 1 }
                let line = String(decoding: buf[start..<e], as: UTF8.self)
                start = nl + 1
                return line
            }
            if eof {
                guard start < end else { return nil }
                let line = String(decoding: buf[start..<end], as: UTF8.self)
                start = end
                return line
            }
            // Keep the partial line, grow for a very long line, then read more.
            if start > 0 { buf.replaceSubrange(0..<(end - start), with: buf[start..<end]); end -= start; start = 0 }
            if end == buf.count { buf.append(contentsOf: [UInt8](repeating: 0, count: buf.count)) }
            let n = buf.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + end, $0.count - end) }
            if n < 0 { if errno == EINTR { continue }; eof = true; continue }
            if n == 0 { eof = true } else { end += n }
        }
    }
}

public enum SymOutput {
    public static func hex16(_ v: UInt64) -> String { "0x" + pad(String(v, radix: 16), 16).replacingSpaces() }

    /// `symbol+0xoff`, or `??`.
    public static func symbolText(_ r: Resolution) -> String {
        guard let s = r.symbol else { return "??" }
        return r.offset == 0 ? s : "\(s)+0x\(String(r.offset, radix: 16))"
    }

    public static func position(_ f: SourceFrame) -> String {
        "\(f.file ?? "??"):\(f.line)" + (f.column > 0 ? ":\(f.column)" : "")
    }

    public static func text(_ a: SymAnswer, into out: inout OutputBuffer) {
        let pool = StringPool.shared
        let r = Entry(a.batch, a.k)
        if let why = r.reason, r.symbolID < 0 && r.frames.isEmpty {
            out.write(a.input); out.write("  ?? ("); out.write(why); out.write(")\n"); return
        }
        if let n = a.frame { out.write("#"); out.write(decimal: UInt64(n)); out.write("  ") }
        out.write(hex: r.address); out.write("  ")
        if r.symbolID >= 0 {
            out.write(utf8: pool.utf8(r.symbolID))
            if r.offset != 0 { out.write("+"); out.write(hex: r.offset) }
        } else { out.write("??") }
        if r.typeLetter != 0 {
            out.write("  ("); out.write(byte: r.typeLetter)
            if r.size > 0 { out.write(", "); out.write(decimal: r.size); out.write(" bytes") }
            out.write(")")
        }
        if r.moduleID >= 0 { out.write("  in "); out.write(utf8: pool.utf8(r.moduleID)) }
        out.write(byte: 0x0a)
        for (k, f) in r.frames.enumerated() {
            out.write("    "); out.write(utf8: pool.utf8(f.functionID)); out.write(" at ")
            if f.fileID >= 0 { out.write(utf8: pool.utf8(f.fileID)) } else { out.write("??") }
            out.write(":"); out.write(decimal: UInt64(UInt32(bitPattern: f.line)))
            if f.column > 0 { out.write(":"); out.write(decimal: UInt64(UInt32(bitPattern: f.column))) }
            if k < r.frames.count - 1 { out.write(" (inlined)") }
            out.write(byte: 0x0a)
        }
        if r.frames.isEmpty && r.symbolFileID >= 0 {
            out.write("    (no line information; symbol from "); out.write(utf8: pool.utf8(r.symbolFileID)); out.write(")\n")
        }
    }

    /// llvm-symbolizer's default output: for each frame, the function and file:line:column; a blank line.
    public static func llvm(_ a: SymAnswer, into out: inout OutputBuffer) {
        let r = Entry(a.batch, a.k)
        let pool = StringPool.shared
        if r.frames.isEmpty {
            if r.symbolID >= 0 { out.write(utf8: pool.utf8(r.symbolID)) } else { out.write("??") }
            out.write(byte: 0x0a)
            if r.symbolFileID >= 0 { out.write(utf8: pool.utf8(r.symbolFileID)) } else { out.write("??") }
            out.write(":0:0\n\n")
            return
        }
        r.frames.withUnsafeBufferPointer { frames in
            for f in frames {
                out.write(utf8: pool.utf8(f.functionID)); out.write(byte: 0x0a)
                if f.fileID >= 0 { out.write(utf8: pool.utf8(f.fileID)) } else { out.write("??") }
                out.write(":"); out.write(decimal: UInt64(UInt32(bitPattern: f.line))); out.write(":"); out.write(decimal: UInt64(UInt32(bitPattern: f.column))); out.write(byte: 0x0a)
            }
        }
        out.write(byte: 0x0a)
    }

    public static func gensyms(_ answers: [SymAnswer], into out: inout OutputBuffer) {
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

    /// One JSON object (README: `sym --json` keys), without the newline.
    public static func json(_ a: SymAnswer, into out: inout OutputBuffer) {
        // (the batch's columns read in place: no Entry, whose frames slice and reason are
        // reference counted, for a record printed millions of times)
        let b = a.batch, k = a.k
        let pool = StringPool.shared
        let moduleID = b.moduleID[k], buildIDID = b.buildIDID[k], symbolID = b.symbolID[k], mangledID = b.mangledID[k]
        let symbolFileID = b.symbolFileID[k], sourceID = b.sourceID[k], typeLetter = b.typeLetter[k]
        let address = b.address[k], offset = b.offset[k], size = b.size[k]
        let frameStart = Int(b.frameStart[k]), frameCount = Int(b.frameCount[k])
        func length(_ id: Int32) -> Int { id >= 0 ? pool.jsonUTF8(id).count : 4 }
        b.frames.withUnsafeBufferPointer { all in
            let frames = UnsafeBufferPointer(rebasing: all[frameStart..<frameStart + frameCount])
            var input = a.input, reason = b.reason[k]
            let inner = frames.first
            let function = inner?.functionID ?? StringPool.none
            let file = inner.map { $0.fileID >= 0 ? $0.fileID : symbolFileID } ?? symbolFileID
            // The record is written into scratch memory as plain stores, then added to the output at
            // once: room for its fixed parts (under 400 bytes), every string as stored or at its
            // longest escaped, each frame's keys and numbers (under 100).
            var room = 512 + JSONText.maxLength(input.utf8.count) + JSONText.maxLength(reason?.utf8.count ?? 0)
            room += length(moduleID) + length(buildIDID) + length(symbolID) + length(mangledID)
            room += length(function) + length(file) + length(sourceID)
            for f in frames { room += length(f.functionID) + length(f.fileID) + 100 }
            out.withScratch(room) { w in
                func id(_ i: Int32) { if i >= 0 { w.put(pool.jsonUTF8(i)) } else { w.put("null") } }
                w.put("{\"input\":"); input.withUTF8 { w.put(json: $0) }
                w.put(",\"address\":")
                if a.parsed { w.put("\"0x"); w.put(hexDigits: address); w.put(byte: 0x22) } else { w.put("null") }
                w.put(",\"module\":"); id(moduleID)
                w.put(",\"build_id\":"); id(buildIDID)
                w.put(",\"symbol\":"); id(symbolID)
                w.put(",\"mangled\":"); id(mangledID)
                w.put(",\"type\":")
                if typeLetter != 0 { w.put(byte: 0x22); w.put(byte: typeLetter); w.put(byte: 0x22) } else { w.put("null") }
                w.put(",\"offset\":"); w.put(decimal: offset)
                w.put(",\"size\":"); w.put(decimal: size)
                w.put(",\"function\":"); id(function)
                w.put(",\"file\":"); id(file)
                w.put(",\"line\":"); if let f = inner { w.put(decimal: UInt64(UInt32(bitPattern: f.line))) } else { w.put("null") }
                w.put(",\"column\":"); if let f = inner { w.put(decimal: UInt64(UInt32(bitPattern: f.column))) } else { w.put("null") }
                w.put(",\"inlined\":[")
                var first = true
                for f in frames {
                    if !first { w.put(byte: 0x2c) }
                    first = false
                    w.put("{\"function\":"); id(f.functionID)
                    w.put(",\"file\":"); id(f.fileID)
                    w.put(",\"line\":"); w.put(decimal: UInt64(UInt32(bitPattern: f.line)))
                    w.put(",\"column\":"); w.put(decimal: UInt64(UInt32(bitPattern: f.column))); w.put(byte: 0x7d)
                }
                w.put("],\"source\":"); id(sourceID)
                w.put(",\"reason\":")
                if reason == nil { w.put("null") } else { reason!.withUTF8 { w.put(json: $0) } }
                w.put(",\"frame\":"); if let n = a.frame { w.put(decimal: UInt64(n)) } else { w.put("null") }
                if a.adjusted { w.put(",\"adjusted\":true}") } else { w.put(",\"adjusted\":false}") }
            }
        }
    }
}

/// Input echoed in a message: at most 80 characters, then how long it was.
public func quoted(_ s: String) -> String {
    s.count <= 80 ? s : String(s.prefix(80)) + "... (\(s.utf8.count) bytes)"
}

/// `--annotate`: append resolutions after 0x-prefixed hex numbers in free text.
public enum Annotate {
    public static func run(_ sessions: inout Sessions, adjust: Bool = true) {
        // Bytes, not text: whatever is not UTF-8 is copied as it is.
        var input: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(0, $0.baseAddress!, $0.count) }
            if n < 0 { if errno == EINTR { continue }; break }
            if n == 0 { break }
            input.append(contentsOf: chunk[0..<n])
        }
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        for (k, b) in input.enumerated() where b == 0x0a { lines.append(input[start...k]); start = k + 1 }
        if start < input.count { lines.append(input[start...]) }
        // Every candidate, in order: (line, end index in utf8, request). A line that is a frame
        // of a pasted backtrace is one, annotated at its end; in any other line, every
        // 0x-prefixed number.
        var spots: [(line: Int, end: Int)] = []
        var reqs: [SymRequest] = []
        var run = PastedFrame.Run()
        for (i, l) in lines.enumerated() {
            var u = Array(l)
            while let last = u.last, last == 0x0a || last == 0x0d { u.removeLast() }
            let text = String(decoding: u, as: UTF8.self)
            let r = SymRequest(line: text, fileOffset: false, run: &run, adjust: adjust)
            if r.pasted != nil {
                spots.append((i, u.count)); reqs.append(r)
                continue
            }
            var k = 0
            while k + 2 < u.count {
                if u[k] == UInt8(ascii: "0"), u[k + 1] | 0x20 == UInt8(ascii: "x"),
                   k == 0 || !isWordByte(u[k - 1]) {
                    var e = k + 2
                    while e < u.count && isHexByte(u[e]) { e += 1 }
                    if e > k + 2 && (e == u.count || !isWordByte(u[e])) {
                        let t = String(decoding: u[k..<e], as: UTF8.self)
                        if case .success = parseHexAddress(t) { spots.append((i, e)); reqs.append(SymRequest(line: t, fileOffset: false)) }
                    }
                    k = e; continue
                }
                k += 1
            }
        }
        let answers = SymRequest.resolve(reqs, &sessions)
        var out = OutputBuffer()
        var s = 0
        for (i, l) in lines.enumerated() {
            let u = Array(l)
            var from = 0
            while s < spots.count && spots[s].line == i {
                let r = answers.answer(reqs, s).resolution
                if r.symbol != nil || !r.frames.isEmpty {
                    out.bytes.append(contentsOf: u[from..<spots[s].end])
                    out.write(" [" + short(r) + "]")
                    from = spots[s].end
                }
                s += 1
            }
            out.bytes.append(contentsOf: u[from...])
            out.flushIfFull()
        }
        out.flush()
    }

    public static func short(_ r: Resolution) -> String {
        var t = SymOutput.symbolText(r)
        if let f = r.frames.first { t += " \(f.file.map(basename) ?? "??"):\(f.line)" }
        if r.frames.count > 1 { t += " inlined " + r.frames.dropLast().map(\.function).joined(separator: " < ") }
        return t
    }

    public static func isHexByte(_ b: UInt8) -> Bool {
        (b >= 48 && b <= 57) || (b | 0x20 >= 97 && b | 0x20 <= 102)
    }
    public static func isWordByte(_ b: UInt8) -> Bool {
        isHexByte(b) || (b | 0x20 >= 97 && b | 0x20 <= 122) || b == UInt8(ascii: "_")
    }
}

