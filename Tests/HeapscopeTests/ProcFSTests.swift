import Foundation
import Glibc
@testable import ProcessAccess
import Testing

@Suite("/proc readers")
struct ProcFSTests {
    /// An independent reading of one maps line: fields split on spaces (the path may hold spaces).
    func oracle(_ line: Substring) -> Mapping? {
        let f = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
        guard f.count >= 5 else { return nil }
        let r = f[0].split(separator: "-")
        let p = Array(f[1])
        return Mapping(start: UInt64(r[0], radix: 16)!, end: UInt64(r[1], radix: 16)!, readable: p[0] == "r", writable: p[1] == "w",
                       executable: p[2] == "x", shared: p[3] == "s", offset: UInt64(f[2], radix: 16)!, inode: UInt64(f[4])!,
                       path: f.count > 5 ? String(f[5].drop(while: { $0 == " " })) : "")
    }

    @Test("maps: the byte parser reads every mapping of every process on the machine as a field split does")
    func mapsOfEveryProcess() throws {
        var processes = 0, mappings = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: "/proc") {
            guard let pid = Int32(name), let bytes = try? ProcFS.readBytes("/proc/\(pid)/maps") else { continue }
            let text = String(decoding: bytes, as: UTF8.self)
            let want = text.split(separator: "\n").compactMap(oracle)
            #expect(ProcFS.parseMaps(bytes) == want, "pid \(pid)")
            processes += 1; mappings += want.count
        }
        #expect(processes > 5 && mappings > 100)
        // Malformed lines are skipped, the rest still read.
        let odd = Array("zz-1 rw-p 0 0:0 0\n1000-2000 rw-s 00000010 00:05 77   /dev/shm/a b (deleted)\n".utf8)
        #expect(ProcFS.parseMaps(odd) == [Mapping(start: 0x1000, end: 0x2000, readable: true, writable: true, executable: false, shared: true,
                                                  offset: 16, inode: 77, path: "/dev/shm/a b (deleted)")])
    }
}
