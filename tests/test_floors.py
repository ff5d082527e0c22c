"""No import runs from a lower floor to a higher one (nor sideways between rooms of a floor):
tasks < ntk < {architectures, limits} < experiments < papers < ntk_lab (the command line)."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FLOORS = {"tasks": 0, "ntk": 1, "architectures": 2, "limits": 2, "experiments": 3,
          "papers": 4, "ntk_lab": 5}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(FLOORS)


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_imports_only_go_down(package):
    wrong = []
    for path in sorted((REPO / package).rglob("*.py")):
        for name in _imports(path) - {package}:
            if FLOORS[name] >= FLOORS[package]:
                wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong, "\n".join(wrong)
