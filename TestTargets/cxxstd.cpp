/* The C++ standard library at -O2 -g: a std::vector of std::shared_ptr made by std::make_shared
 * (each object in its control block), a std::unordered_map of pointers, a std::vector and a
 * std::list of structs, a std::deque, std::string buffers. Every chunk whose address the program
 * can tell is noted "type ADDR CONFIDENCE NAME" (as typed.c does); the rest (the hash table's
 * bucket array, the deque's map, libstdc++'s emergency pool) are not. */
#include <deque>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>
extern "C" {
#include "manifest.h"
}

struct Item { long key; double weight; Item *next; };
struct Widget { std::string name; Widget *peer; long id; Item *item; };
struct Point { double x, y; Item *tag; };

std::vector<std::shared_ptr<Widget>> widgets;
std::unordered_map<int, Item *> items;
std::vector<Point> points;
std::list<Point> plist;
std::deque<long> numbers;

static char labels[64][160];
static int nlabels;
static void note(const void *p, const char *l) {
    if (nlabels >= 64) _exit(4);
    snprintf(labels[nlabels], sizeof labels[0], "%s", l);
    hs_note("type", (void *)p, labels[nlabels++]);
}
/* An array chunk: "T[n]", n = malloc_usable_size / sizeof(T), as heapscope counts elements. */
static void note_array(const void *p, const char *conf_type, size_t element) {
    char l[160];
    snprintf(l, sizeof l, "%s[%zu]", conf_type, malloc_usable_size((void *)p) / element);
    note(p, l);
}

int main(int argc, char **argv) {
    hs_open_manifest(argc, argv);
    widgets.reserve(8);
    for (int i = 0; i < 6; i++) {
        auto w = std::make_shared<Widget>();
        w->name = "widget number " + std::to_string(i) + " with a long name";
        w->id = i;
        w->item = new Item{i, 1.5, nullptr};
        widgets.push_back(w);
    }
    items.reserve(16);
    for (int i = 0; i < 5; i++) items[i] = new Item{100 + i, 2.5, nullptr};
    points.reserve(4);
    for (int i = 0; i < 4; i++) points.push_back(Point{1.0 * i, 2.0, nullptr});
    for (int i = 0; i < 3; i++) plist.push_back(Point{3.0, 1.0 * i, nullptr});
    for (int i = 0; i < 100; i++) numbers.push_back(i);

    note_array(widgets.data(), "declared std::shared_ptr<Widget>", sizeof(std::shared_ptr<Widget>));
    for (auto &w : widgets) {
        note((const char *)w.get() - 16, "vtable Widget (make_shared)");   // its control block
        note(w->name.data(), "declared char[]");
        note(w->item, "declared Item");
    }
    for (auto &kv : items) {
        note((const char *)&kv - 8, "declared std::__detail::_Hash_node<std::pair<int const, Item*>, false>");
        note(kv.second, "declared Item");
    }
    note_array(points.data(), "declared Point", sizeof(Point));
    for (auto &p : plist) note((const char *)&p - 16, "declared std::_List_node<Point>");
    note_array(&numbers[0], "declared long int", sizeof(long));
    note_array(&numbers[64], "declared long int", sizeof(long));
    hs_write_manifest(1);
    hs_end_and_wait();
    return 0;
}
