import Analysis
import HeapModel
import Snapshot

extension PprofProfile {
    /// The outstanding chunks of `b` as a pprof heap profile: sample types inuse_objects/count and
    /// inuse_space/bytes (usable bytes); each chunk's "stack" is its owner chain, root first — the
    /// root variable that reached it (or its leak class when no typed root did), then the types
    /// of the chunks whose pointers led to it (runs of one type, as in a list, folded into one
    /// frame), then its own type. With `base`: B minus A for every stack, what
    /// `pprof -diff_base=A B` shows, in one file.
    /// `types`: the snapshots' labels when already made (B's, then A's), as `SnapshotDiff` has them.
    public init(heapOf b: Snapshot, base a: Snapshot? = nil, types: (b: TypeInspection, a: TypeInspection?)? = nil) {
        self.init(sampleTypes: [("inuse_objects", "count"), ("inuse_space", "bytes")])
        defaultSampleType = "inuse_space"
        var trie = StackTrie()
        var objects: [Int64] = [], bytes: [Int64] = []
        func add(_ s: Snapshot, _ made: TypeInspection?, _ sign: Int64) {
            let t = made ?? TypeInspection(snapshot: s), g = t.groups(), n = t.blocks.count
            let parent = t.labels.parent, owner = t.labels.owner, of = g.of
            // Frame ids per type group (the last: unknown), per owner and per leak class, made once.
            var groupFrame = [Int32](repeating: -1, count: g.label.count + 1)
            func frame(ofGroup x: Int32) -> Int32 {
                let i = x < 0 ? g.label.count : Int(x)
                if groupFrame[i] < 0 { groupFrame[i] = trie.frameID(g.name(x)) }
                return groupFrame[i]
            }
            var ownerFrame: [Int32: Int32] = [:], classFrame: [UInt8: Int32] = [:]
            var node = [Int32](repeating: -1, count: n)
            var path: [Int] = []
            for k in 0..<n where node[k] < 0 {
                path.removeAll(keepingCapacity: true)
                var j = k
                while j >= 0 && node[j] < 0 && path.count <= n { path.append(j); j = Int(parent[j]) }
                var at: Int32
                if j >= 0 { at = node[j] } else {
                    let top = path.last!, o = owner[top]
                    let root: Int32
                    if o >= 0 {
                        root = ownerFrame[o] ?? { let f = trie.frameID(t.labels.roots[Int(o)].name); ownerFrame[o] = f; return f }()
                    } else {
                        let c = s.leakClass[Int(t.blocks.chunk[top])]
                        root = classFrame[c] ?? {
                            let f = trie.frameID("(" + (LeakClass(rawValue: c)?.words ?? "not outstanding") + ")")
                            classFrame[c] = f; return f
                        }()
                    }
                    at = trie.child(root, of: -1)
                }
                for p in path.reversed() {
                    let f = frame(ofGroup: of[p])
                    if trie.frameOf(at) != f { at = trie.child(f, of: trie.capped(at)) }
                    node[p] = at
                }
            }
            objects += .init(repeating: 0, count: trie.count - objects.count)
            bytes += .init(repeating: 0, count: trie.count - bytes.count)
            for k in 0..<n {
                let x = Int(node[k])
                objects[x] += sign; bytes[x] += sign * Int64(t.blocks.userEnd(k) - t.blocks.userStart(k))
            }
        }
        if let a { add(a, types?.a, -1) }
        add(b, types?.b, 1)
        frames = trie.frames
        for x in 0..<objects.count where objects[x] != 0 || bytes[x] != 0 {
            samples.append((trie.stack(Int32(x)), [objects[x], bytes[x]]))
        }
        timeNanos = Int64(b.value("taken_at_unix_ns") ?? "") ?? 0
        comments = ["heapscope: pid \(b.report.pid) \(b.value("exe") ?? "")" + (a != nil ? " minus pid \(a!.report.pid) (base)" : "")]
    }
}

/// Stacks as a trie of frames: each node one frame under its parent (root first).
struct StackTrie {
    var frames: [String] = []
    private var frameIDs: [String: Int32] = [:]
    private var frame: [Int32] = [], parent: [Int32] = [], depth: [Int32] = []
    private var index: [UInt64: Int32] = [:]
    static let maxDepth: Int32 = 64
    var count: Int { frame.count }

    /// The id of the frame named `name`.
    mutating func frameID(_ name: String) -> Int32 {
        if let f = frameIDs[name] { return f }
        frames.append(name); frameIDs[name] = Int32(frames.count - 1)
        return Int32(frames.count - 1)
    }
    private var last: (key: UInt64, node: Int32) = (UInt64.max, -1)
    /// The node for frame `f` under node `p` (-1: a root frame).
    mutating func child(_ f: Int32, of p: Int32) -> Int32 {
        let key = UInt64(UInt32(bitPattern: f)) << 32 | UInt64(UInt32(bitPattern: p &+ 1))
        if key == last.key { return last.node }
        let x: Int32
        if let y = index[key] { x = y } else {
            frame.append(f); parent.append(p); depth.append(p < 0 ? 1 : depth[Int(p)] + 1)
            x = Int32(frame.count - 1); index[key] = x
        }
        last = (key, x)
        return x
    }
    func frameOf(_ x: Int32) -> Int32 { frame[Int(x)] }
    /// `x`, or past the depth limit an "…" frame under its ancestor a few frames up.
    mutating func capped(_ x: Int32) -> Int32 {
        guard depth[Int(x)] >= StackTrie.maxDepth else { return x }
        var y = x
        while depth[Int(y)] > StackTrie.maxDepth - 2 { y = parent[Int(y)] }
        return child(frameID("…"), of: y)
    }
    /// Frame indexes of node `x`'s stack, leaf first.
    func stack(_ x: Int32) -> [Int] {
        var out: [Int] = [], y = x
        while y >= 0 { out.append(Int(frame[Int(y)])); y = parent[Int(y)] }
        return out
    }
}
