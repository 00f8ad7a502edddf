import HeapModel
import ProcessAccess
import Symbols

/// What detection reads of a target (a live process, or a core file), before it is stopped.
public struct TargetFiles {
    public var pid: Int32
    public var maps: [Mapping]
    /// The executable's path as the process names it ("" if unknown).
    public var executable: String
    /// A path that opens the file mapped at a mapping.
    public var filePath: (Mapping) -> String
    public var remote: RemoteMemory
    public init(pid: Int32, maps: [Mapping], executable: String, filePath: @escaping (Mapping) -> String, remote: RemoteMemory) {
        self.pid = pid; self.maps = maps; self.executable = executable; self.filePath = filePath; self.remote = remote
    }
}

/// Names of malloc's functions: a thread stopped inside one may have lists half updated.
public let mallocFunctionNames: Set<String> = [
    "malloc", "free", "calloc", "realloc", "reallocarray", "memalign", "aligned_alloc", "posix_memalign", "valloc",
    "pvalloc", "malloc_trim", "malloc_usable_size", "mallinfo", "mallinfo2", "malloc_stats", "malloc_info", "mallopt",
    "__libc_malloc", "__libc_free", "__libc_calloc", "__libc_realloc", "__libc_memalign", "__libc_valloc",
    "__libc_pvalloc", "_int_malloc", "_int_free", "_int_realloc", "_int_memalign", "malloc_consolidate", "sysmalloc",
    "systrim", "tcache_init", "tcache_thread_shutdown", "arena_get2", "_int_new_arena", "new_heap", "alloc_new_heap",
    "heap_trim", "shrink_heap", "grow_heap", "mremap_chunk", "munmap_chunk", "unlink_chunk", "reused_arena",
    "get_free_list", "mtrim", "int_mallinfo", "__malloc_arena_thread_freeres", "_mid_memalign", "__libc_mallinfo2",
    "_int_free_merge_chunk", "_int_free_create_chunk", "_int_free_maybe_consolidate", "tcache_get", "tcache_put",
    "__malloc_fork_lock_parent", "__malloc_fork_unlock_parent", "__malloc_fork_unlock_child", "ptmalloc_init",
]

/// Allocators that replace glibc malloc when loaded.
let foreignAllocators: [(pattern: String, name: String)] = [
    ("libjemalloc", "jemalloc"), ("libtcmalloc", "tcmalloc"), ("libmimalloc", "mimalloc"),
    ("libhoard", "Hoard"), ("libsnmalloc", "snmalloc"), ("librpmalloc", "rpmalloc"),
    // valgrind's tools replace malloc in the program they run (their preload library is mapped)
    ("vgpreload_", "valgrind"),
    // glibc's malloc debugging (MALLOC_CHECK_, mcheck, mtrace): its hooks change the chunks
    ("libc_malloc_debug", "glibc's malloc debugging library (MALLOC_CHECK_, mcheck, mtrace)"),
]

/// Is it glibc's malloc, which version, where its state is: everything learned without stopping
/// the target.
public enum GlibcPrepare {
    /// Why the mappings alone say it is not glibc's malloc (musl, another allocator loaded), or nil.
    public static func refusal(maps: [Mapping]) -> GlibcError? {
        if maps.contains(where: { $0.path.contains("ld-musl") || $0.path.contains("libc.musl") }) {
            return .notGlibc("it uses musl libc's malloc")
        }
        for (pattern, name) in foreignAllocators where maps.contains(where: { $0.path.contains(pattern) }) {
            return .notGlibc("\(name) is loaded (\(maps.first { $0.path.contains(pattern) }!.path)) and replaces malloc")
        }
        return nil
    }

    /// The module holding malloc, glibc's version and layouts (tables, or libc's DWARF), malloc's
    /// symbols, the module's writable data.
    public static func target(_ source: TargetFiles, session: SymbolSession, useDebugInfo: Bool) throws(GlibcError) -> GlibcTarget {
        let maps = source.maps, exe = source.executable, pid = source.pid
        // libc: by name, then by what it is (executable code and glibc's version string), so that
        // another file named libc.so* mapped as data is not taken for it.
        var libcMaps = maps.filter { isLibc($0.path) }
        let libcPaths = libcMaps.reduce(into: [String]()) { if !$0.contains($1.path) { $0.append($1.path) } }
        if libcPaths.count > 1, let real = libcPaths.first(where: { path in
            maps.contains { $0.path == path && $0.executable } &&
                (maps.first { $0.path == path && $0.offset == 0 }.map { GlibcVersion.read(path: source.filePath($0)) != nil } ?? false)
        }) {
            libcMaps = libcMaps.filter { $0.path == real }
        }
        let holder: [Mapping]
        let isStatic: Bool
        if !libcMaps.isEmpty {
            holder = libcMaps.filter { $0.path == libcMaps[0].path }; isStatic = false
        } else {
            let exeMaps = maps.filter { $0.path == exe || $0.path == exe + " (deleted)" }
            guard !exeMaps.isEmpty else { throw (.notGlibc("no libc.so.6 is mapped and the executable is not mapped either")) }
            holder = exeMaps; isStatic = true
        }
        let filePath = source.filePath(holder[0])
        var layout: GlibcLayout
        var versionNote: String? = nil
        if let version = GlibcVersion.read(path: filePath) {
            if let l = GlibcLayout(version: version) { layout = l }
            else if let l = GlibcLayout.newer(version: version) { layout = l }   // only with DWARF (below)
            else { throw (.unsupportedVersion(version)) }
        } else if isStatic {
            // No version string (linked only when something refers to it): tell the layout apart
            // by main_arena's and mp_'s sizes in the symbol table and the heap itself.
            let looked: [String: Symbol]? = SymbolSession.lock.locked {
                session.symbols(named: ["main_arena", "mp_", "main", "_start"], inModuleAt: holder[0].start).0
            }
            guard let ma = looked?["main_arena"], let mp = looked?["mp_"], !ma.isTLS, !mp.isTLS, ma.size > 0, mp.size > 0 else {
                // A symbol table without glibc's malloc state: another libc. None at all: cannot tell.
                if looked?["main"] != nil || looked?["_start"] != nil {
                    throw (.notGlibc("static executable \(exe) is not linked with glibc (no GNU C Library version string, and its symbol table has no main_arena: musl or another libc?)"))
                }
                throw (.notGlibc("static executable \(exe) has neither glibc's version string nor the symbols main_arena and mp_ (stripped): its malloc cannot be told"))
            }
            let remote = source.remote
            switch GlibcVersion.infer(mainArenaSize: ma.size, mpSize: mp.size, mpAddress: mp.address, file: filePath, readWord: { remote.word($0) }) {
            case .success(let (l, note)): layout = l; versionNote = note
            case .failure(let e): throw e
            }
        } else {
            throw (.notGlibc("cannot read glibc's version from \(holder[0].path)"))
        }

        // Writable data of that module, with the anonymous .bss tail that follows it.
        var data: [Segment] = []
        for m in holder where m.writable {
            var end = m.end
            if let next = maps.first(where: { $0.start == end }), next.isAnonymous, next.writable, next.path != "[heap]" { end = next.end }
            data.append(Segment(start: m.start, end: end))
        }

        if !isStatic, let o = malloc(replacedIn: maps, source: source) {
            throw (.notGlibc("\(o) defines its own malloc and free, which replace glibc's"))
        }
        let wanted: Set<String> = mallocFunctionNames.union(["main_arena", "mp_", "tcache", "thread_arena"])
        let (found, symbolSource, structs) = SymbolSession.lock.locked {
            let (found, where_) = session.symbols(named: wanted, inModuleAt: holder[0].start)
            // malloc's struct layouts from libc's DWARF, when there is some.
            let structs = useDebugInfo ? session.structLayouts(named: GlibcLayout.dwarfStructs, inModuleAt: holder[0].start) : [:]
            return (found, where_, structs)
        }
        var layoutNote = ""
        if !structs.isEmpty {
            let missing = layout.apply(structs)
            layoutNote = missing.isEmpty ? "; layouts from DWARF" : "; layouts from tables (libc's DWARF lacks \(missing.prefix(3).joined(separator: ", ")))"
            if layout.source == "none" {
                throw (.unsupportedVersion("\(layout.version), newer than heapscope's tables (2.27–\(GlibcLayout.newestInTables)), and libc's DWARF lacks \(missing.prefix(3).joined(separator: ", "))"))
            }
        } else if layout.source == "none" {
            throw (.unsupportedVersion("\(layout.version), newer than heapscope's tables (2.27–\(GlibcLayout.newestInTables)); install libc's debug info (libc6-dbg or the distribution's debuginfo package) to read its layout from DWARF"))
        }
        let fns = found.values.filter { $0.isFunction && $0.size > 0 && mallocFunctionNames.contains($0.name) }
            .map { (start: $0.address, end: $0.address + $0.size, name: $0.name) }
        let target = GlibcTarget(pid: pid, maps: maps, layout: layout, dataRanges: data,
                           mainArenaSymbol: found["main_arena"].flatMap { $0.isTLS ? nil : $0.address },
                           mpSymbol: found["mp_"].flatMap { $0.isTLS ? nil : $0.address },
                           tcacheTLSOffset: found["tcache"].flatMap { $0.isTLS ? $0.address : nil },
                           threadArenaTLSOffset: found["thread_arena"].flatMap { $0.isTLS ? $0.address : nil },
                           mallocFunctions: fns, symbolSource: symbolSource + (versionNote.map { "; " + $0 } ?? "") + layoutNote,
                           remote: source.remote)
        return target
    }


    /// A loaded file other than libc and ld.so that exports malloc and free without forwarding to
    /// glibc's __libc_malloc (a wrapper that forwards still uses glibc's heap).
    static func malloc(replacedIn maps: [Mapping], source: TargetFiles) -> String? {
        var seen: Set<String> = []
        for m in maps where m.inode != 0 && !m.path.isEmpty && !isLibc(m.path) && seen.insert(m.path).inserted {
            let name = m.path.split(separator: "/").last.map(String.init) ?? m.path
            // The dynamic linker (ld-linux-x86-64.so.2; before glibc 2.34 also named ld-2.NN.so)
            // exports a minimal malloc of its own for start-up (before 2.35): not an interposer.
            if name.hasPrefix("ld-linux") || (name.hasPrefix("ld-2.") && name.hasSuffix(".so")) || name.hasPrefix("libc_malloc_debug") { continue }
            guard let first = maps.first(where: { $0.path == m.path && $0.offset == 0 }),
                  let d = DynamicSymbols.functions(path: source.filePath(first)) else { continue }
            if d.defined.contains("malloc") && d.defined.contains("free") && !d.undefined.contains("__libc_malloc") { return m.path }
        }
        return nil
    }

    public static func isLibc(_ path: String) -> Bool {
        guard let name = path.split(separator: "/").last else { return false }
        return name.hasPrefix("libc.so") || (name.hasPrefix("libc-2.") && name.hasSuffix(".so"))
    }
}
