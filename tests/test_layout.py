"""The house in the order of the flow: each floor imports only the floors below it, inference never needs training
code, and no module reaches into another through an underscore name (README, "Layout")."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgekd"
REPO = PACKAGE.parent

# The floors are the package's folders, in the order of the flow; a module may import its own floor and the floors
# below it. The runtime (floor 4) stands on the foundations only: a phone-side user never loads training code.
FLOORS = {"core": 0, "data": 1, "models": 2, "training": 3, "runtime": 4, "export": 5, "recipes": 5, "bench": 6,
          "cli": 7}
TOP_LEVEL = {"edgekd": 0, "edgekd.__main__": 7}  # the package face and `python -m edgekd`
# The floor a module may import up to, where it is not its own: the package face stands on floor 0 (every floor
# imports it for __version__), and its API names (edgekd.Landmarker, edgekd.benchmark, ...) load on first use from
# the floors above it, up to bench; never the CLI.
REACH = {"edgekd": 6}
TRAINING = tuple(f"edgekd.{name}" for name in ("data", "models", "training", "export", "recipes"))


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _floor(module: str) -> int:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    folder = module.split(".")[1]
    assert folder in FLOORS, f"{module}: edgekd/{folder} is not a floor (tests/test_layout.py FLOORS); add it"
    return FLOORS[folder]


def _modules():
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _edgekd_imports(path: Path):
    """(imported module, names imported from it, line) for every edgekd import in the file, nested ones included."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("edgekd"):
                    yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgekd") and not node.level:
            modules = _modules()
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                if sub in modules:  # `from edgekd.bench import latency`: the submodule itself
                    yield sub, [], node.lineno
                else:
                    yield node.module, [alias.name], node.lineno


def test_every_module_imports_only_its_floor_and_below():
    wrong = []
    for module, path in _modules().items():
        own = REACH.get(module, _floor(module))
        for imported, _, line in _edgekd_imports(path):
            target = _floor(imported)
            runtime_breach = own == 4 and target not in (0, 4)
            if target > own or runtime_breach:
                wrong.append(f"{path.relative_to(REPO)}:{line} ({module}, floor {own}) imports {imported} "
                             f"(floor {target})")
    assert not wrong, "\n".join(wrong)


def test_no_module_uses_another_modules_underscore_names():
    wrong = []
    for module, path in _modules().items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgekd"):
                for alias in node.names:
                    if alias.name.startswith("_") and node.module != module:
                        wrong.append(f"{path.relative_to(REPO)}:{node.lineno} imports {node.module}.{alias.name}")
                    if f"{node.module}.{alias.name}" in _modules():
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("edgekd") and alias.asname:
                        aliases[alias.asname] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                wrong.append(f"{path.relative_to(REPO)}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not wrong, "\n".join(wrong)


BLOCKER = """
import sys, importlib.abc
BLOCKED = {blocked!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if '.'.join(name.split('.')[:2]) in BLOCKED or name.split('.')[0] == 'tensorflow_model_optimization':
            raise ImportError(f'blocked for this test: {{name}}')
sys.meta_path.insert(0, Block())
"""


def test_runtime_predicts_with_training_modules_blocked():
    """A desktop-inference user needs the runtime and its foundations only: with every training module made
    unimportable, the runtime still loads the shipped model and finds the astronaut's landmarks."""
    from runtime_helpers import SHIPPED_INT8 as model

    if not model.is_file():
        pytest.skip(f"{model} not shipped")
    code = BLOCKER.format(blocked=TRAINING) + f"""
from edgekd.runtime import FaceDetector, Predictor, LandmarkModel
from skimage import data
p = Predictor(LandmarkModel({str(model)!r}), FaceDetector())
faces = p.predict(data.astronaut())
assert len(faces) == 1 and faces[0].points.shape == (68, 2), faces
loaded = sorted(m for m in sys.modules if '.'.join(m.split('.')[:2]) in BLOCKED)
assert not loaded, loaded
print('ok')
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_the_package_cites_no_working_session_and_no_file_outside_the_repository():
    """A user's clone has no ../shared and no lab notebook: the package speaks of versions (CHANGELOG.md)."""
    import re

    pattern = re.compile(r"session [0-9]+|\.\./shared", re.IGNORECASE)
    hits = [f"{path.relative_to(REPO)}:{n}: {line.strip()}" for path in sorted(PACKAGE.rglob("*"))
            if path.suffix in (".py", ".yaml", ".md") for n, line in enumerate(path.read_text().splitlines(), 1)
            if pattern.search(line)]
    assert not hits, "\n".join(hits)
