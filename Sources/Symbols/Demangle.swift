import CShim
import Glibc

/// Symbol demangling: C++ and legacy Rust (Itanium, `_Z…`), Rust v0 (`_R…`) and Swift (`$s…`, `_$s…`, `$S…`, `_T0…`).
public enum Demangle {
    public static func name(_ mangled: String) -> String {
        if mangled.hasPrefix("_Z") {
            if let p = hs_demangle_cxx(mangled) { defer { free(p) }; return String(cString: p) }
        } else if mangled.hasPrefix("_R") {
            if let p = hs_demangle_rust(mangled) { defer { free(p) }; return String(cString: p) }
        } else if isSwift(mangled) {
            let r: String? = mangled.withCString { c in
                guard let p = hs_demangle_swift(c, strlen(c)) else { return nil }
                defer { free(p) }
                return String(cString: p)
            }
            if let r { return r }
        }
        return mangled
    }

    static func isSwift(_ s: String) -> Bool {
        s.hasPrefix("$s") || s.hasPrefix("_$s") || s.hasPrefix("$S") || s.hasPrefix("_$S") || s.hasPrefix("_T0")
            || s.hasPrefix("$e") || s.hasPrefix("_$e")
    }
}
