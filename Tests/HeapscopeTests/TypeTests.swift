import Foundation
import Glibc
import Inspect
import Testing

/// `types` on TestTargets/types.cpp, which notes the type of every chunk it makes: C++ objects
/// (virtual methods, a template, multiple inheritance), strings, and plain structs (unknown).
@Suite("Types of chunks", .serialized, .timeLimit(.minutes(3)))
struct TypeTests {
    @Test("vtable and string types exactly; every other chunk unknown; types --json agrees")
    func types() throws {
        let p = try TargetProcess("types")
        defer { p.release() }
        var want: [UInt64: String] = [:]
        for line in p.manifestText.split(separator: "\n") where line.hasPrefix("type ") {
            let f = line.split(separator: " ", maxSplits: 2)
            want[UInt64(f[1], radix: 16)!] = f[2] == "-" ? "(unknown)" : String(f[2])
        }
        #expect(want.count == 23)
        let r = try Inspector.types(pid: p.pid)
        #expect(Set(r.blocks.start) == Set(p.manifest.live.keys))
        var counts: [String: Int] = [:]
        for k in 0..<r.blocks.count {
            let got = r.label[k] < 0 ? "(unknown)" : r.names[Int(r.label[k])]
            counts[got, default: 0] += 1
            // Chunks the target did not make itself (libstdc++'s emergency pool) are unknown.
            #expect(got == (want[r.blocks.start[k]] ?? "(unknown)"), "0x\(String(r.blocks.start[k], radix: 16))")
        }
        var expected: [String: Int] = [:]
        for a in r.blocks.start { expected[want[a] ?? "(unknown)", default: 0] += 1 }
        #expect(counts == expected)
        let j = try jsonObject(run(Paths.heapscope, ["types", String(p.pid), "--json"]).out)
        let rows = try #require(j["types"] as? [[String: Any]])
        var fromJSON: [String: Int] = [:]
        for row in rows { fromJSON[row["type"] as! String] = row["chunks"] as? Int }
        #expect(fromJSON == expected)
        #expect(rows.first { $0["type"] as? String == "Both" }?["confidence"] as? String == "vtable")
        #expect(rows.first { $0["type"] as? String == "char[]" }?["confidence"] as? String == "heuristic")
    }

    @Test("show: header, type, words pointing to vtables, hex dump; an address outside the heap is an error")
    func show() throws {
        let p = try TargetProcess("types")
        defer { p.release() }
        func noted(_ type: String) throws -> UInt64 {
            let line = try #require(p.manifestText.split(separator: "\n").first { $0.hasPrefix("type ") && $0.hasSuffix(" " + type) })
            return UInt64(line.split(separator: " ")[1], radix: 16)!
        }
        let both = try noted("Both")
        let j = try jsonObject(run(Paths.heapscope, ["show", String(p.pid), "0x" + String(both + 8, radix: 16), "--json"]).out)
        #expect(j["user_address"] as? String == "0x" + String(both, radix: 16))
        #expect(j["type"] as? String == "Both" && j["confidence"] as? String == "vtable")
        #expect(j["usable_size"] as? Int == Int(p.manifest.live[both] ?? 0))
        let words = try #require(j["words"] as? [[String: Any]])
        #expect((words.first?["points_to"] as? String)?.hasPrefix("vtable for Both+0x") == true, "\(words.first ?? [:])")
        let text = try run(Paths.heapscope, ["show", String(p.pid), "0x" + String(try noted("char[]"), radix: 16)])
        #expect(text.out.contains("type char[] (heuristic)") && text.out.contains("|string number "), "\(text.out)")
        let bad = try run(Paths.heapscope, ["show", String(p.pid), "0x10"])
        #expect(bad.status == 1 && bad.err.contains("is not in the heap"))
    }
}
