@testable import GlibcMalloc
import HeapModel
import Testing

/// A heap segment walked in two pieces (`SegmentWalker.walk(split:)`) against one walk, on a
/// segment made here: every split point, at chunk boundaries and inside chunks, with free-list
/// entries just below the split, free chunks in no list, and a damaged size field to resume after.
@Suite("A heap segment walked in two pieces")
struct SegmentPieceTests {
    struct Heap {
        let bytes: UnsafeMutableRawPointer
        let start: UInt64 = 0x7f00_0000_0000
        let length = 0x8000
        var chunks: [UInt64] = []
        var top: UInt64 = 0
        var listed: [ListedFree] = []

        init(damaged: Bool) {
            bytes = .allocate(byteCount: length, alignment: 16)
            bytes.initializeMemory(as: UInt8.self, repeating: 0, count: length)
            let sizes: [UInt64] = [0x20, 0x30, 0x50, 0x90, 0x20, 0x410, 0x40]
            var p = start + 0x10, n = 0
            while p + 0x410 + 0x100 < start + UInt64(length) {
                chunks.append(p)
                setSize(p, sizes[n % sizes.count] | 1)   // PREV_INUSE: the chunk before is in use
                p += sizes[n % sizes.count]; n += 1
            }
            top = p
            setSize(top, (start + UInt64(length) - top) | 1)
            // Listed free chunks: fastbins (next PREV_INUSE stays set), small ones (cleared),
            // one listed small chunk whose next still says in use, one free chunk in no list.
            for (k, c) in chunks.enumerated() {
                switch k % 11 {
                case 3: listed.append(ListedFree(address: c, kind: .fastbin))
                case 7: listed.append(ListedFree(address: c, kind: .small)); clearPrevInUse(after: k)
                case 9 where k % 2 == 0: listed.append(ListedFree(address: c, kind: .small))
                case 10 where k % 3 == 0: clearPrevInUse(after: k)
                default: break
                }
                // A list entry inside a chunk (not at a boundary) every so often.
                if k % 13 == 5 { listed.append(ListedFree(address: c + 0x10, kind: .tcache)) }
            }
            if damaged {   // a size field overwritten in the second half: the walk resumes at the next listed chunk
                setSize(chunks[chunks.count * 2 / 3], 0xffff_ffff_ffff_fff1)
            }
            listed.sort { $0.address < $1.address }
        }
        func setSize(_ p: UInt64, _ v: UInt64) { bytes.storeBytes(of: v, toByteOffset: Int(p - start + 8), as: UInt64.self) }
        func size(_ p: UInt64) -> UInt64 { bytes.load(fromByteOffset: Int(p - start + 8), as: UInt64.self) }
        func clearPrevInUse(after k: Int) {
            let next = k + 1 < chunks.count ? chunks[k + 1] : top
            setSize(next, size(next) & ~1)
        }
        var walker: SegmentWalker {
            let seg = HeapSegment(firstChunk: start + 0x10, end: start + UInt64(length), arena: 0, mapped: Segment(start: start, end: start + UInt64(length)))
            return SegmentWalker(layout: GlibcLayout(version: "2.36")!, kinds: GlibcKinds.table(), seg: seg, base: UnsafeRawPointer(bytes),
                                 regionStart: start, regionEnd: start + UInt64(length), top: top, topSize: start + UInt64(length) - top)
        }
    }

    /// What a walk made: the chunk table's columns, the tallies, the warnings, the list cursor and the end.
    func outcome(_ h: Heap, split: UInt64?) -> [String] {
        var cols = ChunkTable.Builder(), tally = SegmentTally(arenas: 1, kinds: 9), warnings: [HeapWarning] = [], fi = 0
        let end = h.walker.walk(split: split, listed: h.listed, fi: &fi, cols: &cols, tally: &tally, warnings: &warnings)
        let t = cols.table(kinds: GlibcKinds.table())
        return ["\(Array(t.address))", "\(Array(t.size))", "\(t.kind.map(\.rawValue))", "\(Array(t.arena))",
                "\(tally.counts) \(tally.sums) \(tally.trimmable)", "\(warnings.map(\.message))", "\(fi)", "\(end)"]
    }

    @Test("split at every chunk boundary and inside chunks: what one walk makes", arguments: [false, true])
    func everySplit(damaged: Bool) {
        let h = Heap(damaged: damaged)
        defer { h.bytes.deallocate() }
        let whole = outcome(h, split: nil)
        #expect(whole[5].contains("not at a chunk boundary") && whole[5].contains("in no bin") && whole[5].contains("PREV_INUSE"),
                "the heap has the cases it is made for: \(whole[5].prefix(600))")
        if damaged { #expect(whole[5].contains("is invalid"), "\(whole[5].prefix(600))") }
        for c in h.chunks + h.chunks.map({ $0 + 0x10 }) + [h.top, h.start, h.start + UInt64(h.length)] {
            let two = outcome(h, split: c)
            #expect(two == whole, "split at 0x\(String(c, radix: 16)): \(zip(two, whole).first { $0 != $1 }.map { "\($0.0.prefix(300)) vs \($0.1.prefix(300))" } ?? "")")
        }
        // The split point found near the middle is a chunk boundary.
        let mid = h.walker.splitPoint(minimum: 4096)
        #expect(mid.map { h.chunks.contains($0) } == true, "\(String(describing: mid))")
    }
}
