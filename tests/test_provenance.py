import shutil
import subprocess
import sys
from pathlib import Path

import probes
from probes.provenance import (
    STAGE_ENTRY,
    STAGE_MODULES,
    module_path,
    normalised_source,
    source_digest,
    stage_digest,
    stage_modules,
)

PACKAGE = Path(probes.__file__).parent


def test_digest_ignores_comments_docstrings_and_formatting_but_not_code(tmp_path):
    shutil.copy(PACKAGE / "estimator.py", tmp_path / "estimator.py")
    before = source_digest("estimator", package=tmp_path)
    src = (tmp_path / "estimator.py").read_text()
    cosmetic = src.replace('"""Linear classifier probes', '"""Reworded: linear classifier probes', 1)
    cosmetic = cosmetic.replace("import time\n", "import time  # a new comment\n\n", 1)
    assert cosmetic != src
    (tmp_path / "estimator.py").write_text(cosmetic)
    assert source_digest("estimator", package=tmp_path) == before
    (tmp_path / "estimator.py").write_text(src.replace("curvature_rows: int = 2000", "curvature_rows: int = 3000", 1))
    assert source_digest("estimator", package=tmp_path) != before


def test_every_stage_names_existing_modules_and_the_probe_digest_covers_its_code():
    for stage, modules in STAGE_MODULES.items():
        assert all(module_path(m) is not None for m in modules), stage
        assert len(stage_digest(stage)) == 16
    assert stage_digest("probe") != stage_digest("train")


def test_normalised_source_is_blind_to_layout_only():
    a = 'class M:\n    """A model."""\n    def f(self, x):  # comment\n        return x * 2\n'
    b = "class M:\n\n    def f( self, x ):\n        return (x * 2)\n"
    assert normalised_source(a) == normalised_source(b)
    assert normalised_source(a) != normalised_source(b.replace("2", "3"))
    assert normalised_source("    def g():\n        return 1\n") == normalised_source("def g():\n    return 1\n")


def test_each_stage_digest_covers_every_package_module_its_code_loads():
    # the modules Python actually loads for a stage's entry module, against the digest's: a module a
    # stage starts to use (a future probe/warm.py, say) must rerun the stage when it changes
    for stage, entry in STAGE_ENTRY.items():
        code = f"import sys, probes.{entry}; print(' '.join(sorted(m for m in sys.modules if m.startswith('probes.'))))"
        loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert {m.removeprefix("probes.") for m in loaded.split()} <= set(STAGE_MODULES[stage]), stage


def test_a_module_a_stage_starts_to_import_joins_its_digest(tmp_path):
    shutil.copytree(PACKAGE, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    assert "warm" not in stage_modules("probe", package=tmp_path)
    (tmp_path / "warm.py").write_text("def start():\n    return 1\n")
    src = (tmp_path / "solver.py").read_text()
    (tmp_path / "solver.py").write_text(
        src.replace("import numpy as np\n", "import numpy as np\n\nfrom .warm import start\n", 1)
    )
    modules = stage_modules("probe", package=tmp_path)
    assert "warm" in modules and "warm" not in stage_modules("train", package=tmp_path)
    before = source_digest(*modules, package=tmp_path)
    (tmp_path / "warm.py").write_text("def start():\n    return 2\n")
    assert source_digest(*modules, package=tmp_path) != before


def test_a_subpackage_module_and_its_relative_imports_are_in_the_digest(tmp_path):
    # datasets/ is a package: its __init__, its modules, and what they import with ``from ..x``
    package = tmp_path / "probes"
    shutil.copytree(PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    modules = stage_modules("train", package=package)
    assert {"datasets", "datasets.idx", "datasets.mnist", "files", "atomic"} <= set(modules)
    assert "datasets.idx" not in stage_modules("probe", package=package)
    before = source_digest(*modules, package=package)
    idx = package / "datasets" / "idx.py"
    idx.write_text(idx.read_text().replace("127.5", "127.0", 1))
    assert source_digest(*modules, package=package) != before
