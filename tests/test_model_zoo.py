"""MODEL_ZOO.md lists every config in configs/ (acceptance e of issue 13): a table row naming its
path and the command of its docstring."""

import ast
import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "configs", "**", "*.py"), recursive=True))


@pytest.fixture(scope="module")
def zoo() -> str:
    with open(os.path.join(REPO, "MODEL_ZOO.md")) as f:
        return f.read()


@pytest.mark.parametrize("path", CONFIGS)
def test_every_config_has_a_row_and_its_command_in_the_model_zoo(zoo, path):
    rows = [line for line in zoo.splitlines() if line.startswith(f"| `{path}` |")]
    assert len(rows) == 1, f"MODEL_ZOO.md needs one table row for {path}"
    cells = [cell.strip() for cell in rows[0].strip("|").split("|")]
    assert len(cells) == 7 and cells[-1].startswith(("measured", "being measured", "not measured")), rows[0]
    with open(os.path.join(REPO, path)) as f:
        docstring = ast.get_docstring(ast.parse(f.read()))  # a command may continue its line with a backslash
    command = re.search(r"^\s*(python scripts/train\.py --config \S+ .*)$", docstring, re.M).group(1)
    assert " ".join(command.split()) in zoo, f"MODEL_ZOO.md does not hold {path}'s docstring command: {command}"
