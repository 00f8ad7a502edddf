import Glibc
import HeapModel
import ProcessAccess

/// What is copied of the target's writable memory besides the heap (the roots of a leak check and
/// of typing), planned so that the pause grows with what must be copied, not with what is reserved:
/// - anonymous private mappings: only their resident (or swapped) pages, from /proc/PID/pagemap;
///   a page never written reads as zero and holds no pointer, and is never read (reading it would
///   map the zero page into the target's page tables);
/// - a thread's stack: from its stack pointer (less the 128-byte red zone) up; below it is dead;
/// - shared mappings (rw-s: shared memory, memory-mapped files) only with `sharedRoots`;
/// - file-backed private mappings (.data of modules): their resident (or swapped) pages too; a
///   page neither was never written since it was read from the file (no pointer the program made
///   is in it), and reading it would fault it into the target, growing its RSS.
/// The plan is linear in the number of mappings: both the mappings and what the heap capture
/// copied are in address order and walked once.
enum CopyPlan {
    /// The copied memory, the mappings it came from (as read while stopped), and what was left out.
    struct Result {
        var maps: [Mapping]
        var image: MemoryImage
        var account: CopyAccount
    }

    /// Whether `m` is a thread's stack: the main [stack], or anonymous memory just above a guard
    /// page (glibc's thread stacks), holding a thread's stack pointer.
    static func isStack(_ m: Mapping, previous: Mapping?) -> Bool {
        if m.path == "[stack]" { return true }
        guard m.isAnonymous, let p = previous, p.end == m.start else { return false }
        return !p.readable && !p.writable && !p.executable
    }

    /// Bytes a copy would take now, for sizing the buffers and the memory check before the stop:
    /// the same plan as the copy's, without threads (stacks whole), leaving out the mappings the
    /// heap's own estimate counts (the caller leaves those out of `maps`), so nothing is counted twice.
    static func estimate(pid: Int32, maps: [Mapping], sharedRoots: Bool) -> UInt64 {
        plan(maps, pages: LivePages(pid: pid), stackPointers: [], skipping: [],
             sharedRoots: sharedRoots)
            .requests.reduce(0) { $0 + UInt64($1.count) }
    }

    /// With the target stopped: copy every readable, writable mapping as described above, less
    /// what `skipping` holds already. A mapping that cannot be read (device memory) is left out.
    /// `remote` a core file: its mappings, and what it holds of them.
    /// `pages`: made before the stop (pagemap open, its buffer in place).
    static func copy(remote: RemoteMemory, pages: LivePages, skipping: MemoryImage, threads: [StoppedThread], sharedRoots: Bool,
                     pool: BufferPool?, budget: StopBudget?) -> Result {
        let trace = PhaseTrace()
        let all = remote.core?.maps ?? (try? ProcFS.maps(pid: remote.pid)) ?? []
        trace.mark("writable: maps")
        var p = plan(all, pages: pages, stackPointers: threads.map(\.stackPointer).sorted(),
                     skipping: skipping.regions, sharedRoots: sharedRoots)
        trace.mark("writable: plan (\(p.requests.count) ranges)")
        let image = MemoryImage()
        BulkCopier(remote: remote, pool: pool, budget: budget).copy(p.requests, into: image)
        trace.mark("writable: copy")
        p.account.copiedBytes = UInt64(image.totalBytes)
        return Result(maps: p.maps, image: image, account: p.account)
    }

    /// The ranges to copy of `all` (in address order), with the writable mappings and what is left
    /// out. `stackPointers` sorted; `skip` (what the heap capture holds) in address order.
    static func plan(_ all: [Mapping], pages: LivePages, stackPointers sps: [UInt64], skipping skip: [Region],
                     sharedRoots: Bool) -> (maps: [Mapping], requests: [BulkCopier.Request], account: CopyAccount) {
        var account = CopyAccount()
        account.residencyPerMapping = pages.remote.core == nil && pages.pagemap?.exact != true
        var requests: [BulkCopier.Request] = []
        var j = 0
        /// [s, e) less the regions of `skip` (walked forward once over the whole plan).
        func request(_ s: UInt64, _ e: UInt64, _ label: String) {
            while j < skip.count && skip[j].end <= s { j += 1 }
            var from = s, k = j
            while k < skip.count && skip[k].start < e {
                if skip[k].start > from { requests.append(.init(start: from, count: Int(skip[k].start - from), label: label)) }
                from = max(from, skip[k].end)
                k += 1
            }
            if from < e { requests.append(.init(start: from, count: Int(e - from), label: label)) }
        }
        var maps: [Mapping] = []
        var previous: Mapping? = nil
        var si = 0
        var ahead = 0   // the last mapping that starts within 256 MiB of the current one
        for (mi, m) in all.enumerated() {
            while ahead + 1 < all.count && all[ahead + 1].start < m.start &+ min(256 << 20, UInt64.max - m.start) { ahead += 1 }
            if ahead < mi { ahead = mi }
            defer { previous = m }
            guard m.readable && m.writable else { continue }
            maps.append(m)
            if m.shared && !sharedRoots { account.sharedBytes += m.size; continue }
            var start = m.start
            // The lowest stack pointer inside this mapping, if it is a thread's stack.
            while si < sps.count && sps[si] < m.start { si += 1 }
            if si < sps.count && sps[si] < m.end && isStack(m, previous: previous) {
                start = max(m.start, (sps[si] &- 128) & ~4095)
                account.belowStackPointerBytes += start - m.start
            }
            if !m.shared, let runs = pages.residentRuns(start: start, end: m.end, prefetch: all[ahead].end) {
                var resident: UInt64 = 0
                for r in runs { request(r.start, r.end, m.path); resident += r.end - r.start }
                account.unresidentBytes += (m.end - start) - resident
            } else {
                request(start, m.end, m.path)
            }
        }
        return (maps, requests, account)
    }
}

/// The memory heapscope may use for its copy: the host's MemAvailable, and the limit of its own
/// cgroup (v2 memory.max less memory.current, or v1 memory.limit_in_bytes less usage).
enum MemoryLimit {
    /// Bytes available and where the limit comes from; nil if nothing could be read.
    static func available() -> (bytes: UInt64, source: String)? {
        var best: (UInt64, String)? = nil
        if let text = try? ProcFS.readFile("/proc/meminfo"),
           let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
           let kb = UInt64(line.split(separator: " ").dropFirst().first ?? "") {
            best = (kb * 1024, "MemAvailable")
        }
        if let cg = try? ProcFS.readFile("/proc/self/cgroup") {
            for line in cg.split(separator: "\n") {
                let f = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
                guard f.count == 3 else { continue }
                let path = String(f[2])
                var limit: UInt64? = nil, usage: UInt64? = nil
                // The cgroup's directory, or the mount's root where the path is not visible (a
                // container whose cgroup namespace puts its own cgroup at the root).
                for dir in [path, "/"] where limit == nil {
                    if f[0] == "0" {   // cgroup v2
                        limit = read("/sys/fs/cgroup\(dir)/memory.max"); usage = read("/sys/fs/cgroup\(dir)/memory.current")
                    } else if f[1].split(separator: ",").contains("memory") {
                        limit = read("/sys/fs/cgroup/memory\(dir)/memory.limit_in_bytes"); usage = read("/sys/fs/cgroup/memory\(dir)/memory.usage_in_bytes")
                    }
                }
                if let l = limit, let u = usage, l < (1 << 60) {
                    let left = l > u ? l - u : 0
                    if best == nil || left < best!.0 { best = (left, "heapscope's cgroup memory limit") }
                }
            }
        }
        return best
    }

    static func read(_ path: String) -> UInt64? {
        guard let t = try? ProcFS.readFile(path) else { return nil }
        return UInt64(t.split(separator: "\n").first.map(String.init) ?? "")
    }

    /// With --spill: refuse, before stopping the target, a copy the directory's file system cannot hold.
    static func checkSpace(needed: UInt64, directory: String, pid: Int32) throws(InspectError) {
        var st = statvfs()
        guard statvfs(directory, &st) == 0 else {
            throw .process(.system(call: "statvfs", subject: "--spill \(directory)", errno: errno))
        }
        let free = UInt64(st.f_bavail) * UInt64(st.f_frsize)
        if needed > free { throw .process(.notEnoughMemory(pid: pid, neededBytes: needed, availableBytes: free, source: "free space in --spill \(directory)")) }
    }

    /// Refuse, before stopping the target, a copy that would not fit (with a margin for the analysis).
    static func check(needed: UInt64, pid: Int32) throws(InspectError) {
        guard let (bytes, source) = available(), needed > bytes / 10 * 9 else { return }
        throw .process(.notEnoughMemory(pid: pid, neededBytes: needed, availableBytes: bytes, source: source))
    }
}
