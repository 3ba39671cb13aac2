"""Hough datasets seeded by registered models: each RoI is centred on the track the registered
chain has after the upstream stage, computed in a Ray Data actor pool; the manifest records the
models, and a build is never resumed with other versions of them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

SPEC = """name: seeded-precise
kind: stk-hough
sources:
- type: files
  glob: '{glob}'
  events_per_unit: 100
features: [hough_hits]
targets: [hough_offsets, track]
roi:
  source: model
  upstream: coarse
  alias: seeded
  geometry: precise
"""
UPSTREAM = ("bgo-direction-low", "bgo-direction-mid", "bgo-direction-high", "stk-hough-coarse")


@pytest.fixture(scope="module")
def ray_local():
    import ray

    from dampeml.runtime import init_ray

    init_ray(num_cpus=4, object_store_memory=300 * 2**20)
    yield
    ray.shutdown()


def _stored(out: Path) -> dict[int, np.ndarray]:
    """{event_id: the stored RoI centre} over every split."""
    table = pq.read_table([str(p) for p in sorted(out.glob("*/*.parquet"))])
    roi = np.stack([table[f"roi_{c}"].to_numpy() for c in ("x_top", "y_top", "x_bot", "y_bot")], axis=1)
    return dict(zip(table["event_id"].to_numpy().tolist(), roi, strict=True))


@pytest.mark.timeout(900)
def test_a_model_seeded_build_uses_the_chains_track_and_refuses_other_versions(
    tmp_path, sample_files, registered_models, monkeypatch, ray_local
):
    import mlflow

    from dampeml.datasets.build import DatasetBuildError, build_dataset, dataset_version
    from dampeml.datasets.spec import load_spec
    from dampeml.io.root_reader import read_events
    from dampeml.models.architecture import Architecture
    from dampeml.reconstruction.chain import UPSTREAM_FIELDS, Chain, chosen_models
    from dampeml.reconstruction.config import ChainConfig
    from dampeml.registry.bootstrap import log_model
    from dampeml.registry.tracking import setup_mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered_models)
    setup_mlflow()  # mlflow's global URI may still name an earlier test's (stopped) server
    client = mlflow.MlflowClient()
    for name in UPSTREAM:  # a private alias: the session's store is shared with other tests
        client.set_registered_model_alias(name, "seeded", "1")
    spec_path = tmp_path / "seeded.yaml"
    spec_path.write_text(SPEC.format(glob=sample_files["proton"]))
    out = tmp_path / "ds"
    manifest = build_dataset(load_spec(spec_path), str(out), limit_events=200).manifest

    records = {r["name"]: r for r in manifest["upstream_models"]}
    assert set(records) == set(UPSTREAM) and {r["version"] for r in records.values()} == {"1"}
    assert all(r["run_id"] for r in records.values())
    assert "+up" in manifest["dataset_version"]

    # the stored RoI centres are the coarse-stage track of the chain of those versions, event by event
    chain = Chain.from_versions(chosen_models("seeded", False, UPSTREAM_FIELDS["coarse"]))
    events = read_events(sample_files["proton"])  # the limit takes events from every unit
    coarse = chain.upstream_track(events, "coarse")
    seed = chain.upstream_track(events, "seed")
    stored = _stored(out)
    rows = [i for i, e in enumerate(events["event_id"].tolist()) if e in stored]
    got = np.stack([stored[int(events["event_id"][i])] for i in rows])
    print(f"\n{len(rows)} events stored; largest |stored - chain| {np.abs(got - coarse[rows]).max():.2e} mm")
    assert len(rows) == manifest["accounting"]["written"] > 100
    np.testing.assert_allclose(got, coarse[rows].astype(np.float32), atol=1e-3)
    # and not the seed: the (untrained) coarse network moves RoIs by up to ~0.05 mm, 50x the tolerance
    assert np.abs(got - seed[rows]).max() > 0.01, "the stored RoIs are the seed, not the coarse stage"

    # the alias moves to a new coarse version: the unfinished build is not resumed with it
    model = Architecture("stk-hough-coarse").build()
    new = log_model(Architecture("stk-hough-coarse"), model, aliases=["seeded"])
    with pytest.raises(DatasetBuildError, match=rf"'stk-hough-coarse': '1'.*'stk-hough-coarse': '{new}'"):
        build_dataset(load_spec(spec_path), str(out), limit_events=200, resume=True)
    # and a build from the new versions is another dataset version
    now = chosen_models("seeded", False, UPSTREAM_FIELDS["coarse"])
    assert now["hough_coarse"] == ("stk-hough-coarse", new)
    assert dataset_version(load_spec(spec_path), now) != manifest["dataset_version"]
    # the chain settings that place the coarse stage's track are part of the version; later ones not
    spec = load_spec(spec_path)
    assert manifest["upstream_chain"]["axis_seed_from_layer"] == ChainConfig().axis_seed_from_layer
    assert "refit_outlier_mm" not in manifest["upstream_chain"]
    other_seed_rule = ChainConfig(axis_seed_from_layer=None)
    assert dataset_version(spec, now, other_seed_rule) != dataset_version(spec, now)
    assert dataset_version(spec, now, ChainConfig(refit_outlier_mm=None)) == dataset_version(spec, now)
