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

    private func index(for m: OpaquePointer) -> ModuleIndex {
        let key = UnsafeMutableRawPointer(m)
        if let i = indexes[key] { return i }
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
        if hasSymbol {
            r.source = r.source.map { "\($0); symbol from \(idx.symbolSource)" } ?? idx.symbolSource
        }
        if !hasSymbol && r.frames.isEmpty {
            r.reason = idx.symbolSource == "no symbols" ? "\(idx.name) has no symbols" : "no symbol of \(idx.name) covers this address"
        }
        return r
    }

    /// Every symbol of every module, in address order (for gensyms).
    public func allSymbols() -> [(module: String, address: UInt64, size: UInt64, type: Character, name: String, file: String?)] {
        SymbolSession.lock.locked {
            final class Box { var mods: [OpaquePointer] = [] }
            let box = Box()
            _ = dwfl_getmodules(dwfl, { mod, _, _, _, arg in
                Unmanaged<Box>.fromOpaque(arg!).takeUnretainedValue().mods.append(mod!)
                return Int32(DWARF_CB_OK)
            }, Unmanaged.passUnretained(box).toOpaque(), 0)
            var out: [(module: String, address: UInt64, size: UInt64, type: Character, name: String, file: String?)] = []
            for m in box.mods {
                let idx = index(for: m)
                for s in idx.allSymbols() { out.append((idx.name, s.address, s.size, s.type, Demangle.name(s.name), s.file)) }
            }
            return out.sorted { $0.address < $1.address }
        }
    }
}
