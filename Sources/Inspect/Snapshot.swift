import Analysis
import Glibc
import HeapModel
import ProcessAccess
import Snapshot
import Symbols

extension Inspector {
    /// One inspection with everything the analyses produce — heap walk, leak class and type of
    /// every outstanding chunk, owners — as a snapshot; chunk contents only with `contents`.
    public static func snapshot(pid: Int32, options: InspectOptions = InspectOptions(), contents: Bool = false) throws(InspectError) -> Snapshot {
        try snapshot(.process(pid), options: options, contents: contents)
    }
    /// `snapshot` of a live process or a core file.
    public static func snapshot(_ target: InspectTarget, options: InspectOptions = InspectOptions(), contents: Bool = false) throws(InspectError) -> Snapshot {
        if target.snapshotPath != nil { throw .needsImage("snapshot") }
        let t0 = nowNs()
        return snapshot(image: try inspectCapturing(target, options: options, writable: true), options: options, contents: contents,
                        since: t0, ownsImage: true)
    }

    /// `snapshot` of a process image taken with `writable`.
    public static func snapshot(image: ProcessImage, options: InspectOptions = InspectOptions(), contents: Bool = false) -> Snapshot {
        snapshot(image: image, options: options, contents: contents, since: nowNs(), ownsImage: false)
    }

    /// `since`: when the inspection began (for the file's inspection time). `ownsImage`: nothing
    /// else reads the image after this: without contents, its copy is given back once labelled.
    static func snapshot(image: ProcessImage, options: InspectOptions, contents: Bool, since t0: UInt64, ownsImage: Bool) -> Snapshot {
        // (owners at the chains' tops only: the owner of every chunk is found below, after the copy is given back)
        var r = leaks(image: image, options: options, types: true, typesOfReachable: true, lineage: .chains)
        // The copy is read for the last time by the labelling: the columns below need its memory more.
        if ownsImage && !contents { r.memory.discardContents() }
        options.progress?("recording \(r.heap.chunks.count) chunks")
        let pid = r.heap.pid
        let table = r.heap.chunks, n = table.count
        let b = r.leaks.blocks, chunkOf = b.chunk
        // The per-chunk columns are made one group at a time, and each group of the labels they
        // come from is dropped as soon as it is copied: the labels and the columns are not all
        // held at once (10M chunks: about 80 MiB less at the peak).
        // (`leaks` with typesOfReachable labels every chunk: labels are always there)
        guard var labels = r.types?.labels else { preconditionFailure("snapshot: leaks(typesOfReachable: true) made no labels") }
        let rounds = labels.rounds, conflicts = labels.conflicts
        r.types = nil
        var leakClass = r.leaks.leakClass
        r.leaks.leakClass = []
        var cls = [UInt8](repeating: 255, count: n)
        for k in 0..<b.count { cls[Int(chunkOf[k])] = leakClass[k].rawValue }
        leakClass = []
        var types: [(name: String, kind: UInt8, size: UInt64)] = [], typeIDs: [Int32: Int32] = [:], nameIDs: [String: Int32] = [:]
        var owners: [String] = [], ownerIDs: [Int32: Int32] = [:]
        // (arrays hoisted out of the loops: reaching them through the structs costs retains per block)
        let ltable = labels.table
        var type = [Int32](repeating: -1, count: n), count = [UInt32](repeating: 1, count: n)
        var conf = [UInt8](repeating: 0, count: n), amb = [Bool](repeating: false, count: n)
        do {
            let ltype = labels.type, lcount = labels.count, lconf = labels.confidence, lamb = labels.ambiguous
            labels.type = []; labels.count = CountColumn(); labels.confidence = []; labels.ambiguous = []
            for k in 0..<b.count where ltype[k] >= 0 {
                let i = Int(chunkOf[k]), ty = ltype[k]
                if typeIDs[ty] == nil {
                    // One entry per name: element name, kind and size, so that "T[n]" and "char[]" print as before.
                    let s = ltable.strip(ty) >= 0 ? ltable.strip(ty) : ty
                    let name = ltable.name(ty)
                    let id = nameIDs[name] ?? Int32(types.count)
                    if id == Int32(types.count) { types.append((name, ltable[s].kind.rawValue, ltable.size(ty))); nameIDs[name] = id }
                    typeIDs[ty] = id
                }
                type[i] = typeIDs[ty]!; count[i] = lcount[k]; conf[i] = lconf[k].rawValue; amb[i] = lamb[k]
            }
        }
        var parent = [Int32](repeating: -1, count: n), owner = [Int32](repeating: -1, count: n)
        do {
            let lparent = labels.parent, roots = labels.roots
            labels.parent = []
            // Each block's owner is its chain's top's, which holds it as -2 - root (Lineage.chains);
            // a chain is followed once, up to a block whose owner is known.
            var rootOf = [Int32](repeating: -3, count: b.count)   // -3: not known yet
            var path: [Int] = []
            for k in 0..<b.count where rootOf[k] == -3 {
                path.removeAll(keepingCapacity: true)
                var j = k, root: Int32 = -1
                while true {
                    if rootOf[j] != -3 { root = rootOf[j]; break }
                    path.append(j)
                    let p = lparent[j]
                    if p < 0 { root = p < -1 ? -2 - p : -1; break }
                    // (a parent is reached before its children: no chain comes back on itself)
                    guard path.count <= b.count, Int(p) < b.count else { break }
                    j = Int(p)
                }
                for x in path { rootOf[x] = root }
            }
            for k in 0..<b.count {
                if lparent[k] >= 0 { parent[Int(chunkOf[k])] = chunkOf[Int(lparent[k])] }
                let o = rootOf[k]
                guard o >= 0 else { continue }
                if ownerIDs[o] == nil { ownerIDs[o] = Int32(owners.count); owners.append(roots[Int(o)].name) }
                owner[Int(chunkOf[k])] = ownerIDs[o]!
            }
        }
        var bytes: [UInt8]? = nil
        if contents {
            bytes = []
            for k in 0..<b.count {
                let i = Int(chunkOf[k])
                r.memory.append(table.userAddress(i), count: Int(table.usableSize(i)), to: &bytes!)
            }
        }
        // (what was read of the process before it was stopped: nothing here reads /proc/PID)
        let facts = r.facts ?? ProcessFacts(pid: pid, exe: "", startTime: nil, buildIDs: [])
        var meta: [(key: String, value: String)] = [
            ("pid", String(pid)), ("exe", facts.exe), ("start_time", facts.startTime.map(String.init) ?? ""),
            ("taken_at_unix_ns", String(realtimeNs())), ("glibc", r.heap.allocatorVersion),
            ("inspection_us", String((nowNs() - t0) / 1000)), ("contents", contents ? "yes" : "no"),
        ]
        // Build-ids of the mapped files, to tell whether a later snapshot ran the same code.
        for (path, id) in facts.buildIDs { meta.append(("build_id:" + path, id)) }
        if let core = r.heap.coreFile { meta.append(("core_file", core)) }
        for (k, v) in r.rootBytes { meta.append(("roots:" + k.rawValue, String(v))) }
        meta.append(("scanned_bytes", String(r.leaks.scannedBytes)))
        meta.append(("type_rounds", String(rounds))); meta.append(("type_conflicts", String(conflicts)))
        if let m = r.heap.memory { meta.append(contentsOf: MemoryAccount.meta(m)) }
        var hostname = [CChar](repeating: 0, count: 256)
        if gethostname(&hostname, 255) == 0 { meta.append(("host", String(decoding: hostname.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))) }
        return Snapshot(meta: meta, report: r.heap, leakClass: cls, type: type, count: count, confidence: conf, ambiguous: amb,
                        owner: owner, parent: parent, types: types, owners: owners, contents: bytes)
    }
}

extension TypeInspection {
    /// The labels a snapshot recorded, as `types` computed them (no fields: only the names).
    public init(snapshot s: Snapshot) {
        let blocks = Blocks(s.report.chunks)
        var table = TypeTable()
        for t in s.types { table.add(.init(kind: TypeTable.Kind(rawValue: t.kind) ?? .structure, name: t.name, size: t.size)) }
        var labels = TypeLabels(table: table, type: [], count: CountColumn(), confidence: [], ambiguous: [], owner: [], parent: [],
                                roots: s.owners.map { TypedRoot(location: .value(0), type: -1, kind: .global, name: $0) },
                                conflicts: s.value("type_conflicts").flatMap { Int($0) } ?? 0,
                                rounds: s.value("type_rounds").flatMap { Int($0) } ?? 0)
        for a in [\TypeLabels.type, \.owner, \.parent] as [WritableKeyPath<TypeLabels, [Int32]>] { labels[keyPath: a].reserveCapacity(blocks.count) }
        labels.count.reserveCapacity(blocks.count); labels.confidence.reserveCapacity(blocks.count); labels.ambiguous.reserveCapacity(blocks.count)
        for k in 0..<blocks.count {
            let i = Int(blocks.chunk[k])
            labels.type.append(s.type[i]); labels.count.append(s.count[i])
            labels.confidence.append(TypeConfidence(rawValue: s.confidence[i]) ?? .unknown)
            labels.ambiguous.append(s.ambiguous[i]); labels.owner.append(s.owner[i])
            labels.parent.append(s.parent[i] >= 0 ? Int32(blocks.block(ofChunk: Int(s.parent[i])) ?? -1) : -1)
        }
        self.init(heap: s.report, blocks: blocks, labels: labels, memory: s.contentsImage(), debugInfoMicroseconds: 0,
                  propagationMicroseconds: 0, modules: [])
        fromSnapshot = true
    }
}

extension Snapshot {
    /// The saved contents as memory at their addresses (empty without --contents): one region
    /// per run of chunks less than a page apart, the gaps (chunk headers) zero.
    public func contentsImage() -> MemoryImage {
        let image = MemoryImage()
        guard let c = contents else { return image }
        let t = report.chunks
        var runStart: UInt64 = 0, runEnd: UInt64 = 0, bytes: [UInt8] = [], offset = 0
        func flush() {
            guard !bytes.isEmpty else { return }
            guard let r = Region(start: runStart, count: bytes.count, label: "snapshot contents") else { bytes = []; return }
            bytes.withUnsafeBytes { r.base.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            image.add(r)
            bytes = []
        }
        for i in 0..<t.count where t.isOutstanding(i) {
            let u = t.userAddress(i), n = Int(t.usableSize(i))
            if bytes.isEmpty || u < runEnd || u - runEnd > 4096 { flush(); runStart = u; runEnd = u }
            bytes += [UInt8](repeating: 0, count: Int(u - runEnd))
            bytes += c[offset..<offset + n]
            offset += n; runEnd = u + UInt64(n)
        }
        flush()
        return image
    }
}

extension Inspector {
    /// A snapshot file, read and checked.
    public static func readSnapshot(_ path: String) throws(InspectError) -> Snapshot {
        do {
            var s = try SnapshotFile.read(path)
            s.report.memory = MemoryAccount(meta: s.meta)
            return s
        } catch { throw .snapshotFile(error) }
    }

    /// A leak check as a snapshot recorded it: the class of every outstanding chunk, its type,
    /// the contents when saved; no roots (their memory is not in the file) but their sizes.
    public static func leaks(snapshot s: Snapshot) -> LeakInspection {
        let types = TypeInspection(snapshot: s)
        let b = types.blocks
        let cls = (0..<b.count).map { LeakClass(rawValue: s.leakClass[Int(b.chunk[$0])]) ?? .stillReachable }
        var rootBytes: [RootKind: UInt64] = [:]
        for (k, v) in s.meta where k.hasPrefix("roots:") {
            if let kind = RootKind(rawValue: String(k.dropFirst(6))), let n = UInt64(v) { rootBytes[kind] = n }
        }
        let scanned = s.value("scanned_bytes").flatMap { UInt64($0) } ?? 0
        return LeakInspection(heap: s.report, leaks: LeakReport(blocks: b, leakClass: cls, scannedBytes: scanned),
                              roots: [], registers: [], rootBytes: rootBytes, memory: types.memory, types: types)
    }
}

func realtimeNs() -> UInt64 {
    var t = timespec()
    clock_gettime(CLOCK_REALTIME, &t)
    return UInt64(t.tv_sec) * 1_000_000_000 + UInt64(t.tv_nsec)
}

extension MemoryAccount {
    /// As a snapshot's metadata: "memory" = "RSS PSS SWAP TRIMMABLE PAGE_LEVEL", then one
    /// "memory_line" per line: "ID\tRSS\tPSS\tSWAP\tMAPPINGS\tNAME".
    static func meta(_ m: MemoryAccount) -> [(key: String, value: String)] {
        [("memory", "\(m.rss) \(m.pss) \(m.swap) \(m.trimmable) \(m.pageLevel ? 1 : 0)")]
            + m.lines.map { ("memory_line", "\($0.id)\t\($0.rss)\t\($0.pss)\t\($0.swap)\t\($0.mappings)\t\($0.name)") }
    }

    /// From a snapshot's metadata; nil when it has none (or it does not parse).
    init?(meta: [(key: String, value: String)]) {
        guard let head = meta.first(where: { $0.key == "memory" })?.value.split(separator: " ").compactMap({ UInt64($0) }), head.count == 5 else { return nil }
        var lines: [Line] = []
        for (k, v) in meta where k == "memory_line" {
            let f = v.split(separator: "\t", maxSplits: 5, omittingEmptySubsequences: false)
            guard f.count == 6, let rss = Int64(f[1]), let pss = Int64(f[2]), let swap = Int64(f[3]), let n = Int(f[4]) else { return nil }
            lines.append(Line(id: String(f[0]), name: String(f[5]), rss: rss, pss: pss, swap: swap, mappings: n))
        }
        self.init(rss: head[0], pss: head[1], swap: head[2], lines: lines, trimmable: head[3], pageLevel: head[4] == 1)
    }
}
