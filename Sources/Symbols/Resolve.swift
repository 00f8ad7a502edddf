import CLibdw
import Glibc

extension SymbolSession {
    /// Resolve addresses: module, symbol, source frames with inlined calls. Addresses are
    /// deduplicated and visited in order (each module's indexes are built once, on first use).
    /// The result has one entry per input address, in input order.
    public func resolve(_ addresses: [UInt64]) -> [Resolution] {
        SymbolSession.lock.locked {
            let unique = Array(Set(addresses)).sorted()
            var byAddress: [UInt64: Resolution] = [:]
            byAddress.reserveCapacity(unique.count)
            for a in unique { byAddress[a] = resolveOne(a) }
            return addresses.map { byAddress[$0]! }
        }
    }

    func index(for m: OpaquePointer) -> ModuleIndex {
        let key = UnsafeMutableRawPointer(m)
        if let i = indexes[key] { return i }
        SymbolSession.reportingPid = pid   // for procFindElf
        let i = ModuleIndex(module: m)
        indexes[key] = i
        return i
    }

    private func resolveOne(_ a: UInt64) -> Resolution {
        var r = Resolution(address: a)
        guard let m = dwfl_addrmodule(dwfl, Dwarf_Addr(a)) else {
            r.reason = file != nil ? "outside \(file!)'s address range" : "unmapped: no module of process \(pid) holds this address"
            return r
        }
        let idx = index(for: m)
        r.module = idx.name
        r.buildID = idx.buildID
        let hasSymbol = idx.symbol(at: a, into: &r)
        idx.sourceFrames(at: a, into: &r)
        // The outermost frame is named by the symbol table when a symbol covers the address, as
        // llvm-symbolizer does: it names compiler clones (foo.cold, foo.constprop.0) that DWARF does not.
        if hasSymbol, let s = r.symbol, !r.frames.isEmpty { r.frames[r.frames.count - 1].function = s }
        if hasSymbol {
            r.source = r.source.map { "\($0); symbol from \(idx.symbolSource)" } ?? idx.symbolSource
        }
        if !hasSymbol && r.frames.isEmpty {
            r.reason = idx.symbolSource == "no symbols" ? "\(idx.name) has no symbols" : "no symbol of \(idx.name) covers this address"
        }
        return r
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
