"""Label transfer by kNN (metrics/label_transfer.py) on constructed cases."""

import numpy as np
import pytest
import scipy.sparse as sp

from metrics.label_transfer import (
    chance_accuracy,
    transfer_by_embedding,
    transfer_by_graph,
    transfer_scores,
)


def clusters(n_per=60, n_types=4, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"T{t}" for t in range(n_types)], n_per)
    emb = rng.normal(0, 0.3, (labels.size, 5)) + 10 * np.repeat(np.eye(n_types, 5), n_per, axis=0)
    is_ref = np.tile(np.arange(n_per) % 2 == 0, n_types)
    return emb, labels, is_ref


def test_separated_types_transfer_perfectly():
    emb, labels, is_ref = clusters()
    pred = transfer_by_embedding(emb, labels, is_ref, k=15)
    assert transfer_scores(labels[~is_ref], pred) == {"accuracy": 1.0, "macro_f1": 1.0}


def test_shuffled_reference_labels_give_chance():
    emb, labels, is_ref = clusters(n_per=400, n_types=4)
    shuffled = labels.copy()
    shuffled[is_ref] = np.random.default_rng(1).permutation(labels[is_ref])
    scores = transfer_scores(labels[~is_ref], transfer_by_embedding(emb, shuffled, is_ref, k=15))
    chance = chance_accuracy(labels[~is_ref], shuffled[is_ref])
    assert chance == pytest.approx(0.25)
    assert scores["accuracy"] == pytest.approx(chance, abs=0.05)
    assert scores["macro_f1"] == pytest.approx(0.25, abs=0.06)


def test_one_type_mislabelled_costs_its_share():
    emb, labels, is_ref = clusters(n_types=4)
    wrong = np.where(labels == "T3", "T0", labels)
    scores = transfer_scores(labels[~is_ref], transfer_by_embedding(emb, wrong, is_ref, k=5))
    assert scores["accuracy"] == pytest.approx(0.75)
    # T0: precision 1/2, recall 1 -> F1 2/3; T3: 0; T1, T2: 1
    assert scores["macro_f1"] == pytest.approx((2 / 3 + 0 + 1 + 1) / 4)


def test_graph_votes_by_edge_weight_and_unassigned_without_reference_neighbour():
    labels = np.array(["A", "B", "A", "B", "x"], dtype=object)
    is_ref = np.array([True, True, False, False, False])
    graph = sp.lil_matrix((5, 5))
    graph[2, 0], graph[2, 1] = 0.9, 0.2   # target 2: A by weight
    graph[3, 0], graph[3, 1] = 0.3, 0.4   # target 3: B by weight
    graph[4, 2] = 1.0                     # target 4: only a target neighbour
    pred = transfer_by_graph(graph.tocsr(), labels, is_ref)
    assert list(pred) == ["A", "B", "unassigned"]


def fake_run(emb, labels, is_ref, status="ok"):
    import anndata as ad
    import pandas as pd

    obs = pd.DataFrame({"batch": np.where(is_ref, "RNA", "ATAC"), "label": labels},
                       index=[f"c{i}" for i in range(labels.size)])
    run = ad.AnnData(X=np.zeros((labels.size, 0), dtype=np.float32), obs=obs)
    run.obsm["X_emb"] = emb.astype(np.float32)
    return run, {"method": "m", "setting": "default", "seed": 0, "status": status, "error": "boom"}


def test_score_run_rows_per_target_and_failed_runs():
    from metrics.label_transfer import COLUMNS, score_run

    emb, labels, is_ref = clusters()
    run, record = fake_run(emb, labels, is_ref)
    [row] = score_run(run, record, "d", "RNA", 15)
    assert set(row) == set(COLUMNS)
    assert (row["target"], row["n_reference"], row["n_target"], row["accuracy"]) == ("ATAC", 120, 120, 1.0)
    assert row["chance_accuracy"] == pytest.approx(0.25)
    [failed] = score_run(run, {**record, "status": "failed"}, "d", "RNA", 15)
    assert failed["status"] == "failed" and failed["error"] == "boom"
    with pytest.raises(ValueError, match="label_transfer.reference 'DNA' is not a batch"):
        score_run(run, record, "d", "DNA", 15)


def test_report_summary_and_figure():
    import pandas as pd

    from reports.label_transfer import fig_label_transfer, label_transfer_section, summary_table

    rows = [{"dataset": "d", "method": m, "seed": s, "status": "ok", "reference": "RNA", "target": "ATAC",
             "accuracy": acc + 0.01 * s, "macro_f1": acc, "chance_accuracy": 0.2, "error": ""}
            for m, acc in (("a", 0.9), ("b", 0.5)) for s in (0, 1)]
    table = pd.DataFrame(rows)
    summary = summary_table(table)
    assert list(summary["method"]) == ["a", "b"]
    assert summary.loc[0, "d: RNA \u2192 ATAC accuracy"] == "0.905 \u00b1 0.007 (n=2)"
    assert "Cross-modality label transfer" in label_transfer_section(table)
    assert label_transfer_section(None) == ""
    assert fig_label_transfer(table) is not None
    assert fig_label_transfer(table.assign(status="failed")) is None
