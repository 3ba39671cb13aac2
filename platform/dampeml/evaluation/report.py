"""The physics report on held-out MC: every method on the same events, as tables and plots.

`collect` runs the CNN chain (models by registry alias), the standard reconstruction
(standard and ideal selections), the BGO shower-axis fit and the PSD charge on the same
MC events, and keeps per-event columns with the truth. `write_report` turns them into a
Markdown page with PNGs (and `metrics.json` with every number in it):

- the paper's Table 2: track efficiency in the 85% and 95% charge windows, per particle
  and energy bin, CNN chain vs standard vs ideal selection, both selections seeded by the
  chain's BGO network (the paper's Table 3, option a), and the chain's tracker CNNs seeded
  by the shower-axis fit (option b);
- 68% containment angle of the BGO direction vs deposited energy (network vs axis fit);
- STK charge distributions along the true, the chain's and the standard track;
- ROC of the inelastic classifier vs the PSD charge-consistency cut; e/p ROC and AUC;
- per-stage timings (seconds per event on this machine).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.progress import Progress

from dampeml.errors import InputError
from dampeml.evaluation.domain import TrainingDomain, registered_domain
from dampeml.evaluation.efficiency import PAPER_ENERGY_BINS, efficiency_table, format_table, table2_masks
from dampeml.evaluation.performance import (
    DEPOSIT_EDGES_GEV,
    auc,
    containment_by_bin,
    direction_errors,
    efficiency_at,
    roc_curve,
)
from dampeml.features.shower_axis import fit_shower_axis
from dampeml.features.tracks import truth_track
from dampeml.io.root_reader import bad_events, inspect_file, read_events
from dampeml.reconstruction.chain import BGO_COLUMNS
from dampeml.reconstruction.hits import stk_charge
from dampeml.reconstruction.psd_charge import psd_charge
from dampeml.reconstruction.standard import StandardConfig, reconstruct, select_ideal

TRACK_KEYS = ("x_top", "y_top", "x_bot", "y_bot")
PDG = {"proton": 2212, "helium": 1000020040, "electron": 11}


@dataclass
class EvaluationSample:
    """Per-event columns of held-out MC with every method's answer, and the time each stage took."""

    columns: dict[str, np.ndarray]
    timings: dict[str, float] = field(default_factory=dict)  # seconds, summed over events
    quarantined: list[dict] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    #: how the chain ran besides its models (runtime, coarse_below_tev)
    settings: dict[str, str] = field(default_factory=dict)
    #: the events the electron/proton network was trained on, or why that is unknown
    electron_domain: TrainingDomain | None = None
    electron_domain_note: str = ""
    #: other chains run on the same events, {label: their model versions} (columns `<label>_...`)
    others: dict[str, dict[str, str]] = field(default_factory=dict)
    #: {label: their coarse_below_tev}
    other_settings: dict[str, str] = field(default_factory=dict)
    #: what a reader must know first (e.g. that a chain's models are stale)
    notes: list[str] = field(default_factory=list)

    @property
    def n_events(self) -> int:
        return len(self.columns["event_id"]) if self.columns else 0

    def track(self, prefix: str) -> np.ndarray:
        return np.stack([self.columns[f"{prefix}_{k}"] for k in TRACK_KEYS], axis=1)


@contextlib.contextmanager
def _timed(timings: dict[str, float], stage: str):
    """Add the wall time of the block to `timings[stage]` (summed over batches)."""
    t0 = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


def _per_file_columns(
    events: dict, chain, timings: dict[str, float], others: Mapping[str, Any], criteria: StandardConfig
) -> dict[str, np.ndarray]:
    """Every method on one batch of good events; truth is read here only, never by the methods."""

    truth = truth_track(events)
    stk = (events["stk_layer"], events["stk_pos"], events["stk_signal"])
    width = events.get("stk_width")  # the charge leaves single-strip clusters out where known
    cols: dict[str, np.ndarray] = {
        "run_id": np.asarray(events["run_id"]),
        "event_id": np.asarray(events["event_id"]),
        "true_pdg": np.asarray(events["true_pdg"]),
        "true_energy": np.asarray(events["true_energy"], dtype=np.float64),
        "true_inelastic": np.asarray(events["true_inelastic"], dtype=bool),
        "true_interaction_z": np.asarray(events["true_interaction_z"], dtype=np.float64),
        "deposit_gev": np.asarray(events["bgo_energy"], dtype=np.float64).sum(axis=(1, 2)) / 1e3,
    }
    for k, c in zip(TRACK_KEYS, truth.T, strict=True):
        cols[f"true_{k}"] = c
    cols["true_charge"] = stk_charge(*stk, truth, width=width)[0]

    with _timed(timings, "chain"):  # the chain drops every MC-only branch itself
        out = chain.run(events)
    for k, v in out.items():
        cols[f"cnn_{k}"] = np.asarray(v)
    for label, other in others.items():  # e.g. the reference models beside the ones just trained
        with _timed(timings, f"chain ({label})"):
            out = other.run(events)
        for k, v in out.items():
            cols[f"{label}_{k}"] = np.asarray(v)

    with _timed(timings, "shower-axis fit"):
        axis, _ = fit_shower_axis(events["bgo_energy"])
    with _timed(timings, "standard reconstruction"):
        std = reconstruct(events, config=criteria)
    standard = std.track
    ideal = select_ideal(std.candidates, truth)
    for prefix, track in (("axis", axis), ("std", standard), ("ideal", ideal)):
        for k, c in zip(TRACK_KEYS, np.asarray(track, dtype=np.float64).T, strict=True):
            cols[f"{prefix}_{k}"] = c
    # the tracker networks' seed: the BGO network's track, the axis fit where the chain took it
    late = cols["cnn_axis_seed"].astype(bool)
    for k in TRACK_KEYS:
        cols[f"seed_{k}"] = np.where(late, cols[f"axis_{k}"], cols[f"cnn_bgo_{k}"].astype(np.float64))
    cols["std_charge"] = stk_charge(*stk, standard, width=width)[0]
    cols["ideal_charge"] = stk_charge(*stk, ideal, width=width)[0]
    # the paper's Table 3 (a): the same pattern recognition around the chain's BGO network prediction
    bgo_seed = np.stack([cols[f"cnn_{k}"] for k in BGO_COLUMNS], axis=1).astype(np.float64)
    with _timed(timings, "standard reconstruction, bgo seed"):
        seeded = reconstruct(events, config=criteria, seed=bgo_seed)
    cols["seeded_std_charge"] = stk_charge(*stk, seeded.track, width=width)[0]
    cols["seeded_ideal_charge"] = stk_charge(*stk, select_ideal(seeded.candidates, truth), width=width)[0]
    # Table 3 (b): the chain's tracker CNNs, two-step everywhere, around the shower-axis fit
    with _timed(timings, "tracker CNNs, axis seed"):
        axis_cnn = chain.tracker_track(events, axis)
    cols["axis_cnn_charge"] = stk_charge(*stk, axis_cnn, width=width)[0]
    chain_track = np.stack([cols[f"cnn_track_{k}"] for k in TRACK_KEYS], axis=1)
    cols["cnn_psd_charge"] = psd_charge(events["psd_energy"], chain_track)
    return cols


def collect(
    files: Iterable[str],
    chain,
    batch_size: int = 2000,
    max_events: int | None = None,
    others: Mapping[str, Any] | None = None,
    standard: StandardConfig | None = None,
) -> EvaluationSample:
    """Run every method on the good events of MC `files`; bad events are listed, not silently lost.

    `others` ({label: chain}) run on the same events beside `chain`; the report compares them.
    `standard`: the standard reconstruction's settings and quality criteria (default: DAMPE's).
    """
    standard = standard or StandardConfig()

    files = list(files)
    others = dict(others or {})
    parts: list[dict[str, np.ndarray]] = []
    timings: dict[str, float] = {}
    quarantined: list[dict] = []
    infos = [inspect_file(f) for f in files]  # raises EventFileError naming a bad file up front
    for info in infos:
        if "true_pdg" not in info.branches:
            raise InputError(f"{info.path}: no MC truth (a flight file?); the report needs MC events")
    total = sum(i.n_events for i in infos)
    if max_events is not None:
        total = min(total, max_events)
    done = 0
    with Progress(transient=True) as progress:
        task = progress.add_task("evaluating", total=total)
        for info in infos:
            for start in range(0, info.n_events, batch_size):
                if done >= total:
                    break
                stop = min(start + batch_size, info.n_events, start + total - done)
                events = read_events(info.path, start, stop, info=info)
                reasons = bad_events(events)
                bad = reasons != ""
                for i in np.flatnonzero(bad):
                    quarantined.append(
                        {"file": info.path, "event_id": int(events["event_id"][i]), "reason": reasons[i]}
                    )
                if (~bad).any():
                    good = {k: v[~bad] for k, v in events.items()}
                    parts.append(_per_file_columns(good, chain, timings, others, standard))
                done += stop - start
                progress.update(task, completed=done)
    if not parts:
        raise InputError(f"no good MC events in {len(files)} file(s)")
    columns = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    for stage, seconds in getattr(chain, "timings", {}).items():
        timings[f"chain: {stage}"] = seconds
    settings = {}
    if hasattr(chain, "config"):
        settings = {"runtime": chain.runtime, "coarse_below_tev": f"{chain.config.coarse_below_tev:g}"}
    versions = dict(getattr(chain, "versions", {}))
    domain, note = None, "no registered electron/proton network"
    if "electron-proton" in versions:
        domain, note = registered_domain("electron-proton", versions["electron-proton"])
    other_versions = {label: dict(getattr(c, "versions", {})) for label, c in others.items()}
    other_settings = {
        label: f"{c.config.coarse_below_tev:g}" for label, c in others.items() if hasattr(c, "config")
    }
    return EvaluationSample(
        columns, timings, quarantined, versions, settings, domain, note, other_versions, other_settings
    )


# --- the report ------------------------------------------------------------------------------


def _particle_masks(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: cols["true_pdg"] == pdg for name, pdg in PDG.items()}


#: Decade bins (GeV) used when the sample is too small for the paper's quarter-decade bins.
DECADE_BINS: tuple[tuple[float, float], ...] = ((1e1, 1e2), (1e2, 1e3), (1e3, 1e4), (1e4, 1e5), (1e5, 1e6))
MIN_EVENTS_PER_BIN = 50


def efficiency_rows(sample: EvaluationSample) -> list[dict]:
    """Table 2 rows for protons and helium: CNN chain, standard and ideal selection, both
    selections with the chain's BGO network as the seed (the paper's Table 3, option a), and
    the chain's tracker CNNs around the shower-axis fit (Table 3, option b).

    As the paper's Figure 2: events that interacted in the PSD (before the STK) are left out,
    and the charge windows come from the clean peak (no inelastic interaction before the BGO).
    The paper's energy bins when every one holds MIN_EVENTS_PER_BIN events of each particle
    (then the paper's figure is shown beside ours), decades otherwise.
    """

    cols = sample.columns
    names = np.full(sample.n_events, "other", dtype=object)
    for name in ("proton", "helium"):
        names[cols["true_pdg"] == PDG[name]] = name
    hadron = names != "other"
    energy = cols["true_energy"]
    enough = all(
        ((names == p) & (energy >= lo) & (energy < hi)).sum() >= MIN_EVENTS_PER_BIN
        for p in ("proton", "helium")
        for lo, hi in PAPER_ENERGY_BINS
    )
    mask, peak_mask = table2_masks(cols["true_inelastic"][hadron], cols["true_interaction_z"][hadron])
    return efficiency_table(
        names[hadron],
        energy[hadron],
        cols["true_charge"][hadron],
        {
            "cnn": cols["cnn_stk_charge"][hadron],
            "standard": cols["std_charge"][hadron],
            "ideal": cols["ideal_charge"][hadron],
            "standard, bgo seed": cols["seeded_std_charge"][hadron],
            "ideal, bgo seed": cols["seeded_ideal_charge"][hadron],
            "tracker cnns, axis seed": cols["axis_cnn_charge"][hadron],
            **{f"cnn ({label})": cols[f"{label}_stk_charge"][hadron] for label in sample.others},
        },
        energy_bins=PAPER_ENERGY_BINS if enough else DECADE_BINS,
        mask=mask,
        peak_mask=peak_mask,
    )


def direction_table(sample: EvaluationSample) -> list[dict]:
    """68%/95% containment angle and position per deposited-energy bin and method (hadrons: p + He)."""
    cols = sample.columns
    truth = sample.track("true")
    rows = []
    for group, mask in (
        ("p+He", cols["true_pdg"] != PDG["electron"]),
        ("e", cols["true_pdg"] == PDG["electron"]),
    ):
        methods = [
            ("BGO network", "cnn_bgo"),
            ("shower-axis fit", "axis"),
            ("tracker seed", "seed"),
            ("CNN chain", "cnn_track"),
            *((f"BGO network ({label})", f"{label}_bgo") for label in sample.others),
        ]
        for method, prefix in methods:
            angle, pos = direction_errors(sample.track(prefix)[mask], truth[mask])
            a68, n = containment_by_bin(angle, cols["deposit_gev"][mask])
            a95, _ = containment_by_bin(angle, cols["deposit_gev"][mask], fraction=0.95)
            p68, _ = containment_by_bin(pos, cols["deposit_gev"][mask])
            for b in range(len(DEPOSIT_EDGES_GEV) - 1):
                if n[b]:
                    rows.append(
                        {
                            "particles": group,
                            "method": method,
                            "deposit_gev": f"{DEPOSIT_EDGES_GEV[b]:.0e}-{DEPOSIT_EDGES_GEV[b + 1]:.0e}",
                            "n": int(n[b]),
                            "angle68_deg": float(a68[b]),
                            "angle95_deg": float(a95[b]),
                            "position68_mm": float(p68[b]),
                        }
                    )
    return rows


def classifier_figures(sample: EvaluationSample) -> dict[str, float]:
    """AUCs and working points: inelastic (chain vs PSD consistency) and electron/proton."""
    cols = sample.columns
    out: dict[str, float] = {}
    hadron = cols["true_pdg"] != PDG["electron"]
    clean = ~cols["true_inelastic"][hadron]
    out["inelastic_auc_cnn"] = auc(clean, cols["cnn_inelastic_score"][hadron])
    out["inelastic_auc_psd"] = auc(clean, -_psd_inconsistency(cols)[hadron])
    for name, score in (
        ("cnn", cols["cnn_inelastic_score"][hadron]),
        ("psd", -_psd_inconsistency(cols)[hadron]),
    ):
        _, acc = efficiency_at(clean, score, 0.95)
        out[f"inelastic_kept_at_95pct_clean_{name}"] = acc
    is_e = cols["true_pdg"] == PDG["electron"]
    is_p = cols["true_pdg"] == PDG["proton"]
    ep = is_e | is_p
    out["electron_proton_auc"] = auc(is_e[ep], cols["cnn_electron_score"][ep])
    _, p_acc = efficiency_at(is_e[ep], cols["cnn_electron_score"][ep], 0.9)
    out["proton_acceptance_at_90pct_electrons"] = p_acc
    for label in sample.others:
        out[f"inelastic_auc_cnn ({label})"] = auc(clean, cols[f"{label}_inelastic_score"][hadron])
        out[f"electron_proton_auc ({label})"] = auc(is_e[ep], cols[f"{label}_electron_score"][ep])
    domain = sample.electron_domain
    if domain is not None:
        inside = ep & domain.mask(cols["true_pdg"], cols["true_energy"], cols["deposit_gev"])
        if is_e[inside].any() and (~is_e[inside]).any():
            out["electron_proton_auc_in_training_domain"] = auc(
                is_e[inside], cols["cnn_electron_score"][inside]
            )
            _, p_acc = efficiency_at(is_e[inside], cols["cnn_electron_score"][inside], 0.9)
            out["proton_acceptance_at_90pct_electrons_in_training_domain"] = p_acc
    return out


def _domain_note(sample: EvaluationSample) -> str:
    """Why the e/p figure here can differ from the one the network's training run logged."""
    head = (
        "`electron_proton_auc` counts every held-out electron and proton, over the mission's energies; "
        "the training run's test AUC counts only its dataset's events"
    )
    if sample.electron_domain is None:
        return f"{head}. The training domain is unknown here: {sample.electron_domain_note}."
    return (
        f"{head}: {sample.electron_domain.describe()}. `..._in_training_domain` keeps the held-out "
        "events of that domain and compares with the training run's figure."
    )


def _psd_inconsistency(cols: dict[str, np.ndarray]) -> np.ndarray:
    """|PSD charge - STK charge| along the chain's track: the standard charge-consistency variable."""
    d = np.abs(cols["cnn_psd_charge"] - cols["cnn_stk_charge"])
    return np.where(np.isfinite(d), d, np.inf)


def _plot_direction(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = np.sqrt(DEPOSIT_EDGES_GEV[:-1] * DEPOSIT_EDGES_GEV[1:])
    labels = [f"{DEPOSIT_EDGES_GEV[b]:.0e}-{DEPOSIT_EDGES_GEV[b + 1]:.0e}" for b in range(len(centres))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, group in zip(axes, ("p+He", "e"), strict=True):
        for method, style in (
            ("BGO network", "o-"),
            ("shower-axis fit", "s--"),
            ("tracker seed", "x-."),
            ("CNN chain", "^:"),
        ):
            pts = [
                (centres[labels.index(r["deposit_gev"])], r["angle68_deg"])
                for r in rows
                if r["particles"] == group and r["method"] == method
            ]
            if pts:
                x, y = zip(*pts, strict=True)
                ax.plot(x, y, style, label=method)
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="deposited energy (GeV)",
            ylabel="68% containment angle (deg)",
            title=group,
        )
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # a group with no events draws no line
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_charges(cols: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = np.linspace(0, 4, 81)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), sharey=True)
    masks = _particle_masks(cols)
    for ax, (title, key) in zip(
        axes,
        (
            ("true track", "true_charge"),
            ("CNN chain", "cnn_stk_charge"),
            ("standard selection", "std_charge"),
        ),
        strict=True,
    ):
        for particle in ("proton", "helium"):
            q = cols[key][masks[particle]]
            if np.isfinite(q).any():  # an empty histogram has no density
                ax.hist(q[np.isfinite(q)], bins=bins, histtype="step", density=True, label=particle)
        ax.set(xlabel="STK charge (e)", title=title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    axes[0].set_ylabel("normalised")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _both_classes(ax, y: np.ndarray, what: str) -> bool:
    """Whether `y` holds both classes (a ROC needs them); else says so on the panel."""
    if y.any() and not y.all():
        return True
    ax.text(0.5, 0.5, f"no ROC: the events lack {what}", ha="center", va="center", transform=ax.transAxes)
    return False


def _plot_rocs(cols: dict[str, np.ndarray], path: Path, labels: Iterable[str] = ()) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    hadron = cols["true_pdg"] != PDG["electron"]
    clean = ~cols["true_inelastic"][hadron]
    for label, score in (
        ("CNN (raw STK x Hough)", cols["cnn_inelastic_score"][hadron]),
        ("PSD-STK charge consistency", -_psd_inconsistency(cols)[hadron]),
    ):
        if not _both_classes(axes[0], clean, "clean and inelastic hadrons"):
            break
        fpr, tpr = roc_curve(clean, score)
        axes[0].plot(fpr, tpr, label=f"{label}, AUC {auc(clean, score):.3f}")
    axes[0].set(xlabel="inelastic events kept", ylabel="clean events kept", title="inelastic interactions")
    is_e = cols["true_pdg"] == PDG["electron"]
    ep = is_e | (cols["true_pdg"] == PDG["proton"])
    for name, key in (
        ("HAMF", "cnn_electron_score"),
        *((f"HAMF ({x})", f"{x}_electron_score") for x in labels),
    ):
        if not _both_classes(axes[1], is_e[ep], "electrons and protons"):
            break
        fpr, tpr = roc_curve(is_e[ep], cols[key][ep])
        axes[1].plot(fpr, tpr, label=f"{name}, AUC {auc(is_e[ep], cols[key][ep]):.4f}")
    axes[1].set(
        xscale="log", xlabel="proton acceptance", ylabel="electron efficiency", title="electron/proton"
    )
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown_table(rows: list[dict], columns: list[str], fmt: dict[str, str] | None = None) -> str:
    fmt = fmt or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            cells.append(
                format(v, fmt[c]) if c in fmt and isinstance(v, float) and np.isfinite(v) else str(v)
            )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _explanation_section(figures: Iterable[tuple[str, str]]) -> list[str]:
    """Markdown of the maps of where the networks look (none: nothing)."""
    figures = list(figures)
    if not figures:
        return []
    lines = [
        "## Where the networks look",
        "",
        "LayerCAM maps at each network's last wide convolution (the share of the network's attention",
        "per pixel, module `dampeml.evaluation.explain`), over the input image, on the first events.",
        "`dampeml explain MODEL_URI --events FILE` draws them for any model and events.",
        "",
    ]
    for title, png in figures:
        lines += [f"### {title}", "", f"![{title}]({png})", ""]
    return lines


def write_report(
    sample: EvaluationSample,
    out_dir: str | Path,
    title: str = "DAMPE reconstruction report",
    explanations: Iterable[tuple[str, str]] = (),
    sections: Iterable[str] = (),
) -> Path:
    """`report.md`, its PNGs and `metrics.json` in `out_dir`; returns the Markdown path.
    `explanations`: [(title, PNG name in `out_dir`)] of maps (:func:`.explain.chain_explanations`);
    `sections`: Markdown lines of further sections (e.g. the flux's), before the timings."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = sample.columns
    n = sample.n_events
    masks = _particle_masks(cols)
    efficiency = efficiency_rows(sample)
    direction = direction_table(sample)
    classifiers = classifier_figures(sample)
    per_event = {stage: seconds / n for stage, seconds in sample.timings.items()}
    _plot_direction(direction, out / "direction_68.png")
    _plot_charges(cols, out / "stk_charge.png")
    _plot_rocs(cols, out / "roc.png", sample.others)
    metrics = {
        "n_events": n,
        "n_quarantined": len(sample.quarantined),
        "events_per_particle": {p: int(m.sum()) for p, m in masks.items()},
        "model_versions": sample.versions,
        "other_chains": sample.others,
        "other_chain_settings": sample.other_settings,
        "notes": sample.notes,
        "chain_settings": sample.settings,
        "efficiency": efficiency,
        "direction": direction,
        "classifiers": classifiers,
        "seconds_per_event": per_event,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    counts = ", ".join(f"{p} {int(m.sum())}" for p, m in masks.items())
    versions = ", ".join(f"{k} v{v}" for k, v in sorted(sample.versions.items())) or "n/a"
    compared = [
        f"Beside them, `cnn ({label})` and `({label})` rows: the chain with the models at @{label} "
        f"({', '.join(f'{k} v{v}' for k, v in sorted(vs.items()))}; coarse Hough step below "
        f"{sample.other_settings.get(label, '?')} TeV deposited), on the same events."
        for label, vs in sample.others.items()
    ]
    md = [
        f"# {title}",
        "",
        *(f"> **Note:** {note}\n" for note in sample.notes),
        f"{n} held-out MC events ({counts}); {len(sample.quarantined)} quarantined. Models: {versions}.",
        *compared,
        "",
        *(
            [
                f"Chain: {sample.settings['runtime']} runtime; coarse Hough step below "
                f"{sample.settings['coarse_below_tev']} TeV deposited (the paper: 1).",
                "",
            ]
            if sample.settings
            else []
        ),
        "## Track efficiency (paper Table 2; Table 3: `bgo seed` (a), `tracker cnns, axis seed` (b))",
        "",
        "Events whose STK charge along the method's track falls in the 85% (95%) containment window of",
        "the charge along the true track, over the count with the true track.",
        "",
        format_table(efficiency),
        "",
        "## BGO direction: 68% containment vs deposited energy",
        "",
        "`tracker seed`: where the chain's Hough networks start, the BGO network's track or, for a shower",
        "that starts in the last BGO layers or shows none, the shower-axis fit "
        f"({np.mean(sample.columns['cnn_axis_seed']):.0%} of these events).",
        "",
        "![direction](direction_68.png)",
        "",
        _markdown_table(
            direction,
            ["particles", "method", "deposit_gev", "n", "angle68_deg", "angle95_deg", "position68_mm"],
            {"angle68_deg": ".3f", "angle95_deg": ".3f", "position68_mm": ".2f"},
        ),
        "",
        "## STK charge",
        "",
        "![charge](stk_charge.png)",
        "",
        "## Classifiers",
        "",
        "![roc](roc.png)",
        "",
        _markdown_table(
            [{"figure": k, "value": v} for k, v in classifiers.items()], ["figure", "value"], {"value": ".4f"}
        ),
        "",
        _domain_note(sample),
        "",
        *_explanation_section(explanations),
        *sections,
        "## Timings on this machine (seconds per event, one process)",
        "",
        _markdown_table(
            [
                {"stage": k, "s/event": v, "events/s": 1 / v if v > 0 else float("nan")}
                for k, v in per_event.items()
            ],
            ["stage", "s/event", "events/s"],
            {"s/event": ".2e", "events/s": ".0f"},
        ),
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path
