import CLibdw
import Glibc
import ProcessAccess

/// One ELF symbol. `address` is the run-time address, except for TLS symbols where it is the
/// offset inside the module's TLS block (st_value).
public struct Symbol: Sendable {
    public var name: String
    public var address: UInt64
    public var size: UInt64
    public var isTLS: Bool
    public var isFunction: Bool
}

/// A loaded module as libdwfl reports it.
public struct ModuleInfo: Sendable {
    public var name: String
    public var low: UInt64
    public var high: UInt64
    public var mainFile: String?
    public var debugFile: String?
}

public enum SymbolsError: Error, CustomStringConvertible {
    case dwfl(call: String, subject: String, message: String)
    /// The process exited (or became a zombie) while its modules were being read.
    case processGone(pid: Int32)
    /// A path that is not a regular file (a FIFO would block the open; a device could be anything).
    case notAFile(path: String)
    public var description: String {
        switch self {
        case .notAFile(let p): return "\(p) is not a regular file"
        case .dwfl(let c, let s, let m): return "\(c)(\(s)) failed: \(m)"
        case .processGone(let pid): return "process \(pid) exited while its modules were being read"
        }
    }
}

/// A libdwfl session over a live process (modules from /proc/PID/maps, files through
/// /proc/PID/root, the vDSO from memory) or over one ELF file; debug files come through build-id
/// (/usr/lib/debug/.build-id) and .gnu_debuglink unless disabled.
/// Set-up order as elfutils' own tools: dwfl_begin -> dwfl_*_report -> dwfl_report_end.
///
/// elfutils is not thread-safe: every libdwfl/libelf call of heapscope runs under `SymbolSession.lock`.
public final class SymbolSession: @unchecked Sendable {
    /// Serialises all use of libdw/libelf in this process.
    public static let lock = Mutex()
    var indexes: [UnsafeMutableRawPointer: ModuleIndex] = [:]
    /// Unwind states handed to libdwfl (released after dwfl_end).
    var unwindStates: [UnsafeMutableRawPointer] = []
    var lastIndex: (key: UnsafeMutableRawPointer?, index: ModuleIndex?) = (nil, nil)   // consecutive addresses share a module
    /// A live process's .bss tails: the anonymous mapping right after a module's last file mapping,
    /// which libdwfl does not count as part of the module.
    var bssTails: [(start: UInt64, end: UInt64, module: OpaquePointer)] = []
    public let file: String?

    let dwfl: OpaquePointer
    let callbacks: UnsafeMutablePointer<Dwfl_Callbacks>
    /// The debuginfo search path handed to libdwfl (`callbacks.debuginfo_path` points to it).
    var debugPath: UnsafeMutablePointer<CChar>? = nil
    let debugPathBox: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?> = {
        let b = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: 1)
        b.initialize(to: nil)
        return b
    }()
    public let pid: Int32
    public let useDebugInfo: Bool

    /// The executable's path (as the process names it), read when the session was opened.
    public private(set) var executable: String? = nil
    /// The target's root directory, held open so that its debug files can be found after the
    /// process has gone (-1: none).
    var rootFD: Int32 = -1
    /// Unwound stacks (libdwfl attaches thread state once per session).
    var unwound: [Int32: [StackFrame]]? = nil

    /// A session over a live process. Every module's file is opened here (through
    /// /proc/PID/map_files or /proc/PID/root, while the process is there): nothing the session
    /// does later reads /proc/PID, so it can serve the analyses after the detach, when the
    /// process may have changed or gone. Debug files are looked up in the target's root first
    /// (a container's /usr/lib/debug, through a directory descriptor held open), then the host's.
    /// `useDebugInfo: false` (or HEAPSCOPE_NO_DEBUGINFO=1) never opens separate debug files.
    public init(pid: Int32, useDebugInfo: Bool) throws(SymbolsError) {
        self.pid = pid
        self.file = nil
        self.useDebugInfo = useDebugInfo
        callbacks = SymbolSession.makeCallbacks(useDebugInfo: useDebugInfo, offline: false)
        rootFD = open("/proc/\(pid)/root", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        debugPath = strdup(":.debug:" + (rootFD >= 0 ? "/proc/self/fd/\(rootFD)/usr/lib/debug:" : "") + "/usr/lib/debug")
        debugPathBox.pointee = debugPath
        callbacks.pointee.debuginfo_path = debugPathBox
        guard let d = dwfl_begin(callbacks) else {
            callbacks.deallocate()
            throw .dwfl(call: "dwfl_begin", subject: "pid \(pid)", message: String(cString: dwfl_errmsg(-1)))
        }
        dwfl = d
        executable = ProcFS.exePath(pid: pid)
        SymbolSession.lock.locked { dwfl_report_begin(dwfl) }
        // dwfl_linux_proc_report reads /proc/PID/auxv (for the vDSO), which is mode 0400: with
        // CAP_SYS_PTRACE but not CAP_DAC_READ_SEARCH another user's auxv cannot be opened. Then the
        // modules are reported from the maps alone (no vDSO, which holds no malloc state).
        let auxvReadable = access("/proc/\(pid)/auxv", R_OK) == 0
        let mapsBytes = auxvReadable ? nil : try? ProcFS.readBytes("/proc/\(pid)/maps")
        let r = SymbolSession.lock.locked {
            SymbolSession.reportingPid = pid
            SymbolSession.reportingRoot = rootFD
            defer { SymbolSession.reportingRoot = -1 }
            var r: Int32
            if var bytes = mapsBytes {
                r = bytes.withUnsafeMutableBytes { b -> Int32 in
                    guard let f = fmemopen(b.baseAddress, b.count, "r") else { return errno }
                    defer { fclose(f) }
                    return dwfl_linux_proc_maps_report(dwfl, f)
                }
            } else {
                r = dwfl_linux_proc_report(dwfl, pid)
            }
            dwfl_report_end(dwfl, nil, nil)
            return r
        }
        if r == ESRCH || r == ENOENT || (r != 0 && kill(pid, 0) != 0 && errno == ESRCH) {
            throw .processGone(pid: pid)   // fully initialised: deinit ends the session
        }
        if r == 0, let maps = try? ProcFS.maps(pid: pid) {
            for (prev, m) in zip(maps, maps.dropFirst()) where m.isBSSTail(after: prev) {
                if let mod = SymbolSession.lock.locked({ dwfl_addrmodule(dwfl, Dwarf_Addr(prev.end - 1)) }) {
                    bssTails.append((m.start, m.end, mod))
                }
            }
        }
        if r != 0 {
            let msg = r > 0 ? String(cString: strerror(r)) : String(cString: dwfl_errmsg(-1))
            // Fully initialised: deinit runs and ends the session.
            throw .dwfl(call: "dwfl_linux_proc_report", subject: "pid \(pid)", message: msg)
        }
        // Every module's file now (libdwfl would open them on first use, through /proc/PID).
        SymbolSession.lock.locked {
            SymbolSession.reportingPid = pid
            SymbolSession.reportingRoot = rootFD
            defer { SymbolSession.reportingRoot = -1 }
            var bias: Dwarf_Addr = 0
            for m in modules() { _ = dwfl_module_getelf(m, &bias) }
        }
    }

    /// A session over a core file (dwfl_core_file_report: modules from its NT_FILE note and the
    /// ELF headers it holds; each file opened by its path when its build-id matches the one the
    /// core recorded, else found by build-id). Nothing is read from a process.
    public init(core: CoreFile, useDebugInfo: Bool) throws(SymbolsError) {
        pid = core.pid
        file = nil
        self.useDebugInfo = useDebugInfo
        executable = core.executable
        callbacks = SymbolSession.makeCallbacks(useDebugInfo: useDebugInfo, offline: true)
        callbacks.pointee.find_elf = dwfl_build_id_find_elf
        guard let d = dwfl_begin(callbacks) else {
            callbacks.deallocate()
            throw .dwfl(call: "dwfl_begin", subject: core.path, message: String(cString: dwfl_errmsg(-1)))
        }
        dwfl = d
        let r: Int32 = SymbolSession.lock.locked {
            elf_version(UInt32(EV_CURRENT))
            let fd = open(core.path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return -1 }
            coreFD = fd
            // ELF_C_READ: read on demand (a core truncated while mapped would raise SIGBUS).
            guard let e = elf_begin(fd, ELF_C_READ, nil) else { return -1 }
            coreElf = e
            dwfl_report_begin(dwfl)
            let n = dwfl_core_file_report(dwfl, e, core.executable)
            dwfl_report_end(dwfl, nil, nil)
            return n
        }
        if r < 0 {
            throw .dwfl(call: "dwfl_core_file_report", subject: core.path, message: String(cString: dwfl_errmsg(-1)))
        }
        SymbolSession.lock.locked {
            for m in modules() {
                var low: Dwarf_Addr = 0
                _ = dwfl_module_info(m, nil, &low, nil, nil, nil, nil, nil)
                if let f = core.files.first(where: { $0.start <= low && low < $0.end }) { moduleNames[m] = f.path }
            }
        }
        let maps = core.maps
        for (prev, m) in zip(maps, maps.dropFirst()) where m.isBSSTail(after: prev) {
            if let mod = SymbolSession.lock.locked({ dwfl_addrmodule(dwfl, Dwarf_Addr(prev.end - 1)) }) {
                bssTails.append((m.start, m.end, mod))
            }
        }
    }
    var coreFD: Int32 = -1
    var coreElf: OpaquePointer? = nil
    /// Names that replace libdwfl's (its names for a core's modules are sonames and base names).
    var moduleNames: [OpaquePointer: String] = [:]

    /// The module's name: its path, as the process mapped it.
    func moduleName(_ m: OpaquePointer) -> String? {
        moduleNames[m] ?? dwfl_module_info(m, nil, nil, nil, nil, nil, nil, nil).map { String(cString: $0) }
    }


    /// A session over one ELF file; addresses are its virtual addresses.
    public init(file path: String, useDebugInfo: Bool) throws(SymbolsError) {
        var st = stat()
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFREG else { throw .notAFile(path: path) }
        pid = 0
        file = path
        self.useDebugInfo = useDebugInfo
        callbacks = SymbolSession.makeCallbacks(useDebugInfo: useDebugInfo, offline: true)
        guard let d = dwfl_begin(callbacks) else {
            callbacks.deallocate()
            throw .dwfl(call: "dwfl_begin", subject: path, message: String(cString: dwfl_errmsg(-1)))
        }
        dwfl = d
        SymbolSession.lock.locked { dwfl_report_begin(dwfl) }
        // At the file's own virtual addresses (bias 0), so input addresses need no adjusting;
        // relocatable objects go through dwfl_report_offline, which lays out their sections.
        let m = SymbolSession.lock.locked {
            var m = dwfl_report_elf(dwfl, path, path, -1, 0, true)
            if m == nil { m = dwfl_report_offline(dwfl, path, path, -1) }
            dwfl_report_end(dwfl, nil, nil)
            return m
        }
        if m == nil {
            // Fully initialised: deinit ends the session.
            throw .dwfl(call: "dwfl_report_offline", subject: path, message: String(cString: dwfl_errmsg(-1)))
        }
    }

    static func makeCallbacks(useDebugInfo: Bool, offline: Bool) -> UnsafeMutablePointer<Dwfl_Callbacks> {
        let cb = UnsafeMutablePointer<Dwfl_Callbacks>.allocate(capacity: 1)
        cb.initialize(to: Dwfl_Callbacks())
        if offline {
            cb.pointee.find_elf = dwfl_build_id_find_elf
            cb.pointee.section_address = dwfl_offline_section_address
        } else {
            cb.pointee.find_elf = procFindElf
        }
        if useDebugInfo {
            cb.pointee.find_debuginfo = dwfl_standard_find_debuginfo
        } else {
            cb.pointee.find_debuginfo = { _, _, _, _, _, _, _, debuginfo in
                debuginfo?.pointee = nil
                return -1
            }
        }
        return cb
    }

    deinit {
        SymbolSession.lock.locked {
            lastIndex = (nil, nil)
            indexes.removeAll()
            dwfl_end(dwfl)
            if let e = coreElf { elf_end(e) }
        }
        if coreFD >= 0 { close(coreFD) }
        if rootFD >= 0 { close(rootFD) }
        for a in unwindStates { Unmanaged<AnyObject>.fromOpaque(a).release() }
        callbacks.deallocate()
        free(debugPath)
        debugPathBox.deallocate()
    }

    private func module(at address: UInt64) -> OpaquePointer? { dwfl_addrmodule(dwfl, Dwarf_Addr(address)) }

    public func moduleInfo(at address: UInt64) -> ModuleInfo? {
        guard let m = module(at: address) else { return nil }
        return info(m)
    }

    private func info(_ m: OpaquePointer) -> ModuleInfo {
        var low: Dwarf_Addr = 0, high: Dwarf_Addr = 0
        var mainfile: UnsafePointer<CChar>? = nil, debugfile: UnsafePointer<CChar>? = nil
        let name = dwfl_module_info(m, nil, &low, &high, nil, nil, &mainfile, &debugfile)
        return ModuleInfo(name: moduleNames[m] ?? name.map { String(cString: $0) } ?? "?", low: low, high: high,
                          mainFile: mainfile.map { String(cString: $0) }, debugFile: debugfile.map { String(cString: $0) })
    }

    /// Symbols named in `names` from the module mapped at `address` (its best symbol table:
    /// debug file .symtab, else its own .symtab, else .dynsym), and where they came from.
    public func symbols(named names: Set<String>, inModuleAt address: UInt64) -> (symbols: [String: Symbol], source: String) {
        guard let m = module(at: address) else { return ([:], "no module at 0x\(String(address, radix: 16))") }
        var out: [String: Symbol] = [:]
        let n = dwfl_module_getsymtab(m)
        if n > 0 {
            for i in 0..<n {
                var sym = GElf_Sym()
                var addr: GElf_Addr = 0
                var shndx: GElf_Word = 0
                guard let cname = dwfl_module_getsym_info(m, i, &sym, &addr, &shndx, nil, nil) else { continue }
                let type = Int32(sym.st_info & 0xf)
                guard type == STT_OBJECT || type == STT_FUNC || type == STT_TLS || type == STT_GNU_IFUNC else { continue }
                let name = String(cString: cname)
                guard names.contains(name) else { continue }
                let isTLS = type == STT_TLS
                let s = Symbol(name: name, address: isTLS ? sym.st_value : addr, size: sym.st_size,
                               isTLS: isTLS, isFunction: type == STT_FUNC || type == STT_GNU_IFUNC)
                // Prefer a definition with a size (aliases of the same function are fine).
                if out[name] == nil || (out[name]!.size == 0 && s.size > 0) { out[name] = s }
            }
        }
        let mi = info(m)
        let source: String
        if let d = mi.debugFile, d != mi.mainFile { source = "debug file \(d)" }
        else if n > 0 { source = "ELF symbol table of \(mi.mainFile ?? mi.name)" }
        else { source = "no symbols" }
        return (out, source)
    }
}

/// find_elf for a live process: elfutils' own, except for files that are not at their mapped path
/// any more or in this file system (see `mappedFile`).
/// libdwfl calls it lazily (on first use of a module), always under `SymbolSession.lock`.
private let procFindElf: @convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafeMutableRawPointer?>?, UnsafePointer<CChar>?,
                                          Dwarf_Addr, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?,
                                          UnsafeMutablePointer<OpaquePointer?>?) -> Int32 = { mod, userdata, name, base, fileName, elfp in
    if let name, let mod, let path = SymbolSession.mappedFile(module: mod, name: String(cString: name)) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd >= 0 { fileName?.pointee = strdup(path); return fd }
    }
    return dwfl_linux_proc_find_elf(mod, userdata, name, base, fileName, elfp)
}

extension SymbolSession {
    /// The pid of the session being reported or used (sessions are used one at a time, under `lock`).
    nonisolated(unsafe) static var reportingPid: Int32 = 0
    /// Its root directory, open (-1: none).
    nonisolated(unsafe) static var reportingRoot: Int32 = -1
    static func pidOf(_ mod: OpaquePointer) -> Int32 { reportingPid }

    /// Where to read a module of a live process when its path does not name the mapped file:
    /// deleted or replaced since it was mapped ("PATH (deleted)"), or the process sees another
    /// file system (a container). The mapped file itself through /proc/PID/map_files, else
    /// PATH under /proc/PID/root; nil when PATH is the mapped file.
    static func mappedFile(module mod: OpaquePointer, name: String) -> String? {
        guard name.hasPrefix("/") else { return nil }
        let pid = pidOf(mod)
        let path = name.hasSuffix(" (deleted)") ? String(name.dropLast(10)) : name
        var low: Dwarf_Addr = 0
        _ = dwfl_module_info(mod, nil, &low, nil, nil, nil, nil, nil)
        func same(_ a: String, _ b: String) -> Bool {
            var x = stat(), y = stat()
            return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino
        }
        // Through the root directory held open: later lookups beside the file (.gnu_debuglink)
        // then need no /proc/PID.
        let rooted = reportingRoot >= 0 ? "/proc/self/fd/\(reportingRoot)\(path)" : "/proc/\(pid)/root\(path)"
        if let mapped = mapFile(pid: pid, start: low), access(mapped, R_OK) == 0 {
            if same(path, mapped) && !name.hasSuffix(" (deleted)") { return nil }
            return same(rooted, mapped) ? rooted : mapped
        }
        if access(rooted, R_OK) == 0 && !same(path, rooted) { return rooted }
        return nil
    }

    /// /proc/PID/map_files/START-END of the mapping that starts at `start`.
    static func mapFile(pid: Int32, start: UInt64) -> String? {
        guard pid > 0, let f = fopen("/proc/\(pid)/maps", "r") else { return nil }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 4096)
        let want = String(start, radix: 16) + "-"
        while fgets(&line, Int32(line.count), f) != nil {
            let l = String(cString: line)
            guard l.hasPrefix(want), let range = l.split(separator: " ").first else { continue }
            return "/proc/\(pid)/map_files/\(range)"
        }
        return nil
    }
}

/// Reads .dynsym straight from an ELF file with libelf.
public enum DynamicSymbols {
    /// Function names .dynsym defines, and names it imports (undefined).
    public static func functions(path: String) -> (defined: Set<String>, undefined: Set<String>)? {
        withELF(path) { e in functions(e) } ?? nil
    }
    static func functions(_ e: OpaquePointer) -> (defined: Set<String>, undefined: Set<String>)? {
        var result: Set<String> = []
        var undefined: Set<String> = []
        for (s, shdr) in elfSections(e) {
            guard shdr.sh_type == UInt32(SHT_DYNSYM), let data = elf_getdata(s, nil) else { continue }
            let count = Int(shdr.sh_size / max(shdr.sh_entsize, 1))
            for i in 0..<count {
                var sym = GElf_Sym()
                guard gelf_getsym(data, Int32(i), &sym) != nil else { continue }
                let type = Int32(sym.st_info & 0xf)
                guard let n = elf_strptr(e, Int(shdr.sh_link), Int(sym.st_name)) else { continue }
                if sym.st_shndx == UInt16(SHN_UNDEF) { undefined.insert(String(cString: n)); continue }
                guard type == STT_FUNC || type == STT_GNU_IFUNC else { continue }
                result.insert(String(cString: n))
            }
        }
        return (result, undefined)
    }
}

/// The GNU build-id of an ELF file (NT_GNU_BUILD_ID in a PT_NOTE segment), as hex.
public func elfBuildID(path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    return ELFNotes.buildID(fd: fd).map(ELFNotes.hex)
}

/// `body` over the ELF file at `path` (read with libelf, mapped); nil if it cannot be opened.
func withELF<T>(_ path: String, _ body: (OpaquePointer) -> T) -> T? {
    elf_version(UInt32(EV_CURRENT))
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    guard let e = elf_begin(fd, ELF_C_READ_MMAP, nil) else { return nil }
    defer { elf_end(e) }
    return body(e)
}

/// A recursive pthread mutex (no Foundation needed): a caller holding `SymbolSession.lock` may
/// create, use and end sessions, whose own calls take it again.
public final class Mutex: @unchecked Sendable {
    private var m = pthread_mutex_t()
    public init() {
        var attr = pthread_mutexattr_t()
        pthread_mutexattr_init(&attr)
        pthread_mutexattr_settype(&attr, Int32(PTHREAD_MUTEX_RECURSIVE))
        pthread_mutex_init(&m, &attr)
        pthread_mutexattr_destroy(&attr)
    }
    public func locked<T>(_ body: () throws -> T) rethrows -> T {
        pthread_mutex_lock(&m)
        defer { pthread_mutex_unlock(&m) }
        return try body()
    }
}
