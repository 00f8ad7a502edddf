import CLibdw
import Glibc
import HeapModel
import ProcessAccess

/// What the debug info of a process declares: the types of its variables (read lazily: only
/// the types variables reach), and where those variables are — globals and statics, the main
/// executable's TLS variables in every thread, and the locals and parameters live in every frame
/// of every thread at the frame's pc.
public struct DeclaredTypes: Sendable {
    public var table: TypeTable
    public var roots: [TypedRoot]
    /// C++ classes asked for by name (the `vtable for X` of chunks), with their DWARF layout.
    public var classes: [String: Int32]
    /// Modules with DWARF that were read.
    public var modules: [String]
    /// Type DIEs of a shape the reader does not know, read as unknown types of their size; and
    /// variables with a fixed location whose type could not be read (left out).
    public var unknownTypes = 0, untypedVariables = 0
    public init(table: TypeTable = TypeTable(), roots: [TypedRoot] = [], classes: [String: Int32] = [:], modules: [String] = []) {
        self.table = table; self.roots = roots; self.classes = classes; self.modules = modules
    }
}

/// One thread as the type reader needs it: thread pointer, frames (innermost first).
public struct ThreadFrames: Sendable {
    public var tid: Int32
    public var threadPointer: UInt64
    public var frames: [StackFrame]
    public init(tid: Int32, threadPointer: UInt64, frames: [StackFrame]) {
        self.tid = tid; self.threadPointer = threadPointer; self.frames = frames
    }
}

extension SymbolSession {
    /// Read the declared roots and their types. `read` gives words of the copied memory (the
    /// process is not touched); `classNames` are C++ classes whose layout is wanted; with
    /// `roots: false` only those are read.
    public func declaredTypes(threads: [ThreadFrames], classNames: Set<String>, roots: Bool = true,
                              read: @escaping (UInt64) -> UInt64?) -> DeclaredTypes {
        SymbolSession.lock.locked {
            let r = TypeReader(read: read)
            let modules = self.modules()
            let exe = executable ?? file
            let tt = PhaseTrace()
            let tlsIDs = roots ? tlsModuleIDs(modules: modules, exe: exe, threads: threads, read: read) : [:]
            tt.mark("declared: tls ids")
            var names: [String] = []
            for m in modules {
                var bias: Dwarf_Addr = 0
                guard dwfl_module_getdwarf(m, &bias) != nil else { continue }
                let name = moduleName(m) ?? "?"
                tt.mark("declared: dwarf of \(name)")
                names.append(name)
                guard roots else { continue }
                r.readGlobals(module: m, bias: bias, tls: tlsIDs[m].map { tlsBlocks(id: $0, threads: threads, read: read) } ?? [])
                tt.mark("declared: globals of \(name)")
            }
            if roots { for t in threads { r.readLocals(dwfl: dwfl, thread: t) } }
            tt.mark("declared: locals")
            var classes: [String: Int32] = [:]
            if !classNames.isEmpty {
                for m in modules { r.indexDefinitions(module: m) }
                for n in classNames { if let t = r.definition(named: n) { classes[n] = t } }
            }
            r.resolveDeclarations(modules: modules)
            tt.mark("declared: resolve declarations")
            var out = DeclaredTypes(table: r.table, roots: r.roots, classes: classes, modules: names)
            out.unknownTypes = r.unknownTypes
            out.untypedVariables = r.untypedVariables
            return out
        }
    }

    /// Module ids of the modules with a TLS segment, as the dynamic linker assigns them: in load
    /// order (the executable first, then its DT_NEEDED libraries breadth-first), counting only
    /// modules that have PT_TLS. Checked against every thread's dtv: each module's block must
    /// lie below the thread pointer, in module-id order, at least its TLS size apart; if that
    /// fails only the executable (always id 1) is kept. dlopen'ed modules get no id here.
    private func tlsModuleIDs(modules: [OpaquePointer], exe: String?, threads: [ThreadFrames],
                              read: (UInt64) -> UInt64?) -> [OpaquePointer: (id: UInt64, memsz: UInt64, align: UInt64)] {
        struct Info { var soname: String?; var needed: [String]; var tls: (UInt64, UInt64)? }
        var info: [OpaquePointer: Info] = [:]
        var byName: [String: OpaquePointer] = [:]
        var main: OpaquePointer? = nil
        for m in modules {
            var b: GElf_Addr = 0
            guard let e = dwfl_module_getelf(m, &b) else { continue }
            var i = Info(soname: nil, needed: [], tls: nil)
            for ph in elfProgramHeaders(e) where ph.p_type == UInt32(PT_TLS) { i.tls = (ph.p_memsz, max(ph.p_align, 1)) }
            for (sc, sh) in elfSections(e) {
                guard sh.sh_type == UInt32(SHT_DYNAMIC), let data = elf_getdata(sc, nil) else { continue }
                for k in 0..<Int(sh.sh_size / max(sh.sh_entsize, 1)) {
                    var d = GElf_Dyn()
                    guard gelf_getdyn(data, Int32(k), &d) != nil else { continue }
                    guard d.d_tag == Int64(DT_NEEDED) || d.d_tag == Int64(DT_SONAME),
                          let s = elf_strptr(e, Int(sh.sh_link), Int(d.d_un.d_val)) else { continue }
                    if d.d_tag == Int64(DT_NEEDED) { i.needed.append(String(cString: s)) } else { i.soname = String(cString: s) }
                }
            }
            info[m] = i
            let name = moduleName(m) ?? ""
            if let so = i.soname { byName[so] = m }
            if let base = name.split(separator: "/").last, byName[String(base)] == nil { byName[String(base)] = m }
            if exe != nil && (name == exe || name == exe! + " (deleted)") { main = m }
        }
        guard let main else { return [:] }
        var order: [OpaquePointer] = [main], seen: Set<OpaquePointer> = [main], k = 0
        while k < order.count {
            for n in info[order[k]]?.needed ?? [] {
                if let m = byName[n], seen.insert(m).inserted { order.append(m) }
            }
            k += 1
        }
        var ids: [OpaquePointer: (id: UInt64, memsz: UInt64, align: UInt64)] = [:]
        var next: UInt64 = 1
        for m in order { if let t = info[m]?.tls { ids[m] = (next, t.0, t.1); next += 1 } }
        // Check the numbering against the threads' dtvs.
        let sorted = ids.sorted { $0.value.id < $1.value.id }
        for t in threads {
            guard let dtv = read(t.threadPointer + 8), dtv != 0 else { continue }
            var previous = t.threadPointer
            for (_, v) in sorted {
                guard let block = read(dtv + 16 * v.id), block < previous, previous - block >= v.memsz,
                      t.threadPointer - block <= 1 << 24 else {
                    return ids.filter { $0.key == main }
                }
                previous = block
            }
        }
        return ids
    }

    /// Each thread's TLS block of a module: dtv[id] (x86_64 TLS variant II: the thread pointer's
    /// second word points to the dtv; entries are 16 bytes); for the executable, failing that, the
    /// thread pointer less its aligned block size.
    private func tlsBlocks(id: (id: UInt64, memsz: UInt64, align: UInt64), threads: [ThreadFrames],
                           read: (UInt64) -> UInt64?) -> [(tid: Int32, block: UInt64)] {
        threads.compactMap { t in
            let fallback: (Int32, UInt64)? = id.id == 1 ? (t.tid, t.threadPointer &- ((id.memsz + id.align - 1) / id.align * id.align)) : nil
            guard let dtv = read(t.threadPointer + 8), dtv != 0, let block = read(dtv + 16 * id.id), block != 0, block != UInt64.max,
                  block < t.threadPointer, t.threadPointer - block <= 1 << 24 else { return fallback }
            return (t.tid, block)
        }
    }
}

private struct DieKey: Hashable {
    var dwarf: OpaquePointer
    var offset: UInt64
}

/// Reads DWARF types into a `TypeTable`, each DIE once.
final class TypeReader {
    var table = TypeTable()
    var roots: [TypedRoot] = []
    private var memo: [DieKey: Int32] = [:]
    /// Qualified names of the namespace-scope DIEs of C++ compile units (walked on first need).
    private var qualified: [DieKey: String] = [:]
    private var walkedCUs: Set<DieKey> = []
    /// Complete struct/class/union definitions by name, over the modules indexed.
    private var definitions: [String: Dwarf_Die] = [:]
    private var indexedModules: Set<OpaquePointer> = []
    /// Incomplete types (declarations) to point at their definitions at the end.
    private var declarations: [Int32] = []
    private let read: (UInt64) -> UInt64?
    /// Type DIEs of a shape the reader does not know (read as unknown types of their size), and
    /// variables with a fixed location whose type could not be read.
    var unknownTypes = 0, untypedVariables = 0

    init(read: @escaping (UInt64) -> UInt64?) { self.read = read }

    // MARK: variables

    /// Globals and statics (at namespace scope, in functions and blocks) with a fixed address;
    /// the executable's TLS variables at `tls` blocks.
    func readGlobals(module m: OpaquePointer, bias: Dwarf_Addr, tls: [(tid: Int32, block: UInt64)]) {
        eachCompileUnit(m) { cu, cpp in
            walkTree(under: &cu) { d, tag, scope in
                switch tag {
                case Int32(DW_TAG_namespace):
                    return cpp ? scope + (dieName(&d) ?? "(anonymous namespace)") + "::" : scope
                case Int32(DW_TAG_subprogram), Int32(DW_TAG_lexical_block):
                    return scope
                case Int32(DW_TAG_variable):
                    var attr = Dwarf_Attribute()
                    var expr: UnsafeMutablePointer<Dwarf_Op>? = nil
                    var len = 0
                    guard dwarf_attr(&d, UInt32(DW_AT_location), &attr) != nil, dwarf_getlocation(&attr, &expr, &len) == 0,
                          let e = expr, len >= 1 else { return nil }
                    let ops = Array(UnsafeBufferPointer(start: e, count: len))
                    let type = referenced(&d)
                    guard type >= 0 else { untypedVariables += 1; return nil }
                    let name = scope + (dieName(&d) ?? "?") + declSuffix(&d)
                    if len == 1, ops[0].atom == UInt8(DW_OP_addr) {
                        roots.append(TypedRoot(location: .memory(ops[0].number &+ bias), type: type, kind: .global, name: name))
                    } else if len == 2, ops[1].atom == UInt8(DW_OP_form_tls_address) || ops[1].atom == UInt8(DW_OP_GNU_push_tls_address) {
                        for t in tls {
                            roots.append(TypedRoot(location: .memory(t.block &+ ops[0].number), type: type, kind: .tls, name: "\(name) (thread \(t.tid))"))
                        }
                    }
                    return nil
                default:
                    return nil
                }
            }
        }
    }

    /// Every compile unit of a module, and whether it is C++.
    private func eachCompileUnit(_ m: OpaquePointer, _ body: (inout Dwarf_Die, Bool) -> Void) {
        var b: Dwarf_Addr = 0
        var cu: UnsafeMutablePointer<Dwarf_Die>? = nil
        while true {
            cu = dwfl_module_nextcu(m, cu, &b)
            guard let c = cu else { return }
            var die = c.pointee
            body(&die, isCPlusPlus(&die))
        }
    }

    /// Depth first over the DIEs under `root`: `visit` gets each DIE, its tag and the scope
    /// prefix of its parent, and returns the prefix for its children, or nil to leave them out.
    private func walkTree(under root: inout Dwarf_Die, _ visit: (inout Dwarf_Die, Int32, String) -> String?) {
        var child = Dwarf_Die()
        guard dwarf_child(&root, &child) == 0 else { return }
        var pending: [(Dwarf_Die, String)] = []
        repeat { pending.append((child, "")) } while nextSibling(&child)
        while let next = pending.popLast() {
            var d = next.0
            let prefix = next.1
            guard let inner = visit(&d, dwarf_tag(&d), prefix), dwarf_haschildren(&d) != 0, dwarf_child(&d, &child) == 0 else { continue }
            repeat { pending.append((child, inner)) } while nextSibling(&child)
        }
    }

    /// Locals and parameters of each frame, where their location lists say they are at the pc.
    func readLocals(dwfl: OpaquePointer, thread t: ThreadFrames) {
        for (i, f) in t.frames.enumerated() {
            let pc = f.isActivation ? f.pc : f.pc &- 1
            guard let mod = dwfl_addrmodule(dwfl, Dwarf_Addr(pc)) else { continue }
            var bias: Dwarf_Addr = 0
            guard let cuDie = dwfl_module_addrdie(mod, Dwarf_Addr(pc), &bias) else { continue }
            var scopes: UnsafeMutablePointer<Dwarf_Die>? = nil
            let n = dwarf_getscopes(cuDie, Dwarf_Addr(pc) &- bias, &scopes)
            guard n > 0, let scopes else { continue }
            defer { free(scopes) }
            // The out-of-line function: its frame base; its name for the roots.
            var function = -1
            for k in 0..<Int(n) {
                var s = scopes[k]
                if dwarf_tag(&s) == Int32(DW_TAG_subprogram) { function = k; break }
            }
            guard function >= 0 else { continue }
            let cfa = i + 1 < t.frames.count ? t.frames[i + 1].sp : nil
            var ctx = ExprContext(bias: bias, pc: Dwarf_Addr(pc) &- bias, cfa: cfa, registers: f.registers, read: read)
            var fn = scopes[function]
            var fbAttr = Dwarf_Attribute()
            if dwarf_attr(&fn, UInt32(DW_AT_frame_base), &fbAttr) != nil, let ops = location(&fbAttr, pc: ctx.pc),
               case .memory(let base)? = evaluate(ops, &ctx) { ctx.frameBase = base }
            var innermost = scopes[0]
            let fname = dieName(&innermost, integrate: true).map { dwarf_tag(&innermost) == Int32(DW_TAG_subprogram) || dwarf_tag(&innermost) == Int32(DW_TAG_inlined_subroutine) ? $0 : nil } ?? nil
            let functionName = fname ?? dieName(&fn, integrate: true) ?? "?"
            for k in 0...function {
                var scope = scopes[k]
                let scopeFunction = dieName(&scope, integrate: true).flatMap { dwarf_tag(&scope) == Int32(DW_TAG_lexical_block) ? nil : $0 }
                var child = Dwarf_Die()
                guard dwarf_child(&scope, &child) == 0 else { continue }
                repeat {
                    let tag = dwarf_tag(&child)
                    guard tag == Int32(DW_TAG_variable) || tag == Int32(DW_TAG_formal_parameter) else { continue }
                    var attr = Dwarf_Attribute()
                    guard dwarf_attr(&child, UInt32(DW_AT_location), &attr) != nil, let ops = location(&attr, pc: ctx.pc),
                          !(ops.count == 1 && ops[0].atom == UInt8(DW_OP_addr)),   // statics: read as globals
                          let where_ = evaluate(ops, &ctx) else { continue }
                    let type = referenced(&child)
                    guard type >= 0 else { continue }
                    let name = "\(dieName(&child, integrate: true) ?? "?") in \(scopeFunction ?? functionName) (thread \(t.tid))"
                    roots.append(TypedRoot(location: where_, type: type, kind: .local, name: name))
                } while nextSibling(&child)
            }
        }
    }

    private func location(_ attr: inout Dwarf_Attribute, pc: Dwarf_Addr) -> [Dwarf_Op]? {
        var expr: UnsafeMutablePointer<Dwarf_Op>? = nil
        var len = 0
        guard dwarf_getlocation_addr(&attr, pc, &expr, &len, 1) == 1, let e = expr, len > 0 else { return nil }
        return Array(UnsafeBufferPointer(start: e, count: len))
    }

    struct ExprContext {
        var bias: Dwarf_Addr
        var pc: Dwarf_Addr
        var cfa: UInt64?
        var registers: [UInt64?]
        var read: (UInt64) -> UInt64?
        var frameBase: UInt64? = nil
    }

    /// A DWARF location expression, as far as a variable's place goes: addresses, registers,
    /// frame base, CFA, arithmetic, dereference, stack values. Pieces and entry values: nil.
    func evaluate(_ ops: [Dwarf_Op], _ c: inout ExprContext) -> TypedRoot.Location? {
        var stack: [UInt64] = []
        func reg(_ n: Int) -> UInt64? { n < c.registers.count ? c.registers[n] : nil }
        for (k, op) in ops.enumerated() {
            let a = Int32(op.atom)
            switch a {
            case Int32(DW_OP_addr): stack.append(op.number &+ c.bias)
            case Int32(DW_OP_lit0)...Int32(DW_OP_lit31): stack.append(UInt64(a - Int32(DW_OP_lit0)))
            case Int32(DW_OP_const1u), Int32(DW_OP_const1s), Int32(DW_OP_const2u), Int32(DW_OP_const2s), Int32(DW_OP_const4u),
                 Int32(DW_OP_const4s), Int32(DW_OP_const8u), Int32(DW_OP_const8s), Int32(DW_OP_constu), Int32(DW_OP_consts):
                stack.append(op.number)
            case Int32(DW_OP_fbreg):
                guard let fb = c.frameBase else { return nil }
                stack.append(fb &+ op.number)
            case Int32(DW_OP_breg0)...Int32(DW_OP_breg31):
                guard let r = reg(Int(a - Int32(DW_OP_breg0))) else { return nil }
                stack.append(r &+ op.number)
            case Int32(DW_OP_bregx):
                guard let r = reg(Int(op.number)) else { return nil }
                stack.append(r &+ op.number2)
            case Int32(DW_OP_reg0)...Int32(DW_OP_reg31), Int32(DW_OP_regx):
                // The value lives in a register; only a whole-register variable is usable.
                guard k == ops.count - 1 else { return nil }
                let n = a == Int32(DW_OP_regx) ? Int(op.number) : Int(a - Int32(DW_OP_reg0))
                return reg(n).map { .value($0) }
            case Int32(DW_OP_call_frame_cfa):
                guard let cfa = c.cfa else { return nil }
                stack.append(cfa)
            case Int32(DW_OP_plus_uconst):
                guard let t = stack.popLast() else { return nil }
                stack.append(t &+ op.number)
            case Int32(DW_OP_plus), Int32(DW_OP_minus):
                guard stack.count >= 2 else { return nil }
                let y = stack.removeLast(), x = stack.removeLast()
                stack.append(a == Int32(DW_OP_plus) ? x &+ y : x &- y)
            case Int32(DW_OP_deref):
                guard let t = stack.popLast(), let w = c.read(t) else { return nil }
                stack.append(w)
            case Int32(DW_OP_stack_value):
                guard let t = stack.last else { return nil }
                return .value(t)
            default:
                return nil
            }
        }
        return stack.last.map { .memory($0) }
    }

    // MARK: types

    /// The type a DIE's DW_AT_type names (through abstract origins), -1 for none (void).
    private func referenced(_ d: inout Dwarf_Die) -> Int32 {
        var attr = Dwarf_Attribute(), t = Dwarf_Die()
        guard dwarf_attr_integrate(&d, UInt32(DW_AT_type), &attr) != nil, dwarf_formref_die(&attr, &t) != nil else { return -1 }
        return type(of: &t)
    }

    private func key(_ d: inout Dwarf_Die) -> DieKey? {
        guard let cu = d.cu, let dw = dwarf_cu_getdwarf(cu) else { return nil }
        return DieKey(dwarf: dw, offset: dwarf_dieoffset(&d))
    }

    /// The table index of a type DIE (read once).
    func type(of d: inout Dwarf_Die) -> Int32 {
        guard let k = key(&d) else { return -1 }
        if let t = memo[k] { return t }
        let tag = dwarf_tag(&d)
        switch tag {
        case Int32(DW_TAG_base_type), Int32(DW_TAG_unspecified_type):
            var attr = Dwarf_Attribute()
            var enc: Dwarf_Word = 0
            if dwarf_attr(&d, UInt32(DW_AT_encoding), &attr) != nil { _ = dwarf_formudata(&attr, &enc) }
            let t = table.add(.init(kind: .base, name: dieName(&d) ?? "?", size: UInt64(max(dwarf_bytesize(&d), 0)), encoding: UInt8(truncatingIfNeeded: enc)))
            memo[k] = t
            return t
        case Int32(DW_TAG_pointer_type), Int32(DW_TAG_reference_type), Int32(DW_TAG_rvalue_reference_type):
            let t = table.add(.init(kind: .pointer, name: "*", size: 8))
            memo[k] = t
            let target = referenced(&d)
            let sigil = tag == Int32(DW_TAG_pointer_type) ? "*" : tag == Int32(DW_TAG_reference_type) ? "&" : "&&"
            table.update(t) { $0.target = target; $0.name = pointerName(target) + sigil }
            return t
        case Int32(DW_TAG_ptr_to_member_type):
            let t = table.add(.init(kind: .base, name: "(pointer to member)", size: UInt64(max(dwarf_bytesize(&d), 8))))
            memo[k] = t
            return t
        case Int32(DW_TAG_structure_type), Int32(DW_TAG_class_type), Int32(DW_TAG_union_type):
            let isUnion = tag == Int32(DW_TAG_union_type)
            let name = typeName(&d, keyword: isUnion ? "union" : "struct")
            var attr = Dwarf_Attribute()
            let declaration = dwarf_attr(&d, UInt32(DW_AT_declaration), &attr) != nil
            let t = table.add(.init(kind: isUnion ? .union : .structure, name: name, size: UInt64(max(dwarf_bytesize(&d), 0))))
            memo[k] = t
            if declaration { declarations.append(t); return t }
            var members: [TypeTable.Member] = []
            var nodes: [Int32] = []
            var child = Dwarf_Die()
            if dwarf_child(&d, &child) == 0 {
                repeat {
                    let ct = dwarf_tag(&child)
                    if ct == Int32(DW_TAG_typedef), var node = nodeType(&child) { nodes.append(type(of: &node)); continue }
                    guard ct == Int32(DW_TAG_member) || ct == Int32(DW_TAG_inheritance) else { continue }
                    var a = Dwarf_Attribute()
                    if ct == Int32(DW_TAG_member), dwarf_attr(&child, UInt32(DW_AT_external), &a) != nil || dwarf_attr(&child, UInt32(DW_AT_declaration), &a) != nil { continue }   // static member
                    var offset: Dwarf_Word = 0, bits: Dwarf_Word = 0
                    if dwarf_attr(&child, UInt32(DW_AT_data_member_location), &a) != nil {
                        if dwarf_formudata(&a, &offset) != 0 {
                            var expr: UnsafeMutablePointer<Dwarf_Op>? = nil
                            var len = 0
                            guard dwarf_getlocation(&a, &expr, &len) == 0, len == 1, let e = expr, e.pointee.atom == UInt8(DW_OP_plus_uconst) else { continue }   // virtual base
                            offset = e.pointee.number
                        }
                    } else if dwarf_attr(&child, UInt32(DW_AT_data_bit_offset), &a) != nil, dwarf_formudata(&a, &bits) == 0 {
                        offset = bits / 8
                    }
                    var bitSize: Dwarf_Word = 0
                    if dwarf_attr(&child, UInt32(DW_AT_bit_size), &a) != nil { _ = dwarf_formudata(&a, &bitSize) }
                    let mt = referenced(&child)
                    let isBase = ct == Int32(DW_TAG_inheritance)
                    members.append(.init(name: isBase ? table.name(mt) : (dieName(&child) ?? ""), offset: offset, type: mt,
                                         isBase: isBase, bitSize: UInt8(truncatingIfNeeded: bitSize)))
                } while nextSibling(&child)
            }
            table.update(t) { $0.members = members; $0.nodes = nodes }
            return t
        case Int32(DW_TAG_array_type):
            let t = table.add(.init(kind: .array, name: "[]", size: 0))
            memo[k] = t
            let element = referenced(&d)
            var dims: [UInt64] = []
            var child = Dwarf_Die()
            if dwarf_child(&d, &child) == 0 {
                repeat {
                    guard dwarf_tag(&child) == Int32(DW_TAG_subrange_type) else { continue }
                    var a = Dwarf_Attribute()
                    var v: Dwarf_Word = 0
                    if dwarf_attr(&child, UInt32(DW_AT_count), &a) != nil, dwarf_formudata(&a, &v) == 0 { dims.append(v) }
                    else if dwarf_attr(&child, UInt32(DW_AT_upper_bound), &a) != nil, dwarf_formudata(&a, &v) == 0 { dims.append(v &+ 1) }
                    else { dims.append(0) }
                } while nextSibling(&child)
            }
            if dims.isEmpty { dims = [0] }
            // int a[2][3]: an array of 2 (arrays of 3 ints).
            var inner = element
            for n in dims.dropFirst().reversed() {
                inner = table.add(.init(kind: .array, name: arrayName(inner, n), size: saturatingProduct(table.size(inner), n), target: inner, count: n))
            }
            table.update(t) { $0.target = inner; $0.count = dims[0]; $0.size = saturatingProduct(table.size(inner), dims[0]); $0.name = arrayName(inner, dims[0]) }
            return t
        case Int32(DW_TAG_typedef):
            let t = table.add(.init(kind: .typedef, name: typeName(&d, keyword: nil), size: 0))
            memo[k] = t
            let target = referenced(&d)
            table.update(t) { $0.target = target; $0.size = table.size(target) }
            return t
        case Int32(DW_TAG_const_type), Int32(DW_TAG_volatile_type), Int32(DW_TAG_restrict_type), Int32(DW_TAG_atomic_type):
            let t = table.add(.init(kind: .qualified, name: "", size: 0))
            memo[k] = t
            let target = referenced(&d)
            let q = tag == Int32(DW_TAG_const_type) ? "const " : tag == Int32(DW_TAG_volatile_type) ? "volatile " : ""
            table.update(t) { $0.target = target; $0.size = table.size(target); $0.name = q + table.name(target) }
            return t
        case Int32(DW_TAG_enumeration_type):
            let t = table.add(.init(kind: .enumeration, name: typeName(&d, keyword: "enum"), size: UInt64(max(dwarf_bytesize(&d), 0))))
            memo[k] = t
            return t
        case Int32(DW_TAG_subroutine_type):
            let t = table.add(.init(kind: .function, name: "(function)", size: 0))
            memo[k] = t
            return t
        default:
            // A DIE shape not expected here: an unknown type of its size, counted.
            unknownTypes += 1
            let t = table.add(.init(kind: .base, name: "?", size: UInt64(max(dwarf_bytesize(&d), 0))))
            memo[k] = t
            return t
        }
    }

    /// A typedef member naming a node type: `D` or `D*` where the class D has a base class.
    private func nodeType(_ td: inout Dwarf_Die) -> Dwarf_Die? {
        var attr = Dwarf_Attribute(), t = Dwarf_Die()
        guard dwarf_attr(&td, UInt32(DW_AT_type), &attr) != nil, dwarf_formref_die(&attr, &t) != nil else { return nil }
        if dwarf_tag(&t) == Int32(DW_TAG_pointer_type) {
            var u = Dwarf_Die()
            guard dwarf_attr(&t, UInt32(DW_AT_type), &attr) != nil, dwarf_formref_die(&attr, &u) != nil else { return nil }
            t = u
        }
        let tag = dwarf_tag(&t)
        guard tag == Int32(DW_TAG_structure_type) || tag == Int32(DW_TAG_class_type) else { return nil }
        var child = Dwarf_Die()
        guard dwarf_child(&t, &child) == 0 else { return nil }
        repeat { if dwarf_tag(&child) == Int32(DW_TAG_inheritance) { return t } } while nextSibling(&child)
        return nil
    }

    private func pointerName(_ target: Int32) -> String { target < 0 ? "void" : table.name(target) }
    private func arrayName(_ element: Int32, _ n: UInt64) -> String {
        let e = table.name(element)
        let dim = n > 0 ? "[\(n)]" : "[]"
        let se = table.strip(element)
        if let b = e.firstIndex(of: "["), se >= 0, table[se].kind == .array { return e[..<b] + dim + e[b...] }
        return e + dim
    }

    /// C: "struct node"; C++: the qualified name "shapes::Circle"; anonymous: "(anonymous struct)".
    private func typeName(_ d: inout Dwarf_Die, keyword: String?) -> String {
        var cu = Dwarf_Die()
        let cpp = dwarf_diecu(&d, &cu, nil, nil) != nil && isCPlusPlus(&cu)
        guard let n = dieName(&d) else { return "(anonymous \(keyword ?? "type"))" }
        if !cpp { return keyword.map { "\($0) \(n)" } ?? n }
        if let k = key(&d) {
            walkScopes(cu: &cu)
            if let q = qualified[k] { return q }
        }
        return n
    }

    /// Record qualified names of every namespace-scope DIE of a C++ compile unit (once).
    private func walkScopes(cu: inout Dwarf_Die) {
        guard let ck = key(&cu), walkedCUs.insert(ck).inserted else { return }
        walkTree(under: &cu) { d, tag, prefix in
            guard let n = dieName(&d) ?? (tag == Int32(DW_TAG_namespace) ? "(anonymous namespace)" : nil) else { return nil }
            if let k = key(&d) { qualified[k] = prefix + n }
            let scope = tag == Int32(DW_TAG_namespace) || tag == Int32(DW_TAG_structure_type) || tag == Int32(DW_TAG_class_type)
                || tag == Int32(DW_TAG_union_type)
            return scope ? prefix + n + "::" : nil
        }
    }

    // MARK: definitions by name

    /// Index the complete struct/class/union definitions at namespace scope of a module.
    func indexDefinitions(module m: OpaquePointer) {
        guard indexedModules.insert(m).inserted else { return }
        eachCompileUnit(m) { cu, cpp in
            walkTree(under: &cu) { d, tag, prefix in
                let isRecord = tag == Int32(DW_TAG_structure_type) || tag == Int32(DW_TAG_class_type) || tag == Int32(DW_TAG_union_type)
                guard isRecord || (cpp && tag == Int32(DW_TAG_namespace)), let n = dieName(&d) else { return nil }
                var a = Dwarf_Attribute()
                if isRecord, dwarf_attr(&d, UInt32(DW_AT_declaration), &a) == nil {
                    let full = cpp ? prefix + n : (tag == Int32(DW_TAG_union_type) ? "union " : "struct ") + n
                    if definitions[full] == nil { definitions[full] = d }
                }
                return cpp ? prefix + n + "::" : nil
            }
        }
    }

    func definition(named n: String) -> Int32? {
        guard var d = definitions[n] else { return nil }
        return type(of: &d)
    }

    /// Point declarations (`struct foo;`) at their definitions, wherever they are.
    func resolveDeclarations(modules: [OpaquePointer]) {
        guard !declarations.isEmpty else { return }
        for m in modules { indexDefinitions(module: m) }
        var k = 0
        while k < declarations.count {   // definitions read here may add declarations
            let t = declarations[k]
            k += 1
            guard let def = definition(named: table[t].name), def != t, table.size(def) > 0 else { continue }
            table.update(t) { $0.kind = .typedef; $0.target = def; $0.size = table.size(def) }
        }
    }

    // MARK: helpers

    private func isCPlusPlus(_ cu: inout Dwarf_Die) -> Bool {
        switch dwarf_srclang(&cu) {
        case Int32(DW_LANG_C_plus_plus), Int32(DW_LANG_C_plus_plus_03), Int32(DW_LANG_C_plus_plus_11), Int32(DW_LANG_C_plus_plus_14): return true
        default: return false
        }
    }

    private func dieName(_ d: inout Dwarf_Die, integrate: Bool = false) -> String? {
        if !integrate { return dwarf_diename(&d).map { String(cString: $0) } }
        var attr = Dwarf_Attribute()
        guard dwarf_attr_integrate(&d, UInt32(DW_AT_name), &attr) != nil, let s = dwarf_formstring(&attr) else { return nil }
        return String(cString: s)
    }

    /// " (file.c:12)" from DW_AT_decl_file and DW_AT_decl_line.
    private func declSuffix(_ d: inout Dwarf_Die) -> String {
        var line: Int32 = 0
        guard let f = dwarf_decl_file(&d), dwarf_decl_line(&d, &line) == 0 else { return "" }
        let path = String(cString: f)
        return " (\(path.split(separator: "/").last.map(String.init) ?? path):\(line))"
    }
}

/// a * b, or UInt64.max when that overflows (array sizes from hostile or odd DWARF).
func saturatingProduct(_ a: UInt64, _ b: UInt64) -> UInt64 {
    let (p, o) = a.multipliedReportingOverflow(by: b)
    return o ? .max : p
}
