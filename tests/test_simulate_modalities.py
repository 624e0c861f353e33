"""The paired-modality simulator (datasets/simulate_modalities.py): the ATAC-like batch has the
detection rate and near-binary counts its parameters say, spots sum the cells asked, seeded."""

from dataclasses import replace

import numpy as np
import pytest

from datasets.simulate_modalities import ModalityParams, simulate_modalities

PARAMS = ModalityParams(n_rna=300, n_other=400, n_genes=1500)


def batch_matrix(adata, name):
    return adata[adata.obs["batch"] == name].X


@pytest.mark.parametrize("detection, multi", [(0.05, 0.05), (0.10, 0.02), (0.15, 0.10)])
def test_atac_detection_and_binary_share_follow_the_parameters(detection, multi):
    adata = simulate_modalities("rna-atac", seed=3, params=replace(PARAMS, atac_detection=detection,
                                                                    atac_multi_prob=multi))
    X = batch_matrix(adata, "ATAC")
    nonzero = X.nnz / (X.shape[0] * X.shape[1])
    assert nonzero == pytest.approx(detection, rel=0.05)
    share_ones = np.mean(X.data == 1)
    assert share_ones == pytest.approx(1 - multi, abs=0.01)
    # share of all values in {0, 1}: 1 - detection * multi
    assert 1 - np.sum(X.data > 1) / (X.shape[0] * X.shape[1]) == pytest.approx(1 - detection * multi, abs=0.003)
    # the RNA batch is ordinary counts: far from binary
    assert np.mean(batch_matrix(adata, "RNA").data == 1) < 0.5


def test_atac_gene_detection_differs_from_rna_but_follows_expression():
    adata = simulate_modalities("rna-atac", seed=4, params=PARAMS)
    rna = np.asarray((batch_matrix(adata, "RNA") > 0).mean(axis=0)).ravel()
    atac = np.asarray((batch_matrix(adata, "ATAC") > 0).mean(axis=0)).ravel()
    corr = np.corrcoef(rna, atac)[0, 1]
    assert 0.3 < corr < 0.95


def test_spots_sum_the_cells_asked_and_record_the_mixture():
    params = replace(PARAMS, cells_per_spot=5, spot_purity=0.5)
    adata = simulate_modalities("rna-spots", seed=5, params=params)
    spots = adata.obs[adata.obs["modality"] == "Spots"]
    assert len(spots) == params.n_other
    assert (spots["cells_in_obs"] == 5).all()
    counts = spots["composition"].map(lambda text: sum(int(part.split(":")[1]) for part in text.split(";")))
    assert (counts == 5).all()
    # the label is the most frequent type and dominant_share its share
    top = spots["composition"].map(lambda text: max(int(p.split(":")[1]) for p in text.split(";")))
    np.testing.assert_allclose(spots["dominant_share"], top / 5, rtol=1e-6)
    label_count = [dict(p.split(":") for p in c.split(";"))[str(lab)] for c, lab in
                   zip(spots["composition"], spots["celltype"])]
    np.testing.assert_array_equal(np.asarray(label_count, int), top.to_numpy())
    assert spots["dominant_share"].min() < 1 and spots["dominant_share"].max() == 1
    # a spot holds the counts of several cells: more detected genes than a cell
    genes = lambda name: np.diff(batch_matrix(adata, name).indptr).mean()  # noqa: E731
    assert genes("Spots") > 1.5 * genes("RNA")


def test_seeded_same_cell_types_and_shared_rna_batch():
    a = simulate_modalities("rna-atac", seed=7, params=PARAMS)
    b = simulate_modalities("rna-atac", seed=7, params=PARAMS)
    assert (a.X != b.X).nnz == 0
    assert (simulate_modalities("rna-atac", seed=8, params=PARAMS).X != a.X).nnz > 0
    spots = simulate_modalities("rna-spots", seed=7, params=PARAMS)
    rna = lambda x: x[x.obs["batch"] == "RNA"]  # noqa: E731
    assert (rna(a).X != rna(spots).X).nnz == 0
    assert list(a.obs["batch"].cat.categories) == ["RNA", "ATAC"]
    assert (a.obs["modality"].astype(str) == a.obs["batch"].astype(str)).all()
    for x in (a, spots):
        assert set(x.obs.loc[x.obs["batch"] != "RNA", "celltype"]) <= set(rna(x).obs["celltype"])


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="atac_detection"):
        simulate_modalities("rna-atac", params=replace(PARAMS, atac_detection=1.5))
    with pytest.raises(ValueError, match="unknown modality scenario"):
        simulate_modalities("rna-cite")
