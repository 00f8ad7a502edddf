// C++ compile unit: namespaces, templates, virtual methods, an anonymous namespace.
#include <cstddef>
#include <memory>
#include <vector>

namespace geo {
struct Shape {
    virtual ~Shape() {}
    virtual unsigned area(unsigned scale) const = 0;
};
struct Square : Shape {
    unsigned side;
    explicit Square(unsigned s) : side(s) {}
    unsigned area(unsigned scale) const override { return side * side * scale; }
};
struct Ring : Shape {
    unsigned r;
    explicit Ring(unsigned v) : r(v) {}
    unsigned area(unsigned scale) const override { return 3 * r * r * scale + 1; }
};
template <typename T> struct Accumulator {
    T total{};
    __attribute__((noinline)) void add(const T &v) { total += v; }
};
}  // namespace geo

namespace {
template <typename T> __attribute__((noinline)) T sum_areas(const std::vector<std::unique_ptr<geo::Shape>> &v, T scale) {
    geo::Accumulator<T> acc;
    for (const auto &s : v) acc.add(s->area(static_cast<unsigned>(scale)));
    return acc.total;
}
}  // namespace

extern "C" unsigned cxx_entry(unsigned n) {
    std::vector<std::unique_ptr<geo::Shape>> shapes;
    for (unsigned i = 0; i < n; i++) {
        if (i & 1) shapes.emplace_back(new geo::Ring(i));
        else shapes.emplace_back(new geo::Square(i));
    }
    return sum_areas<unsigned>(shapes, 2) + static_cast<unsigned>(sum_areas<unsigned long>(shapes, 3));
}
