"""Training through Ray Train (2 CPU workers), fault tolerance, the MLflow registry and its gates."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dampeml.cli.main import app
from dampeml.datasets.build import build_dataset
from dampeml.datasets.spec import load_spec
from dampeml.training.config import TrainConfig
from tests.conftest import registered_epoch, wait_for_idle_ray

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("ray_idle")  # each test starts on an idle Ray (conftest)
DATASET_OF = {  # network -> small spec of its dataset kind
    "bgo-direction-low": "bgo-direction-low-small",
    "stk-hough-coarse": "stk-hough-coarse-small",
    "stk-hough-precise": "stk-hough-precise-small",
    "inelastic-raw-stk": "inelastic-raw-stk-small",
    "inelastic-hough": "inelastic-hough-small",
    "electron-proton": "electron-proton-small",
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Local Ray with room for 2 workers + the data feed, MLflow on a private sqlite store."""
    import ray

    from dampeml.runtime import init_ray

    root = tmp_path_factory.mktemp("training")
    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.chdir(root)
    init_ray(num_cpus=4)
    yield root
    ray.shutdown()
    mp.undo()


@pytest.fixture(scope="module")
def datasets(env):
    out = {}
    for network, spec in DATASET_OF.items():
        uri = str(env / "datasets" / spec)
        if not Path(uri, "manifest.json").exists():
            build_dataset(load_spec(REPO / "datasets" / f"{spec}.yaml"), uri, limit_events=1000)
        out[network] = uri
    return out


def _ray_train_worker_pids() -> list[int]:
    """PIDs of this test's Ray Train workers (Ray titles them ray::RayTrainWorker...): only among
    the descendants of this process, whose local Ray started them, never another Ray's on the machine."""
    from tests.cluster_harness import descendants

    pids = []
    for pid in descendants(os.getpid()):
        try:
            if b"RayTrainWorker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return sorted(pids)


def _latest_state(env: Path, run: str) -> dict:
    """The training state saved with the run's newest checkpoint."""
    from dampeml.training.trainer import latest_checkpoint

    with open(Path(latest_checkpoint(str(env / "runs"), run).path) / "state.json") as f:
        return json.load(f)


def _kill_a_worker_after_checkpoints(run_dir: Path, checkpoints: int = 3) -> None:
    """SIGKILL one Ray Train worker of the run once the controller has registered the checkpoint
    of epoch `checkpoints` (waits on that record, not on a sleep)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and registered_epoch(run_dir) < checkpoints:
        time.sleep(0.2)
    registered = registered_epoch(run_dir)
    assert registered >= checkpoints, f"no epoch-{checkpoints} checkpoint registered (latest {registered})"
    workers = _ray_train_worker_pids()
    assert workers, "no Ray Train worker process found to kill"
    os.kill(workers[0], signal.SIGKILL)


def _train(network, uri, env, resume=False, **kw):
    from dampeml.training.trainer import train

    cfg = dict(
        network=network,
        dataset=uri,
        workers=2,
        epochs=3,
        steps_per_epoch=4,
        storage=str(env / "runs"),
        register=False,
    )
    cfg.update(kw)
    return train(TrainConfig(**cfg), resume=resume)


#: one network per architecture and head (stk-hough-precise is stk-hough-coarse's network on another
#: image geometry: its dataset is built and refused by name in the bad-input test)
FAMILY_NETWORKS = [n for n in DATASET_OF if n != "stk-hough-precise"]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("network", FAMILY_NETWORKS)
def test_each_family_trains_through_ray_train_and_learns(network, datasets, env):
    """3 epochs of 4 steps through Ray Train on one worker (16 for the six-layer track regressions, which move
    off their start at the image centre more slowly): the test-split loss falls below that of the
    same network untrained (the per-epoch training loss is no measure here: every epoch sees
    other shuffled batches, so a few steps of it are mostly noise)."""
    import tensorflow as tf

    from dampeml.models.catalog import build, get_network
    from dampeml.training.metrics import evaluate_test

    net = get_network(network)
    key = "test_mse" if net.task == "regression" else "test_bce"
    tf.keras.utils.set_random_seed(0)
    before = evaluate_test(build(network, preset="small"), datasets[network], net)[0]
    steps = 16 if network.startswith("stk-hough") else 4
    # one worker (TensorFlow's default strategy): the two-worker path is the other tests' (it costs
    # ~8 s more per run on a 2-core machine)
    result = _train(network, datasets[network], env, steps_per_epoch=steps, workers=1)
    losses = [h["loss"] for h in result.history]
    print(f"\n{network}: loss per epoch {np.round(losses, 4).tolist()}, test {result.test}, "
          f"untrained {key} {before[key]:.4g}")  # fmt: skip
    assert [h["epoch"] for h in result.history] == [1, 2, 3]
    # each epoch is timed (bench_training.py --steady): the training pass within the whole epoch
    assert all(0 < h["fit_seconds"] < h["epoch_seconds"] and h["val_seconds"] > 0 for h in result.history)
    assert all(np.isfinite(list(result.test.values())))
    assert result.test[key] < before[key]


@pytest.mark.timeout(600)
def test_run_out_of_retries_resumes_by_hand(datasets, env):
    """With no retries left the run fails with an error that says how to resume it; resuming
    continues from its last checkpoint and runs each epoch once. (A run with retries left restores
    itself: tests/test_cluster.py kills a node under a run, on the local multi-node cluster.)"""
    from dampeml.training.trainer import TrainingError

    run, epochs, uri = "out-of-retries", 12, datasets["bgo-direction-low"]
    outcome = {}

    def first_try():
        try:
            _train("bgo-direction-low", uri, env, epochs=epochs, run_name=run, max_failures=0)
        except TrainingError as exc:
            outcome["error"] = str(exc)

    t = threading.Thread(target=first_try)
    t.start()
    run_dir = env / "runs" / run
    _kill_a_worker_after_checkpoints(run_dir)
    t.join(timeout=300)
    print(f"\nfirst try: {outcome.get('error', 'finished')[:300]}")
    assert "failed after 0 retries" in outcome.get("error", ""), "the kill should end a run with no retries"
    assert f"--run-name {run} --resume" in outcome["error"]
    done_before = registered_epoch(run_dir)  # the newest checkpoint (num_to_keep=2 deletes older ones)
    assert 3 <= done_before < epochs

    result = _train("bgo-direction-low", uri, env, epochs=epochs, run_name=run, max_failures=0, resume=True)
    state = _latest_state(env, run)
    print(f"resumed from epoch {state.get('restored_from_epoch')}, epoch {done_before} checkpointed before")
    assert [h["epoch"] for h in result.history] == list(range(1, epochs + 1))
    assert state["restored_from_epoch"][0] >= done_before  # the last checkpoint of the first try


@pytest.fixture(scope="module")
def registered_bgo(datasets, env):
    """A registered bgo-direction-low version trained for 3 epochs of 6 steps (two tests use it);
    module-scoped, so it is set up before the test's own `ray_idle`: it waits itself."""
    wait_for_idle_ray()
    return _train(
        "bgo-direction-low", datasets["bgo-direction-low"], env, epochs=3, steps_per_epoch=6, register=True
    )


@pytest.mark.timeout(600)
def test_registry_round_trip_and_promotion_gate(registered_bgo, datasets, env):
    from dampeml.models.architecture import Architecture
    from dampeml.registry.models import (
        PromotionRefusedError,
        RegistryError,
        list_versions,
        load_model,
        promote,
    )
    from dampeml.training.trainer import load_checkpoint_model

    uri = datasets["bgo-direction-low"]
    good = registered_bgo
    poor = _train("bgo-direction-low", uri, env, epochs=1, steps_per_epoch=1, register=True)
    assert good.model_version != poor.model_version
    better, worse = sorted([good, poor], key=lambda r: r.test["test_mae"])
    print(
        f"\nMAE: v{better.model_version} {better.test['test_mae']:.2f}, "
        f"v{worse.model_version} {worse.test['test_mae']:.2f}"
    )
    assert better.test["test_mae"] < worse.test["test_mae"]

    print(promote("bgo-direction-low", better.model_version, "production"))
    with pytest.raises(PromotionRefusedError, match="worse than @production"):
        promote("bgo-direction-low", worse.model_version, "production")
    aliases = {v.version: v.aliases for v in list_versions("bgo-direction-low")}
    assert "production" in aliases[better.model_version]

    # the registered model by alias gives exactly the checkpoint model's outputs
    x = np.random.default_rng(0).random((16, 14, 22, 1)).astype(np.float32)
    reg = load_model("models:/bgo-direction-low@production")
    ref = load_checkpoint_model(better.checkpoint, Architecture("bgo-direction-low"))
    np.testing.assert_array_equal(reg.predict(x, verbose=0), ref.predict(x, verbose=0))

    promote("bgo-direction-low", worse.model_version, "production", force=True)
    with pytest.raises(RegistryError, match="cannot load models:/bgo-direction-low@nonexistent"):
        load_model("models:/bgo-direction-low@nonexistent")
    with pytest.raises(RegistryError, match="no version 99"):
        promote("bgo-direction-low", "99")


@pytest.mark.timeout(600)
def test_fine_tuning_starts_from_the_registered_weights(registered_bgo, datasets, env):
    """--init-from: a run at a vanishing learning rate ends where the registered parent was (and
    not where a fresh build starts), records the pinned parent version, and a parent of another
    architecture is refused before any worker starts."""
    from dampeml.models.architecture import Architecture
    from dampeml.registry.bootstrap import register_catalog
    from dampeml.registry.models import list_versions, load_model
    from dampeml.training.trainer import TrainingError

    uri = datasets["bgo-direction-low"]
    parent = registered_bgo
    pinned = f"models:/bgo-direction-low/{parent.model_version}"
    child = _train(
        "bgo-direction-low", uri, env, epochs=1, steps_per_epoch=1, register=True, base_lr=1e-12,
        init_from=pinned,
    )  # fmt: skip
    before = load_model(pinned).get_weights()
    after = load_model(f"models:/bgo-direction-low/{child.model_version}").get_weights()
    fresh = Architecture("bgo-direction-low").build().get_weights()
    moved = max(float(np.abs(a - b).max()) for a, b in zip(before, after, strict=True))
    from_fresh = max(float(np.abs(a - b).max()) for a, b in zip(before, fresh, strict=True))
    print(f"\nlargest weight change from the parent {moved:.2e}; parent vs a fresh build {from_fresh:.2e}")
    assert moved < 1e-6 < from_fresh
    tags = {v.version: v.tags for v in list_versions("bgo-direction-low")}
    assert tags[child.model_version]["init_from"] == pinned
    register_catalog(aliases=(), networks=["electron-proton"], aligned=False)
    with pytest.raises(TrainingError, match="--init-from models:/electron-proton/1: .*same architecture"):
        _train("bgo-direction-low", uri, env, init_from="models:/electron-proton/1")


def test_bad_inputs_give_clear_errors(datasets, tmp_path):
    def run(*args: str) -> tuple[int, str]:
        r = CliRunner().invoke(app, list(args))
        return r.exit_code, " ".join(r.output.split())  # rich wraps long lines

    code, out = run("train", "bgo-direction-huge", "--dataset", datasets["bgo-direction-low"])
    assert code == 2 and "unknown network 'bgo-direction-huge'" in out
    assert "bgo-direction-low" in out and "Traceback" not in out
    code, out = run("train", "bgo-direction-low", "--dataset", str(tmp_path / "nothing"))
    assert code == 2 and "no dataset manifest" in out and "dampeml dataset build" in out
    code, out = run("train", "bgo-direction-low", "--dataset", datasets["electron-proton"])
    assert code == 2 and "is a 'electron-proton' dataset" in out
    code, out = run("train", "stk-hough-precise", "--dataset", datasets["stk-hough-coarse"])
    assert code == 2 and "needs precise" in out


@pytest.mark.timeout(120)
def test_each_epoch_starts_exactly_the_passes_it_needs(env):
    """Every pass over a streaming_split shard is a barrier all workers must reach together: the
    per-epoch dataset yields exactly `steps` batches and never starts a pass beyond them, even
    with the read-ahead that MultiWorkerMirroredStrategy puts in front of it."""
    from unittest import mock

    import ray

    from dampeml.training.loop import _tf_dataset

    rows = [{"x": np.full(3, i, np.float32), "y": np.float32(i)} for i in range(8)]

    def to_arrays(table):  # what network_batch does for a real dataset's stored rows
        return {"x": np.stack(table["x"].to_numpy(zero_copy_only=False)), "y": table["y"].to_numpy()[:, None]}

    signature = {"x": ((3,), "float32"), "y": ((1,), "float32")}
    for steps, passes in ((4, 1), (2, 1), (5, 2)):  # 4 batches of 2 per pass
        shard = ray.data.from_items(rows).iterator()
        with mock.patch.object(shard, "_iter_batches", wraps=shard._iter_batches) as started:
            it = iter(_tf_dataset(shard, to_arrays, ["x"], 2, signature, steps).prefetch(4))
            got = [next(it) for _ in range(steps)]
            # the end of the prefetched iterator: its read-ahead has run as far as it ever will
            # (take(steps) pulls nothing after its last batch), so every pass it started is counted
            with pytest.raises(StopIteration):
                next(it)
            assert started.call_count == passes, f"{steps} steps started {started.call_count} passes"
        labels = np.concatenate([y.numpy()[:, 0] for _, y in got])
        assert labels.tolist() == [float(i % 8) for i in range(2 * steps)]  # in order, no pass skipped


@pytest.mark.timeout(120)
def test_an_in_memory_shard_is_read_once_and_shuffled_anew_every_pass(env):
    """`in_memory`: the worker reads its shard once (one pass of Ray's split, on every worker alike)
    and every pass after comes from memory, a new permutation each with a seed, stored order without."""
    from unittest import mock

    import ray

    from dampeml.training.loop import _tf_dataset

    rows = [{"x": np.full(3, i, np.float32), "y": np.float32(i)} for i in range(8)]

    def to_arrays(table):
        return {"x": np.stack(table["x"].to_numpy(zero_copy_only=False)), "y": table["y"].to_numpy()[:, None]}

    signature = {"x": ((3,), "float32"), "y": ((1,), "float32")}
    for seed in (7, None):
        shard = ray.data.from_items(rows).iterator()
        with mock.patch.object(shard, "_iter_batches", wraps=shard._iter_batches) as started:
            ds = _tf_dataset(shard, to_arrays, ["x"], 2, signature, 12, in_memory=True, shuffle_seed=seed)
            labels = np.concatenate([y.numpy()[:, 0] for _, y in ds])  # 12 batches: three passes
            assert started.call_count == 1, "an in-memory shard is read once"
        passes = labels.reshape(3, 8)
        print(f"seed {seed}: {passes.tolist()}")
        for p in passes:  # every pass holds every row once
            assert sorted(p.tolist()) == [float(i) for i in range(8)]
        if seed is None:
            assert all(p.tolist() == [float(i) for i in range(8)] for p in passes)
        else:
            assert len({tuple(p) for p in passes}) == 3, "each pass its own order"


@pytest.mark.timeout(300)
def test_training_feed_mixes_the_particles_of_the_stored_order(datasets, env):
    """The build writes one particle's events per unit, so the e/p dataset's stored order is
    grouped: read in that order, an epoch's first steps (and every batch) hold one particle and
    a classifier learns a constant (the demo's e/p network once did: test AUC 0.5). The training
    feed shuffles the stored rows anew on every pass."""
    from dampeml.datasets.loader import network_dataset

    uri = datasets["electron-proton"]

    def first_batch(shuffle: bool) -> np.ndarray:
        ds = network_dataset(uri, "train", shuffle=shuffle)
        return np.asarray(next(iter(ds.iter_batches(batch_size=128, batch_format="numpy")))["y"]).ravel()

    def switches(y: np.ndarray) -> int:  # how often the particle changes from one row to the next
        return int(np.count_nonzero(np.diff(y)))

    stored, a, b = first_batch(False), first_batch(True), first_batch(True)
    print(f"\nelectron share of the first 128 rows: stored order {stored.mean():.2f}, "
          f"shuffled {a.mean():.2f} and {b.mean():.2f}; particle changes {switches(stored)}, "
          f"{switches(a)} and {switches(b)}")  # fmt: skip
    # a unit may end inside the first batch (its train share is drawn per event), so one change is allowed
    assert switches(stored) <= 1, "the stored order is grouped by particle (why the feed shuffles)"
    assert switches(a) > 20 and switches(b) > 20, "the shuffled feed mixes the particles row by row"
    assert 0.2 < a.mean() < 0.8 and 0.2 < b.mean() < 0.8
    assert not np.array_equal(a, b), "a new order on every pass"

    # training passes a seed (TrainConfig.seed): a new order on every pass of one dataset, and
    # the same sequence of orders in every run with that seed. (Ray hands the shuffled blocks over
    # in the order they finish; kept in block order here, the rows of a pass must repeat exactly.)
    def passes(seed: int) -> list[np.ndarray]:
        ds = network_dataset(uri, "train", shuffle=True, seed=seed)
        ds.context.execution_options.preserve_order = True
        return [np.concatenate([b["x_vars"] for b in ds.iter_batches(batch_size=None)]) for _ in range(2)]

    def overlap(x: np.ndarray, y: np.ndarray) -> float:  # of the first 128 rows, as sets
        a, b = {r.tobytes() for r in x[:128]}, {r.tobytes() for r in y[:128]}
        return len(a & b) / len(a | b)

    (p1, p2), (q1, q2), (r1, _) = passes(0), passes(0), passes(1)
    print(f"events shared by first batches: seed 0 rerun {overlap(p1, q1):.2f} and {overlap(p2, q2):.2f}, "
          f"next pass {overlap(p1, p2):.2f}, seed 1 {overlap(p1, r1):.2f}")  # fmt: skip
    np.testing.assert_array_equal(p1, q1, err_msg="the same order with the same seed")
    np.testing.assert_array_equal(p2, q2, err_msg="the same order of the next pass with the same seed")
    assert sorted(map(bytes, p1)) == sorted(map(bytes, p2)), "every pass holds every event once"
    assert overlap(p1, p2) < 0.5 and overlap(p1, r1) < 0.5, "another order on the next pass, or seed"


@pytest.mark.timeout(300)
def test_a_classifier_at_chance_is_not_promoted(env):
    """The gate refuses a classifier whose test AUC is no better than guessing, also as the first
    version of its name (nothing to compare with); --force still can."""
    from dampeml.models.architecture import Architecture
    from dampeml.models.catalog import build
    from dampeml.registry.bootstrap import log_model
    from dampeml.registry.models import CHANCE_AUC, PromotionRefusedError, promote, version_of

    model = build("electron-proton", preset="small")
    arch = Architecture("electron-proton")
    guess = log_model(arch, model, aliases=(), tags={"test_auc": str(CHANCE_AUC - 0.05)})
    with pytest.raises(PromotionRefusedError, match="no better than chance"):
        promote("electron-proton", guess, "gate-check")
    good = log_model(arch, model, aliases=(), tags={"test_auc": "0.93"})
    promote("electron-proton", good, "gate-check")
    assert version_of("electron-proton", "gate-check") == good
    promote("electron-proton", guess, "gate-check", force=True)
    assert version_of("electron-proton", "gate-check") == guess
