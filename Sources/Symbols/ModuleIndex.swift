import CLibdw
import Glibc
import ProcessAccess

/// One frame of a resolved address: a function and a source position. For the innermost frame
/// the position is the address's own line; for an outer frame, the call site of the frame inside it.
/// Names are ids in `StringPool.shared`.
public struct SourceFrame: Sendable, Equatable {
    public var functionID: Int32
    public var fileID: Int32          // StringPool.none when unknown
    public var line: Int32
    public var column: Int32
    public var function: String { StringPool.shared.string(functionID) ?? "??" }
    public var file: String? { StringPool.shared.string(fileID) }
}

/// The answers for a batch of addresses, as parallel arrays: no object and no reference counting
/// per address (what lets `heapscope sym` answer millions of addresses a second). Entry `k`:
/// strings are ids in `StringPool.shared` (`StringPool.none` for none); its frames, innermost
/// first, are `frames[frameStart[k] ..< frameStart[k] + frameCount[k]]`; `reason` is set when it
/// could not be resolved (a value, not an error).
public final class ResolvedBatch: @unchecked Sendable {
    public internal(set) var address: [UInt64] = []
    public internal(set) var moduleID: [Int32] = [], buildIDID: [Int32] = [], symbolID: [Int32] = [], mangledID: [Int32] = []
    public internal(set) var typeLetter: [UInt8] = []       // nm-style letter, 0 = none
    public internal(set) var offset: [UInt64] = [], size: [UInt64] = []
    public internal(set) var symbolFileID: [Int32] = []     // STT_FILE of a local symbol (used when there is no DWARF)
    public internal(set) var sourceID: [Int32] = []         // which tables answered
    public internal(set) var frameStart: [Int32] = [], frameCount: [Int32] = []
    public internal(set) var frames: [SourceFrame] = []
    public internal(set) var reason: [String?] = []
    public var count: Int { address.count }

    public init() {}

    /// A new entry for `a`, empty; returns its index.
    public func append(_ a: UInt64, reason why: String? = nil) -> Int {
        address.append(a)
        moduleID.append(StringPool.none); buildIDID.append(StringPool.none); symbolID.append(StringPool.none)
        mangledID.append(StringPool.none); typeLetter.append(0); offset.append(0); size.append(0)
        symbolFileID.append(StringPool.none); sourceID.append(StringPool.none)
        frameStart.append(Int32(frames.count)); frameCount.append(0); reason.append(why)
        return address.count - 1
    }

    public func removeAll() {
        address.removeAll(keepingCapacity: true)
        moduleID.removeAll(keepingCapacity: true); buildIDID.removeAll(keepingCapacity: true)
        symbolID.removeAll(keepingCapacity: true); mangledID.removeAll(keepingCapacity: true)
        typeLetter.removeAll(keepingCapacity: true); offset.removeAll(keepingCapacity: true); size.removeAll(keepingCapacity: true)
        symbolFileID.removeAll(keepingCapacity: true); sourceID.removeAll(keepingCapacity: true)
        frameStart.removeAll(keepingCapacity: true); frameCount.removeAll(keepingCapacity: true)
        frames.removeAll(keepingCapacity: true); reason.removeAll(keepingCapacity: true)
    }

    /// Entry `k` as the answer for an address `d` bytes further on (a return address looked up
    /// at address − 1, as debuggers do: the line of the call, printed at the address given).
    public func shift(_ k: Int, by d: UInt64) {
        address[k] &+= d
        if symbolID[k] >= 0 { offset[k] &+= d }
    }

    /// Entry `k` as an object (for code that is not on a hot path).
    public func resolution(_ k: Int) -> Resolution {
        let r = Resolution(address: address[k])
        r.moduleID = moduleID[k]; r.buildIDID = buildIDID[k]; r.symbolID = symbolID[k]; r.mangledID = mangledID[k]
        r.typeLetter = typeLetter[k]; r.offset = offset[k]; r.size = size[k]; r.symbolFileID = symbolFileID[k]
        r.sourceID = sourceID[k]; r.reason = reason[k]
        r.frames = Array(frames[Int(frameStart[k])..<Int(frameStart[k] + frameCount[k])])
        return r
    }
}

/// Everything known about one address (one entry of a `ResolvedBatch`, as an object).
/// Strings are ids in `StringPool.shared` (`StringPool.none` for none), with String accessors.
public final class Resolution: @unchecked Sendable {
    public var address: UInt64
    public var moduleID = StringPool.none
    public var buildIDID = StringPool.none
    public var symbolID = StringPool.none      // demangled
    public var mangledID = StringPool.none
    public var typeLetter: UInt8 = 0           // nm-style letter, 0 = none
    public var offset: UInt64 = 0
    public var size: UInt64 = 0
    public var symbolFileID = StringPool.none  // STT_FILE of a local symbol (used when there is no DWARF)
    public var frames: [SourceFrame] = []      // innermost first; empty without line information
    public var sourceID = StringPool.none      // which tables answered
    public var reason: String?
    public init(address: UInt64) { self.address = address }

    public var module: String? { StringPool.shared.string(moduleID) }
    public var buildID: String? { StringPool.shared.string(buildIDID) }
    public var symbol: String? { StringPool.shared.string(symbolID) }
    public var mangled: String? { StringPool.shared.string(mangledID) }
    public var type: Character? { typeLetter == 0 ? nil : Character(UnicodeScalar(typeLetter)) }
    public var symbolFile: String? { StringPool.shared.string(symbolFileID) }
    public var source: String? { StringPool.shared.string(sourceID) }
}

/// The indexes of one module, built once: its symbol table sorted by address, the address ranges
/// of its compile units (from the DIEs, so binaries without .debug_aranges work), and per compile
/// unit, on first use, a sorted line table and the tree of functions and inlined calls.
final class ModuleIndex {
    let module: OpaquePointer
    let name: String
    let buildID: String?
    let symbolSource: String
    private let debugSource: String?
    private(set) var nameID = StringPool.none, buildIDID = StringPool.none

    // symbols, sorted by address
    private var symAddr: [UInt64] = []
    private var symSize: [UInt64] = []
    private var symName: [String] = []
    private var symType: [Character] = []
    private var symFile: [Int32] = []
    private var symDemangled: [Int32] = []     // pool ids, filled on first use
    private var symMangled: [Int32] = []
    private var fileNames: [String] = []
    private var fileNameIDs: [Int32] = []

    // compile units
    private let dwarf: OpaquePointer?
    private let bias: UInt64
    private var cuLo: [UInt64] = [], cuHi: [UInt64] = [], cuIdx: [Int] = []
    private var cuDies: [Dwarf_Die] = []
    private var lines: [LineTable?] = []       // per compile unit, built on first use
    private var trees: [InlineTree?] = []
    /// `source` of a resolution (pool ids): DWARF, DWARF and symbol, symbol.
    private var sourceIDs: (dwarf: Int32, both: Int32, symbol: Int32) = (-1, -1, -1)

    /// `name`: the module's name when libdwfl's is not the one to print (a core's modules are
    /// named by their paths, as a live process's are).
    init(module m: OpaquePointer, name given: String? = nil) {
        module = m
        var low: Dwarf_Addr = 0
        var mainfile: UnsafePointer<CChar>? = nil, debugfile: UnsafePointer<CChar>? = nil
        let n = dwfl_module_info(m, nil, &low, nil, nil, nil, nil, nil)
        name = given ?? n.map { String(cString: $0) } ?? "?"
        // DWARF (loads the debug file through the session's find_debuginfo).
        var b: Dwarf_Addr = 0
        dwarf = dwfl_module_getdwarf(m, &b)
        bias = b
        // The build-id is known once the ELF file has been found (for a process: after getdwarf/getelf).
        var eb: GElf_Addr = 0
        _ = dwfl_module_getelf(m, &eb)
        var idp: UnsafePointer<UInt8>? = nil
        var vaddr: GElf_Addr = 0
        let idlen = dwfl_module_build_id(m, &idp, &vaddr)
        if idlen > 0, let idp {
            buildID = ELFNotes.hex(Array(UnsafeBufferPointer(start: idp, count: Int(idlen))))
        } else { buildID = nil }
        _ = dwfl_module_info(m, nil, nil, nil, nil, nil, &mainfile, &debugfile)
        debugSource = debugfile.map { String(cString: $0) }
        let count = dwfl_module_getsymtab(m)
        var src = count > 0 ? "symtab" : "no symbols"
        if count > 0 { src = ModuleIndex.symtabKind(m) }
        symbolSource = src
        buildSymbols(count: Int(max(count, 0)))
        buildCompileUnits()
        symDemangled = Array(repeating: StringPool.none, count: symAddr.count)
        symMangled = Array(repeating: StringPool.none, count: symAddr.count)
        lines = Array(repeating: nil, count: cuDies.count)
        trees = Array(repeating: nil, count: cuDies.count)
        let pool = StringPool.shared
        let dwarfSource = debugSource.map { "DWARF of \($0)" } ?? "DWARF"
        sourceIDs = (pool.intern(dwarfSource), pool.intern("\(dwarfSource); symbol from \(symbolSource)"), pool.intern(symbolSource))
        nameID = pool.intern(name)
        buildIDID = buildID.map(pool.intern) ?? StringPool.none
        fileNameIDs = fileNames.map(pool.intern)
    }

    /// Why an address of this module has no answer.
    var unresolvedReason: String { symbolSource == "no symbols" ? "\(name) has no symbols" : "no symbol of \(name) covers this address" }

    /// The source of a resolution: DWARF (and which file), the symbol table, or both.
    func sourceID(dwarf: Bool, symbol: Bool) -> Int32 {
        switch (dwarf, symbol) {
        case (true, true): return sourceIDs.both
        case (true, false): return sourceIDs.dwarf
        case (false, true): return sourceIDs.symbol
        case (false, false): return StringPool.none
        }
    }

    private func demangled(_ i: Int) -> Int32 {
        if symDemangled[i] >= 0 { return symDemangled[i] }
        let d = StringPool.shared.intern(Demangle.name(symName[i]))
        symDemangled[i] = d
        return d
    }

    private func mangled(_ i: Int) -> Int32 {
        if symMangled[i] >= 0 { return symMangled[i] }
        let d = StringPool.shared.intern(symName[i])
        symMangled[i] = d
        return d
    }

    /// Which table libdwfl's symbols came from.
    private static func symtabKind(_ m: OpaquePointer) -> String {
        var mainfile: UnsafePointer<CChar>? = nil, debugfile: UnsafePointer<CChar>? = nil
        _ = dwfl_module_info(m, nil, nil, nil, nil, nil, &mainfile, &debugfile)
        var b: GElf_Addr = 0
        if let e = dwfl_module_getelf(m, &b), hasSection(e, type: UInt32(SHT_SYMTAB)) { return ".symtab" }
        if let d = debugfile { return ".symtab of \(String(cString: d))" }
        if let e = dwfl_module_getelf(m, &b), hasSection(e, named: ".gnu_debugdata") { return ".dynsym and MiniDebugInfo (.gnu_debugdata)" }
        return ".dynsym"
    }

    private static func hasSection(_ e: OpaquePointer, named name: String) -> Bool {
        var shstrndx = 0
        guard elf_getshdrstrndx(e, &shstrndx) == 0 else { return false }
        return elfSections(e).contains { sec in elf_strptr(e, shstrndx, Int(sec.header.sh_name)).map { String(cString: $0) == name } ?? false }
    }

    private static func hasSection(_ e: OpaquePointer, type: UInt32) -> Bool {
        elfSections(e).contains { $0.header.sh_type == type }
    }

    // MARK: symbols

    private func buildSymbols(count: Int) {
        struct Entry { var addr: UInt64; var size: UInt64; var name: String; var type: Character; var file: Int32; var rank: Int }
        var entries: [Entry] = []
        entries.reserveCapacity(count)
        var currentFile: Int32 = -1
        var sectionLetter: [Int: Character] = [:]
        for i in 0..<count {
            var sym = GElf_Sym()
            var addr: GElf_Addr = 0
            var shndx: GElf_Word = 0
            var elf: OpaquePointer? = nil
            var b: Dwarf_Addr = 0
            guard let cname = dwfl_module_getsym_info(module, Int32(i), &sym, &addr, &shndx, &elf, &b) else { continue }
            let type = Int32(sym.st_info & 0xf), bind = Int32(sym.st_info >> 4)
            if type == STT_FILE {
                if cname[0] == 0 { currentFile = -1; continue }
                fileNames.append(String(cString: cname)); currentFile = Int32(fileNames.count - 1); continue
            }
            guard type == STT_FUNC || type == STT_OBJECT || type == STT_NOTYPE || type == STT_GNU_IFUNC,
                  shndx != UInt32(SHN_UNDEF), shndx != UInt32(SHN_ABS), cname[0] != 0 else { continue }
            var name = String(cString: cname)
            // Symbol versions (`memcpy@@GLIBC_2.14`, `foo@VERS_1`) are not part of the name.
            if let at = name.firstIndex(of: "@"), at != name.startIndex { name = String(name[..<at]) }
            if type == STT_NOTYPE && (name.hasPrefix("$") || name.hasPrefix(".L")) { continue }
            var letter: Character
            if shndx == UInt32(SHN_ABS) { letter = "a" }
            else if let l = sectionLetter[Int(shndx)] { letter = l }
            else {
                letter = ModuleIndex.sectionLetter(elf, Int(shndx))
                sectionLetter[Int(shndx)] = letter
            }
            // Not loaded (e.g. .gnu.warning), or in a section the file does not have (a symbol of
            // a separate debug file's .debug_info): no run-time address.
            if letter == "n" || letter == "?" { continue }
            if type == STT_GNU_IFUNC { letter = "i" }
            else if bind == STB_WEAK { letter = type == STT_OBJECT ? "V" : "W" }
            else if bind == STB_GLOBAL || bind == STB_GNU_UNIQUE { letter = Character(letter.uppercased()) }
            // Among aliases at one address prefer: a size, a function, the fewest leading
            // underscores (the public name: `malloc` over `__libc_malloc`), global over weak over local.
            let underscores = min(name.prefix(while: { $0 == "_" }).count, 3)
            let rank = (sym.st_size > 0 ? 64 : 0) + (type == STT_FUNC || type == STT_GNU_IFUNC ? 32 : (type == STT_OBJECT ? 16 : 0))
                + (3 - underscores) * 4 + (bind == STB_GLOBAL ? 2 : (bind == STB_WEAK ? 1 : 0))
            entries.append(Entry(addr: addr, size: sym.st_size, name: name, type: letter,
                                 file: bind == STB_LOCAL ? currentFile : -1, rank: rank))
        }
        entries.sort { $0.addr < $1.addr || ($0.addr == $1.addr && $0.rank > $1.rank) }
        for e in entries where symAddr.last != e.addr {
            symAddr.append(e.addr); symSize.append(e.size); symName.append(e.name); symType.append(e.type); symFile.append(e.file)
        }
    }

    /// nm's letter for a section (lower case; made upper case for global symbols).
    private static func sectionLetter(_ elf: OpaquePointer?, _ shndx: Int) -> Character {
        guard let e = elf, let scn = elf_getscn(e, shndx) else { return "?" }
        var sh = GElf_Shdr()
        guard gelf_getshdr(scn, &sh) != nil else { return "?" }
        var shstrndx = 0
        _ = elf_getshdrstrndx(e, &shstrndx)
        let name = elf_strptr(e, shstrndx, Int(sh.sh_name)).map { String(cString: $0) } ?? ""
        if sh.sh_flags & UInt64(SHF_EXECINSTR) != 0 { return "t" }
        if name.hasPrefix(".bss") || name.hasPrefix(".tbss") || (sh.sh_type == UInt32(SHT_NOBITS) && name.isEmpty) { return "b" }
        if sh.sh_flags & UInt64(SHF_WRITE) != 0 { return "d" }
        if sh.sh_flags & UInt64(SHF_ALLOC) != 0 { return "r" }
        return "n"
    }

    /// The symbol holding `a`: the last one starting at or before it whose size covers it; a
    /// symbol of size 0 (a label) covers up to the next symbol, and only when no sized symbol
    /// among the 16 before covers `a` (a label inside a function does not name it).
    func symbol(at a: UInt64, into b: ResolvedBatch, _ k: Int) -> Int? {
        var lo = 0, hi = symAddr.count
        while lo < hi { let mid = (lo + hi) >> 1; if symAddr[mid] <= a { lo = mid + 1 } else { hi = mid } }
        var i = lo - 1
        var tries = 0
        var label: Int? = nil
        while i >= 0 && tries < 16 {
            if symSize[i] == 0 {
                if label == nil && i == lo - 1 { label = i }
                i -= 1; tries += 1
                continue
            }
            if a < symAddr[i] &+ symSize[i] { break }
            i -= 1; tries += 1
        }
        if i < 0 || tries >= 16 || symSize[i] == 0 { i = label ?? -1 }
        guard i >= 0 else { return nil }
        b.mangledID[k] = mangled(i)
        b.symbolID[k] = demangled(i)
        b.typeLetter[k] = symType[i].asciiValue ?? UInt8(ascii: "?")
        b.offset[k] = a - symAddr[i]
        b.size[k] = symSize[i]
        if symFile[i] >= 0 { b.symbolFileID[k] = fileNameIDs[Int(symFile[i])] }
        return i
    }

    /// Every symbol, in address order (for `gensyms`).
    func allSymbols() -> [(address: UInt64, size: UInt64, type: Character, name: String, file: String?)] {
        (0..<symAddr.count).map { (symAddr[$0], symSize[$0], symType[$0], symName[$0], symFile[$0] >= 0 ? fileNames[Int(symFile[$0])] : nil) }
    }

    // MARK: compile units

    private func buildCompileUnits() {
        guard dwarf != nil else { return }
        var b: Dwarf_Addr = 0
        var cu: UnsafeMutablePointer<Dwarf_Die>? = nil
        var ranges: [(UInt64, UInt64, Int)] = []
        while true {
            cu = dwfl_module_nextcu(module, cu, &b)
            guard let c = cu else { break }
            let idx = cuDies.count
            cuDies.append(c.pointee)
            var die = c.pointee
            var found = ModuleIndex.ranges(of: &die)
            if found.isEmpty { found = ModuleIndex.subprogramRanges(in: die) }
            for (s, e) in found where e > s { ranges.append((s &+ bias, e &+ bias, idx)) }
        }
        ranges.sort { $0.0 < $1.0 }
        cuLo = ranges.map(\.0); cuHi = ranges.map(\.1); cuIdx = ranges.map(\.2)
    }

    static func ranges(of die: inout Dwarf_Die) -> [(UInt64, UInt64)] {
        var out: [(UInt64, UInt64)] = []
        var off: Int = 0
        var base: Dwarf_Addr = 0, s: Dwarf_Addr = 0, e: Dwarf_Addr = 0
        while true {
            off = dwarf_ranges(&die, off, &base, &s, &e)
            if off <= 0 { break }
            out.append((s, e))
        }
        return out
    }

    /// A compile unit without DW_AT_ranges/high_pc: the union of its functions' ranges.
    static func subprogramRanges(in cu: Dwarf_Die) -> [(UInt64, UInt64)] {
        var out: [(UInt64, UInt64)] = []
        var cu = cu
        var child = Dwarf_Die()
        guard dwarf_child(&cu, &child) == 0 else { return out }
        repeat {
            if dwarf_tag(&child) == Int32(DW_TAG_subprogram) { out.append(contentsOf: ranges(of: &child)) }
        } while nextSibling(&child)
        return out
    }

    /// The name (DW_AT_name) of the compile unit whose code holds `a`.
    func compileUnitName(at a: UInt64) -> String? {
        guard let cu = compileUnit(at: a) else { return nil }
        var die = cuDies[cu]
        return dwarf_diename(&die).map { absolutePath(String(cString: $0), compDir: compilationDirectory(cuDies[cu])) }
    }

    /// Where the variable at run-time address `a` (its first byte) is defined: DW_AT_decl_file
    /// and DW_AT_decl_line of the DW_TAG_variable whose DW_AT_location is `DW_OP_addr a`,
    /// looked for in every compile unit (top level and namespaces).
    func variableDefinition(at a: UInt64) -> (file: String, line: Int)? {
        guard dwarf != nil else { return nil }
        let want = a &- bias
        for cu in cuDies {
            var die = cu
            var child = Dwarf_Die()
            guard dwarf_child(&die, &child) == 0 else { continue }
            var pending: [Dwarf_Die] = []
            repeat { pending.append(child) } while nextSibling(&child)
            while var d = pending.popLast() {
                let tag = dwarf_tag(&d)
                if tag == Int32(DW_TAG_namespace), dwarf_child(&d, &child) == 0 {
                    repeat { pending.append(child) } while nextSibling(&child)
                    continue
                }
                guard tag == Int32(DW_TAG_variable) else { continue }
                var attr = Dwarf_Attribute()
                guard dwarf_attr(&d, UInt32(DW_AT_location), &attr) != nil else { continue }
                var expr: UnsafeMutablePointer<Dwarf_Op>? = nil
                var len = 0
                guard dwarf_getlocation(&attr, &expr, &len) == 0, len == 1, let e = expr,
                      e.pointee.atom == UInt8(DW_OP_addr), e.pointee.number == want else { continue }
                var line: Int32 = 0
                guard let f = dwarf_decl_file(&d), dwarf_decl_line(&d, &line) == 0 else { return nil }
                return (cleanPath(absolutePath(String(cString: f), compDir: compilationDirectory(cu))), Int(line))
            }
        }
        return nil
    }

    /// Run-time address of a file offset in the module's main ELF file (through its PT_LOAD headers).
    func address(ofFileOffset off: UInt64) -> UInt64? {
        var b: GElf_Addr = 0
        guard let e = dwfl_module_getelf(module, &b) else { return nil }
        for ph in elfProgramHeaders(e) where ph.p_type == UInt32(PT_LOAD) {
            if off >= ph.p_offset && off < ph.p_offset + ph.p_filesz { return off - ph.p_offset + ph.p_vaddr + b }
        }
        return nil
    }

    private func compileUnit(at a: UInt64) -> Int? {
        var lo = 0, hi = cuLo.count
        while lo < hi { let mid = (lo + hi) >> 1; if cuLo[mid] <= a { lo = mid + 1 } else { hi = mid } }
        var i = lo - 1
        while i >= 0 && lo - i <= 8 {
            if a < cuHi[i] { return cuIdx[i] }
            i -= 1
        }
        return nil
    }

    /// Fill `frames` (innermost first) from the line table and the inline tree. Every frame is
    /// named by its DWARF subprogram, as gdb and llvm-symbolizer name it (`foo` for the clones
    /// foo.cold and foo.constprop.0, whose symbol stays in `symbol`); by the symbol `symbol` only
    /// where DWARF has no function.
    func sourceFrames(at a: UInt64, symbol: Int?, into b: ResolvedBatch, _ k: Int) {
        guard let cu = compileUnit(at: a) else { return }
        let rel = a &- bias
        let table: LineTable, tree: InlineTree
        if let t = lines[cu] { table = t } else { table = LineTable(cu: cuDies[cu]); lines[cu] = table }
        if let t = trees[cu] { tree = t } else { tree = InlineTree(cu: cuDies[cu]); trees[cu] = tree }
        let row = table.row(at: rel)
        let leaf = tree.leaf(at: rel)
        guard leaf != nil || row != nil else { return }
        let chain = leaf.map { tree.chain(to: $0) } ?? []
        let start = b.frames.count
        let innermostName = chain.last.map { tree.name(of: $0) } ?? (b.symbolID[k] >= 0 ? b.symbolID[k] : StringPool.shared.intern("??"))
        if let row {
            b.frames.append(SourceFrame(functionID: innermostName, fileID: table.file[row] >= 0 ? table.files[Int(table.file[row])] : StringPool.none,
                                      line: table.line[row], column: table.col[row]))
        } else {
            b.frames.append(SourceFrame(functionID: innermostName, fileID: StringPool.none, line: 0, column: 0))
        }
        if chain.count > 1 {
            for j in stride(from: chain.count - 1, to: 0, by: -1) {
                let site = tree.callSite(of: chain[j])
                b.frames.append(SourceFrame(functionID: tree.name(of: chain[j - 1]), fileID: site.file, line: site.line, column: site.column))
            }
        }
        if chain.isEmpty, let s = symbol { b.frames[b.frames.count - 1].functionID = demangled(s) }
        b.frameStart[k] = Int32(start)
        b.frameCount[k] = Int32(b.frames.count - start)
    }
}

/// A compile unit's line table, sorted by address, as parallel arrays.
final class LineTable {
    var addr: [UInt64] = [], line: [Int32] = [], col: [Int32] = [], file: [Int32] = [], endSeq: [Bool] = []
    var files: [Int32] = []     // pool ids

    init(cu: Dwarf_Die) {
        var cu = cu
        var lines: OpaquePointer? = nil
        var n = 0
        guard dwarf_getsrclines(&cu, &lines, &n) == 0, let lines else { return }
        let compDir = compilationDirectory(cu)
        var fileIndex: [UnsafePointer<CChar>: Int32] = [:]
        addr.reserveCapacity(n); line.reserveCapacity(n); col.reserveCapacity(n); file.reserveCapacity(n); endSeq.reserveCapacity(n)
        for i in 0..<n {
            guard let l = dwarf_onesrcline(lines, i) else { continue }
            var a: Dwarf_Addr = 0, ln: Int32 = 0, c: Int32 = 0
            var end = false
            _ = dwarf_lineaddr(l, &a); _ = dwarf_lineno(l, &ln); _ = dwarf_linecol(l, &c); _ = dwarf_lineendsequence(l, &end)
            var f: Int32 = -1
            if let src = dwarf_linesrc(l, nil, nil) {
                if let k = fileIndex[src] { f = k } else {
                    f = Int32(files.count)
                    files.append(StringPool.shared.intern(cleanPath(absolutePath(String(cString: src), compDir: compDir))))
                    fileIndex[src] = f
                }
            }
            addr.append(a); line.append(ln); col.append(c); file.append(f); endSeq.append(end)
        }
    }

    /// The row for `a`: the last row at the greatest address <= a that is not an end of sequence.
    func row(at a: UInt64) -> Int? {
        var lo = 0, hi = addr.count
        while lo < hi { let mid = (lo + hi) >> 1; if addr[mid] <= a { lo = mid + 1 } else { hi = mid } }
        var i = lo - 1
        guard i >= 0 else { return nil }
        let at = addr[i]
        while i >= 0 && addr[i] == at && endSeq[i] { i -= 1 }
        guard i >= 0, addr[i] == at else { return nil }   // a lies past the end of a sequence
        return i
    }


}

/// The functions of a compile unit and the calls inlined into them, as a tree with address ranges.
/// Names and call sites are read from the DIEs on first use and kept.
final class InlineTree {
    struct Node {
        var die: Dwarf_Die
        var ranges: [(UInt64, UInt64)]
        var parent: Int
        var children: [Int] = []
    }
    var nodes: [Node] = []
    var topLo: [UInt64] = [], topHi: [UInt64] = [], topNode: [Int] = []
    let cu: Dwarf_Die
    var files: OpaquePointer? = nil
    private var names: [Int32] = []     // pool ids, filled on first use
    private var sites: [(file: Int32, line: Int32, column: Int32)?] = []
    private lazy var compDir: String? = compilationDirectory(cu)

    init(cu: Dwarf_Die) {
        self.cu = cu
        var c = cu
        var nfiles = 0
        _ = dwarf_getsrcfiles(&c, &files, &nfiles)
        // Depth-first over the whole unit with an explicit stack: (die, parent node or -1).
        var stack: [(Dwarf_Die, Int)] = []
        var child = Dwarf_Die()
        if dwarf_child(&c, &child) == 0 {
            repeat { stack.append((child, -1)) } while nextSibling(&child)
        }
        var tops: [(UInt64, UInt64, Int)] = []
        while let (d, parent) = stack.popLast() {
            var die = d
            let tag = dwarf_tag(&die)
            var owner = parent
            if tag == Int32(DW_TAG_subprogram) || tag == Int32(DW_TAG_inlined_subroutine) {
                let r = ModuleIndex.ranges(of: &die)
                if !r.isEmpty {
                    // A subprogram nested in another (a Swift closure, a C++ local class method)
                    // is out-of-line code of its own: a top, not a frame inside its parent.
                    let inParent = tag == Int32(DW_TAG_inlined_subroutine) ? parent : -1
                    nodes.append(Node(die: die, ranges: r, parent: inParent))
                    owner = nodes.count - 1
                    if inParent >= 0 { nodes[parent].children.append(owner) } else {
                        for (s, e) in r { tops.append((s, e, owner)) }
                    }
                }
            } else if tag == Int32(DW_TAG_structure_type) || tag == Int32(DW_TAG_class_type)
                        || tag == Int32(DW_TAG_union_type) || tag == Int32(DW_TAG_enumeration_type)
                        || tag == Int32(DW_TAG_base_type) || tag == Int32(DW_TAG_variable)
                        || tag == Int32(DW_TAG_formal_parameter) || tag == Int32(DW_TAG_typedef) {
                continue   // no code inside
            }
            if dwarf_haschildren(&die) != 0, dwarf_child(&die, &child) == 0 {
                repeat { stack.append((child, owner)) } while nextSibling(&child)
            }
        }
        tops.sort { $0.0 < $1.0 }
        topLo = tops.map(\.0); topHi = tops.map(\.1); topNode = tops.map(\.2)
        names = Array(repeating: StringPool.none, count: nodes.count)
        sites = Array(repeating: nil, count: nodes.count)
    }

    /// The innermost function or inlined call holding `a`.
    func leaf(at a: UInt64) -> Int? {
        var lo = 0, hi = topLo.count
        while lo < hi { let mid = (lo + hi) >> 1; if topLo[mid] <= a { lo = mid + 1 } else { hi = mid } }
        var i = lo - 1
        var top: Int? = nil
        while i >= 0 && lo - i <= 16 {
            if a < topHi[i] { top = topNode[i]; break }
            i -= 1
        }
        guard var n = top else { return nil }
        while let next = nodes[n].children.first(where: { c in nodes[c].ranges.contains { a >= $0.0 && a < $0.1 } }) {
            n = next
        }
        return n
    }

    /// Outermost function first, down to `leaf`.
    func chain(to leaf: Int) -> [Int] {
        var out: [Int] = []
        var n = leaf
        while n >= 0 { out.append(n); n = nodes[n].parent }
        return out.reversed()
    }

    /// llvm-symbolizer's default name: the demangled linkage name, else the plain name.
    func name(of n: Int) -> Int32 {
        if names[n] >= 0 { return names[n] }
        let s = StringPool.shared.intern(readName(of: n))
        names[n] = s
        return s
    }

    private func readName(of n: Int) -> String {
        var die = nodes[n].die
        var attr = Dwarf_Attribute()
        for at in [UInt32(DW_AT_linkage_name), UInt32(DW_AT_MIPS_linkage_name)] {
            if dwarf_attr_integrate(&die, at, &attr) != nil, let s = dwarf_formstring(&attr) {
                return Demangle.name(String(cString: s))
            }
        }
        if dwarf_attr_integrate(&die, UInt32(DW_AT_name), &attr) != nil, let s = dwarf_formstring(&attr) {
            return String(cString: s)
        }
        return "??"
    }

    func callSite(of n: Int) -> (file: Int32, line: Int32, column: Int32) {
        if let s = sites[n] { return s }
        let c = readCallSite(of: n)
        let s = (c.file.map(StringPool.shared.intern) ?? StringPool.none, Int32(truncatingIfNeeded: c.line), Int32(truncatingIfNeeded: c.column))
        sites[n] = s
        return s
    }

    private func readCallSite(of n: Int) -> (file: String?, line: Int, column: Int) {
        var die = nodes[n].die
        var attr = Dwarf_Attribute()
        var v: Dwarf_Word = 0
        var file: String? = nil, line = 0, col = 0
        if dwarf_attr(&die, UInt32(DW_AT_call_file), &attr) != nil, dwarf_formudata(&attr, &v) == 0, let f = files,
           let s = dwarf_filesrc(f, Int(v), nil, nil) { file = cleanPath(absolutePath(String(cString: s), compDir: compDir)) }
        if dwarf_attr(&die, UInt32(DW_AT_call_line), &attr) != nil, dwarf_formudata(&attr, &v) == 0 { line = Int(v) }
        if dwarf_attr(&die, UInt32(DW_AT_call_column), &attr) != nil, dwarf_formudata(&attr, &v) == 0 { col = Int(v) }
        return (file, line, col)
    }
}

/// DW_AT_comp_dir of a compile unit.
func compilationDirectory(_ cu: Dwarf_Die) -> String? {
    var c = cu
    var attr = Dwarf_Attribute()
    guard dwarf_attr_integrate(&c, UInt32(DW_AT_comp_dir), &attr) != nil, let s = dwarf_formstring(&attr) else { return nil }
    return String(cString: s)
}

/// A relative source path joined to the compilation directory, as llvm-symbolizer and gdb show it.
func absolutePath(_ p: String, compDir: String?) -> String {
    guard !p.hasPrefix("/"), let d = compDir, !d.isEmpty else { return p }
    return d.hasSuffix("/") ? d + p : d + "/" + p
}

/// libdw joins a directory "/" and a file as "//file"; show "/file" as other tools do.
func cleanPath(_ p: String) -> String { p.hasPrefix("//") ? String(p.dropFirst()) : p }

/// The sections of an ELF file with their headers.
func elfSections(_ e: OpaquePointer) -> [(scn: OpaquePointer, header: GElf_Shdr)] {
    var out: [(OpaquePointer, GElf_Shdr)] = []
    var scn: OpaquePointer? = nil
    while true {
        scn = elf_nextscn(e, scn)
        guard let s = scn else { return out }
        var sh = GElf_Shdr()
        if gelf_getshdr(s, &sh) != nil { out.append((s, sh)) }
    }
}

/// The program headers of an ELF file.
func elfProgramHeaders(_ e: OpaquePointer) -> [GElf_Phdr] {
    var n = 0
    guard elf_getphdrnum(e, &n) == 0 else { return [] }
    return (0..<n).compactMap { i in
        var ph = GElf_Phdr()
        return gelf_getphdr(e, Int32(i), &ph) != nil ? ph : nil
    }
}

/// Advance `d` to its next sibling; false when there is none.
@inline(__always) func nextSibling(_ d: inout Dwarf_Die) -> Bool {
    var cur = d
    return dwarf_siblingof(&cur, &d) == 0
}
