"""Convergence diagnostics of trained runs, from the loss history in each run record.

The rule (stated in the report and README): a run is **not converged** when the mean of its
reconstruction loss over the last 10 % of epochs is still more than 1 % below the mean over
the 10 % of epochs before them, i.e. ``(late - previous) / |previous| < -0.01`` (a loss that
still falls by more than 1 % per tenth of training). Dividing by ``|previous|`` keeps the
rule right for losses that are negative (a Gaussian NLL can be). A run is **not assessable**
with fewer than ``MIN_EPOCHS`` epochs (two windows of 10 % would be one or two epochs), when
its history has no reconstruction term, when the term has non-finite values, or when the
reference mean is zero. Runs without any loss history and without epochs (PCA, Harmony,
Seurat, ...) are **not trained** (nothing to converge).

Only the reconstruction term is judged: it is the term every model shares and the one that
keeps falling while a model still learns the data; adversarial and KL terms can rise or
oscillate in a converged model. The term is found by name (the packages do not import each
other, and the names are what the run record stores): ``RECONSTRUCTION_TERMS`` in order of
preference. Where a model holds cells out of training (the sysVI family and the scvi-tools
models keep 10 % for validation, as their released code does) the held-out reconstruction is
judged: on small data the training term keeps falling for thousands of epochs as the decoder
memorises the training cells (measured on 1,069 simulated cells: the cVAE's training term still
fell 0.4 % per tenth at 2,000 epochs), while the held-out term reaches its minimum near the
released budget (~400 epochs) and then rises, i.e. further training stops improving the model.
Models that train on every cell (scDREAMER, DAVAE, scCRAFT, iMAP) are judged on the training term.

A flat curve also passes the rule, so a converged run whose reconstruction term changed by less
than ``LEARNED_THRESHOLD`` (5 %) between its first epoch and the last 10 % of its epochs gets a
``convergence_note`` ("learned little ..."), shown at the top of the report: converged, but
possibly without having learned the data (DAVAE's released loss does this on the default
study's data: its scaled residual term is almost constant from the first epoch). The reference is
the first epoch, not the first 10 %: scVI on 1,069 cells gains most of its 34 % in its first 40
of 400 epochs, so first-tenth vs last-tenth (-4.8 %) would call a fast learner flat.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIN_EPOCHS = 20
WINDOW_FRACTION = 0.10
THRESHOLD = 0.01  # relative decrease between the last two windows that counts as "still falling"
LEARNED_THRESHOLD = 0.05  # relative change first epoch -> last window below which a run "learned little"

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
NOT_ASSESSABLE = "not assessable"
NOT_TRAINED = "not trained"
RUN_FAILED = "run failed"

COLUMNS = ["converged", "convergence_term", "recon_rel_change", "convergence_note"]


def reconstruction_term(history: dict[str, list[float]]) -> str | None:
    """The name of the reconstruction term in a loss history (None when it has none)."""
    return next((t for t in RECONSTRUCTION_TERMS if history.get(t)), None)


def relative_change(values: list[float] | np.ndarray) -> tuple[float, str]:
    """(late - previous) / |previous| of the last two 10 % windows, and a note when undefined (NaN)."""
    v = np.asarray(values, dtype=float)
    if v.size < MIN_EPOCHS:
        return float("nan"), f"{v.size} epochs (< {MIN_EPOCHS})"
    if not np.isfinite(v).all():
        return float("nan"), "non-finite loss values"
    width = max(2, int(v.size * WINDOW_FRACTION))
    late, previous = v[-width:].mean(), v[-2 * width:-width].mean()
    if previous == 0:
        return float("nan"), "reference window mean is 0"
    return float((late - previous) / abs(previous)), ""


def overall_change(values: list[float] | np.ndarray) -> float:
    """(last - first) / |first|: the first epoch against the mean of the last 10 % window (called on
    histories that pass ``relative_change``'s checks)."""
    v = np.asarray(values, dtype=float)
    width = max(2, int(v.size * WINDOW_FRACTION))
    first, last = v[0], v[-width:].mean()
    return float((last - first) / abs(first)) if first else float("nan")


def assess(record: dict) -> dict[str, object]:
    """The convergence columns of one run record (``COLUMNS``)."""
    if record.get("status", "ok") != "ok":
        return {"converged": RUN_FAILED, "convergence_term": "", "recon_rel_change": np.nan,
                "convergence_note": ""}
    history = record.get("loss_history") or {}
    if not history and not record.get("epochs"):
        return {"converged": NOT_TRAINED, "convergence_term": "", "recon_rel_change": np.nan,
                "convergence_note": "no training loop"}
    term = reconstruction_term(history)
    if term is None:
        note = ("no loss history recorded" if not history
                else f"no reconstruction term among {', '.join(sorted(history))}")
        return {"converged": NOT_ASSESSABLE, "convergence_term": "", "recon_rel_change": np.nan,
                "convergence_note": note}
    change, note = relative_change(history[term])
    if note:
        status = NOT_ASSESSABLE
    elif change < -THRESHOLD:
        status, note = NOT_CONVERGED, f"{term} still fell {-change:.1%} over the last {WINDOW_FRACTION:.0%}"
    else:
        status = CONVERGED
        overall = overall_change(history[term])
        if abs(overall) < LEARNED_THRESHOLD:
            note = (f"learned little: {term} changed {overall:+.1%} from the first epoch to the last "
                    f"{WINDOW_FRACTION:.0%} of epochs")
    return {"converged": status, "convergence_term": term, "recon_rel_change": change, "convergence_note": note}


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

