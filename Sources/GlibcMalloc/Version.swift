import Glibc

/// glibc's version from its own banner ("... release version 2.36.") in a libc.so or static executable.
public enum GlibcVersion {
    public static func read(path: String) -> String? {
        withMappedFile(path) { bytes -> String? in
            let len = bytes.count
            let needle = Array("GNU C Library".utf8)
            let marker = Array("release version ".utf8)
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
        } ?? nil
    }

    /// `body` over the bytes of the file at `path` (mapped read-only), or nil if it cannot be read.
    static func withMappedFile<T>(_ path: String, _ body: (UnsafeRawBufferPointer) -> T) -> T? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size > 0 else { return nil }
        let len = Int(st.st_size)
        guard let p = mmap(nil, len, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else { return nil }
        defer { munmap(p, len) }
        return body(UnsafeRawBufferPointer(start: p, count: len))
    }

    /// Whether the file holds `text` (a marker string of some glibc versions).
    public static func contains(path: String, _ text: String) -> Bool {
        withMappedFile(path) { find(Array(text.utf8), in: $0, from: 0) != nil } ?? false
    }

    /// The layout of a statically linked glibc whose version string is not in the executable (it
    /// is linked only when something refers to it), told apart by what differs between versions:
    /// the sizes of `main_arena` and `mp_` (from the symbol table), the size of the main thread's
    /// tcache chunk (the first chunk at `mp_.sbrk_base`), and safe-linking's check message.
    /// Returns the layout (with its version range) and how it was told, or why it cannot be.
    public static func infer(mainArenaSize: UInt64, mpSize: UInt64, mpAddress: UInt64, file: String,
                             readWord: (UInt64) -> UInt64?) -> Result<(GlibcLayout, String), GlibcError> {
        let sbrkOffset: UInt64
        switch (mainArenaSize, mpSize) {
        case (0x898, 0x70): sbrkOffset = 0x48   // 2.27–2.34
        case (0x898, 0x88): sbrkOffset = 0x60   // 2.35–2.42
        case (0x840, 0x90), (0x840, 0x88): sbrkOffset = 0x68   // 2.43 (no fastbins), 2.44 (one mp_ field fewer)
        default: return .failure(.unsupportedVersion("unknown (main_arena is \(mainArenaSize) bytes, mp_ \(mpSize))"))
        }
        guard let sbrk = readWord(mpAddress &+ sbrkOffset), sbrk != 0 else { return .failure(.notInitialised) }
        let first = (sbrk + 15 + 16) & ~15 - 16
        guard let sizeField = readWord(first &+ 8) else { return .failure(.notInitialised) }
        let tcache = sizeField & ~7
        let how = "mp_ is \(mpSize) bytes, the first chunk (the main thread's tcache) 0x\(String(tcache, radix: 16))"
        func layout(_ minor: Int, _ range: String, _ more: String = "") -> Result<(GlibcLayout, String), GlibcError> {
            var l = GlibcLayout(major: 2, minor: minor)!
            l.inferredRange = range
            return .success((l, "glibc \(range) by layout (\(how)\(more))"))
        }
        if mainArenaSize == 0x840 {
            // The sizes alone tell these apart (and a thread's tcache need not be the first chunk).
            var l = GlibcLayout(major: 2, minor: mpSize == 0x90 ? 43 : 44)!
            l.inferredRange = mpSize == 0x90 ? "2.43" : "2.44"
            return .success((l, "glibc \(l.inferredRange!) by layout (main_arena is \(mainArenaSize) bytes, mp_ \(mpSize))"))
        } else if mpSize == 0x70 {
            switch tcache {
            case 0x250: return layout(29, "2.27–2.29")
            case 0x290:
                // Safe-linking (2.32) came with this check of tcache entries.
                return contains(path: file, "malloc(): unaligned tcache chunk detected")
                    ? layout(34, "2.32–2.34", ", safe-linking checks") : layout(31, "2.30–2.31", ", no safe-linking checks")
            default: break
            }
        } else {
            switch tcache {
            case 0x290: return layout(41, "2.35–2.41")
            case 0x300: return layout(42, "2.42")
            default: break
            }
        }
        return .failure(.mainArenaNotFound("the first chunk at mp_.sbrk_base is 0x\(String(tcache, radix: 16)) bytes, not a tcache (\(how)): this glibc's layout cannot be told without its version string"))
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
