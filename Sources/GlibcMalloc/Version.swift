import Glibc

/// glibc's version from its own banner ("... release version 2.36.") in a libc.so or static executable.
public enum GlibcVersion {
    public static func read(path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { return nil }
        let len = Int(st.st_size)
        guard let p = mmap(nil, len, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else { return nil }
        defer { munmap(p, len) }
        let needle = Array("GNU C Library".utf8)
        let marker = Array("release version ".utf8)
        let bytes = UnsafeRawBufferPointer(start: p, count: len)
        var i = 0
        while let hit = find(needle, in: bytes, from: i) {
            // The banner is one NUL-terminated string; look for the version marker inside it.
            var end = hit
            while end < len && bytes[end] != 0 && end - hit < 400 { end += 1 }
            if let m = find(marker, in: UnsafeRawBufferPointer(rebasing: bytes[hit..<end]), from: 0) {
                var v = hit + m + marker.count
                var s = ""
                while v < end, bytes[v] == UInt8(ascii: ".") || (bytes[v] >= 48 && bytes[v] <= 57) { s.append(Character(UnicodeScalar(bytes[v]))); v += 1 }
                while s.hasSuffix(".") { s.removeLast() }
                if s.split(separator: ".").count >= 2 { return s }
            }
            i = hit + 1
        }
        return nil
    }

    static func find(_ needle: [UInt8], in hay: UnsafeRawBufferPointer, from: Int) -> Int? {
        guard needle.count > 0, hay.count >= needle.count else { return nil }
        let first = needle[0]
        var i = from
        let last = hay.count - needle.count
        while i <= last {
            guard let base = hay.baseAddress, let q = memchr(base + i, Int32(first), last - i + 1) else { return nil }
            let j = base.distance(to: UnsafeRawPointer(q))
            if memcmp(base + j, needle, needle.count) == 0 { return j }
            i = j + 1
        }
        return nil
    }
}
