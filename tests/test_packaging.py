"""A built wheel carries the shipped specs, recipes, campaigns and model zoo as package data and
finds them from any directory, as the editable install does (dampeml.paths)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
def test_a_wheel_finds_the_shipped_files_outside_the_repository(tmp_path):
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    src = tmp_path / "src"
    for name in files.splitlines():  # the committed tree (links included), not the working folders
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_symlink():
            (src / name).symlink_to((REPO / name).readlink())
        else:
            shutil.copy2(REPO / name, src / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q"]
    build = subprocess.run(
        [*pip, "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=500
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("dampeml-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("recipes/chain.yaml", "datasets/bgo-direction-low.yaml", "zoo/reference/zoo.json"):
        assert f"dampeml/shipped/{shipped}" in names, shipped
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import dampeml, dampeml.paths as p; from dampeml.pipeline.recipe import load_recipe;"
        "from dampeml.pipeline.demo import RECIPE, REFERENCE_ZOO;"
        "r = load_recipe(RECIPE, 'reference');"
        "print(dampeml.__file__, len(r.steps), all(x.is_file() for x in r.dataset_paths.values()),"
        " (REFERENCE_ZOO / 'zoo.json').is_file())"
    )
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True)
    print(out.stdout, out.stderr[-2000:])
    where, n_steps, specs, zoo = out.stdout.split()
    assert where.startswith(str(site)) and int(n_steps) >= 8 and specs == "True" and zoo == "True"
    help_ = subprocess.run(
        [sys.executable, "-m", "dampeml.cli.main", "demo", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert help_.returncode == 0 and "--workdir" in help_.stdout, help_.stderr[-2000:]
