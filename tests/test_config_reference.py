"""The configuration reference is generated from the code, complete, and current."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from dampeml.cli.main import app
from dampeml.cli.reference import render, undocumented

ROOT = typer.main.get_command(app)

PAGE = Path(__file__).parents[1] / "docs" / "config-reference.md"

pytestmark = pytest.mark.timeout(120)


def test_the_shipped_page_is_what_the_code_generates():
    fix = "run `dampeml config-reference --out docs/config-reference.md`"
    assert PAGE.read_text() == render(ROOT), f"docs/config-reference.md is out of date: {fix}"


def test_every_field_and_option_says_what_it_means():
    missing = undocumented(ROOT)
    print("\n".join(missing))
    assert not missing, f"{len(missing)} fields without a meaning: add a `#:` comment or a description"


def test_the_page_covers_every_file_kind_and_command():
    text = render(ROOT)
    headings = ["## Dataset spec", "## Training recipe", "## Recipe step", "### `TrainSettings`"]
    headings += [
        "## Ablation campaign",
        "## Chain settings",
        "### `HoughGeometry`",
        "### `dampeml reprocess`",
    ]
    headings += ["### `dampeml pipeline run`", "### `dampeml dataset build`"]
    for heading in headings:
        assert heading in text, heading
    assert "| `coarse_below_mev` | float | `1000000.0` |" in text


def test_a_config_file_takes_the_keys_the_page_names(tmp_path):
    """`input` (the flag of --input) and `chain` (of --chain) are keys, as the page lists them; the
    command then runs into its own check (a bad alias: exit 2), not into an unknown key."""
    assert "| `input` |" in render(ROOT) and "| `chain` |" in render(ROOT)
    config = tmp_path / "evaluate.yaml"
    config.write_text(
        f"input: {tmp_path}/none.root\nout: {tmp_path}/r\nchain: {tmp_path}/c.yaml\nalias: 'bad alias'\n"
    )
    res = CliRunner().invoke(app, ["--config", str(config), "evaluate"])
    assert res.exit_code == 2 and "alias" in res.output and "not an option" not in res.output, res.output
    config.write_text("inputs: x.root\n")
    res = CliRunner().invoke(app, ["--config", str(config), "evaluate"])
    assert res.exit_code == 2 and "'inputs' is not an option" in res.output and "chain, " in res.output
