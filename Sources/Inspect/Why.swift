import Analysis
import HeapModel
import ProcessAccess
import Snapshot
import Symbols

/// `why`'s answer: the outstanding chunk holding an address, its leak class, and the shortest
/// chain of references from a root to it (or, read from a snapshot, the typed path it recorded),
/// or the reason there is none.
public struct WhyAnswer {
    public var inspection: LeakInspection
    public var address: UInt64
    /// The chunk's block in `inspection.leaks.blocks`.
    public var block: Int
    public var leakClass: LeakClass { inspection.leaks.leakClass[block] }
    /// From a root (live process or core file), or for an indirectly lost chunk from the
    /// definitely lost chunk it hangs off.
    public var chain: ReferenceChain?
    public var names = WhyNames()
    /// From a snapshot: the root variable and the blocks from it to the chunk (offsets are not kept).
    public var typedPath: (owner: String, blocks: [Int])?
    public var fromSnapshot = false
    /// Why no chain (or typed path) is given.
    public var reason: String?
}

/// Symbols of the root word's address and of the values the chain holds.
public struct WhyNames {
    public var rootSymbol: Resolution?
    public var definition: (file: String, line: Int)?
    /// For a stack root: the function of the frame whose part of the stack holds the word.
    public var frame: String?
    public init() {}
    public init(_ r: LeakInspection, chain: ReferenceChain?) {
        guard let c = chain, case .memory(let root, let addr) = c.root, root >= 0, let s = r.symbols else { return }
        if r.roots[root].kind == .stack, let t = r.registers.first(where: { "thread \($0.tid) stack" == r.roots[root].label }) {
            // (every thread: the session unwinds once, and keeps the stacks)
            let frames = s.unwind(threads: r.registers.map { ($0.tid, $0.words) }, read: { r.memory.word($0) })[t.tid] ?? []
            for k in frames.indices where frames[k].sp != 0 && frames[k].sp <= addr && k + 1 < frames.count && addr < frames[k + 1].sp {
                let f = frames[k]
                let res = s.resolve([f.isActivation ? f.pc : f.pc - 1])[0]
                frame = res.symbol.map { "in \($0)" + (res.frames.first.map { f in " at \(lastComponent(f.file ?? "?")):\(f.line)" } ?? "") }
                    ?? "in frame #\(k) (pc 0x\(String(f.pc, radix: 16)))"
                break
            }
            if frame == nil, let last = frames.last, last.sp != 0, addr >= last.sp {
                frame = "above the last of \(frames.count) unwound frames"
            }
            return
        }
        guard r.roots[root].kind == .moduleData || r.roots[root].kind == .tls else { return }
        let res = s.resolve([addr])[0]
        if res.symbol != nil {
            rootSymbol = res
            definition = s.variableDefinition(at: addr - res.offset)
        }
    }
}

private func lastComponent(_ p: String) -> String { p.split(separator: "/").last.map(String.init) ?? p }

extension Inspector {
    /// `why` of a live process or a core file: one leak check, then the shortest chain to the
    /// chunk holding `address`. Fails (exit 1) when no outstanding chunk holds it, saying what does.
    public static func why(_ target: InspectTarget, address: UInt64, options: InspectOptions = InspectOptions(),
                           anonymousRoots: Bool = true) throws(Failure) -> WhyAnswer {
        if case .snapshot(let path) = target {
            let s: Snapshot
            do { s = try readSnapshot(path) } catch { throw error.failure }
            return try why(snapshot: s, address: address)
        }
        let r: LeakInspection
        do { r = try leaks(target, options: options, anonymousRoots: anonymousRoots) } catch { throw error.failure }
        let b = r.leaks.blocks
        let k = try outstandingBlock(r, address)
        let cls = r.leaks.leakClass[k]
        var chain = Reachability.shortestChain(to: k, blocks: b, memory: r.memory, roots: r.roots, registers: r.registers)
        var reason: String? = nil
        if chain == nil {
            reason = whyNot(cls, live: true)
            if cls == .indirectlyLost {
                let heads = (0..<b.count).filter { r.leaks.leakClass[$0] == .definitelyLost }
                chain = Reachability.shortestChain(to: k, blocks: b, memory: r.memory, roots: [], registers: [], from: heads)
            }
        }
        return WhyAnswer(inspection: r, address: address, block: k, chain: chain, names: WhyNames(r, chain: chain), reason: reason)
    }

    /// `why` from a snapshot: the chunk's class and the typed path that reached it (root
    /// variable, then the chunks whose pointers led to it), as recorded.
    public static func why(snapshot s: Snapshot, address: UInt64) throws(Failure) -> WhyAnswer {
        let r = leaks(snapshot: s)
        let b = r.leaks.blocks
        let k = try outstandingBlock(r, address)
        var answer = WhyAnswer(inspection: r, address: address, block: k, fromSnapshot: true)
        if let t = r.types {
            var path: [Int] = [k]
            while let p = path.last.map({ Int(t.labels.parent[$0]) }), p >= 0, path.count <= b.count { path.append(p) }
            if let owner = t.owner(path.last!) { answer.typedPath = (owner, path.reversed()) }
        }
        if answer.typedPath == nil { answer.reason = whyNot(answer.leakClass, live: false) }
        return answer
    }

    /// Why no chain from a root was found for a chunk of class `c`.
    static func whyNot(_ c: LeakClass, live: Bool) -> String {
        switch c {
        case .definitelyLost: return "nothing points to it from a root or a reachable chunk"
        case .indirectlyLost: return "no root reaches it; it hangs off a definitely lost chunk"
        default: return live ? "no chain found" : "the snapshot keeps only typed paths, and no typed root reached it (run why on the live process)"
        }
    }

    /// The outstanding block holding `a`, or a failure saying what `a` is instead.
    static func outstandingBlock(_ r: LeakInspection, _ a: UInt64) throws(Failure) -> Int {
        if let k = r.leaks.blocks.block(containing: a) { return k }
        let t = r.heap.chunks
        let hx = { (v: UInt64) in "0x" + String(v, radix: 16) }
        let why = t.index(containing: a).map { "is in a \(t.kindName($0)) chunk at \(hx(t.address[$0])), not an outstanding one" }
            ?? "is not in the heap (no chunk holds it)"
        throw Failure(.otherError, "\(hx(a)) \(why)")
    }
}
