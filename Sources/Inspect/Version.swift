/// heapscope's own version (printed by `--version`, recorded nowhere else yet).
public enum HeapscopeVersion {
    public static let number = "0.1.0"
    /// What `heapscope --version` prints: the version and the glibc versions it knows.
    public static var description: String { "heapscope \(number) (glibc malloc 2.27 to 2.44, x86-64 Linux)" }
}
