import HeapModel

/// Chunks outstanding in every sample since they were first seen (MemScope's "old allocations"):
/// merged sample by sample in address order, O(chunks) per sample.
public struct SurvivorTracker: Sendable {
    public private(set) var address: [UInt64] = [], size: [UInt64] = [], firstSeen: [Double] = []
    public private(set) var samples = 0
    public init() {}

    /// Add one sample taken at `time` (seconds): chunks not outstanding in it are forgotten, new
    /// ones start their age now. A chunk freed and allocated again between samples looks the same.
    public mutating func add(_ t: ChunkTable, at time: Double) {
        var a: [UInt64] = [], s: [UInt64] = [], f: [Double] = []
        a.reserveCapacity(t.count); s.reserveCapacity(t.count); f.reserveCapacity(t.count)
        var j = 0
        for i in 0..<t.count where t.isOutstanding(i) {
            let x = t.address[i]
            while j < address.count && address[j] < x { j += 1 }
            let kept = j < address.count && address[j] == x && size[j] == t.size[i]
            a.append(x); s.append(t.size[i]); f.append(kept ? firstSeen[j] : time)
        }
        address = a; size = s; firstSeen = f
        samples += 1
    }

    /// Chunks seen in every sample for at least `age` seconds at `now`, grouped by size:
    /// (size, count, bytes, oldest first-seen), most bytes first.
    public func older(than age: Double, now: Double) -> [(size: UInt64, count: Int, bytes: UInt64, since: Double)] {
        var by: [UInt64: (count: Int, since: Double)] = [:]
        for k in 0..<address.count where now - firstSeen[k] >= age {
            let e = by[size[k]] ?? (0, firstSeen[k])
            by[size[k]] = (e.count + 1, min(e.since, firstSeen[k]))
        }
        return by.map { (size: $0.key, count: $0.value.count, bytes: $0.key * UInt64($0.value.count), since: $0.value.since) }
            .sorted { $0.bytes != $1.bytes ? $0.bytes > $1.bytes : $0.size < $1.size }
    }
}

/// Least-squares slope of y over t (units of y per second); nil under two points.
public func slope(_ points: [(t: Double, y: Double)]) -> Double? {
    guard points.count >= 2 else { return nil }
    let n = Double(points.count)
    let mt = points.reduce(0) { $0 + $1.t } / n, my = points.reduce(0) { $0 + $1.y } / n
    var num = 0.0, den = 0.0
    for p in points { num += (p.t - mt) * (p.y - my); den += (p.t - mt) * (p.t - mt) }
    return den > 0 ? num / den : nil
}
