"""Bad command-line values give one clear line naming the option, exit 2 (bad input), and no work done.

Issue 19, defects 7 and 8: a simulation that could not write its file failed after simulating
everything (with a traceback), `--out DIR --overwrite`, a dataset `--out` that is a file and an
invalid alias escaped as tracebacks, and `--energy-max inf` or `--events 1e20` were accepted.
The heavy functions behind each command are replaced by ones that fail the test if reached.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import typer

from tests.cli_runner import invoke_cli, run_cli

pytestmark = pytest.mark.timeout(120)

SIM = ("--particle", "proton", "--events", "10", "--energy-min", "10", "--energy-max", "100")


def _one_error(code: int, out: str, *names: str) -> None:
    print(f"\n{out}")
    assert code == 2 and "Traceback" not in out and out.count("error:") == 1, out
    for name in names:
        assert name in out, (name, out)


@pytest.fixture
def no_work(monkeypatch):
    """Simulation, the registry's promote, Ray and the dataset build fail the test if reached."""

    def reached(what):
        def fail(*args, **kwargs):
            raise AssertionError(f"{what} was reached: the check must come first")

        return fail

    monkeypatch.setattr("dampeml.detector.simulation.simulate", reached("the simulation"))
    monkeypatch.setattr("dampeml.registry.models.promote", reached("the registry's promote"))
    monkeypatch.setattr("dampeml.runtime.init_ray", reached("Ray"))
    monkeypatch.setattr("dampeml.datasets.build.build_dataset", reached("the dataset build"))


# ---- defect 7: errors that escaped as tracebacks


def test_simulate_checks_that_it_can_write_before_simulating(no_work, tmp_path):
    a_file = tmp_path / "a-file"
    a_file.write_text("keep")
    for out, why in [
        (a_file / "p.root", "is a file, not a folder"),  # NotADirectoryError after simulating, before
        ("/proc/dampeml-no-such/p.root", "cannot write in /proc"),  # procfs makes no files, not even for root
    ]:
        code, text = run_cli("simulate", *SIM, "--out", str(out))
        _one_error(code, text, "--out", str(out), why)
    assert a_file.read_text() == "keep"


def test_simulate_overwrite_never_replaces_a_folder(no_work, tmp_path):
    folder = tmp_path / "runs"
    (folder / "inner").mkdir(parents=True)
    code, text = run_cli("simulate", *SIM, "--out", str(folder), "--overwrite")
    _one_error(code, text, f"--out {folder} is a folder", "name a file")
    code, text = run_cli("simulate", *SIM, "--out", str(folder))
    _one_error(code, text, f"--out {folder} is a folder")
    assert (folder / "inner").is_dir()


def test_dataset_out_that_is_an_existing_file_is_refused(no_work, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"name: x\nkind: bgo-direction\nsources:\n- type: files\n  glob: '{tmp_path}/*.root'\n"
        "features: [bgo_image]\ntargets: [track]\n"
    )
    out = tmp_path / "existing.txt"
    out.write_text("keep")
    code, text = run_cli("dataset", "build", str(spec), "--out", str(out))
    _one_error(code, text, f"--out {out} is an existing file", "name a folder")
    assert out.read_text() == "keep"


def test_an_error_naming_a_long_path_prints_it_whole_on_one_line(no_work, tmp_path):
    """Rich folds lines at the console's width (80 columns off a terminal): an error's path must not be
    cut in two, or a user copying it gets a path that does not exist."""
    deep = tmp_path / ("a-folder-with-a-name-long-enough-to-pass-eighty-columns-" * 2)
    deep.mkdir()
    out = deep / "existing.txt"
    out.write_text("keep")
    r = invoke_cli("reprocess", "--input", f"{tmp_path}/*.root", "--out", str(out))
    lines = [line for line in r.output.splitlines() if "error:" in line]
    print(r.output)
    assert r.exit_code == 2 and len(lines) == 1 and str(out) in lines[0], r.output


def test_reprocess_and_sim_plots_refuse_an_out_that_is_a_file(no_work, tmp_path):
    out = tmp_path / "existing.txt"
    out.write_text("keep")
    code, text = run_cli("reprocess", "--input", f"{tmp_path}/*.root", "--out", str(out))
    _one_error(code, text, f"--out {out} is an existing file")
    code, text = run_cli("sim-plots", str(tmp_path / "a.root"), "--out", str(out))
    _one_error(code, text, f"--out {out} is an existing file")
    assert out.read_text() == "keep"


@pytest.mark.parametrize("alias", ["../../x", "prod/x", "with space", "latest", "v3", "", "a" * 256, "é"])
def test_an_invalid_alias_is_refused_before_the_registry_or_ray(no_work, tmp_path, alias):
    code, text = run_cli("models", "promote", "bgo-direction-low", "1", "--alias", alias)
    _one_error(code, text, "--alias", "is not a registry alias")
    # reprocess used to reach the registry, whose message then suggested `models promote --alias ../../x`
    code, text = run_cli(
        "reprocess", "--input", f"{tmp_path}/*.root", "--out", str(tmp_path / "r"), "--alias", alias
    )
    _one_error(code, text, "--alias", "is not a registry alias")
    assert "models promote" not in text
    code, text = run_cli(
        "evaluate", "--input", f"{tmp_path}/*.root", "--out", str(tmp_path / "e"), "--alias", alias
    )
    _one_error(code, text, "--alias", "is not a registry alias")
    code, text = run_cli("align", "bgo-direction-mid", "--flight", f"{tmp_path}/*.root", "--alias", alias)
    _one_error(code, text, "--alias", "is not a registry alias")
    assert not any(tmp_path.iterdir())


def test_the_alias_check_agrees_with_the_registry_uri_check():
    from dampeml.registry.models import RegistryError, check_model_uri
    from dampeml.security import check_alias

    for good in ("production", "staging-2", "ab_c", "A1"):
        assert check_alias(good) == good
    for bad in ("../x", "a/b", "a.b", "a@b"):
        with pytest.raises(ValueError, match="not a registry alias"):
            check_alias(bad)
        with pytest.raises(RegistryError, match="not a registry URI"):
            check_model_uri(f"models:/bgo-direction-low@{bad}")


def test_an_os_error_the_checks_missed_is_one_line(tmp_path, capsys):
    """The safety net: a disk, permission or network failure mid-command is one line, exit 1."""
    from dampeml.cli.errors import clean_errors

    @clean_errors
    def writes():
        open(tmp_path / "missing" / "x", "w")  # noqa: SIM115

    with pytest.raises(typer.Exit) as exc:
        writes()
    err = " ".join(capsys.readouterr().err.split())
    assert exc.value.exit_code == 1 and err.count("error:") == 1, err
    assert f"No such file or directory: {tmp_path / 'missing' / 'x'}" in err, err


# ---- defect 8: range checks, by option name


@pytest.mark.parametrize(
    "option,value,message",
    [
        ("--energy-max", "inf", "--energy-max inf: must be a finite number"),
        ("--energy-min", "nan", "--energy-min nan: must be a finite number"),
        ("--spectrum-index", "nan", "--spectrum-index nan: must be a finite number"),
        ("--energy-min", "200", "need 0 < --energy-min < --energy-max"),
        ("--events", "0", "--events 0: simulate at least 1 event"),
        ("--events", str(10**20), "simulate-production"),
        ("--events", "1000001", "at most 1000000 events per file"),
        ("--seed", "-1", "--seed -1: must be >= 0"),
    ],
)
def test_simulate_refuses_values_out_of_range_by_option_name(no_work, tmp_path, option, value, message):
    args = dict(zip(SIM[::2], SIM[1::2], strict=True)) | {option: value}
    out = tmp_path / "p.root"
    code, text = run_cli("simulate", *(x for kv in args.items() for x in kv), "--out", str(out))
    _one_error(code, text, message)
    assert "n_events" not in text and not out.exists()


def test_simulate_production_refuses_non_finite_energies_and_huge_shards(no_work, tmp_path):
    out = tmp_path / "prod"
    code, text = run_cli("simulate-production", *SIM[:-1], "inf", "--out", str(out))
    _one_error(code, text, "--energy-max inf: must be a finite number")
    code, text = run_cli("simulate-production", *SIM, "--events-per-shard", str(10**7), "--out", str(out))
    _one_error(code, text, "--events-per-shard 10000000")
    assert not out.exists()


def test_the_simulation_config_refuses_non_finite_energies_and_oversized_files():
    from dampeml.detector.simulation import MAX_EVENTS_PER_FILE, SimulationConfig

    for kwargs in ({"energy_max": math.inf}, {"energy_min": math.nan}, {"spectrum_index": math.inf}):
        with pytest.raises(ValueError, match="finite"):
            SimulationConfig(
                **({"particle": "proton", "n_events": 10, "energy_min": 10.0, "energy_max": 100.0} | kwargs)
            )
    with pytest.raises(ValueError, match="simulate-production"):
        SimulationConfig("proton", MAX_EVENTS_PER_FILE + 1, 10.0, 100.0)


def test_the_simulation_job_script_names_bad_options_and_refuses_outside_storage(
    no_work, tmp_path, monkeypatch, capsys
):
    """jobs/simulate.py (ray job submit) is `dampeml simulate-production`: bad options by name and a
    --out outside DAMPEML_ALLOWED_STORAGE (once a PermissionError traceback) are one line, exit 2."""
    import runpy

    import dampeml.detector.production

    path = Path(__file__).resolve().parents[1] / "jobs" / "simulate.py"
    monkeypatch.setattr(
        dampeml.detector.production,
        "run_production",
        lambda *a, **k: pytest.fail("the production was reached"),
    )
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("DAMPEML_ALLOWED_STORAGE", str(tmp_path / "data"))
    for args, message in [
        (
            [*SIM[:-1], "inf", "--out", str(tmp_path / "data" / "p")],
            "--energy-max inf: must be a finite number",
        ),
        ([*SIM, "--out", str(tmp_path / "data" / "p"), "--events-per-shard", "0"], "--events-per-shard 0"),
        ([*SIM, "--out", str(tmp_path / "elsewhere")], "outside the allowed storage"),
    ]:
        monkeypatch.setattr(sys, "argv", [str(path), *args])
        with pytest.raises(SystemExit) as exit_:
            runpy.run_path(str(path), run_name="__main__")
        err = " ".join(capsys.readouterr().err.split())
        assert exit_.value.code == 2 and err.count("error:") == 1 and message in err, (args, err)
    assert not (tmp_path / "data" / "p").exists() and not (tmp_path / "elsewhere").exists()


@pytest.mark.parametrize(
    "raised, code, shown",
    [
        ("input", 2, "error: --foo 3: must be 1 or 2"),
        ("job", 1, "error: 2 of 8 units failed: rerun the same command to finish"),
    ],
)
def test_exit_codes_tell_bad_input_from_a_failed_job(capsys, raised, code, shown):
    """Bad input exits 2, a job that could not finish exits 1, each as one line."""
    from dampeml.cli.errors import clean_errors
    from dampeml.errors import InputError, JobError

    @clean_errors
    def command():
        if raised == "input":
            raise InputError("--foo 3: must be 1 or 2")
        raise JobError("2 of 8 units failed: rerun the same command to finish")

    with pytest.raises(typer.Exit) as exc:
        command()
    err = " ".join(capsys.readouterr().err.split())
    assert exc.value.exit_code == code and err == shown, err


def test_a_bug_keeps_its_traceback(monkeypatch):
    """A KeyError (or any exception the project does not raise on purpose) is not turned into a
    one-line message: the real CLI exits 1 with the exception and its traceback."""
    import traceback

    import dampeml.registry.models

    def bug(*args, **kwargs):
        return {}["no such key"]

    monkeypatch.setattr(dampeml.registry.models, "list_versions", bug)
    r = invoke_cli("models", "list")
    assert r.exit_code == 1 and isinstance(r.exception, KeyError), (r.exit_code, r.output)
    frames = "".join(traceback.format_exception(r.exception))
    print(frames)
    assert "in bug" in frames and "error:" not in r.output


def test_a_config_file_gives_any_commands_options_and_the_command_line_wins(tmp_path):
    """`dampeml --config FILE CMD`: the file's values (either spelling of a name) with the flags
    given winning; a key that is no option of the command, or a value of the wrong type, is one
    line naming it, exit 2, before any work; it reaches commands inside a group too."""
    config = tmp_path / "sim.yaml"
    out = tmp_path / "p.root"
    config.write_text(f"particle: helium\nevents: 3\nenergy-min: 10\nenergy_max: 100\nout: {out}\n")
    code, text = run_cli("--config", str(config), "simulate", "--events", "4")
    assert code == 0 and "wrote 4 mc helium events" in text, text
    config.write_text("particle: helium\nevnts: 3\n")
    code, text = run_cli("--config", str(config), "simulate")
    _one_error(code, text, "'evnts' is not an option of `dampeml simulate`", "events, mode")
    config.write_text("limit-events: 100\nworkers: 2\n")
    code, text = run_cli("--config", str(config), "dataset", "build", "x.yaml", "--out", str(tmp_path / "ds"))
    _one_error(code, text, "'workers' is not an option of `dampeml dataset build`", "limit-events")
    config.write_text("limit-events: ten\n")
    code, text = run_cli("--config", str(config), "dataset", "build", "x.yaml", "--out", str(tmp_path / "ds"))
    assert code == 2 and "--limit-events" in text and not (tmp_path / "ds").exists(), text
