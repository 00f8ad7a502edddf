import CLibdw
import Glibc

extension SymbolSession {
    /// Resolve addresses: module, symbol, source frames with inlined calls. Addresses are
    /// deduplicated and visited in order (each module's indexes are built once, on first use).
    /// The result has one entry per input address, in input order.
    public func resolve(_ addresses: [UInt64]) -> [Resolution] {
        let batch = ResolvedBatch()
        let index = resolve(addresses, into: batch)
        return index.map { batch.resolution(Int($0)) }
    }

    /// Resolve each distinct address once, in address order (each module's indexes are built on
    /// first use), appending the answers to `batch`; returns the entry of each of `addresses`.
    public func resolve(_ addresses: [UInt64], into batch: ResolvedBatch) -> [Int32] {
        SymbolSession.lock.locked {
            var index = [Int32](repeating: 0, count: addresses.count)
            var last: (address: UInt64, entry: Int)? = nil
            for (a, i) in SymbolSession.sortedWithIndex(addresses) {
                if last?.address != a { last = (a, resolveOne(a, into: batch)) }
                index[Int(i)] = Int32(last!.entry)
            }
            return index
        }
    }

    /// (address, position) in address order. Plain integer sort when addresses fit in 48 bits and
    /// positions in 16 (the usual case: user-space addresses, one batch).
    static func sortedWithIndex(_ addresses: [UInt64]) -> [(address: UInt64, at: Int32)] {
        if addresses.count <= 1 << 16, addresses.allSatisfy({ $0 < 1 << 48 }) {
            var keys = addresses.enumerated().map { $0.element << 16 | UInt64($0.offset) }
            keys.sort()
            return keys.map { (address: $0 >> 16, at: Int32(truncatingIfNeeded: $0 & 0xffff)) }
        }
        var order = addresses.enumerated().map { (address: $0.element, at: Int32($0.offset)) }
        order.sort { $0.address < $1.address }
        return order
    }

    func index(for m: OpaquePointer) -> ModuleIndex {
        let key = UnsafeMutableRawPointer(m)
        if key == lastIndex.key, let i = lastIndex.index { return i }
        if let i = indexes[key] { lastIndex = (key, i); return i }
        SymbolSession.reportingPid = pid   // for procFindElf
        let i = ModuleIndex(module: m, name: moduleNames[m])
        indexes[key] = i
        lastIndex = (key, i)
        return i
    }

    private func resolveOne(_ a: UInt64, into b: ResolvedBatch) -> Int {
        guard let m = dwfl_addrmodule(dwfl, Dwarf_Addr(a)) ?? bssTails.first(where: { a >= $0.start && a < $0.end })?.module else {
            return b.append(a, reason: file != nil ? "outside \(file!)'s address range" : "unmapped: no module of process \(pid) holds this address")
        }
        let k = b.append(a)
        let idx = index(for: m)
        b.moduleID[k] = idx.nameID
        b.buildIDID[k] = idx.buildIDID
        let symbol = idx.symbol(at: a, into: b, k)
        let hasSymbol = symbol != nil
        idx.sourceFrames(at: a, symbol: symbol, into: b, k)
        let hasFrames = b.frameCount[k] > 0
        b.sourceID[k] = idx.sourceID(dwarf: hasFrames, symbol: hasSymbol)
        if !hasSymbol && !hasFrames { b.reason[k] = idx.unresolvedReason }
        return k
    }

    /// Where the global variable whose first byte is at `a` is defined (from DWARF), if known.
    public func variableDefinition(at a: UInt64) -> (file: String, line: Int)? {
        SymbolSession.lock.locked {
            guard let m = dwfl_addrmodule(dwfl, Dwarf_Addr(a)) ?? bssTails.first(where: { a >= $0.start && a < $0.end })?.module else { return nil }
            return index(for: m).variableDefinition(at: a)
        }
    }

    /// One symbol as `gensyms` lists it.
    public struct ListedSymbol: Sendable {
        public var module: String
        public var address: UInt64
        public var size: UInt64
        public var type: Character
        public var name: String      // demangled
        public var file: String?     // compile unit holding it, else the STT_FILE before it
    }

    /// Every symbol of every module, in address order (for gensyms), and each module's symbol source.
    public func allSymbols() -> (symbols: [ListedSymbol], modules: [(name: String, buildID: String?, source: String)]) {
        SymbolSession.lock.locked {
            var out: [ListedSymbol] = []
            var mods: [(name: String, buildID: String?, source: String)] = []
            for m in modules() {
                let idx = index(for: m)
                mods.append((idx.name, idx.buildID, idx.symbolSource))
                for s in idx.allSymbols() {
                    out.append(ListedSymbol(module: idx.name, address: s.address, size: s.size, type: s.type,
                                            name: Demangle.name(s.name), file: idx.compileUnitName(at: s.address) ?? s.file))
                }
            }
            out.sort { $0.address < $1.address }
            return (out, mods)
        }
    }
}

extension SymbolSession {
    /// The modules of the session, in address order.
    func modules() -> [OpaquePointer] {
        final class Box { var mods: [OpaquePointer] = [] }
        let box = Box()
        _ = dwfl_getmodules(dwfl, { mod, _, _, _, arg in
            Unmanaged<Box>.fromOpaque(arg!).takeUnretainedValue().mods.append(mod!)
            return Int32(DWARF_CB_OK)
        }, Unmanaged.passUnretained(box).toOpaque(), 0)
        return box.mods
    }

    /// For a session over one file: the run-time address of a file offset, or nil when no
    /// loadable segment holds it.
    public func address(ofFileOffset off: UInt64) -> UInt64? {
        SymbolSession.lock.locked {
            for m in modules() { if let a = index(for: m).address(ofFileOffset: off) { return a } }
            return nil
        }
    }
}

/// A module of a session, as a pasted backtrace names it.
public struct LoadedModule: Sendable {
    /// Its path (the process's mapping, the core's file note, or the --elf file).
    public var path: String
    /// Its lowest mapped address and its load bias (what `module+0xOFF` offsets are added to).
    public var low: UInt64
    public var bias: UInt64
}

extension SymbolSession {
    /// Every module, in address order.
    public func loadedModules() -> [LoadedModule] {
        SymbolSession.lock.locked {
            modules().map { m in
                var low: Dwarf_Addr = 0
                _ = dwfl_module_info(m, nil, &low, nil, nil, nil, nil, nil)
                var bias: GElf_Addr = 0
                if dwfl_module_getelf(m, &bias) == nil { bias = low }
                return LoadedModule(path: moduleName(m) ?? "?", low: low, bias: bias)
            }
        }
    }

    /// The run-time address of the function or object `name` in the module mapped at `low`
    /// (a versioned name, "__libc_start_main@@GLIBC_2.34", answers for its base name).
    public func address(ofSymbol name: String, inModuleAt low: UInt64) -> UInt64? {
        SymbolSession.lock.locked {
            guard let m = dwfl_addrmodule(dwfl, Dwarf_Addr(low)) else { return nil }
            let n = dwfl_module_getsymtab(m)
            guard n > 0 else { return nil }
            let want = Array(name.utf8)
            var versioned: UInt64? = nil
            for i in 0..<n {
                var sym = GElf_Sym()
                var addr: GElf_Addr = 0
                guard let cname = dwfl_module_getsym_info(m, i, &sym, &addr, nil, nil, nil) else { continue }
                let type = Int32(sym.st_info & 0xf)
                guard type == STT_OBJECT || type == STT_FUNC || type == STT_GNU_IFUNC, sym.st_shndx != 0 else { continue }
                // Compare bytes: the name as given, or followed by "@".
                var k = 0
                while k < want.count, cname[k] != 0, UInt8(bitPattern: cname[k]) == want[k] { k += 1 }
                guard k == want.count else { continue }
                if cname[k] == 0 { return addr }
                if cname[k] == 0x40, versioned == nil { versioned = addr }
            }
            return versioned
        }
    }
}
