"""iMAP (Wang, Hou et al., Genome Biology 2021) via the authors' PyPI package ``imap`` 1.0.0.

iMAP integrates log-normalized ("log-TPM-like", non-negative) expression of shared HVGs in two
stages, both run here by calling the installed package (no iMAP code is copied):

- Stage I, ``imap.stage1.iMAP_fast``: a content/style autoencoder. The encoder (G->1024->512->
  ``latent_dim``, BatchNorm + Mish) gives a batch-free "content" vector; the decoder takes
  content plus a one-hot batch "style" code. Trained on mixup samples (one per batch per draw)
  with reconstruction loss (``lambda_rc``) and content-consistency loss under a random style
  (``lambda_co``); Adam(``lr``, betas 0.5/0.999), minibatch 512 draws.
- Stage II, ``imap.stage2.integrate_data``: random-walk mutual nearest neighbour (rwMNN) pairs
  between the anchor batch and each query batch, found on the stage-I content vectors (Annoy,
  ``metric``, ``k1`` across / ``k2`` within batches, at most ``n_sample`` cells per batch);
  then per query batch a residual generator (x + decoder(encoder(x)), ReLU) trained as a
  WGAN-GP-style GAN (gradient penalty weight 10, Adam lr 2e-4, betas 0.5/0.999, minibatch 1024
  draws, 10 critic steps and one generator step per epoch) maps query cells onto the anchor
  cells of the pairs. The anchor batch is the one with the largest summed per-gene standard
  deviation; ``inc`` true appends each corrected query batch to the anchor before the next.

Output: the corrected expression, cells x genes (-> ``X`` of the run file; non-negative,
log scale, in input cell and gene order), and beside it the PCA of the corrected matrix
(-> ``obsm["X_emb"]``, ``n_comps`` components, seeded ARPACK), as ``methods/combat.py`` does,
so embedding metrics score it like the other methods.

Defaults are the authors' released code (iMAP_fast / integrate_data signatures, which the
tutorial documents): ``stage1_epochs`` 150, ``stage2_epochs`` 150, ``lr`` 5e-4, ``lambda_co``
3, ``lambda_rc`` 1, ``latent_dim`` 256, ``inc`` false, ``metric`` angular, ``k1``/``k2`` null
(automatic: k2 = n/100, k1 = max(k2/2, 1) with n the smaller sampled batch of the first
pair; set both or neither, iMAP recomputes both when either is null), ``n_sample`` 3000. scCRAFT ran iMAP with exactly these (150/150 epochs, inc false).

Where our call differs from the paper / released code (each a parameter or a fixed choice):
- ``seed``: the run's seed is passed to both stages (iMAP's default seed is 8).
- ``epoch_samples`` (default 10240 = iMAP's): iMAP's "epoch" is a fixed 10 x 1024 random
  draws (``ScDataset.__len__`` in both stages) whatever the dataset size, so one stage-I epoch
  on 2000 HVGs takes ~30 s and one stage-II epoch ~8 s per query batch on one CPU thread (the
  defaults need over an hour on CPU). Lowering it (a multiple of 16) shortens every epoch of
  both stages; minibatches stay iMAP's (512 / 1024 draws) or the whole epoch if it is shorter.
  It is applied by overriding ``__len__`` of iMAP's two ``ScDataset`` classes for the duration
  of the call only. Stage II makes one generator step per epoch (at minibatch 0: its
  ``n_critic`` 100 exceeds the 10 minibatches of an epoch), so ``stage2_epochs`` is the number
  of generator updates and, with a short epoch, the critic gets fewer steps per generator step
  (iMAP: 10). Short budgets (the default study's) integrate only weakly.
- Input: our preprocessed log1p(normalize_total 1e4) HVGs (the same transform as iMAP's
  ``data_preprocess``, whose seurat_v3 HVG selection we do not rerun), densified.
- ``device``: "cpu" hides CUDA from iMAP (it moves everything to the GPU whenever
  ``torch.cuda.is_available()``); "cuda" / "cuda:N" needs a visible GPU ("auto" -> cuda when
  available).
- numpy 2 compatibility: stage II calls ``np.bool8`` (removed in numpy 2.0); ``_numpy2_compat``
  sets it to ``np.bool_`` for the duration of the call and removes it afterwards.
Stage II's learning rate (2e-4), n_critic (100) and minibatch sizes are hard-coded in iMAP and
not exposed. iMAP's own progress lines go to stderr; the per-epoch losses they report are parsed
into ``loss_history``.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import sys
from typing import Any

import numpy as np

from methods.base import IntegrationResult, ParamError, TrainingDivergedError

IMAP_EPOCH_SAMPLES = 10 * 1024  # iMAP's ScDataset.__len__ (both stages)
STAGE1_MINIBATCH, STAGE2_MINIBATCH = 512, 1024  # iMAP's DataLoader batch sizes (draws)
METRICS = ("angular", "euclidean", "manhattan", "hamming", "dot")  # Annoy metrics

_STAGE1_LINE = re.compile(r"\[Epoch (\d+)/(\d+)\] \[Reconstruction loss: ([^\]]+)\] \[Cotent loss: ([^\]]+)\]")
_STAGE2_LINE = re.compile(r"\[Epoch (\d+)/(\d+)\] \[D loss: ([^\]]+)\] \[G loss: ([^\]]+)\]")


def _positive_int(params: dict[str, Any], key: str, allow_none: bool = False) -> int | None:
    value = params[key]
    if value is None and allow_none:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParamError(f"imap: {key} must be a positive integer{' or null' if allow_none else ''}, "
                         f"got {params[key]!r}")
    return int(value)


def check_params(params: dict[str, Any]) -> dict[str, Any]:
    """Validated, typed copy of the parameters; ParamError names the bad one."""
    out = dict(params)
    for key in ("stage1_epochs", "stage2_epochs", "latent_dim", "n_sample", "n_comps", "epoch_samples"):
        out[key] = _positive_int(params, key)
    for key in ("k1", "k2"):
        out[key] = _positive_int(params, key, allow_none=True)
    if out["epoch_samples"] % 16:  # never leaves a 1-draw last minibatch (BatchNorm needs 2)
        raise ParamError(f"imap: epoch_samples must be a positive multiple of 16, got {params['epoch_samples']!r}")
    if (out["k1"] is None) != (out["k2"] is None):
        raise ParamError("imap: set both k1 and k2 or neither (iMAP recomputes both when either is null)")
    if out["n_comps"] < 2:
        raise ParamError(f"imap: n_comps must be >= 2, got {params['n_comps']!r}")
    for key in ("lr", "lambda_co", "lambda_rc"):
        value = params[key]
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise ParamError(f"imap: {key} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not math.isfinite(out[key]) or out[key] < 0:
            raise ParamError(f"imap: {key} must be a finite number >= 0, got {value!r}")
    if out["lr"] <= 0:
        raise ParamError(f"imap: lr must be > 0, got {params['lr']!r}")
    if out["lambda_co"] == 0 and out["lambda_rc"] == 0:
        raise ParamError("imap: lambda_co and lambda_rc cannot both be 0 (no stage-I loss)")
    if not isinstance(params["inc"], bool):
        raise ParamError(f"imap: inc must be true or false, got {params['inc']!r}")
    if params["metric"] not in METRICS:
        raise ParamError(f"imap: metric must be one of {', '.join(METRICS)}, got {params['metric']!r}")
    return out


@contextlib.contextmanager
def _numpy2_compat():
    """``np.bool8`` (removed in numpy 2.0, used by ``imap.stage2.acquire_pairs``) while iMAP runs."""
    added = "bool8" not in np.__dict__
    if added:
        np.bool8 = np.bool_
    try:
        yield
    finally:
        if added:
            del np.bool8


@contextlib.contextmanager
def _epoch_samples(n: int):
    """iMAP epochs of ``n`` random draws, by overriding ``__len__`` of iMAP's two ``ScDataset``
    classes for the duration of the call only (a no-op at iMAP's own 10240)."""
    from unittest import mock

    import imap.stage1
    import imap.stage2

    with contextlib.ExitStack() as stack:
        if n != IMAP_EPOCH_SAMPLES:
            for module in (imap.stage1, imap.stage2):
                stack.enter_context(mock.patch.object(module.ScDataset, "__len__", lambda self: n))
        yield


@contextlib.contextmanager
def _imap_device(dev):
    """Make iMAP use ``dev``: it reads ``torch.cuda.is_available()`` (stage II, at call time)
    and module globals ``cuda`` / ``FloatTensor`` (stage I, set at import)."""
    from unittest import mock

    import imap.stage1
    import torch

    use_cuda = dev.type == "cuda"
    saved = imap.stage1.cuda, imap.stage1.FloatTensor
    imap.stage1.cuda = use_cuda
    imap.stage1.FloatTensor = torch.cuda.FloatTensor if use_cuda else torch.FloatTensor
    try:
        with contextlib.ExitStack() as stack:
            if use_cuda:
                stack.enter_context(torch.cuda.device(dev))
            else:
                stack.enter_context(mock.patch.object(torch.cuda, "is_available", return_value=False))
            yield
    finally:
        imap.stage1.cuda, imap.stage1.FloatTensor = saved


class _Tee(io.TextIOBase):
    """Stdout replacement: forwards iMAP's prints to stderr and keeps them for parsing."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._buf = ""

    def write(self, text: str) -> int:
        sys.stderr.write(text)
        self._buf += text
        *done, self._buf = self._buf.split("\n")
        self.lines.extend(done)
        return len(text)


def parse_losses(lines: list[str]) -> dict[str, list[float]]:
    """Per-epoch losses from iMAP's progress lines (stage II: query batches one after another)."""
    hist: dict[str, list[float]] = {"stage1_reconstruction": [], "stage1_content": [],
                                    "stage2_discriminator": [], "stage2_generator": []}
    for line in lines:
        if m := _STAGE1_LINE.search(line):
            hist["stage1_reconstruction"].append(float(m.group(3)))
            hist["stage1_content"].append(float(m.group(4)))
        elif m := _STAGE2_LINE.search(line):
            hist["stage2_discriminator"].append(float(m.group(3)))
            hist["stage2_generator"].append(float(m.group(4)))
    return hist


def _check_losses(hist: dict[str, list[float]]) -> None:
    for term, values in hist.items():
        bad = [i for i, v in enumerate(values) if not math.isfinite(v)]
        if bad:
            raise TrainingDivergedError(f"imap: {term} loss is {values[bad[0]]} at epoch {bad[0] + 1}")


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    import anndata as ad
    import imap.stage1
    import imap.stage2
    import scanpy as sc
    import scipy.sparse as sp

    from methods.nn.training import pick_device, seed_all

    p = check_params(params)
    try:
        dev = pick_device(device)
    except ValueError as err:
        raise ParamError(f"imap: {err}") from None
    batches = adata.obs[batch_key].astype(str).to_numpy()
    sizes = dict(zip(*np.unique(batches, return_counts=True)))
    if len(sizes) < 2:
        raise ValueError(f"imap: obs['{batch_key}'] has a single batch; nothing to integrate")
    smallest = min(min(sizes.values()), p["n_sample"])
    if p["k1"] is None and smallest < 100:
        raise ParamError(f"imap: k2 null (automatic = cells/100) is 0 for a batch of {smallest} cells; "
                         "set k1 and k2 (the tutorial used 1 and 5 on 549 cells)")
    X = adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if not np.isfinite(X).all() or (X < 0).any():
        raise ValueError("imap: X must be finite and non-negative (log-normalized expression)")
    # Light AnnData: dense X (iMAP's extract_data calls np.array(X[mask])), string batch labels.
    light = ad.AnnData(X=X, obs={batch_key: batches})
    light.obs_names = adata.obs_names.astype(str)
    light.var_names = adata.var_names.astype(str)
    seed_all(seed)  # python, numpy, torch; iMAP re-seeds torch and numpy (and random in stage II)
    tee = _Tee()
    with (_numpy2_compat(), _epoch_samples(p["epoch_samples"]), _imap_device(dev),
          contextlib.redirect_stdout(tee)):
        _encoder, ec_data = imap.stage1.iMAP_fast(
            light, key=batch_key, n_epochs=p["stage1_epochs"], lr=p["lr"], latent_dim=p["latent_dim"],
            lambda_co=p["lambda_co"], lambda_rc=p["lambda_rc"], seed=int(seed) % 2**32)
        _check_losses(parse_losses(tee.lines))
        corrected = imap.stage2.integrate_data(
            light, ec_data, key=batch_key, n_epochs=p["stage2_epochs"], inc=p["inc"], metric=p["metric"],
            k1=p["k1"], k2=p["k2"], n_sample=p["n_sample"], seed=int(seed) % 2**32)
    hist = parse_losses(tee.lines)
    _check_losses(hist)
    corrected = np.asarray(corrected, dtype=np.float32)
    if corrected.shape != adata.shape:
        raise ValueError(f"imap: corrected matrix has shape {corrected.shape}, expected {adata.shape}")
    if not np.isfinite(corrected).all():
        raise TrainingDivergedError("imap: corrected matrix contains NaN or inf values")
    n_comps = min(p["n_comps"], min(corrected.shape) - 1)
    embedding = sc.pp.pca(corrected, n_comps=n_comps, random_state=seed)
    order = [line.split("Orders:", 1)[1].strip() for line in tee.lines if line.startswith("Orders:")]
    return IntegrationResult(
        embedding=np.asarray(embedding, dtype=np.float32), corrected=corrected, loss_history=hist,
        epochs=p["stage1_epochs"] + p["stage2_epochs"],
        extra={"n_comps": int(n_comps), "device": str(dev), "stage1_epochs": p["stage1_epochs"],
               "stage2_epochs": p["stage2_epochs"], "epoch_samples": p["epoch_samples"],
               "merge_order": order[0] if order else ""})
