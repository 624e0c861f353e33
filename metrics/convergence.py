"""Convergence and learning diagnostics of trained runs, from the loss history in each run record.

The rule (stated in the report and README) uses differences of the reconstruction-loss curve only,
so a constant in the loss (DAVAE's released loss sits near 680 whatever it learns) or a curve that
crosses zero (the sysVI family's held-out NLL goes from +245 to about -260) changes nothing:

- *improvement*: the first epoch's value minus the lowest mean over a window of 10 % of the epochs
  (at least 2); *noise*: the epoch-to-epoch scatter (``epoch_noise``: robust standard deviation of
  the first differences around their median, over sqrt 2).
- **learned** (``learned``): improvement >= ``LEARNED_THRESHOLD`` (10) x noise
  (``improvement_snr``). Gaussian noise alone stays below 10 in 999 of 1,000 curves of 20 or more
  epochs (99.9th percentile of simulated curves: 6.9 at 20 epochs, 3.4 at 500).
- **not converged** (``converged`` = no): the last window still gained more than
  ``LATE_SHARE_THRESHOLD`` (4 %) of the improvement over the window before it (``late_share``), and
  that gain exceeds ``LATE_NOISE_Z`` (2) standard errors of a difference of two window means.
- fewer than ``MIN_EPOCHS`` (20) epochs: too short to judge, flagged: converged = no, learned = not
  assessable. No history, no reconstruction term or non-finite values: not assessable. Runs without
  a loss history and without epochs (PCA, Harmony, Seurat, ...) are not trained.

Calibration (scripts/convergence_fixture.py; histories in tests/data/convergence_histories.json.gz):
the default study's simulated data (common-3, 1,069 cells), seed 0, each model after 1 and 2 epochs
(flagged as too short) and after its full budget. Full budget, improvement_snr / late_share of the
judged term: cVAE (500 epochs) 677 / -2.1 %, sysVI (VAMP+CYC, 500) 730 / -0.7 %, scVI (400) 404 /
-1.5 % (held-out terms, rising slightly after their minimum). The same sysVI-family runs stopped
early (their first 50, 100 or 200 epochs) gain 5.1-6.6 % per last tenth and are not converged; at
300 epochs 2.8-3.2 %, at 400 0.1-0.9 %. scVI's held-out term reaches its minimum by ~20 epochs
(late share <= 2 % from there on). DAVAE (released 20 epochs) with seed 1: 37 / 0.7 % (683 -> 509);
with seed 0 it stays where it started (682 -> 679, improvement_snr 4.3), as the same run with learning
rate 1e-9 does (4.4): flagged as not learned (its embedding's k-means ARI is 0.06).

Only the reconstruction term is judged: it is the term every model shares and the one that
keeps falling while a model still learns the data; adversarial and KL terms can rise or
oscillate in a converged model. The term is found by name (the packages do not import each
other, and the names are what the run record stores): ``RECONSTRUCTION_TERMS`` in order of
preference. Where a model holds cells out of training (the sysVI family and the scvi-tools
models keep 10 % for validation, as their released code does) the held-out reconstruction is
judged: on small data the training term keeps falling for thousands of epochs as the decoder
memorises the training cells, while the held-out term reaches its minimum near the released budget
(~400 epochs) and then rises, i.e. further training stops improving the model. Models that train on
every cell (scDREAMER, DAVAE, scCRAFT, iMAP) are judged on the training term.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_EPOCHS = 20
WINDOW_FRACTION = 0.10
MIN_WINDOW = 2
LATE_SHARE_THRESHOLD = 0.04  # share of the total improvement still gained in the last window: "still falling"
LATE_NOISE_Z = 2.0  # ... when that gain is also this many standard errors of a window difference
LEARNED_THRESHOLD = 10.0  # total improvement in units of epoch-to-epoch noise from which a run "learned"

# the reconstruction term of each model's history, by the name its code records:
#   reconstruction_validation  sysVI family (methods/sysvi.py): held-out cells, posterior mean
#   reconstruction_loss_validation  scvi-tools models (validation every epoch): held-out cells
#   reconstruction             sysVI family's training term, DAVAE (davae.py), scCRAFT (sccraft.py)
#   recon                      scDREAMER / scDREAMER-Sup (scdreamer.py), ZINB negative log-likelihood
#   reconstruction_loss_train  scvi-tools models: scVI, scANVI's scVI pre-training (scvi_models.py),
#                              scvi-tools SysVI (sysvi_scvitools.py)
#   stage1_reconstruction      iMAP stage I autoencoder (imap.py); stage II is a GAN without one
# scANVI's short fine-tuning stage (scanvi_reconstruction_loss_train, a few epochs by design) is
# not judged: the scVI pre-training is the model's main training.
RECONSTRUCTION_TERMS = ["reconstruction_validation", "reconstruction_loss_validation", "reconstruction", "recon",
                        "reconstruction_loss_train", "stage1_reconstruction"]

CONVERGED = "yes"
NOT_CONVERGED = "no"
LEARNED = "yes"
NOT_LEARNED = "no"
NOT_ASSESSABLE = "not assessable"
NOT_TRAINED = "not trained"
RUN_FAILED = "run failed"

COLUMNS = ["converged", "learned", "convergence_term", "late_share", "improvement_snr", "convergence_note"]


def reconstruction_term(history: dict[str, list[float]]) -> str | None:
    """The name of the reconstruction term in a loss history (None when it has none)."""
    return next((t for t in RECONSTRUCTION_TERMS if history.get(t)), None)


def window(n_epochs: int) -> int:
    """Epochs per window: 10 % of the run, at least ``MIN_WINDOW``."""
    return max(MIN_WINDOW, int(round(n_epochs * WINDOW_FRACTION)))


def epoch_noise(values: np.ndarray) -> float:
    """Epoch-to-epoch noise of a loss curve: the robust (MAD) standard deviation of its first
    differences around their median (a steady trend is not noise), over sqrt(2)."""
    d = np.diff(values)
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def curve_stats(values: list[float] | np.ndarray) -> dict[str, float]:
    """Offset-free statistics of a reconstruction-loss curve (lower is better):

    - ``improvement``: first epoch minus the best (lowest) window mean;
    - ``noise``: ``epoch_noise``; ``improvement_snr`` = improvement / noise (inf for a noiseless
      curve that improved, 0 for one that did not);
    - ``late_gain``: mean of the second-to-last window minus mean of the last window (> 0: still
      falling); ``late_share`` = late_gain / improvement (NaN when it did not improve).

    Adding a constant to the curve changes none of them; scaling it changes only ``improvement``,
    ``noise`` and ``late_gain``, not their ratios.
    """
    v = np.asarray(values, dtype=float)
    w = window(v.size)
    means = np.convolve(v, np.ones(w) / w, mode="valid")
    improvement = float(v[0] - means.min())
    noise = epoch_noise(v)
    late_gain = float(means[-w - 1] - means[-1]) if means.size > w else float("nan")
    if improvement <= 0:
        snr, share = 0.0, float("nan")
    else:
        snr = improvement / noise if noise > 0 else float("inf")
        share = late_gain / improvement
    return {"improvement": improvement, "noise": noise, "improvement_snr": float(snr), "late_gain": late_gain,
            "late_share": float(share), "window": w}


def judge(values: list[float] | np.ndarray) -> dict[str, object]:
    """converged, learned, late_share, improvement_snr and a note for one reconstruction curve."""
    v = np.asarray(values, dtype=float)
    out = {"late_share": np.nan, "improvement_snr": np.nan}
    if not np.isfinite(v).all():
        return {**out, "converged": NOT_ASSESSABLE, "learned": NOT_ASSESSABLE, "convergence_note": "non-finite loss values"}
    if v.size < MIN_EPOCHS:  # flagged, not passed: nothing shows that a run this short learned or finished
        return {**out, "converged": NOT_CONVERGED, "learned": NOT_ASSESSABLE,
                "convergence_note": f"too short to judge: {v.size} epoch(s) (< {MIN_EPOCHS})"}
    s = curve_stats(v)
    out = {"late_share": s["late_share"], "improvement_snr": s["improvement_snr"]}
    still_falling = (s["late_share"] > LATE_SHARE_THRESHOLD
                     and s["late_gain"] > LATE_NOISE_Z * s["noise"] * np.sqrt(2 / s["window"]))
    learned = s["improvement_snr"] >= LEARNED_THRESHOLD
    notes = []
    if still_falling:
        notes.append(f"still gained {s['late_share']:.0%} of its improvement in the last {s['window']} epochs")
    if not learned:
        notes.append(f"did not learn: improved {s['improvement_snr']:.1f} x its epoch-to-epoch noise "
                     f"(< {LEARNED_THRESHOLD:g})")
    return {**out, "converged": NOT_CONVERGED if still_falling else CONVERGED,
            "learned": LEARNED if learned else NOT_LEARNED, "convergence_note": "; ".join(notes)}


def assess(record: dict) -> dict[str, object]:
    """The convergence columns of one run record (``COLUMNS``)."""
    empty = {"convergence_term": "", "late_share": np.nan, "improvement_snr": np.nan}
    if record.get("status", "ok") != "ok":
        return {**empty, "converged": RUN_FAILED, "learned": RUN_FAILED, "convergence_note": ""}
    history = record.get("loss_history") or {}
    if not history and not record.get("epochs"):
        return {**empty, "converged": NOT_TRAINED, "learned": NOT_TRAINED, "convergence_note": "no training loop"}
    term = reconstruction_term(history)
    if term is None:
        note = ("no loss history recorded" if not history
                else f"no reconstruction term among {', '.join(sorted(history))}")
        return {**empty, "converged": NOT_ASSESSABLE, "learned": NOT_ASSESSABLE, "convergence_note": note}
    out = judge(history[term])
    return {"converged": out["converged"], "learned": out["learned"], "convergence_term": term,
            "late_share": out["late_share"], "improvement_snr": out["improvement_snr"],
            "convergence_note": f"{term}: {out['convergence_note']}" if out["convergence_note"] else ""}


def history_rows(ident: dict, record: dict) -> list[dict]:
    """Long rows (ident..., term, epoch, value, reconstruction) of one run's loss history."""
    history = record.get("loss_history") or {}
    recon = reconstruction_term(history)
    return [{**ident, "term": term, "epoch": i + 1, "value": float(v), "reconstruction": term == recon}
            for term, values in history.items() for i, v in enumerate(values or [])
            if v is not None]


LOSS_HISTORY_COLUMNS = ["dataset", "method", "setting", "seed", "label_missing", "term", "epoch", "value",
                        "reconstruction"]


def loss_history_table(rows: list[dict]) -> pd.DataFrame:
    """loss_history.tsv.gz: one row per run x loss term x epoch."""
    return pd.DataFrame(rows, columns=LOSS_HISTORY_COLUMNS)

