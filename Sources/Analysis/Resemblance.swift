import HeapModel
import ProcessAccess

/// Types for chunks no typed pointer reaches (leaked ones, mostly) by resemblance: a chunk takes
/// the type of declared-typed chunks of exactly its usable size whose layout its words fit.
///
/// A word fits a pointer member when it is 0, an address mapped in the process, or a link the
/// allocator left there encoded when the chunk was free (glibc's safe-linking; `decodeLink`).
/// A word fits a scalar member unless it is the start of an outstanding chunk (a heap pointer
/// where the type has none). A fitting type scores one point per pointer member holding a mapped
/// address and per char array holding a NUL-terminated string. The one best-scoring type labels
/// the chunk `resembles`; two or more with the best score label it `ambiguous`, named "A | B".
public enum Resemblance {
    /// Candidate types per usable size: at most this many, the most numerous first.
    static let candidatesPerSize = 8

    /// Label every block that `include` accepts and that has no type yet. Returns the number of
    /// blocks labelled `resembles` and `ambiguous`.
    @discardableResult
    public static func run(labels: inout TypeLabels, blocks: Blocks, memory: MemoryImage,
                           include: (Int) -> Bool, isMapped: (UInt64) -> Bool,
                           decodeLink: ((_ word: UInt64, _ at: UInt64) -> UInt64?)? = nil) -> (resembles: Int, ambiguous: Int) {
        let table = labels.table
        // Declared-typed, single, not via a union: per usable size, per type name, the chunks.
        var bySize: [UInt64: [String: (type: Int32, chunks: Int)]] = [:]
        for k in 0..<blocks.count where labels.type[k] >= 0 && labels.confidence[k] == .declared
            && !labels.ambiguous[k] && labels.count[k] == 1 {
            let t = labels.type[k]
            let s = table.strip(t)
            guard s >= 0, table[s].kind == .structure || table[s].kind == .union else { continue }
            let name = table.name(t)
            bySize[blocks.userEnd(k) - blocks.userStart(k), default: [:]][name, default: (t, 0)].chunks += 1
        }
        guard !bySize.isEmpty else { return (0, 0) }
        var shapes: [Int32: Shape] = [:]
        var candidates: [UInt64: [(name: String, shape: Shape)]] = [:]
        for (size, types) in bySize {
            let top = types.sorted { ($0.value.chunks, $1.key) > ($1.value.chunks, $0.key) }.prefix(candidatesPerSize)
            candidates[size] = top.compactMap { name, v in
                if shapes[v.type] == nil { shapes[v.type] = Shape(table, v.type) }
                let sh = shapes[v.type]!
                return sh.size > 0 && sh.size <= size ? (name, sh) : nil
            }
        }
        var synthetic: [String: Int32] = [:]
        var resembled = 0, ambiguous = 0
        var region: Region? = nil
        for k in 0..<blocks.count where labels.type[k] < 0 && include(k) {
            let start = blocks.userStart(k), usable = blocks.userEnd(k) - start
            guard let cands = candidates[usable], !cands.isEmpty else { continue }
            if region == nil || !region!.contains(start, usable) { region = memory.region(containing: start, length: usable) }
            guard let r = region, r.contains(start, usable) else { continue }
            var best = -1, winners: [Int] = []
            for (i, c) in cands.enumerated() {
                guard let score = c.shape.score(r, start, blocks: blocks, isMapped: isMapped, decodeLink: decodeLink) else { continue }
                if score > best { best = score; winners = [i] } else if score == best { winners.append(i) }
            }
            guard !winners.isEmpty else { continue }
            if winners.count == 1 {
                labels.type[k] = cands[winners[0]].shape.type
                labels.confidence[k] = .resembles
                resembled += 1
            } else {
                let name = winners.map { cands[$0].name }.sorted().joined(separator: " | ")
                if synthetic[name] == nil {
                    synthetic[name] = labels.table.add(.init(kind: .structure, name: name, size: usable))
                }
                labels.type[k] = synthetic[name]!
                labels.confidence[k] = .ambiguous
                ambiguous += 1
            }
            labels.count[k] = 1
        }
        return (resembled, ambiguous)
    }

    /// What a type's layout says of each word: pointer members, char arrays, other scalars.
    struct Shape {
        var type: Int32
        var size: UInt64
        var pointers: [UInt64] = []
        var text: [(offset: UInt64, length: UInt64)] = []
        /// 8-byte words wholly inside a scalar member (and no pointer member: unions overlap).
        var scalars: [UInt64] = []

        init(_ table: TypeTable, _ t: Int32) {
            type = t
            size = table.size(t)
            var scalarWords = Set<UInt64>()
            for f in table.fields(of: t, bytes: size, limit: 4096) where f.bitSize == 0 {
                let s = table.strip(f.type)
                let fs = table.size(f.type)
                if s >= 0, table[s].kind == .pointer {
                    if f.offset & 7 == 0 && f.offset + 8 <= size { pointers.append(f.offset) }
                    continue
                }
                if s >= 0, table[s].kind == .array, table.size(table[s].target) == 1 {
                    if fs > 0 { text.append((f.offset, fs)) }
                    continue
                }
                var w = (f.offset + 7) & ~7
                while w + 8 <= f.offset + fs && w + 8 <= size { scalarWords.insert(w); w += 8 }
            }
            let p = Set(pointers)
            pointers = p.sorted()
            scalars = scalarWords.subtracting(p).sorted()
        }

        /// nil if the words at `a` contradict the layout; else the evidence for it.
        func score(_ r: Region, _ a: UInt64, blocks: Blocks, isMapped: (UInt64) -> Bool,
                   decodeLink: ((UInt64, UInt64) -> UInt64?)?) -> Int? {
            var points = 0
            for o in pointers {
                let w = r.word(a + o)
                if w == 0 { continue }
                if isMapped(w) { points += 1; continue }
                if let d = decodeLink?(w, a + o), d == 0 || (d & 15 == 0 && isMapped(d)) { continue }
                return nil
            }
            for o in scalars {
                let w = r.word(a + o)
                if w != 0, w & 7 == 0, let k = blocks.block(containing: w), blocks.userStart(k) == w { return nil }
            }
            for (o, n) in text {
                let at = Int(a + o - r.start)
                var i = 0
                while i < Int(n), (0x20..<0x7f).contains(r.base.load(fromByteOffset: at + i, as: UInt8.self)) { i += 1 }
                if i > 0, i < Int(n), r.base.load(fromByteOffset: at + i, as: UInt8.self) == 0 { points += 1 }
            }
            return points
        }
    }
}
