import CLibdw
import HeapModel

extension SymbolSession {
    /// The layouts of the structs named `names` (by tag: `malloc_state`, `_heap_info`, ...) as the
    /// DWARF of the module at `address` (or of the first module, for a session on one file)
    /// declares them: the first complete definition of each, over its compile units' top-level
    /// DIEs, stopping when all are found. Empty without DWARF.
    public func structLayouts(named names: Set<String>, inModuleAt address: UInt64? = nil) -> [String: StructLayout] {
        let m = address.map { dwfl_addrmodule(dwfl, Dwarf_Addr($0)) } ?? modules().first
        guard let module = m else { return [:] }
        var bias: Dwarf_Addr = 0
        guard dwfl_module_getdwarf(module, &bias) != nil else { return [:] }
        var out: [String: StructLayout] = [:]
        var cu: UnsafeMutablePointer<Dwarf_Die>? = nil
        var units = 0
        while out.count < names.count, units < 1_000_000 {
            cu = dwfl_module_nextcu(module, cu, &bias)
            guard let c = cu else { break }
            units += 1
            var root = c.pointee
            var d = Dwarf_Die()
            guard dwarf_child(&root, &d) == 0 else { continue }
            repeat {
                guard dwarf_tag(&d) == Int32(DW_TAG_structure_type), dwarf_haschildren(&d) != 0,
                      let cname = dwarf_diename(&d) else { continue }
                let name = String(cString: cname)
                guard names.contains(name), out[name] == nil else { continue }
                var attr = Dwarf_Attribute()
                guard dwarf_attr(&d, UInt32(DW_AT_declaration), &attr) == nil else { continue }
                if let l = SymbolSession.layout(of: &d) { out[name] = l }
            } while nextSibling(&d)
        }
        return out
    }

    /// A struct definition's size and members (offset, element size, element count).
    static func layout(of d: inout Dwarf_Die) -> StructLayout? {
        let size = dwarf_bytesize(&d)
        guard size > 0 else { return nil }
        var members: [String: StructLayout.Member] = [:]
        var child = Dwarf_Die()
        guard dwarf_child(&d, &child) == 0 else { return nil }
        repeat {
            guard dwarf_tag(&child) == Int32(DW_TAG_member), let cname = dwarf_diename(&child) else { continue }
            var a = Dwarf_Attribute()
            var offset: Dwarf_Word = 0
            guard dwarf_attr(&child, UInt32(DW_AT_data_member_location), &a) != nil, dwarf_formudata(&a, &offset) == 0 else { continue }
            var t = Dwarf_Die()
            guard dwarf_attr_integrate(&child, UInt32(DW_AT_type), &a) != nil, dwarf_formref_die(&a, &t) != nil else { continue }
            var total: Dwarf_Word = 0
            guard dwarf_aggregate_size(&t, &total) == 0 else { continue }
            // Through typedefs and qualifiers to an array: its element's size.
            var element = total
            var u = t
            for _ in 0..<16 {
                let tag = dwarf_tag(&u)
                if tag == Int32(DW_TAG_array_type) {
                    var e = Dwarf_Die(), ea = Dwarf_Attribute(), es: Dwarf_Word = 0
                    if dwarf_attr_integrate(&u, UInt32(DW_AT_type), &ea) != nil, dwarf_formref_die(&ea, &e) != nil,
                       dwarf_aggregate_size(&e, &es) == 0, es > 0 { element = es }
                    break
                }
                guard tag == Int32(DW_TAG_typedef) || tag == Int32(DW_TAG_const_type) || tag == Int32(DW_TAG_volatile_type),
                      dwarf_attr_integrate(&u, UInt32(DW_AT_type), &a) != nil, dwarf_formref_die(&a, &u) != nil else { break }
            }
            members[String(cString: cname)] = .init(offset: offset, elementSize: element, count: element > 0 ? total / element : 0)
        } while nextSibling(&child)
        return StructLayout(size: UInt64(size), members: members)
    }
}
