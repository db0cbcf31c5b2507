"""The modules of src/lib stand in layers, and every call points down.

The graph is measured from the built objects' symbol tables: module A
depends on module B when an undefined symbol of A's object is defined by
B's. LAYERS below is the one place the layers are declared (docs/HACKING.md
shows the same table): a module missing from it, a call to a higher layer
or a cycle fails the test, which names the modules."""
import glob
import os
import re
import subprocess

from harness import run

# layer: modules. A module may call modules of its own layer or below; the
# cycle check keeps calls within a layer one-way.
LAYERS = {
    0: ["config", "framing", "router", "metrics", "http", "log",
        "listener", "version", "activation", "notify"],
    1: ["conn"],
    2: ["request"],
    3: ["worker"],
    4: ["drain"],
    5: ["health"],
    6: ["admin"],
    7: ["server"],
}
LAYER_OF = {m: n for n, mods in LAYERS.items() for m in mods}


def builddir():
    return os.path.dirname(os.path.dirname(
        os.path.abspath(os.environ["GRACED_BIN"])))


def module_name(path):
    """conn.o, libgraced_a-conn.o, .libs/libgraced_la-conn.o -> conn."""
    name = os.path.basename(path)[:-len(".o")]
    return re.sub(r"^lib\w+?_l?a-", "", name)


def objects():
    """Module -> its object files (one module may be built more than once:
    static and shared, or for a convenience library). Where libtool built
    the library, only objects with a .lo beside them count: a build tree
    may still hold objects of an older layout."""
    found = {}
    lib = os.path.join(builddir(), "src", "lib")
    libtool = glob.glob(os.path.join(lib, "**", "*.lo"), recursive=True)
    for path in glob.glob(os.path.join(lib, "**", "*.o"), recursive=True):
        if libtool and not os.path.exists(path[:-len(".o")] + ".lo"):
            continue
        found.setdefault(module_name(path), []).append(path)
    return found


def symbols(path, *flags):
    out = subprocess.run(["nm", *flags, path], check=True,
                         capture_output=True, text=True).stdout
    names = set()
    for line in out.splitlines():
        parts = line.split()
        # Names the compiler makes (sanitizers' __odr_asan.*, __asan_*)
        # are not the module's own.
        if not parts or parts[-1].startswith("__"):
            continue
        # Defined: "addr TYPE name", upper-case type = global.
        if len(parts) == 3 and parts[1].isupper() and parts[1] != "U":
            names.add(parts[2])
        elif len(parts) == 2 and parts[0] == "U":
            names.add(parts[1])
    return names


def graph():
    """Module -> set of modules it calls, from the symbol tables."""
    objs = objects()
    assert objs, "no objects under %s/src/lib" % builddir()
    defined, undefined = {}, {}
    for mod, paths in objs.items():
        defined[mod] = set().union(*(symbols(p, "--defined-only")
                                     for p in paths))
        undefined[mod] = set().union(*(symbols(p, "-u") for p in paths))
    owner = {}
    for mod, names in defined.items():
        for name in names:
            owner[name] = mod
    return {mod: {owner[s] for s in undefined[mod]
                  if s in owner and owner[s] != mod}
            for mod in objs}


def find_cycle(g):
    """A list of modules forming a cycle (first == last), or None."""
    state = {}
    stack = []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(g.get(m, ())):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(g):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_layers_are_printed_and_every_module_is_in_one():
    g = graph()
    for n in sorted(LAYERS):
        print("  layer %d: %s" % (n, ", ".join(
            "%s -> %s" % (m, ",".join(sorted(g.get(m, ()))) or "-")
            for m in LAYERS[n])))
    unknown = sorted(set(g) - set(LAYER_OF))
    assert not unknown, "modules not in the layer table: %s" % unknown
    missing = sorted(set(LAYER_OF) - set(g))
    assert not missing, "layer table names modules not built: %s" % missing


def test_no_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "module cycle: %s" % " -> ".join(cycle)


def test_calls_point_down():
    bad = ["%s (layer %d) calls %s (layer %d)"
           % (m, LAYER_OF[m], n, LAYER_OF[n])
           for m, calls in sorted(graph().items()) for n in sorted(calls)
           if m in LAYER_OF and n in LAYER_OF and LAYER_OF[n] > LAYER_OF[m]]
    assert not bad, "; ".join(bad)


def test_exported_names_carry_the_file_prefix():
    """Functions and data a file exports start with its name (or graced_
    for the public API)."""
    bad = []
    for mod, paths in sorted(objects().items()):
        for name in sorted(set().union(*(symbols(p, "--defined-only")
                                         for p in paths))):
            if not (name.startswith(mod + "_") or
                    name.startswith("graced_")):
                bad.append("%s: %s" % (mod, name))
    assert not bad, ", ".join(bad)


def test_the_checker_finds_a_cycle():
    """The measure itself: a two-module loop and a longer one are found,
    a tree is not."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) in (["a", "b", "a"],
                                                   ["b", "a", "b"])
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) \
        == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert module_name("x/.libs/libgraced_la-conn.o") == "conn"
    assert module_name("x/libgraced_a-drain.o") == "drain"
    assert module_name("x/health.o") == "health"


run([test_the_checker_finds_a_cycle,
     test_layers_are_printed_and_every_module_is_in_one,
     test_no_cycle,
     test_calls_point_down,
     test_exported_names_carry_the_file_prefix])
