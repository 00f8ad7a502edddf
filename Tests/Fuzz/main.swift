// heapscope-fuzz: fuzz harnesses for every parser of outside input.
//
//   heapscope-fuzz [--cases N] [--seconds S] [--seed K] --heapscope PATH --out DIR snapshot SEED.snap...
//   heapscope-fuzz ... elf FILE        (ELF/DWARF given to sym --elf and gensyms --elf)
//   heapscope-fuzz ... text FILE       (sym's input lines, resolved against FILE)
//   heapscope-fuzz ... core SEED...    (ELF core files given to stat, chunks, leaks, types, sym --core)
//
// core: mutants aimed at the ELF header, the program headers (offsets, addresses, sizes,
// flags set to extreme or nearby values), the notes (threads, registers, NT_FILE, auxv), the
// memory the core holds (malloc's own data and the heap), or the file's length. Each is parsed in
// this process (CoreFile: mappings, threads, reads across every segment); every 4th also goes
// through the heapscope binary. Exit statuses 6 and 7 (not glibc, malloc not found) are answers too.
//
// snapshot: each mutant is either raw (bit flips, bytes, truncation, interesting 64-bit values)
// or made inside one section with the checksums, offsets and length re-sealed so that it reaches
// the parser (bytes, varints replaced by extreme values, ranges deleted, inserted, duplicated,
// sections dropped). Every mutant is decoded in this process and, if it decodes, analysed as the
// commands do (types, leaks, diff, pprof); every 8th also goes through the heapscope binary (one
// command in turn) under a 2 GB address-space limit and a 20 s timeout. The input being tried is
// written to DIR/current first, so a crash of this process leaves it behind.
// A failure: a crash (signal), a hang, an exit status other than 0, 1, 2 or 8, a case slower
// than 5 s in this process, or (snapshot files) a heapscope whose peak RSS exceeds what the same
// command takes on the seed plus 4× the mutant's size (and 16 MiB of slack). Failing inputs are kept in DIR as failure-N. Exit 1 if any.
import Foundation
import Glibc
import HeapModel
import Inspect
import ProcessAccess
import Snapshot

/// A message on stderr.
func complain(_ s: String) { _ = s.withCString { Glibc.write(2, $0, strlen($0)) } }

struct Rng {
    var s: UInt64
    mutating func next() -> UInt64 {
        s &+= 0x9e37_79b9_7f4a_7c15
        var z = s
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }
    mutating func chance(_ oneIn: Int) -> Bool { below(oneIn) == 0 }
}

let interesting: [UInt64] = [0, 1, 2, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 1 << 32, 1 << 47, 1 << 48,
                             (1 << 48) + 1, 1 << 57, (1 << 57) + 1, 0x7fff_ffff_ffff_ffff, 0x8000_0000_0000_0000,
                             0xffff_ffff_ffff_fff0, 0xffff_ffff_ffff_ffff]

func varint(_ v: UInt64) -> [UInt8] {
    var v = v, out: [UInt8] = []
    while v >= 0x80 { out.append(UInt8(v & 0x7f) | 0x80); v >>= 7 }
    out.append(UInt8(v))
    return out
}
func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
func get32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) } }
func get64(_ b: [UInt8], _ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(b[at + $1]) << (8 * UInt64($1)) } }

/// Generic byte mutations.
func mutateBytes(_ b: inout [UInt8], _ r: inout Rng) {
    let n = 1 + r.below(4)
    for _ in 0..<n {
        switch r.below(8) {
        case 0 where !b.isEmpty: let i = r.below(b.count); b[i] ^= UInt8(1 << r.below(8))
        case 1 where !b.isEmpty: b[r.below(b.count)] = UInt8(truncatingIfNeeded: r.next())
        case 2 where !b.isEmpty:   // an extreme varint at a random place
            let i = r.below(b.count), v = varint(interesting[r.below(interesting.count)])
            b.replaceSubrange(i..<min(b.count, i + 1 + r.below(3)), with: v)
        case 3 where b.count >= 8:   // an extreme little-endian word
            let i = r.below(b.count - 7)
            b.replaceSubrange(i..<i + 8, with: le64(interesting[r.below(interesting.count)]))
        case 4 where !b.isEmpty:   // delete a range
            let i = r.below(b.count), k = min(b.count - i, 1 + r.below(16))
            b.removeSubrange(i..<i + k)
        case 5:   // insert random bytes
            let i = r.below(b.count + 1)
            b.insert(contentsOf: (0..<(1 + r.below(16))).map { _ in UInt8(truncatingIfNeeded: r.next()) }, at: i)
        case 6 where !b.isEmpty:   // duplicate a range
            let i = r.below(b.count), k = min(b.count - i, 1 + r.below(64))
            b.insert(contentsOf: Array(b[i..<i + k]), at: r.below(b.count + 1))
        default:
            if b.count > 1 { b.removeLast(r.below(b.count)) }   // truncate
        }
    }
}

/// A snapshot file's sections (id, bytes), or nil if it is not one.
func sections(_ b: [UInt8]) -> (version: UInt32, [(UInt32, [UInt8])])? {
    guard b.count >= 32 else { return nil }
    let count = Int(get32(b, 12))
    guard count <= 64, 32 + 32 * count <= b.count else { return nil }
    var out: [(UInt32, [UInt8])] = []
    for k in 0..<count {
        let e = 32 + 32 * k, o = Int(get64(b, e + 8)), n = Int(get64(b, e + 16))
        guard o >= 0, n >= 0, o <= b.count, n <= b.count - o else { return nil }
        out.append((get32(b, e), Array(b[o..<o + n])))
    }
    return (get32(b, 8), out)
}

/// The file for these sections, with offsets, lengths and checksums that hold.
func seal(version: UInt32, _ secs: [(UInt32, [UInt8])]) -> [UInt8] {
    var table: [UInt8] = []
    var offset = UInt64(32 + 32 * secs.count)
    for (id, bytes) in secs {
        table += (0..<4).map { UInt8(truncatingIfNeeded: id >> (8 * UInt32($0))) } + [0, 0, 0, 0]
        table += le64(offset) + le64(UInt64(bytes.count)) + le64(SnapshotFile.checksum(bytes[...]))
        offset += UInt64(bytes.count)
    }
    var out = Array("HSNAP\r\n".utf8) + [0x1a]
    out += (0..<4).map { UInt8(truncatingIfNeeded: version >> (8 * UInt32($0))) }
    out += (0..<4).map { UInt8(truncatingIfNeeded: UInt32(secs.count) >> (8 * UInt32($0))) }
    out += le64(offset) + le64(SnapshotFile.checksum(table[...])) + table
    for (_, bytes) in secs { out += bytes }
    return out
}

/// Replace one varint of a section (read as a stream of varints) by an extreme or nearby value:
/// the rest of the section stays aligned, so the mutant gets deep into the parser.
func replaceVarint(_ b: inout [UInt8], _ r: inout Rng) {
    var starts: [Int] = [], i = 0
    while i < b.count { starts.append(i); while i < b.count && b[i] >= 0x80 { i += 1 }; i += 1 }
    guard !starts.isEmpty else { return }
    let k = r.below(starts.count), s = starts[k], e = k + 1 < starts.count ? starts[k + 1] : b.count
    var old: UInt64 = 0
    for (j, x) in b[s..<e].prefix(9).enumerated() { old |= UInt64(x & 0x7f) << (7 * UInt64(j)) }
    let v: UInt64
    switch r.below(4) {
    case 0: v = interesting[r.below(interesting.count)]
    case 1: v = old &+ UInt64(1 + r.below(8))
    case 2: v = old &- UInt64(1 + r.below(8))
    default: v = old ^ (1 << UInt64(r.below(64)))
    }
    b.replaceSubrange(s..<e, with: varint(v))
}

func mutateSnapshot(_ seed: [UInt8], _ r: inout Rng) -> [UInt8] {
    var b = seed
    if r.chance(4) { mutateBytes(&b, &r); return b }   // raw: mostly stopped by the checksums
    guard let (version, secs0) = sections(seed), !secs0.isEmpty else { mutateBytes(&b, &r); return b }
    var secs = secs0
    let rounds = 1 + r.below(3)
    for _ in 0..<rounds {
        if r.chance(20) && secs.count > 1 { secs.remove(at: r.below(secs.count)); continue }
        if r.chance(30) { let k = r.below(secs.count); secs.append(secs[k]); continue }
        let k = r.below(secs.count)
        if r.chance(2) { replaceVarint(&secs[k].1, &r) } else { mutateBytes(&secs[k].1, &r) }
    }
    return seal(version: version, secs)
}

struct Options {
    var cases = 2000, seconds = 0.0, seed: UInt64 = 1
    var heapscope = "", out = "", mode = "", inputs: [String] = []
}

func parseOptions() -> Options {
    var o = Options()
    var a = Array(CommandLine.arguments.dropFirst())
    while let f = a.first, f.hasPrefix("--") {
        a.removeFirst()
        guard let v = a.first else { break }
        a.removeFirst()
        switch f {
        case "--cases": o.cases = Int(v) ?? o.cases
        case "--seconds": o.seconds = Double(v) ?? 0
        case "--seed": o.seed = UInt64(v) ?? 1
        case "--heapscope": o.heapscope = v
        case "--out": o.out = v
        default: complain("heapscope-fuzz: unknown option \(f)\n"); exit(64)
        }
    }
    guard let m = a.first, !o.heapscope.isEmpty, !o.out.isEmpty else {
        complain("usage: heapscope-fuzz [--cases N] [--seconds S] [--seed K] --heapscope PATH --out DIR (snapshot SEED... | elf FILE | text FILE | core SEED...)\n")
        exit(64)
    }
    o.mode = m
    o.inputs = Array(a.dropFirst())
    return o
}

func write(_ b: [UInt8], to path: String) {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
    guard fd >= 0 else { complain("heapscope-fuzz: cannot write \(path)\n"); exit(1) }
    var off = 0
    while off < b.count {
        let n = b.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, $0.count - off) }
        if n <= 0 { break }
        off += n
    }
    fsync(fd)
    close(fd)
}

func now() -> Double { var t = timespec(); clock_gettime(CLOCK_MONOTONIC, &t); return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9 }

/// Run heapscope under a 2 GB address-space limit, measuring its peak RSS (KiB, by /usr/bin/time);
/// nil if it had to be killed after `timeout` s.
func runHeapscope(_ o: Options, _ args: [String], stdin: String? = nil, timeout: Double = 20) -> (status: Int32, signaled: Bool, err: String, maxRSS: Int)? {
    let p = Process()
    // timeout(1) kills the whole process group it leads (time's child, heapscope, included).
    p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
    let rssFile = o.out + "/rss"
    try? FileManager.default.removeItem(atPath: rssFile)
    p.arguments = ["-s", "KILL", String(Int(timeout)), "/usr/bin/prlimit", "--as=2000000000", "--", "/usr/bin/time", "-f", "%M", "-o", rssFile, o.heapscope] + args
    let errURL = URL(fileURLWithPath: o.out + "/stderr")
    FileManager.default.createFile(atPath: errURL.path, contents: nil)
    p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
    p.standardError = try? FileHandle(forWritingTo: errURL)
    if let s = stdin {
        let inPath = o.out + "/stdin"
        write(Array(s.utf8), to: inPath)
        p.standardInput = FileHandle(forReadingAtPath: inPath)
    } else {
        p.standardInput = FileHandle(forReadingAtPath: "/dev/null")
    }
    do { try p.run() } catch { complain("heapscope-fuzz: cannot run \(o.heapscope): \(error)\n"); exit(1) }
    let deadline = now() + timeout + 10
    while p.isRunning && now() < deadline { usleep(2000) }
    if p.isRunning { p.terminate(); usleep(100_000); kill(p.processIdentifier, SIGKILL); p.waitUntilExit(); return nil }
    if p.terminationReason == .exit && p.terminationStatus == 128 + SIGKILL { return nil }   // timed out
    var err = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
    let rss = Int(((try? String(contentsOfFile: rssFile, encoding: .utf8)) ?? "").split(separator: "\n").last ?? "") ?? 0
    // /usr/bin/time reports a child killed by a signal as "Command terminated by signal N".
    var status = p.terminationStatus, signaled = p.terminationReason == .uncaughtSignal
    if let t = try? String(contentsOfFile: rssFile, encoding: .utf8), let r = t.range(of: "Command terminated by signal ") {
        signaled = true; status = Int32(t[r.upperBound...].prefix { $0.isNumber }) ?? status
        err += "\n" + t
    }
    return (status, signaled, String(err.prefix(2000)), rss)
}

nonisolated(unsafe) var failures = 0
func fail(_ o: Options, _ input: [UInt8], _ what: String, ext: String = "") {
    failures += 1
    let path = "\(o.out)/failure-\(failures)\(ext)"
    write(input, to: path)
    write(Array((what + "\n").utf8), to: path + ".txt")
    print("FAILURE \(failures): \(what) (input kept in \(path))")
}

/// `baselineRSS` (KiB): what the same command takes on the seed; memory beyond it plus 4× the
/// input (and 16 MiB of slack for a debug build's variance) is a failure.
func judge(_ o: Options, _ input: [UInt8], _ args: [String], ext: String = "", stdin: String? = nil, baselineRSS: Int? = nil,
           allowed: Set<Int32> = [0, 1, 2, 8]) {
    guard let r = runHeapscope(o, args, stdin: stdin) else { fail(o, input, "heapscope \(args.joined(separator: " ")) hung (killed after 20 s)", ext: ext); return }
    if r.signaled || !allowed.contains(r.status) {
        fail(o, input, "heapscope \(args.joined(separator: " ")) \(r.signaled ? "died of signal" : "exited") \(r.status): \(r.err)", ext: ext)
    } else if let base = baselineRSS, r.maxRSS > base + 4 * input.count / 1024 + 16 * 1024 {
        fail(o, input, "heapscope \(args.joined(separator: " ")) took \(r.maxRSS) KiB, the seed \(base) KiB, for \(input.count) bytes of input", ext: ext)
    }
}

func fuzzSnapshots(_ o: Options) {
    let seeds = o.inputs.map { path -> [UInt8] in
        guard let d = FileManager.default.contents(atPath: path) else { complain("heapscope-fuzz: cannot read \(path)\n"); exit(1) }
        return [UInt8](d)
    }
    guard !seeds.isEmpty else { complain("heapscope-fuzz: no seed snapshots\n"); exit(64) }
    let base = try? SnapshotFile.decode(seeds[0], path: "seed")
    var r = Rng(s: o.seed)
    let current = o.out + "/current"
    let start = now()
    var cases = 0, decoded = 0, viaCLI = 0
    let commands: [[String]] = [["stat"], ["chunks", "--json"], ["leaks", "--show", "reachable"], ["types"], ["stat", "--json"],
                                ["diff", o.inputs[0]], ["leaks", "--json"], ["types", "--json"]]
    // Each command's peak RSS on the biggest seed: the yardstick for its mutants.
    let biggest = o.inputs.indices.max { seeds[$0].count < seeds[$1].count } ?? 0
    let baseline: [Int] = commands.map { c in
        var args = c
        if args[0] == "diff" { args.append(o.inputs[biggest]) } else { args.insert(o.inputs[biggest], at: 1) }
        return runHeapscope(o, args)?.maxRSS ?? 0
    }
    while o.seconds > 0 ? now() - start < o.seconds : cases < o.cases {
        cases += 1
        let m = mutateSnapshot(seeds[r.below(seeds.count)], &r)
        write(m, to: current)
        let t0 = now()
        if let s = try? SnapshotFile.decode(m, path: "mutant") {
            decoded += 1
            let t = TypeInspection(snapshot: s)
            _ = t.histogram()
            _ = t.groups()
            _ = Inspector.leaks(snapshot: s)
            if let b = base {
                for key in [SnapshotDiff.Key.type, .size, .owner, .state] { _ = SnapshotDiff(b, s, by: key); _ = SnapshotDiff(s, b, by: key) }
            }
            if let f = try? OutputFile(o.out + "/profile.pb.gz") { _ = try? PprofProfile(heapOf: s).write(to: f) }
        }
        if now() - t0 > 5 { fail(o, m, "in-process decode and analysis took \(Int(now() - t0)) s") }
        if cases % 8 == 0 {
            viaCLI += 1
            let k = (cases / 8) % commands.count
            var args = commands[k]
            if args[0] == "diff" { args.append(current) } else { args.insert(current, at: 1) }
            judge(o, m, args, ext: ".snap", baselineRSS: baseline[k])
        }
    }
    print("snapshot: \(cases) mutants (\(decoded) decoded and analysed in process, \(viaCLI) through heapscope) in \(Int(now() - start)) s, \(failures) failures")
}

/// The fields of a core a mutant aims at: (offset, width in bytes) of each.
func coreFields(_ b: [UInt8]) -> (header: [(Int, Int)], phdrs: [(Int, Int)], notes: [(Int, Int)], memory: [(Int, Int)]) {
    guard b.count >= 64 else { return ([], [], [], []) }
    let header = [(16, 2), (18, 2), (32, 8), (54, 2), (56, 2), (4, 1), (5, 1)]
    let phoff = Int(clamping: get64(b, 32)), size = Int(b[54]) | Int(b[55]) << 8, count = Int(b[56]) | Int(b[57]) << 8
    var phdrs: [(Int, Int)] = [], notes: [(Int, Int)] = [], memory: [(Int, Int)] = []
    guard size >= 56, phoff > 0, count < 4096, phoff <= b.count - size * count else { return (header, [], [], []) }
    for i in 0..<count {
        let p = phoff + i * size
        phdrs += [(p, 4), (p + 4, 4), (p + 8, 8), (p + 16, 8), (p + 32, 8), (p + 40, 8)]
        let type = get32(b, p), off = Int(clamping: get64(b, p + 8)), filesz = Int(clamping: get64(b, p + 32))
        guard off >= 0, filesz >= 0, off <= b.count, filesz <= b.count - off else { continue }
        if type == 4 { for k in stride(from: off, to: off + filesz - 8, by: 4) { notes.append((k, 8)) } }
        if type == 1 && filesz > 0 && get32(b, p + 4) & 2 != 0 { for k in stride(from: off, to: off + filesz - 8, by: 8) { memory.append((k, 8)) } }
    }
    return (header, phdrs, notes, memory)
}

func mutateCore(_ seed: [UInt8], _ fields: (header: [(Int, Int)], phdrs: [(Int, Int)], notes: [(Int, Int)], memory: [(Int, Int)]), _ r: inout Rng) -> [UInt8] {
    var b = seed
    /// Set `width` bytes at `at` to an extreme, nearby or random value.
    func set(_ f: (Int, Int)) {
        let (at, width) = f
        guard at >= 0, at + width <= b.count else { return }
        var old: UInt64 = 0
        for k in 0..<width { old |= UInt64(b[at + k]) << (8 * UInt64(k)) }
        let v: UInt64
        switch r.below(4) {
        case 0: v = interesting[r.below(interesting.count)]
        case 1: v = old &+ UInt64(1 + r.below(4096))
        case 2: v = old &- UInt64(1 + r.below(4096))
        default: v = r.next()
        }
        for k in 0..<width { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
    }
    for _ in 0..<(1 + r.below(3)) {
        switch r.below(10) {
        case 0: if !fields.header.isEmpty { set(fields.header[r.below(fields.header.count)]) }
        case 1, 2, 3: if !fields.phdrs.isEmpty { set(fields.phdrs[r.below(fields.phdrs.count)]) }
        case 4, 5, 6: if !fields.notes.isEmpty { set(fields.notes[r.below(fields.notes.count)]) }
        case 7, 8: if !fields.memory.isEmpty { set(fields.memory[r.below(fields.memory.count)]) }
        default: if b.count > 64 { b.removeLast(r.below(b.count - 64)) }   // truncated
        }
    }
    return b
}

func fuzzCore(_ o: Options) {
    let seeds = o.inputs.map { path -> [UInt8] in
        guard let d = FileManager.default.contents(atPath: path) else { complain("heapscope-fuzz: cannot read \(path)\n"); exit(1) }
        return [UInt8](d)
    }
    guard !seeds.isEmpty else { complain("heapscope-fuzz: no seed cores\n"); exit(64) }
    let fields = seeds.map(coreFields)
    var r = Rng(s: o.seed)
    let current = o.out + "/current.core"
    let start = now()
    var cases = 0, parsed = 0, viaCLI = 0
    let commands: [[String]] = [["stat"], ["chunks", "--json", "--no-types"], ["leaks"], ["types", "--json"], ["sym", "--core"]]
    while o.seconds > 0 ? now() - start < o.seconds : cases < o.cases {
        cases += 1
        let k = r.below(seeds.count)
        let m = mutateCore(seeds[k], fields[k], &r)
        write(m, to: current)
        let t0 = now()
        var addrs: [UInt64] = []
        if let c = try? CoreFile(path: current) {
            parsed += 1
            let maps = c.maps
            _ = c.threads.map(\.pc)
            _ = c.executable
            var buf = [UInt8](repeating: 0, count: 4096)
            for s in c.segments.prefix(64) {
                for a in [s.vaddr, s.vaddr &+ s.memsz / 2, s.end &- 8] { _ = buf.withUnsafeMutableBytes { c.read(a, into: $0.baseAddress!, count: 4096) } }
                _ = c.readableRuns(start: s.vaddr, end: s.end)
            }
            addrs = maps.filter(\.executable).prefix(8).flatMap { [$0.start, $0.start &+ $0.size / 2] }
        }
        if now() - t0 > 5 { fail(o, m, "in-process parse took \(Int(now() - t0)) s", ext: ".core") }
        if cases % 4 == 0 {
            viaCLI += 1
            var args = commands[(cases / 4) % commands.count]
            args.insert(current, at: args[0] == "sym" ? 2 : 1)
            let input = args[0] == "sym" ? (addrs + [0, 1 << 47, 0xffff_ffff_ffff_ffff]).map { "0x" + String($0, radix: 16) }.joined(separator: "\n") + "\n" : nil
            judge(o, m, args, ext: ".core", stdin: input, allowed: [0, 1, 2, 6, 7, 8])
        }
    }
    print("core: \(cases) mutants (\(parsed) parsed in process, \(viaCLI) through heapscope) in \(Int(now() - start)) s, \(failures) failures")
}

/// ELF64 section headers: (name, offset, size) of each, if the file parses that far.
func elfSections(_ b: [UInt8]) -> [(String, Int, Int)] {
    guard b.count >= 64, b[0..<4] == [0x7f, 0x45, 0x4c, 0x46] else { return [] }
    let shoff = Int(get64(b, 0x28)), shentsize = Int(b[0x3a]) | Int(b[0x3b]) << 8
    let shnum = Int(b[0x3c]) | Int(b[0x3d]) << 8, shstrndx = Int(b[0x3e]) | Int(b[0x3f]) << 8
    guard shentsize == 64, shoff > 0, shoff + 64 * shnum <= b.count, shstrndx < shnum else { return [] }
    let strOff = Int(get64(b, shoff + 64 * shstrndx + 0x18))
    var out: [(String, Int, Int)] = []
    for k in 0..<shnum {
        let e = shoff + 64 * k
        let nameAt = strOff + Int(get32(b, e))
        var name = ""
        var i = nameAt
        while i < b.count, b[i] != 0, name.count < 64 { name.append(Character(UnicodeScalar(b[i]))); i += 1 }
        out.append((name, Int(get64(b, e + 0x18)), Int(get64(b, e + 0x20))))
    }
    return out
}

func fuzzELF(_ o: Options) {
    guard let path = o.inputs.first, let d = FileManager.default.contents(atPath: path) else { complain("heapscope-fuzz: elf needs a file\n"); exit(64) }
    let seed = [UInt8](d)
    // Addresses across the file's text, and the sections mutations aim at (DWARF, symbols, headers).
    let secs = elfSections(seed)
    let targets = secs.filter { $0.0.hasPrefix(".debug") || $0.0.hasPrefix(".symtab") || $0.0.hasPrefix(".strtab") || $0.0 == ".dynsym" || $0.0 == ".eh_frame" }
    var r = Rng(s: o.seed)
    let addrs = (0..<200).map { _ in "0x" + String(0x1000 + r.below(0x4000), radix: 16) }.joined(separator: "\n") + "\n"
    let start = now()
    var cases = 0
    let current = o.out + "/current.elf"
    while o.seconds > 0 ? now() - start < o.seconds : cases < o.cases {
        cases += 1
        var m = seed
        let n = 1 + r.below(8)
        for _ in 0..<n {
            if let t = targets.isEmpty ? nil : targets[r.below(targets.count)], t.2 > 0, t.1 + t.2 <= m.count, !r.chance(5) {
                let i = t.1 + r.below(t.2)
                switch r.below(3) {
                case 0: m[i] ^= UInt8(1 << r.below(8))
                case 1: m[i] = UInt8(truncatingIfNeeded: r.next())
                default: for k in 0..<min(8, m.count - i) { m[i + k] = le64(interesting[r.below(interesting.count)])[k] }
                }
            } else if !m.isEmpty {
                m[r.below(min(m.count, 4096))] ^= UInt8(1 << r.below(8))   // headers
            }
        }
        write(m, to: current)
        switch cases % 3 {
        case 0: judge(o, m, ["gensyms", "--elf", current], ext: ".elf")
        case 1: judge(o, m, ["sym", "--json", "--elf", current], ext: ".elf", stdin: addrs)
        default: judge(o, m, ["sym", "--elf", current], ext: ".elf", stdin: addrs)
        }
    }
    print("elf: \(cases) mutants of \(path) (\(targets.count) sections aimed at) in \(Int(now() - start)) s, \(failures) failures")
}

func fuzzText(_ o: Options) {
    guard let path = o.inputs.first else { complain("heapscope-fuzz: text needs an ELF file to resolve against\n"); exit(64) }
    var r = Rng(s: o.seed)
    let pieces = ["0x", "0X", "-", "+", " ", "\t", ":", "0", "1", "f", "ff", "deadbeef", "ffffffffffffffff", "10000000000000000",
                  "99999999999999999999999", path, "/nonexistent", "'", "\"", "\\", "\u{00e9}", "\u{fffd}", "🙂", "#", "0x0x", "x",
                  // pieces of pasted backtraces (glibc, gdb, ASan, Valgrind, perf script, module+offset)
                  "(", ")", "[", "]", "(+0x", "+0x1a", "(main+0x", ")[0x", " [0x", "#1  0x", "#0 ", " in ", " from ", " at ",
                  "==12==", "    at 0x", "    by 0x", ": ", "(in ", "libc.so.6", "/lib/x86_64-linux-gnu/libc.so.6", "(\(path)+0x",
                  "[unknown]", "\t    ", "55d4c3a1b189 ", "==", "--1--", "@@GLIBC_2.34"]
    let start = now()
    var cases = 0
    while o.seconds > 0 ? now() - start < o.seconds : cases < o.cases {
        cases += 1
        var lines: [String] = []
        for _ in 0..<(1 + r.below(2000)) {
            var l = ""
            for _ in 0..<r.below(12) { l += pieces[r.below(pieces.count)] }
            if r.chance(500) { l += String(repeating: "0x1234 ", count: 20_000 + r.below(100_000)) }
            if r.chance(50) { l += String(decoding: (0..<r.below(20)).map { _ in UInt8(truncatingIfNeeded: r.next()) }, as: UTF8.self) }
            lines.append(l)
        }
        let text = lines.joined(separator: "\n")
        let modes: [[String]] = [["sym", "--elf", path], ["sym", "--json", "--elf", path], ["sym", "--annotate", "--elf", path],
                                 ["sym", "--format", "gensyms", "--elf", path], ["sym", "--format", "llvm", "--elf", path], ["sym", "--file-offset", "--elf", path],
                                 ["sym", "--no-adjust", "--json", "--elf", path]]
        judge(o, Array(text.utf8), modes[cases % modes.count], ext: ".txt", stdin: text)
    }
    print("text: \(cases) batches of lines for sym in \(Int(now() - start)) s, \(failures) failures")
}

let o = parseOptions()
try? FileManager.default.createDirectory(atPath: o.out, withIntermediateDirectories: true)
switch o.mode {
case "snapshot": fuzzSnapshots(o)
case "elf": fuzzELF(o)
case "core": fuzzCore(o)
case "text": fuzzText(o)
default: complain("heapscope-fuzz: unknown mode \(o.mode)\n"); exit(64)
}
exit(failures == 0 ? 0 : 1)
