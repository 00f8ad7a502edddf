// elfutils headers for Swift. libdwfl gives process/module reporting and the
// standard debuginfo search (build-id under /usr/lib/debug, .gnu_debuglink).
#include <elfutils/libdwfl.h>
#include <elfutils/libdw.h>
#include <dwarf.h>
#include <libelf.h>
#include <gelf.h>
