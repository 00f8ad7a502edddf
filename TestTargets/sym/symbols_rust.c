/* Functions named as rustc names them: Rust v0 mangling (-C symbol-mangling-version=v0) and the
 * legacy Itanium-like scheme. The names are copied from a rustc 1.95 build; this file is compiled
 * without debug information, so only the symbol table names these functions and the demangled
 * names the tests compare with llvm-symbolizer's come from the symbol names alone. */
#define RUST(fn, mangled) \
    unsigned fn(unsigned v) __asm__(mangled); \
    __attribute__((used, noinline)) unsigned fn(unsigned v) { return v * 2654435761u + __LINE__; }

RUST(rust_show, "_RNvMCskK7mfDs1mzF_1mINtB2_1ShE4showB2_")
RUST(rust_write_fmt, "_RNvYNtNtNtNtCsjrHSEGnQ3l9_3std3sys5stdio4unix6StderrNtNtBa_2io5Write9write_fmtBa_")
RUST(rust_error_new, "_RINvMs5_NtNtCsjrHSEGnQ3l9_3std2io5errorNtB6_5Error3newReEBa_")
RUST(rust_drop_in_place, "_RINvNtCsgEmfK2I1SDS_4core3ptr13drop_in_placeNtNtCslNYArtu3iFV_5alloc6string6StringEBK_")
RUST(rust_escape_unicode, "_RINvNtCsgEmfK2I1SDS_4core6escape14escape_unicodeKja_ECsgY6Mt91CT9J_14rustc_demangle")
RUST(rust_assert_failed, "_RINvNtCsgEmfK2I1SDS_4core9panicking13assert_failedllECsjrHSEGnQ3l9_3std")
RUST(rust_legacy_print, "_ZN3std2io5stdio6_print17h8e4b5c3d2a1f0e9dE")
