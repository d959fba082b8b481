"""The project's import graph, read from the source with `ast` (nothing is imported, so no
TensorFlow): no import cycles among the modules of proxyless_tf/, export/ and benchmarks/, no
module longer than MAX_LINES, no module of the library that reads the command-line flags
(FLAG_READERS: only the commands may; the library takes configs), and no benchmark that edits
sys.path to find the others (they are a package run from the repository root:
`python -m benchmarks.NAME`).

Every import statement counts, wherever it is: at module level, inside a function, under
`if __name__ == "__main__":` or `try:`. A lazy import is still a dependency, and a cycle hidden
behind one only waits for the right call order. `importlib.import_module("literal")` counts too.

How an import names its target module:
    import a.b.c                   -> a.b.c (the module, or a/b/c/__init__.py for a package)
    from a.b import c              -> a.b.c when that is a module of the project, else a.b
                                      (a name a/b/__init__.py defines or re-exports)
    from . import x, from .m import y   resolved against the importing module's package
The parent packages that Python initialises on the way (a/__init__.py for `import a.b`) are
not edges: a package whose __init__ re-exports its submodules would otherwise be a cycle with
each of them.
"""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("proxyless_tf", "export", "benchmarks")
MAX_LINES = 450
# The modules of proxyless_tf/ that may read absl's FLAGS: the commands, `options` (which
# defines the flags), `arch_flags` (the commands' flag-to-architecture helper) and
# `flag_configs` (the flags as the library's configs). Every other module takes its settings
# as arguments (LatencyConfig, ReinforceConfig, DistributeConfig, SearchConfig, ...).
FLAG_READERS = {
    "proxyless_tf.search", "proxyless_tf.train", "proxyless_tf.tune", "proxyless_tf.show",
    "proxyless_tf.latency.cli", "proxyless_tf.latency.__main__", "proxyless_tf.options",
    "proxyless_tf.arch_flags", "proxyless_tf.flag_configs",
}


def project_modules(root=REPO, packages=PACKAGES):
    """{dotted module name: file path} for every .py file under `packages`."""
    modules = {}
    for package in packages:
        for directory, dirs, files in os.walk(os.path.join(root, package)):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            parts = os.path.relpath(directory, root).split(os.sep)
            for name in sorted(files):
                if not name.endswith(".py"):
                    continue
                stem = name[:-3]
                dotted = ".".join(parts if stem == "__init__" else parts + [stem])
                modules[dotted] = os.path.join(directory, name)
    return modules


def _is_package(path):
    return os.path.basename(path) == "__init__.py"


def _resolve_relative(module, path, level, target):
    """The absolute name `from <level dots><target> import ...` refers to inside `module`."""
    package = module.split(".") if _is_package(path) else module.split(".")[:-1]
    if level > 1:
        package = package[:len(package) - (level - 1)]
    return ".".join(package + ([target] if target else []))


def imports_of(module, path, modules):
    """The project modules `module` (at `path`) imports anywhere in its source, sorted."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_relative(module, path, node.level, node.module) if node.level \
                else node.module
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in modules else base)
        elif isinstance(node, ast.Call) and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                targets.add(node.args[0].value)
    edges = set()
    for target in targets:
        # `import a.b.C` where C is no module (an error at run time) still depends on a.b.
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != module:
            edges.add(target)
    return sorted(edges)


def import_graph(modules):
    return {module: imports_of(module, path, modules) for module, path in modules.items()}


def find_cycles(graph):
    """One cycle (a list of modules, the first repeated at the end) per strongly connected
    component of more than one module, or of one module that imports itself; Tarjan's
    algorithm, iterative."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(graph[succ])))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        components.append(set(component))
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph, component):
    """A shortest cycle through the component's first module (breadth-first search)."""
    start = min(component)
    parents, frontier = {start: None}, [start]
    while frontier:
        following = []
        for node in frontier:
            for succ in graph[node]:
                if succ == start:
                    path = [node]
                    while parents[path[-1]] is not None:
                        path.append(parents[path[-1]])
                    return [start] + path[::-1][1:] + [start] if node != start else [start, start]
                if succ in component and succ not in parents:
                    parents[succ] = node
                    following.append(succ)
        frontier = following
    raise AssertionError(f"no cycle in {sorted(component)}")


def line_counts(modules):
    counts = {}
    for module, path in modules.items():
        with open(path, encoding="utf-8") as f:
            counts[module] = sum(1 for _ in f)
    return counts


def flag_reads(path):
    """The lines of `path` that read absl's FLAGS: the name `FLAGS` (however it came: `FLAGS =
    options.FLAGS`, `from absl.flags import FLAGS`), an attribute `.FLAGS` (`options.FLAGS`,
    `flags.FLAGS`, also under another local name) or an import of it; sorted line numbers."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "FLAGS" or \
                isinstance(node, ast.Attribute) and node.attr == "FLAGS" or \
                isinstance(node, ast.ImportFrom) and any(a.name == "FLAGS" for a in node.names):
            lines.add(node.lineno)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "getattr" and \
                len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and \
                node.args[1].value == "FLAGS":
            lines.add(node.lineno)
    return sorted(lines)


def library_flag_reads(modules, readers=FLAG_READERS, package="proxyless_tf"):
    """{module: line numbers} of the modules of `package` outside `readers` that read FLAGS."""
    reads = {}
    for module, path in modules.items():
        if module.split(".")[0] == package and module not in readers:
            lines = flag_reads(path)
            if lines:
                reads[module] = lines
    return reads


def sys_path_edits(path):
    """The lines of `path` that change sys.path: sys.path.insert/append/extend, or an
    assignment to sys.path or to a slice of it; sorted line numbers."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=path)

    def is_sys_path(node):
        return isinstance(node, ast.Attribute) and node.attr == "path" and \
            isinstance(node.value, ast.Name) and node.value.id == "sys"

    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("insert", "append", "extend") and is_sys_path(node.func.value):
            lines.add(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(is_sys_path(t) or isinstance(t, ast.Subscript) and is_sys_path(t.value)
                   for t in targets):
                lines.add(node.lineno)
    return sorted(lines)


# --- the checks -------------------------------------------------------------------------------


def test_no_import_cycles():
    modules = project_modules()
    assert {"proxyless_tf.train", "export", "benchmarks.cifar10_quality"} <= set(modules)
    graph = import_graph(modules)
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (lazy imports count):\n" + "\n".join(
        "  " + " -> ".join(cycle) + _others_in_cycle(graph, cycle) for cycle in cycles)


def _others_in_cycle(graph, cycle):
    """The other modules of the cycle's strongly connected set, which one cut may not free."""
    def reach(start, edges):
        seen, todo = {start}, [start]
        while todo:
            for succ in edges[todo.pop()]:
                if succ not in seen:
                    seen.add(succ)
                    todo.append(succ)
        return seen
    reverse = {m: [n for n in graph if m in graph[n]] for m in graph}
    others = (reach(cycle[0], graph) & reach(cycle[0], reverse)) - set(cycle)
    return f"  (in the same knot: {', '.join(sorted(others))})" if others else ""


def test_no_module_too_long():
    modules = project_modules()
    counts = line_counts(modules)
    long = {m: n for m, n in counts.items() if n > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them by concern):\n" + "\n".join(
        f"  {os.path.relpath(modules[m], REPO)}: {n} lines"
        for m, n in sorted(long.items(), key=lambda item: -item[1]))


def test_only_the_commands_read_the_flags():
    modules = project_modules()
    assert set(FLAG_READERS) <= set(modules), sorted(set(FLAG_READERS) - set(modules))
    reads = library_flag_reads(modules)
    assert not reads, (
        "library modules that read FLAGS (take a config instead; the commands build it in "
        "proxyless_tf/flag_configs.py):\n" + "\n".join(
            f"  {os.path.relpath(modules[m], REPO)}: line(s) {', '.join(map(str, lines))}"
            for m, lines in sorted(reads.items())))


def test_benchmarks_find_each_other_as_a_package():
    modules = project_modules(packages=("benchmarks",))
    assert "benchmarks" in modules  # benchmarks/__init__.py: `python -m benchmarks.NAME`
    edits = {m: sys_path_edits(path) for m, path in modules.items()}
    edits = {m: lines for m, lines in edits.items() if lines}
    assert not edits, "sys.path edited (run the benchmarks from the repository root):\n" + \
        "\n".join(f"  {os.path.relpath(modules[m], REPO)}: line(s) {', '.join(map(str, lines))}"
                  for m, lines in sorted(edits.items()))


# --- the checker itself, on small made-up packages ---------------------------------------------


def _write(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)


def test_checker_sees_lazy_relative_and_reexport_cycles(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "from pkg.a import thing\n",           # re-export
        "pkg/a.py": "def f():\n    from . import b\n",             # lazy, relative
        "pkg/b.py": "from pkg.sub import name\n",                  # name from sub/__init__
        "pkg/sub/__init__.py": "from .c import name\n",
        "pkg/sub/c.py": "def g():\n    import pkg\n",              # the package: its __init__
        "pkg/free.py": "from pkg.sub import c\nimport pkg.a\n",    # no cycle through here
        "other/__init__.py": "",
        "other/x.py": "import importlib\nimportlib.import_module('other.y')\n",
        "other/y.py": "if __name__ == '__main__':\n    from other import x\n",
    })
    modules = project_modules(str(tmp_path), ("pkg", "other"))
    graph = import_graph(modules)
    assert graph["pkg.a"] == ["pkg.b"]
    assert graph["pkg.b"] == ["pkg.sub"]
    assert graph["pkg.free"] == ["pkg.a", "pkg.sub.c"]
    cycles = find_cycles(graph)
    assert sorted(cycles) == [
        ["other.x", "other.y", "other.x"],
        ["pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.c", "pkg"],
    ]


def test_checker_passes_a_layered_package(tmp_path):
    _write(tmp_path, {
        "pkg/__init__.py": "from pkg.a import f\nfrom pkg import b\n",
        "pkg/a.py": "import os\nfrom pkg.low import x\n",
        "pkg/b.py": "def f():\n    from .low import x\n    from pkg.a import f\n",
        "pkg/low.py": "import numpy\nx = 1\n",
    })
    graph = import_graph(project_modules(str(tmp_path), ("pkg",)))
    assert graph["pkg.low"] == []
    assert find_cycles(graph) == []


def test_checker_finds_every_way_of_reading_the_flags(tmp_path):
    _write(tmp_path, {
        "proxyless_tf/__init__.py": "",
        "proxyless_tf/cmd.py": "from proxyless_tf import options\nFLAGS = options.FLAGS\n",
        "proxyless_tf/attr.py": "from proxyless_tf import options\n\n\n"
                                "def f():\n    return options.FLAGS.seed\n",
        "proxyless_tf/alias.py": "def f():\n    from proxyless_tf import options\n"
                                 "    F = options.FLAGS\n    return F.seed\n",
        "proxyless_tf/imported.py": "from absl.flags import FLAGS\n",
        "proxyless_tf/absl_flags.py": "from absl import flags\nx = flags.FLAGS['seed']\n",
        "proxyless_tf/dynamic.py": "import absl.flags as m\nx = getattr(m, 'FLAGS')\n",
        "proxyless_tf/clean.py": '"""Reads no FLAGS (a docstring is no read)."""\n'
                                 "# FLAGS in a comment\nflags = 'FLAGS'\n",
        "proxyless_tf/sub/__init__.py": "",
        "proxyless_tf/sub/deep.py": "\n\nif True:\n    y = options.FLAGS\n",
    })
    modules = project_modules(str(tmp_path), ("proxyless_tf",))
    reads = library_flag_reads(modules, readers={"proxyless_tf.cmd"})
    assert reads == {"proxyless_tf.attr": [5], "proxyless_tf.alias": [3],
                     "proxyless_tf.imported": [1], "proxyless_tf.absl_flags": [2],
                     "proxyless_tf.dynamic": [2], "proxyless_tf.sub.deep": [4]}


def test_checker_finds_sys_path_edits(tmp_path):
    _write(tmp_path, {"m.py": "import sys\nsys.path.insert(0, 'x')\nsys.path += ['y']\n"
                              "sys.path[:0] = ['z']\nprint(sys.path)\nsys.path.append('w')\n"})
    assert sys_path_edits(str(tmp_path / "m.py")) == [2, 3, 4, 6]
