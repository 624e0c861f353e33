"""scDREAMER-Sup: scDREAMER plus a hierarchical prior on z and a cell-type classifier.

Built on ``methods/scdreamer.py`` (same encoder, ZINB decoder, discriminator, batch
classifier, consistency penalty, optimizers and step order; every option listed there applies
here too). Additions, as in the released code:

- a single linear cell-type classifier on the sampled z, c_hat = softmax(logits); its
  cross-entropy, weighted ``celltype_weight`` (10), is averaged over the labelled cells of
  the minibatch only (0 when there are none). Cells with a missing label (NaN in
  ``obs[label_key]``, as the runner writes for hidden labels) are allowed;
- E_y: [z, c_hat] -> 512 -> y (``y_dim`` 6); D_y: [y, c_hat] -> ``prior_hidden`` (8) -> the
  conditional prior p(z | y, c_hat); KL(q(y) || N(0, I)) weighted like the other KL terms;
- the prior is conditioned on the predicted c_hat for every cell, never on the given label
  (the paper describes conditioning on the cell-type label c; code behaviour kept);
- ``bias_init`` "glorot" (the Sup code initialises biases Glorot-uniform too);
- predicted labels: argmax of the classifier on the returned embedding (dropout off);
- missing labels are NaN/None (the runner's contract); the code instead masks the string
  "NA", which here is an ordinary label.
"""

from __future__ import annotations

from methods.base import IntegrationResult
from methods.scdreamer import fit_dreamer


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    """scDREAMER-Sup; returns the embedding and a predicted cell type for every cell."""
    return fit_dreamer(adata, batch_key=batch_key, label_key=label_key, params=params, seed=seed,
                       device=device, method="scdreamer_sup", supervised=True)
