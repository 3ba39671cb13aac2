"""The physics stage: containment classes on tracks of known geometry, and the cut-and-count formulas
of seed 001 on hand-made counts."""

from __future__ import annotations

import numpy as np
import pytest

from dampeml import geometry as geo
from dampeml.detector.generator import GENERATION_GEOMETRIC_FACTOR_M2SR, _candidates
from dampeml.features.tracks import position_at
from dampeml.physics.energy import held_out_estimate, resolution
from dampeml.physics.flux import (
    BinCounts,
    FluxError,
    acceptance,
    cut_for_efficiency,
    flux_point,
    generated_in_bin,
    pulls,
)
from dampeml.physics.measure import fit_template_shift
from dampeml.physics.selection import FIDUCIAL, NON_FIDUCIAL, OUTSIDE, containment


def _track_through(top_xy, bottom_xy) -> np.ndarray:
    """The (1, 4) track (at the STK planes) of the line through (x, y) at the BGO top and bottom."""
    (xt, yt), (xb, yb) = top_xy, bottom_xy
    f = lambda z: (z - geo.BGO_Z_TOP) / (geo.BGO_Z_BOTTOM - geo.BGO_Z_TOP)  # noqa: E731
    at = lambda z: (xt + f(z) * (xb - xt), yt + f(z) * (yb - yt))  # noqa: E731
    return np.array([[*at(geo.Z_TOP), *at(geo.Z_BOT)]])


@pytest.mark.parametrize(
    ("top", "bottom", "expected"),
    [
        ((0, 0), (0, 0), FIDUCIAL),  # vertical through the centre
        ((270, -270), (279, -279), FIDUCIAL),  # near the corner, inside at both faces
        ((200, 0), (290, 0), NON_FIDUCIAL),  # leaves through the +x side: leakage
        ((0, -100), (0, -285), NON_FIDUCIAL),  # ... through the -y side
        ((285, 0), (250, 0), OUTSIDE),  # enters through the side
        ((np.nan, 0), (0, 0), OUTSIDE),  # no axis
    ],
)
def test_containment_classes_of_lines_of_known_geometry(top, bottom, expected):
    track = _track_through(top, bottom)
    if np.isfinite(top).all():
        x, y = position_at(track, geo.BGO_Z_BOTTOM)
        assert np.allclose([x[0], y[0]], bottom)
    assert containment(track)[0] == expected


def test_the_generation_geometric_factor_is_that_of_an_isotropic_flux():
    """pi x 4 pi R^2 for R = 1.2 m; times the share of generated candidates that cross both faces of
    the BGO it must give their geometric factor as counted from one face: an isotropic flux enters a
    face of area A at the rate pi A J, with cosine-law directions, of which a share reaches the other."""
    assert GENERATION_GEOMETRIC_FACTOR_M2SR == pytest.approx(4 * np.pi**2 * 1.2**2)
    rng = np.random.default_rng(1)
    half, faces = geo.BGO_HALF_WIDTH, (geo.BGO_Z_TOP, geo.BGO_Z_BOTTOM)
    pos, d = _candidates(rng, 4_000_000)
    down = d[:, 2] > 1e-6
    tx, ty = (np.where(down, d[:, i] / np.where(down, d[:, 2], 1.0), 0.0) for i in (0, 1))
    x0, y0 = pos[:, 0] - tx * pos[:, 2], pos[:, 1] - ty * pos[:, 2]
    both = down & np.all([(np.abs(x0 + tx * z) < half) & (np.abs(y0 + ty * z) < half) for z in faces], axis=0)
    from_sphere = GENERATION_GEOMETRIC_FACTOR_M2SR * both.mean()
    err = GENERATION_GEOMETRIC_FACTOR_M2SR * np.sqrt(both.mean() / len(both))
    n = 4_000_000  # from the top face: uniform points, cosine-law directions (cos = sqrt(u))
    x, y = rng.uniform(-half, half, n), rng.uniform(-half, half, n)
    cos = np.sqrt(rng.random(n))
    tan, phi = np.sqrt(1 - cos**2) / cos, rng.uniform(0, 2 * np.pi, n)
    depth = faces[1] - faces[0]
    hit = (np.abs(x + depth * tan * np.cos(phi)) < half) & (np.abs(y + depth * tan * np.sin(phi)) < half)
    from_face = (2 * half / 1000.0) ** 2 * np.pi * hit.mean()
    print(f"\nBGO faces: {from_sphere:.4f} +- {err:.4f} m2 sr from the generation sphere, {from_face:.4f} "
          f"from the top face ({(from_sphere - from_face) / err:+.1f} sigma)")  # fmt: skip
    assert abs(from_sphere - from_face) < 4 * err


def test_the_cut_and_count_formulas_on_hand_made_counts():
    """1000 flight events above the cut, 400 in the control region; the proton MC has 800 in the
    control region and 50 above the cut, so 25 background events (bkg 2.5%); 900 of 1000 electron
    MC pass the cut (eff 0.9): counts = 975 / 0.9."""
    b = BinCounts(e_low=100.0, e_high=200.0, cut=0.7, n_data_above=1000, n_data_control=400, n_e_mc=1000,
                  n_e_mc_above=900, n_p_mc_above=50, n_p_mc_control=800, acceptance_m2sr=0.2)  # fmt: skip
    p = flux_point(b, live_time_s=1e5)
    assert p.efficiency == pytest.approx(0.9) and p.background == pytest.approx(0.025)
    assert p.counts == pytest.approx(975 / 0.9)
    assert p.flux == pytest.approx(975 / 0.9 / (0.2 * 1e5 * 100.0))
    # the error: Poisson on 1000 and on the background (25^2 (1/400 + 1/800 + 1/50)), binomial on eff
    var_counts = (1000 + 25**2 * (1 / 400 + 1 / 800 + 1 / 50)) / 0.81 + (975 / 0.81) ** 2 * 0.09 / 1000
    assert p.flux_err == pytest.approx(np.sqrt(var_counts) / (0.2 * 1e5 * 100.0))
    assert p.e_mean == pytest.approx(np.sqrt(2e4))
    with pytest.raises(FluxError, match="no electron MC above the cut"):
        flux_point(BinCounts(100, 200, 0.7, 10, 4, 0, 0, 5, 8, 0.2), 1e5)


def test_cut_acceptance_generated_share_and_pulls():
    scores = np.linspace(0.0, 1.0, 1001)
    assert cut_for_efficiency(scores, 0.9) == pytest.approx(0.1)
    # E^-1 on 10-1000 GeV: a decade holds half of it; E^-2: 10-100 holds 1/(1 - 1/100) x 0.9 of it
    assert generated_in_bin(1000, 10, 1000, 1.0, 10, 100) == pytest.approx(500)
    assert generated_in_bin(1000, 10, 1000, 2.0, 10, 100) == pytest.approx(1000 * 0.09 / 0.099)
    assert generated_in_bin(1000, 10, 1000, 2.0, 2000, 3000) == 0.0
    a, err = acceptance(30, 1000, 56.0)
    assert a == pytest.approx(1.68) and err == pytest.approx(56.0 * np.sqrt(0.03 * 0.97 / 1000))
    b = BinCounts(100, 200, 0.5, 400, 100, 100, 90, 0, 10, 0.5)
    point = flux_point(b, 1.0)
    pull, chi2 = pulls([point, point], [point.flux, point.flux + point.flux_err])
    assert pull.tolist() == pytest.approx([0.0, -1.0]) and chi2 == pytest.approx(1.0)


@pytest.mark.parametrize("electron_share", [0.0, 0.3, 0.6])
def test_the_template_fit_finds_the_proton_shift_whatever_the_electron_share(electron_share):
    """Flight scores: protons of the template moved by +0.7, mixed with electrons; the fit gives the
    shift back (a median alignment would be pulled towards the electrons by their share)."""
    rng = np.random.default_rng(3)
    protons, electrons = rng.normal(0.0, 1.0, 40_000), rng.normal(4.0, 0.5, 10_000)
    n_e = int(electron_share * 8000)
    flight = np.concatenate([rng.normal(0.7, 1.0, 8000 - n_e), rng.normal(4.0, 0.5, n_e)])
    fitted, error = fit_template_shift(flight, protons, electrons)
    median = np.median(flight) - np.median(protons)
    print(f"\nelectron share {electron_share:.0%}: fitted {fitted:+.2f} +- {error:.2f}, median {median:+.2f}")
    assert abs(fitted - 0.7) < 3 * error and 0.005 < error < 0.06  # 8,000 events: ~1/sqrt(8000 (1 - share))


def test_the_held_out_estimate_never_fits_the_events_it_measures():
    """Deposits 0.9 x the true energy with a 2% spread: the held-out half comes back unbiased with
    the spread as its resolution, and spoiling the held-out events' truth changes nothing of the
    estimate (the correction saw only the other half)."""
    rng = np.random.default_rng(3)
    true = np.exp(rng.uniform(np.log(10.0), np.log(1e4), 4000))
    deposit = 0.9 * true * 1e3 * (1.0 + 0.02 * rng.standard_normal(4000))
    estimate, held_out = held_out_estimate(deposit, true)
    assert held_out.sum() == 2000 and not held_out[0] and held_out[1]
    bias, width = resolution(estimate[held_out], true[held_out])
    print(f"\nheld-out bias {bias:+.4f} (limit 0.005), resolution {width:.4f} (0.02 drawn, limit +-0.002)")
    assert abs(bias) < 0.005 and abs(width - 0.02) < 0.002
    spoiled = np.where(held_out, true * 3.0, true)
    np.testing.assert_array_equal(held_out_estimate(deposit, spoiled)[0], estimate)
