"""The flux job: samples loaded, the flux measured and its report written, from one request. What
`dampeml flux`, `jobs/flux.py` and the main job's flux stage run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dampeml.io.datasource import expand_paths
from dampeml.physics.flux import FluxError
from dampeml.physics.measure import FluxMeasurement, measure_flux
from dampeml.physics.mission import load_mission
from dampeml.physics.networks import RegisteredNetworks
from dampeml.physics.report import write_flux
from dampeml.physics.samples import check_choice, sample_from_files, sample_from_reprocessed
from dampeml.physics.selection import CLASSES, FIDUCIAL


@dataclass(frozen=True)
class FluxRequest:
    """Where the samples are (event files: a path or glob ending in .root; else a reprocessing output),
    where the report goes, and how the flux is measured (docs/physics.md)."""

    flight: str
    electron_mc: str
    proton_mc: str
    out: Path
    bins_gev: np.ndarray
    score: str = "zeta"
    energy: str = "standard"
    efficiency: float = 0.9
    selection: int = FIDUCIAL
    live_time_s: float | None = None  # default: the flight files' own
    fit_proton_template: bool = False
    injected: Path | None = None  # a mission (file or simulated folder): its electron spectrum beside
    models_alias: str = "production"


def run_flux(req: FluxRequest) -> tuple[Path, FluxMeasurement]:
    """The flux of `req` measured and written; (flux.md, the measurement)."""
    check_choice(req.score, req.energy)
    networks = RegisteredNetworks(req.models_alias)

    def load(where: str, mc: bool):
        if where.endswith(".root") or "*" in where:
            return sample_from_files(expand_paths(where), req.score, req.energy, networks)
        if req.energy != "standard":
            raise FluxError(
                f"energy {req.energy}: computed from event files; {where} is a reprocessing output"
            )
        return sample_from_reprocessed(where, req.score, mc=mc)

    data, _, live = load(req.flight, False)
    electrons, generation, _ = load(req.electron_mc, True)
    protons, _, _ = load(req.proton_mc, True)
    live = req.live_time_s or live
    if not live:
        raise FluxError("the flight files record no live time: give --live-time SECONDS")
    edges = req.bins_gev
    measurement = measure_flux(data, electrons, protons, generation, live, edges, req.selection,
                               req.efficiency, fit_proton_shift=req.fit_proton_template)  # fmt: skip
    settings = {"flight": req.flight, "electron MC": req.electron_mc, "proton MC": req.proton_mc,
                "score": req.score, "energy": req.energy, "networks": f"@{req.models_alias}",
                "selection": CLASSES[req.selection],
                "cut": f"{req.efficiency:.0%} of each bin's electron MC above it",
                "live time (s)": f"{live:g}", "bins (GeV)": ", ".join(f"{b:.4g}" for b in edges),
                "proton template": "as simulated"}  # fmt: skip
    if req.fit_proton_template:
        shifts = ", ".join(f"{b.proton_shift:+.2f} +- {b.proton_shift_err:.2f}" for b in measurement.bins)
        settings["proton template"] = f"shifted to the flight per bin: {shifts}"
    known = None
    if req.injected is not None:
        known = load_mission(req.injected).injected_flux("electron", edges)
        settings["injected spectrum"] = str(req.injected)
    return write_flux(measurement, req.out, settings, known), measurement
