"""Convergence flag of trained runs (metrics/convergence.py): the rule's edge cases, and the
columns and loss-history table the aggregate step writes from run records."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from metrics import convergence
from metrics.convergence import assess, relative_change


def record(values, term="reconstruction", **extra):
    return {"status": "ok", "epochs": len(values), "loss_history": {term: list(values), "kl": [1.0] * len(values)},
            **extra}


def test_flat_loss_is_converged_and_still_falling_loss_is_not():
    flat = np.r_[np.linspace(100, 10, 30), np.full(70, 10.0)]
    assert assess(record(flat))["converged"] == "yes"
    falling = np.linspace(100, 10, 100)  # last tenth ~10 % below the tenth before
    out = assess(record(falling))
    assert out["converged"] == "no" and out["recon_rel_change"] < -0.01
    assert "fell" in out["convergence_note"]


def test_a_flat_curve_from_the_start_is_converged_but_learned_little_and_the_report_says_so():
    """DAVAE's released loss on the default study: ~680 from epoch 1 to 20 (-0.6 %). The convergence
    rule passes it; the note and the report's banner say it may not have learned the data."""
    import pandas as pd

    from reports.trust import convergence_banner

    flat = 680 + np.random.default_rng(0).normal(0, 5, 20) - np.linspace(0, 4, 20)
    out = assess(record(flat))
    assert out["converged"] == "yes" and out["convergence_note"].startswith("learned little: reconstruction")
    learned = assess(record(np.r_[np.linspace(680, 400, 10), np.full(10, 400.0)]))
    assert learned["converged"] == "yes" and learned["convergence_note"] == ""
    # scVI's held-out loss on the default study: 646 at epoch 1, ~400 by epoch 10, then slowly up to
    # ~424 as it overfits (first tenth vs last tenth: about -4 %); a fast learner is not flat
    fast = np.r_[np.linspace(646, 400, 10), np.full(190, 400.0), np.linspace(400, 424, 200)]
    assert assess(record(fast))["convergence_note"] == ""
    runs = pd.DataFrame([{"dataset": "d", "method": "davae", "setting": "default", "seed": 0, "epochs": 20, **out},
                         {"dataset": "d", "method": "scvi", "setting": "default", "seed": 0, "epochs": 20, **learned}])
    banner = convergence_banner(runs)
    assert "1 converged run(s) learned little</b> (davae)" in banner and "none of the 2 assessable" in banner


def test_threshold_is_one_percent_between_the_last_two_tenths():
    # 100 epochs: windows of 10; previous window mean 100, last window mean 99.5 (-0.5 %) or 98.5 (-1.5 %)
    base = np.full(100, 100.0)
    slow, fast = base.copy(), base.copy()
    slow[-10:], fast[-10:] = 99.5, 98.5
    assert assess(record(slow))["converged"] == "yes"
    assert assess(record(fast))["converged"] == "no"
    assert relative_change(fast)[0] == pytest.approx(-0.015)


def test_negative_loss_still_falling_is_flagged():
    # a Gaussian NLL can be negative: -100 -> -110 is still falling (relative to |previous|)
    values = np.r_[np.full(90, -100.0), np.full(10, -110.0)]
    out = assess(record(values))
    assert out["recon_rel_change"] == pytest.approx(-0.1)
    assert out["converged"] == "no"


def test_rising_loss_counts_as_converged():
    values = np.r_[np.full(90, 10.0), np.full(10, 10.5)]
    assert assess(record(values))["converged"] == "yes"


@pytest.mark.parametrize("values, note", [
    (np.linspace(10, 1, 19), "19 epochs (< 20)"),
    (np.r_[np.linspace(10, 1, 29), np.nan], "non-finite loss values"),
    (np.zeros(40), "reference window mean is 0"),
])
def test_not_assessable_cases(values, note):
    out = assess(record(values))
    assert out["converged"] == "not assessable" and out["convergence_note"] == note
    assert np.isnan(out["recon_rel_change"])


def test_twenty_epochs_is_assessable_with_two_epoch_windows():
    values = np.r_[np.full(16, 10.0), 10.0, 10.0, 9.0, 9.0]
    assert relative_change(values)[0] == pytest.approx(-0.1)


def test_missing_history_terms_and_untrained_methods():
    assert assess({"status": "ok", "epochs": None, "loss_history": {}})["converged"] == "not trained"
    no_history = assess({"status": "ok", "epochs": 50, "loss_history": {}})
    assert no_history["converged"] == "not assessable" and no_history["convergence_note"] == "no loss history recorded"
    gan_only = assess({"status": "ok", "epochs": 50, "loss_history": {"generator": [1.0] * 50}})
    assert gan_only["converged"] == "not assessable" and "generator" in gan_only["convergence_note"]
    assert assess({"status": "failed", "loss_history": {}})["converged"] == "run failed"


@pytest.mark.parametrize("terms, expected", [
    (["loss", "reconstruction", "kl"], "reconstruction"),  # sysVI family, DAVAE, scCRAFT
    (["recon", "kl_l", "kl_z"], "recon"),  # scDREAMER
    (["elbo_train", "reconstruction_loss_train", "scanvi_reconstruction_loss_train"],
     "reconstruction_loss_train"),  # scvi-tools: the scVI (pre-)training, not scANVI's short fine-tuning
    (["stage1_reconstruction", "stage2_generator"], "stage1_reconstruction"),  # iMAP
    (["loss", "reconstruction", "reconstruction_validation"], "reconstruction_validation"),  # sysVI, held out
    (["reconstruction_loss_train", "reconstruction_loss_validation", "scanvi_reconstruction_loss_validation"],
     "reconstruction_loss_validation"),  # scvi-tools with validation every epoch
])
def test_reconstruction_term_of_each_model(terms, expected):
    assert convergence.reconstruction_term({t: [1.0] for t in terms}) == expected


def test_held_out_term_decides_when_a_model_has_one():
    """Memorising small data: the training term still falls, the held-out one has turned up."""
    epochs = np.arange(1, 501)
    train = -1000 * np.log(epochs) / np.log(500)  # still falling by > 1 % per tenth
    held_out = -260 + 1e-4 * (epochs - 380) ** 2  # minimum at epoch 380, rising after
    only_train = assess({"status": "ok", "epochs": 500, "loss_history": {"reconstruction": list(train)}})
    assert only_train["converged"] == "no"
    both = assess({"status": "ok", "epochs": 500,
                   "loss_history": {"reconstruction": list(train), "reconstruction_validation": list(held_out)}})
    assert both["converged"] == "yes" and both["convergence_term"] == "reconstruction_validation"


def test_report_states_the_rule_the_tables_apply():
    from reports import trust

    assert trust.CONVERGENCE_WINDOW == convergence.WINDOW_FRACTION
    assert trust.CONVERGENCE_THRESHOLD == convergence.THRESHOLD
    assert trust.CONVERGENCE_MIN_EPOCHS == convergence.MIN_EPOCHS


def write_run(folder, rec: dict, metrics: dict) -> str:
    """A run.h5ad holding only the run record (all the aggregate step reads) and its metrics.json."""
    folder.mkdir(parents=True)
    with h5py.File(folder / "run.h5ad", "w") as f:
        f.create_group("uns").create_dataset("run_json", data=json.dumps(rec))
    (folder / "metrics.json").write_text(json.dumps({"status": rec["status"], "metrics": metrics}))
    return str(folder / "metrics.json")


def test_aggregate_writes_convergence_columns_and_loss_history(tmp_path):
    from metrics.aggregate import build_tables

    runs = tmp_path / "runs" / "d"
    files = [
        write_run(runs / "cvae" / "default" / "seed0", record(np.linspace(100, 10, 40), label_missing=0.0),
                  {"nmi": 0.5, "ilisi": 0.2}),
        write_run(runs / "cvae" / "default" / "seed1", record(np.r_[np.linspace(100, 10, 20), [10.0] * 20]),
                  {"nmi": 0.6, "ilisi": 0.3}),
        write_run(runs / "harmony" / "default" / "seed0", {"status": "ok", "epochs": None}, {"nmi": 0.4, "ilisi": 0.4}),
    ]
    tables = build_tables(files, {"set": "scib"})
    conv = tables["runs"].set_index(["method", "seed"])["converged"]
    assert conv[("cvae", 0)] == "no" and conv[("cvae", 1)] == "yes" and conv[("harmony", 0)] == "not trained"
    hist = tables["loss_history"]
    assert set(hist["term"]) == {"reconstruction", "kl"}
    assert len(hist) == 2 * 2 * 40
    recon = hist[hist["reconstruction"] & (hist["seed"] == 0)].sort_values("epoch")
    assert recon["value"].iloc[0] == pytest.approx(100) and recon["epoch"].iloc[-1] == 40
    assert not hist[hist["term"] == "kl"]["reconstruction"].any()
