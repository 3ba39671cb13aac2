"""The capacity plan: the formulas on hand-made shapes, the GPU/CPU balance, bad shapes, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dampeml.cli.main import app
from dampeml.errors import InputError
from dampeml.pipeline import capacity as cap
from dampeml.pipeline.capacity import Shape, capacity_plan, reprocessing_cost

REPO = Path(__file__).resolve().parents[1]


def test_cpu_stages_cost_the_start_up_plus_events_over_the_measured_rate_spread_over_the_cores():
    shape = Shape(cpu_nodes=10, cores_per_node=32)
    (row,) = capacity_plan(shape, produce=1e9)
    rate = cap.PRODUCTION
    wall_s = rate.start_s + 1e9 / (rate.per_core * 320)
    print(f"\n1e9 events: {row.core_hours:.1f} core-hours, {row.wall_hours:.2f} h on 320 cores")
    assert row.wall_hours == pytest.approx(wall_s / 3600)
    assert row.core_hours == pytest.approx(wall_s * 320 / 3600)
    assert row.storage_tb == pytest.approx(1e9 * cap.SIMULATED_BYTES / 1e12)
    twice = capacity_plan(Shape(cpu_nodes=20, cores_per_node=32), produce=1e9)[0]
    assert twice.wall_hours * 3600 - rate.start_s == pytest.approx((wall_s - rate.start_s) / 2)
    # the rate is a marginal one: the start-up is paid once, so a small job costs more per event
    small = cap.predicted_wall_s(rate, 1e4, 2) / 1e4
    large = cap.predicted_wall_s(rate, 1e7, 2) / 1e7
    assert small > 2 * large


def test_with_gpus_the_slower_side_sets_the_pace():
    events = 1e9
    few_cores = Shape(cpu_nodes=0, gpu_nodes=4, gpus_per_node=4, cores_per_gpu_node=2)  # 8 cores, 16 GPUs
    many_cores = Shape(cpu_nodes=0, gpu_nodes=4, gpus_per_node=1, cores_per_gpu_node=256)
    cpu_bound = reprocessing_cost(events, few_cores, "full")
    gpu_bound = reprocessing_cost(events, many_cores, "full")
    expect_cpu = events / (cap.CHAIN_CPU_WORK_PER_CORE * 8)
    expect_gpu = events / (cap.GPU_NETWORKS_PER_S["full"] * 4)
    print(f"\n1e9 events, full preset: 8 cores + 16 GPUs {cpu_bound.wall_hours:.1f} h, "
          f"1024 cores + 4 GPUs {gpu_bound.wall_hours:.1f} h")  # fmt: skip
    assert cpu_bound.wall_hours == pytest.approx(expect_cpu / 3600)
    assert gpu_bound.wall_hours == pytest.approx(expect_gpu / 3600)
    assert gpu_bound.gpu_hours == pytest.approx(expect_gpu * 4 / 3600)
    cpu_only = reprocessing_cost(events, Shape(cpu_nodes=1, cores_per_node=64), "small")
    assert cpu_only.gpu_hours == 0
    small = cap.REPROCESS_SMALL
    assert cpu_only.wall_hours == pytest.approx((small.start_s + events / (small.per_core * 64)) / 3600)


def test_bad_shapes_and_presets_are_refused_with_their_names():
    with pytest.raises(InputError, match="--gpu-nodes"):
        Shape(gpu_nodes=-1)
    with pytest.raises(InputError, match="no cores"):
        Shape(cpu_nodes=0, gpu_nodes=0)
    with pytest.raises(InputError, match="--preset"):
        reprocessing_cost(1e6, Shape(), "huge")
    with pytest.raises(InputError, match="'electron-proton'.*bgo-direction.*stk-hough"):
        capacity_plan(Shape(), build=1e6, build_kind="electron-proton")


def test_each_build_kind_costs_its_own_rate_and_bytes():
    shape = Shape(cpu_nodes=4, cores_per_node=16)
    rows = {k: capacity_plan(shape, build=1e8, build_kind=k)[0] for k in cap.BUILD}
    for kind, row in rows.items():
        rate = cap.BUILD[kind]
        assert row.stage == f"dataset build ({kind})"
        assert row.wall_hours * 3600 == pytest.approx(rate.start_s + 1e8 / (rate.per_core * 64))
        assert row.storage_tb == pytest.approx(1e8 * cap.BYTES_PER_EVENT[kind] / 1e12)
    assert rows["stk-hough"].storage_tb > 2 * rows["bgo-direction"].storage_tb  # the hits weigh more


def test_the_command_prints_every_stage_and_the_recipes_training():
    runner = CliRunner()
    res = runner.invoke(
        app, ["capacity", "--reprocess", "2e10", "--produce", "1e8", "--cpu-nodes", "0", "--gpu-nodes", "50",
              "--preset", "full", "--recipe", str(REPO / "recipes" / "chain.yaml"), "--profile", "paper"],
    )  # fmt: skip
    print(res.output)
    assert res.exit_code == 0, res.output
    assert "| production | 1e+08 |" in res.output and "| reprocessing | 2e+10 |" in res.output
    assert res.output.count("| training ") == 8  # the paper profile's steps
    empty = runner.invoke(app, ["capacity"])
    assert empty.exit_code == 2 and "--produce" in empty.output
