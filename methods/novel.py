"""Held-out novel cell type (scDREAMER, Suppl. Fig. 3): train without one cell type, embed it.

Two parameters of every method that trains a network able to embed cells it never saw (the
registry adds them to those methods' defaults):

- ``novel_label`` (null or a label of ``obs[label_key]``): that type's cells, in every batch, are
  left out of training. The method trains on the other cells only (its data statistics, cluster,
  triplet and label steps included) and embeds every cell with the trained network. Supervised
  methods never see the label either: it is not one of their classes.
- ``novel_finetune_epochs`` (0 or more): then continue training on every cell, from the trained
  weights, for that many epochs (the paper's second step); the held-out cells stay unlabelled for
  supervised methods (a type the annotation does not know). Optimizers restart, as scvi-tools
  does for a model trained again; the first phase is the same as with 0, so a run with 0 and one
  with k at the same seed are "before" and "after".

Methods without a trained network (Harmony, Scanorama, BBKNN, ComBat, Seurat, unintegrated) have
no way to embed cells outside what they were fitted on; the registry refuses the parameters there
(``NOVEL_PARAMS`` and ``NOVEL_METHODS`` in methods/registry.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from methods.base import ParamError


@dataclass(frozen=True)
class NovelSplit:
    """Which cells a run trains on first (``seen``) and how long it continues on all of them."""

    label: str | None
    finetune_epochs: int
    seen: np.ndarray  # bool per cell: False for the held-out type's cells

    @property
    def active(self) -> bool:
        return self.label is not None

    def seen_data(self, adata):
        """The cells of the first training phase (a copy, so that nothing of the others is kept)."""
        return adata[self.seen].copy() if self.active else adata

    def hide_label(self, labels: Any) -> np.ndarray:
        """``labels`` with the held-out type's cells unlabelled (NaN): no class of a supervised model."""
        out = np.asarray(labels, dtype=object).copy()
        if self.active:
            out[~self.seen] = np.nan
        return out

    def record(self) -> dict[str, Any]:
        """What the run record keeps under ``extra["novel"]``."""
        return {"label": self.label, "n_novel": int((~self.seen).sum()), "n_seen": int(self.seen.sum()),
                "finetune_epochs": self.finetune_epochs}


def split(adata, label_key: str, params: dict[str, Any], method: str,
          keep_keys: tuple[str, ...] = ("batch",)) -> NovelSplit:
    """The run's NovelSplit from ``params``; ParamError for a label the data lacks, a finetune
    without a held-out type, or a split that leaves a batch (``keep_keys``) without seen cells
    (the conditional networks could not encode it)."""
    label = params.get("novel_label")
    epochs = params.get("novel_finetune_epochs", 0)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
        raise ParamError(f"{method}: novel_finetune_epochs must be an integer >= 0, got {epochs!r}")
    if label is None:
        if epochs:
            raise ParamError(f"{method}: novel_finetune_epochs {epochs} needs a novel_label (the type held out)")
        return NovelSplit(None, 0, np.ones(adata.n_obs, dtype=bool))
    label = str(label)
    if label_key not in adata.obs:
        raise ValueError(f"{method}: novel_label needs labels, and obs['{label_key}'] is missing")
    labels = adata.obs[label_key].astype(str).to_numpy()
    novel = labels == label
    if not novel.any():
        known = ", ".join(sorted(set(labels)))
        raise ParamError(f"{method}: novel_label {label!r} is not a label of this dataset (labels: {known})")
    seen = ~novel
    for key in keep_keys:
        if key in adata.obs:
            values = adata.obs[key].astype(str).to_numpy()
            lost = sorted(set(values) - set(values[seen]))
            if lost:
                raise ParamError(f"{method}: novel_label {label!r} leaves {key} {', '.join(lost)} without "
                                 "other cells, so the trained network could not encode it")
    return NovelSplit(label, int(epochs), seen)


def join_histories(first: dict[str, list[float]], second: dict[str, list[float]]) -> dict[str, list[float]]:
    """Loss history of the two phases, one list per term (a term of one phase only keeps its own)."""
    return {term: list(first.get(term, [])) + list(second.get(term, [])) for term in {**first, **second}}
