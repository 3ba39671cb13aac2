"""`dampeml sim-plots`: the validation PNGs are written, valid and not blank; bad input exits cleanly."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from matplotlib import image as mpimg
from typer.testing import CliRunner

from dampeml.cli.main import app

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MC_PLOTS = {
    "bgo_deposited_energy",
    "bgo_longitudinal_profile",
    "bgo_lateral_rms",
    "backsplash_vs_deposit",
    "stk_charge",
    "psd_charge",
    "inelastic_fraction",
    "event_display_proton",
}


def _run(*args: str):
    return CliRunner().invoke(app, ["sim-plots", *args])


def _check_png(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC, f"{path.name} is not a PNG"
    assert len(data) > 15_000, f"{path.name} is suspiciously small ({len(data)} bytes)"
    pixels = mpimg.imread(path)[..., :3]
    assert pixels.std() > 0.02, f"{path.name} looks blank"
    # more than a frame and a few labels: a real plot leaves many pixels non-white
    assert np.mean(pixels.min(axis=-1) < 0.9) > 0.01, f"{path.name} is nearly empty"


def test_sim_plots_mc_and_flight(sample_files, tmp_path):
    out = tmp_path / "plots"
    files = [str(sample_files[k]) for k in ("proton", "helium", "electron", "flight")]
    result = _run(*files, "--out", str(out))
    print(result.output)
    assert result.exit_code == 0, result.output
    names = {p.stem for p in out.glob("*.png")}
    assert names == MC_PLOTS | {"event_display_flight"}
    for p in sorted(out.glob("*.png")):
        _check_png(p)
    assert f"wrote {len(names)} plots" in result.output


def test_sim_plots_flight_only(sample_files, tmp_path):
    """Flight files have no truth: only the plots that need none, and no crash."""
    out = tmp_path / "plots"
    result = _run(str(sample_files["flight"]), "--out", str(out))
    assert result.exit_code == 0, result.output
    names = {p.stem for p in out.glob("*.png")}
    assert names == {"bgo_deposited_energy", "bgo_longitudinal_profile", "event_display_flight"}
    for p in out.glob("*.png"):
        _check_png(p)


@pytest.mark.parametrize("damage", ["truncated", "not_root"])
def test_sim_plots_bad_file_exits_1_with_its_name(sample_files, tmp_path, damage):
    bad = tmp_path / f"proton_{damage}.root"
    if damage == "truncated":
        data = sample_files["proton"].read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    else:
        bad.write_text("this is not a ROOT file\n")
    good = tmp_path / "good.root"
    shutil.copy(sample_files["helium"], good)
    result = _run(str(good), str(bad), "--out", str(tmp_path / "plots"))
    print(result.output)
    assert result.exit_code == 2
    flat = result.output.replace("\n", "")
    assert bad.name in flat
    assert "error" in result.output.lower()
    assert "Traceback" not in result.output
