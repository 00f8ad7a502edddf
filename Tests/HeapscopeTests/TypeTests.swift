import Foundation
import Glibc
import Inspect
import Testing

/// The manifest's "type ADDR CONFIDENCE NAME" notes (NAME "-" = unknown) and "owner ADDR ROOT" notes.
struct TypeNotes {
    var type: [UInt64: (confidence: String, name: String)] = [:]
    var owner: [UInt64: String] = [:]
    init(_ text: String) {
        for line in text.split(separator: "\n") {
            if line.hasPrefix("type ") {
                let f = line.split(separator: " ", maxSplits: 3)
                type[UInt64(f[1], radix: 16)!] = (String(f[2]), f[3] == "-" ? "(unknown)" : String(f[3]))
            } else if line.hasPrefix("owner ") {
                let f = line.split(separator: " ", maxSplits: 2)
                owner[UInt64(f[1], radix: 16)!] = String(f[2])
            }
        }
    }
    /// Chunks per "NAME (CONFIDENCE)".
    var counts: [String: Int] {
        var c: [String: Int] = [:]
        for (_, v) in type { c["\(v.name) (\(v.confidence))", default: 0] += 1 }
        return c
    }
}

extension TypeInspection {
    /// Every noted chunk labelled as its note says (an issue per one that is not); the labels
    /// of the noted chunks counted as `TypeNotes.counts` counts them.
    func expectNoted(_ notes: TypeNotes) -> [String: Int] {
        var got: [String: Int] = [:]
        for k in 0..<blocks.count {
            guard let n = notes.type[blocks.start[k]] else { continue }   // libc's own
            got[noted(k), default: 0] += 1
            #expect(noted(k) == "\(n.name) (\(n.confidence))", "0x\(String(blocks.start[k], radix: 16))")
        }
        return got
    }

    /// "NAME (CONFIDENCE)" as the notes spell it.
    func noted(_ k: Int) -> String {
        guard let l = label(k) else { return "(unknown) (unknown)" }
        return "\(l)\(labels.ambiguous[k] ? " (via union)" : "") (\(confidence(k).name))"
    }
}

/// `types`, `show`, `chunks` and `leaks` labels on TestTargets/types.cpp (C++: vtables, strings,
/// a std::vector and a std::map of class pointers) and TestTargets/typed.c (declared types from
/// globals, TLS and locals of two threads' frames, through lists, a tree, a hash table, an array
/// of structs, a union, an anonymous struct's typedef, a majority vote).
@Suite("Types of chunks", .serialized, .timeLimit(.minutes(3)))
struct TypeTests {
    @Test("C++: vtable, declared (std::vector buffer, std::map nodes) and string types exactly; types --json agrees")
    func cplusplus() throws {
        let p = try TargetProcess("types")
        defer { p.release() }
        let notes = TypeNotes(p.manifestText)
        #expect(notes.type.count == 40)
        let r = try Inspector.types(pid: p.pid)
        #expect(Set(r.blocks.start) == Set(p.manifest.live.keys))
        var got: [String: Int] = [:], want: [String: Int] = [:]
        for k in 0..<r.blocks.count {
            let a = r.blocks.start[k]
            // Chunks the target did not make itself (libstdc++'s emergency pool) are unknown.
            let expected = notes.type[a].map { "\($0.name) (\($0.confidence))" } ?? "(unknown) (unknown)"
            #expect(r.noted(k) == expected, "0x\(String(a, radix: 16))")
            got[r.noted(k), default: 0] += 1
            want[expected, default: 0] += 1
        }
        #expect(got == want)
        let j = try jsonObject(run(Paths.heapscope, ["types", String(p.pid), "--json"]).out)
        let rows = try #require(j["types"] as? [[String: Any]])
        var fromJSON: [String: Int] = [:]
        for row in rows {
            let name = (row["type"] as! String).replacingOccurrences(of: "[]", with: "")
            fromJSON["\(name) (\(row["confidence"] as! String))", default: 0] += row["chunks"] as! Int
        }
        var wantJSON: [String: Int] = [:]
        for (k, v) in want {
            let name = k.replacingOccurrences(of: #"\[[0-9]*\]"#, with: "", options: .regularExpression)
            wantJSON[name, default: 0] += v
        }
        #expect(fromJSON == wantJSON)
        let map = try #require(rows.first { ($0["type"] as? String)?.hasPrefix("std::_Rb_tree_node<") == true })
        #expect(((map["owners"] as? [[String: Any]])?.first?["root"] as? String)?.hasPrefix("by_id (types.cpp:") == true, "\(map)")
    }

    @Test("C: declared types from globals, TLS (of the executable and of a library), locals and parameters of two threads; majority vote; union; owners")
    func declared() throws {
        let p = try TargetProcess("typed")
        defer { p.release() }
        let notes = TypeNotes(p.manifestText)
        #expect(Set(notes.type.keys) == Set(p.manifest.live.keys), "every chunk of the program is noted")
        let r = try Inspector.types(pid: p.pid)
        var got: [String: Int] = [:]
        for k in 0..<r.blocks.count {
            let a = r.blocks.start[k]
            guard let n = notes.type[a] else { continue }   // libc's own (a thread's DTV)
            got[r.noted(k), default: 0] += 1
            #expect(r.noted(k) == "\(n.name) (\(n.confidence))", "0x\(String(a, radix: 16)) owner \(r.owner(k) ?? "-")")
            if let o = notes.owner[a] { #expect(r.owner(k)?.hasPrefix(o) == true, "0x\(String(a, radix: 16)): \(r.owner(k) ?? "-") is not \(o)") }
        }
        #expect(got == notes.counts)
        #expect(notes.owner.count == 9)
        #expect(r.labels.conflicts == 2, "the shared tail (struct node 2 : struct tree 1) and the union (tree or node)")
        // What `leaks` keeps (no owners, no parents): the same labels; what a snapshot keeps: both.
        let bare = try #require(try Inspector.leaks(pid: p.pid, types: true, typesOfReachable: true, typeOwners: false).types)
        #expect(bare.blocks.count == r.blocks.count && bare.labels.owner.isEmpty && bare.labels.parent.isEmpty)
        #expect((0..<r.blocks.count).allSatisfy { bare.noted($0) == r.noted($0) && bare.owner($0) == nil })
        #expect(r.labels.owner.count == r.blocks.count && r.labels.parent.isEmpty)

        // chunks and show agree with the labels.
        let chunks = try jsonObject(run(Paths.heapscope, ["chunks", String(p.pid), "--json", "--state", "in_use"]).out)
        for row in try #require(chunks["chunks"] as? [[String: Any]]) {
            guard let a = UInt64((row["chunk"] as! String).dropFirst(2), radix: 16), let n = notes.type[a] else { continue }
            let name = n.name.replacingOccurrences(of: " (via union)", with: "")
            #expect(row["type"] as? String == (n.name == "(unknown)" ? nil : name) && row["confidence"] as? String == n.confidence, "\(row)")
        }
        let point = try #require(notes.type.first { $0.value.name.hasPrefix("struct point[") }?.key)
        let show = try jsonObject(run(Paths.heapscope, ["show", String(p.pid), "0x" + String(point, radix: 16), "--json", "--bytes", "4096"]).out)
        let fields = try #require(show["fields"] as? [[String: Any]])
        #expect(fields.count == 30 && fields[11]["name"] as? String == "[3].tag" && fields[11]["type"] as? String == "struct node*")
        #expect((fields[11]["points_to"] as? String)?.hasSuffix("(in_use struct node)") == true, "\(fields[11])")
        #expect(fields[10]["value"] as? String == "-3.0" && fields[27]["value"] as? String == "9.0")
        let node = try #require(notes.type.first { $0.value.name == "struct node" && notes.owner[$0.key] == nil }?.key)
        let text = try run(Paths.heapscope, ["show", String(p.pid), "0x" + String(node, radix: 16)]).out
        #expect(text.contains("type struct node (declared)") && text.contains(" key ") && text.contains(" name "), "\(text)")
        #expect(text.contains("(in_use char[])"), "\(text)")
    }

    @Test("show: header, type, fields of a C++ object, hex dump; an address outside the heap is an error")
    func show() throws {
        let p = try TargetProcess("types")
        defer { p.release() }
        let notes = TypeNotes(p.manifestText)
        let both = try #require(notes.type.first { $0.value.name == "Both" }?.key)
        let j = try jsonObject(run(Paths.heapscope, ["show", String(p.pid), "0x" + String(both + 8, radix: 16), "--json"]).out)
        #expect(j["chunk"] as? String == "0x" + String(both, radix: 16))
        #expect(j["type"] as? String == "Both" && j["confidence"] as? String == "vtable")
        #expect(j["usable"] as? Int == Int(p.manifest.live[both] ?? 0))
        let words = try #require(j["words"] as? [[String: Any]])
        #expect((words.first?["points_to"] as? String)?.hasPrefix("vtable for Both+0x") == true, "\(words.first ?? [:])")
        // Both : shapes::Circle, Named — fields through both bases, the second base's vptr at +0x18.
        let fields = try #require(j["fields"] as? [[String: Any]])
        let names = fields.map { $0["name"] as? String ?? "" }
        #expect(names == ["shapes::Shape::_vptr.Shape", "shapes::Shape::id", "shapes::Circle::r", "Named::_vptr.Named", "Named::tag", "extra"], "\(names)")
        #expect(fields.first { ($0["name"] as? String)?.hasPrefix("Named::_vptr") == true }?["offset"] as? Int == 24, "\(fields)")
        let string = try #require(notes.type.first { $0.value.name == "char[]" }?.key)
        let text = try run(Paths.heapscope, ["show", String(p.pid), "0x" + String(string, radix: 16)])
        #expect(text.out.contains("type char[] (heuristic)") && text.out.contains("(text) = \"string number ") && text.out.contains("|string number "), "\(text.out)")
        let bad = try run(Paths.heapscope, ["show", String(p.pid), "0x10"])
        #expect(bad.status == 1 && bad.err.contains("is not in the heap"))
    }

    @Test("leaks groups carry the type of their chunks")
    func leakGroups() throws {
        let p = try TargetProcess("types")
        defer { p.release() }
        let j = try jsonObject(run(Paths.heapscope, ["leaks", String(p.pid), "--json"]).out)
        let groups = try #require(j["groups"] as? [[String: Any]])
        let lost = groups.filter { $0["class"] as? String == "definitely_lost" }
        #expect(lost.count == 1 && lost.first?["type"] as? String == "shapes::Circle" && lost.first?["confidence"] as? String == "vtable"
                && lost.first?["chunks"] as? Int == 2, "\(groups)")
        let plain = try jsonObject(run(Paths.heapscope, ["leaks", String(p.pid), "--json", "--no-types"]).out)
        #expect((plain["groups"] as? [[String: Any]])?.allSatisfy { $0["type"] is NSNull } == true)
    }

    @Test("a typedef reached again through its own struct's members (as in CPython's AST): no trap, both chunks struct _expr")
    func typedefCycle() throws {
        let p = try TargetProcess("typedef_cycle")
        let chunks = p.manifestText.split(separator: "\n").filter { $0.hasPrefix("chunk ") }.map { "0x" + $0.dropFirst(6) }
        #expect(chunks.count == 2)
        let r = try run(Paths.heapscope, ["chunks", String(p.pid), "--json"])
        #expect(r.status == 0, "\(r.status) \(r.err.prefix(300))")
        let rows = try #require(try jsonObject(r.out)["chunks"] as? [[String: Any]])
        for c in chunks {
            let row = try #require(rows.first { $0["chunk"] as? String == c })
            #expect(row["type"] as? String == "struct _expr", "\(row)")
        }
        #expect(p.release().ok)
    }

    @Test("resemblance: leaked chunks take the type of reachable chunks of their size whose layout they fit; equal fits stay ambiguous")
    func resemblance() throws {
        let p = try TargetProcess("resemble")
        defer { p.release() }
        let notes = TypeNotes(p.manifestText)
        #expect(notes.counts == ["struct alpha (declared)": 30, "struct beta (declared)": 20, "struct alpha (resembles)": 16,
                                 "struct beta (resembles)": 7, "struct alpha | struct beta (ambiguous)": 5], "\(notes.counts)")
        // types: every chunk of the program as noted (reachable ones declared, the rest by resemblance).
        let r = try Inspector.types(pid: p.pid)
        #expect(r.expectNoted(notes) == notes.counts)
        // leaks: every lost chunk's group carries its type and confidence.
        let j = try jsonObject(run(Paths.heapscope, ["leaks", String(p.pid), "--json", "--addresses", "--limit", "1000"]).out)
        var listed = Set<UInt64>()
        for g in try #require(j["groups"] as? [[String: Any]]) {
            for a in g["addresses"] as? [String] ?? [] {
                let n = try #require(notes.type[UInt64(a.dropFirst(2), radix: 16)!], "\(a) is the program's")
                #expect(g["type"] as? String == n.name && g["confidence"] as? String == n.confidence, "\(a): \(g)")
                listed.insert(UInt64(a.dropFirst(2), radix: 16)!)
            }
        }
        // Exactly the chunks the library classifies as lost, each of the program's (a leaked chunk
        // whose pointer a register or the stack still held is reachable, and not listed).
        let lib = try Inspector.leaks(pid: p.pid)
        let lost = Set((0..<lib.leaks.blocks.count).filter { lib.leaks.leakClass[$0] != .stillReachable }.map { lib.leaks.blocks.start[$0] })
        #expect(listed == lost && lost.count >= 20, "\(listed.count) listed, \(lost.count) lost")
        // show decodes a resembled chunk's fields by its type.
        let leaked = try #require(notes.type.first { $0.value.name == "struct beta" && $0.value.confidence == "resembles" }?.key)
        let text = try run(Paths.heapscope, ["show", String(p.pid), "0x" + String(leaked, radix: 16)]).out
        #expect(text.contains("type struct beta (resembles)") && text.contains(" left ") && text.contains(" weight "), "\(text)")
        #expect(p.release().ok)
    }

    @Test("C++ standard library at -O2 -g: make_shared blocks named by their object and followed, unordered_map nodes, list nodes, vector storage, deque blocks, string buffers")
    func standardLibrary() throws {
        let p = try TargetProcess("cxxstd")
        defer { p.release() }
        let notes = TypeNotes(p.manifestText)
        #expect(notes.type.count == 35)
        let r = try Inspector.types(pid: p.pid)
        #expect(r.expectNoted(notes) == notes.counts)
        // show: the object inside a make_shared block, field by field; a string buffer as text.
        let block = try #require(notes.type.first { $0.value.name == "Widget (make_shared)" }?.key)
        let text = try run(Paths.heapscope, ["show", String(p.pid), "0x" + String(block, radix: 16)]).out
        #expect(text.contains("type Widget (make_shared) (vtable)") && text.contains("_M_storage.name._M_dataplus._M_p") && text.contains("_M_storage.item") && text.contains("(in_use Item)"), "\(text)")
        let string = try #require(notes.type.first { $0.value.name == "char[]" }?.key)
        let s = try run(Paths.heapscope, ["show", String(p.pid), "0x" + String(string, radix: 16)]).out
        #expect(s.contains("(text) = \"widget number "), "\(s)")
        #expect(p.release().ok)
    }
}
