"""The layout's rules, read from the code itself (README, "Layout"): data flows down only.

- Foundations import no area, and nothing that wires the app.
- An area imports foundations and the areas below it (tokens < account < signin < qr < push <
  ops), never one above it.
- Only the wiring (routes, cleanup contexts, the middleware, app.py) imports keys.py, which
  names each resource with its class: logic takes its dependencies as arguments.
- The emulator imports nothing of the service but foundations and WeChat's protocol.
- No import circles.
- A handler reads exactly the query parameters its operation documents (the contract).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "service"

AREAS = ("tokens", "shared_token", "account", "signin", "jssdk", "oidc", "qr", "push", "ops")
FOUNDATIONS = (
    "config",
    "errors",
    "clock",
    "logs",
    "params",
    "openapi",
    "resources",
    "listening",
    "oidc_config",
    "accounts",
    "config_tables",
)
FOUNDATION_PACKAGES = ("store", "wechat", "app_jwt", "pipeline")
# Modules that read the app's resources: the only importers of keys.py.
WIRING = ("keys", "wiring", "access", "app", "__main__", "reseal", "pipeline.layer")
WIRING_SUFFIXES = (".routes", ".pages", ".status", ".health", ".metrics", ".docs")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def runtime_imports(path: Path) -> Iterator[str]:
    """Every service module `path` imports when it runs (not those under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
        for node in ast.walk(branch)
    }
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from service.qr import codes` imports the module service.qr.codes.
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in MODULES
                else node.module
                for alias in node.names
            ]
        else:
            continue
        yield from (name for name in names if name == "service" or name.startswith("service."))


def relative(name: str) -> str:
    return name.removeprefix("service").removeprefix(".")


def area_of(name: str) -> str | None:
    top = relative(name).split(".")[0]
    return top if top in AREAS else None


def is_foundation(name: str) -> bool:
    local = relative(name)
    top = local.split(".")[0]
    return (local in FOUNDATIONS or top in FOUNDATION_PACKAGES) and not is_wiring(name)


def is_wiring(name: str) -> bool:
    local = relative(name)
    return local in WIRING or (area_of(name) is not None and local.endswith(WIRING_SUFFIXES))


IMPORTS = {name: set(runtime_imports(path)) for name, path in MODULES.items()}


def test_the_rules_see_every_module_and_its_imports():
    assert "service.signin.flow" in MODULES and "service.sandbox.state" in MODULES
    assert "service.store.queries" in IMPORTS["service.signin.flow"]
    assert "service.qr.codes" in IMPORTS["service.qr.routes"]  # `from service.qr import codes`


@pytest.mark.parametrize("module", sorted(m for m in MODULES if is_foundation(m)))
def test_foundations_import_no_area_and_no_wiring(module):
    upward = sorted(
        name
        for name in IMPORTS[module]
        if area_of(name) or is_wiring(name) or relative(name).startswith("sandbox")
    )
    assert upward == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if area_of(m)))
def test_an_area_imports_only_the_areas_below_it(module):
    rank = AREAS.index(area_of(module))
    upward = sorted(
        name for name in IMPORTS[module] if area_of(name) and AREAS.index(area_of(name)) > rank
    )
    assert upward == []
    assert not any(relative(name).startswith("sandbox") for name in IMPORTS[module])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not is_wiring(m)))
def test_only_the_wiring_reads_the_apps_resources(module):
    assert "service.keys" not in IMPORTS[module]
    assert "service.access" not in IMPORTS[module]


@pytest.mark.parametrize("module", sorted(m for m in MODULES if relative(m).startswith("sandbox")))
def test_the_emulator_imports_only_foundations_and_wechat(module):
    outside = sorted(
        name
        for name in IMPORTS[module]
        if not relative(name).startswith("sandbox")
        and name != "service"
        and not (is_foundation(name) and not relative(name).startswith(("openapi", "params")))
    )
    assert outside == []


def test_there_are_no_import_circles():
    def circle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            name, path = stack.pop()
            for imported in IMPORTS.get(name, ()):
                if imported == start:
                    return [*path, start]
                if imported not in seen and imported in IMPORTS:
                    seen.add(imported)
                    stack.append((imported, [*path, imported]))
        return None

    # A package's __init__ imported by its own modules is no circle of code.
    circles = [
        circle
        for module in MODULES
        if (circle := circle_from(module))
        and not any(MODULES[m].name == "__init__.py" for m in circle)
    ]
    assert circles == []


def handlers_and_their_reads(module: str) -> Iterator[tuple[str, str, set[str]]]:
    """Each handler documented with `@documented(contract.X)`: X, the handler's name, and the
    contract parameters it reads (`contract.P.read(...)` or `.value(...)`)."""
    tree = ast.parse(MODULES[module].read_text())
    handlers = {node.name: node for node in tree.body if isinstance(node, ast.AsyncFunctionDef)}

    def reads_of(node: ast.AsyncFunctionDef) -> set[str]:
        reads = {
            call.func.value.attr
            for call in ast.walk(node)
            if isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr in ("read", "value")
            and isinstance(call.func.value, ast.Attribute)
            and getattr(call.func.value.value, "id", "") == "contract"
        }
        # A handler that hands the request to another (one route, several paths) reads
        # what that one reads.
        for call in ast.walk(node):
            if isinstance(call, ast.Call) and getattr(call.func, "id", "") in handlers:
                reads |= reads_of(handlers[call.func.id])
        return reads

    for node in handlers.values():
        operations = [
            d.args[0].attr
            for d in node.decorator_list
            if isinstance(d, ast.Call)
            and getattr(d.func, "id", "") == "documented"
            and isinstance(d.args[0], ast.Attribute)
        ]
        for operation in operations:
            yield operation, node.name, reads_of(node)


ROUTE_MODULES = sorted(m for m in MODULES if area_of(m) and m.endswith((".routes", ".pages")))


@pytest.mark.parametrize("module", ROUTE_MODULES)
def test_a_handler_reads_exactly_the_query_parameters_its_operation_documents(module):
    import importlib

    contract = importlib.import_module(module.rsplit(".", 1)[0] + ".contract")
    handlers = list(handlers_and_their_reads(module))
    assert handlers, f"no documented handler found in {module}"
    for operation_name, handler, reads in handlers:
        operation = getattr(contract, operation_name)
        documented = {param.name for param in operation.params}
        read = {getattr(contract, attribute).name for attribute in reads}
        if operation_name == "CALLBACK_PAGE":
            assert read == set()  # the page's script reads them; the page answers whatever
            continue
        assert read == documented, handler
