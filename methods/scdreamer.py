"""scDREAMER (Shree, Pavan & Zafar, Nat Commun 2023) and the shared core of scDREAMER-Sup.

An adversarial VAE with a ZINB likelihood, a discriminator trained with a Bhattacharyya loss
on real vs. "fake" expression, a batch classifier trained adversarially on the latent z, and
a consistency penalty between the latent samples of a cell and of a perturbed copy of it.
scDREAMER-Sup (``methods/scdreamer_sup.py``) adds a hierarchical prior p(z | y, c_hat) and a
linear cell-type classifier. Reimplemented in PyTorch from the description of the authors'
released TensorFlow code; defaults follow that code. The module
(networks, loss pieces, input transform, consistency perturbations) is
``methods/scdreamer_module.py``; this file holds the options, the data and the training loop.

Differences between the released code and the paper, each an option (default = code):

- ``likelihood_input``: "scaled" (code: the ZINB and the library prior are evaluated on the
  encoder input ``log2(log1p(CP10k) + 1) / max``, values in [0, 1]) or "counts" (paper: ZINB
  on raw counts with a library-size latent; the encoder, discriminator and consistency still
  see the scaled input, since the sigmoid "fake" head can only produce [0, 1]).
- ``consistency``: "zero_genes_10pct" (package: a random 10% of the genes, one draw per
  minibatch, zeroed in the encoder input), "zero_first_100" (reproducibility code: the first
  100 genes zeroed), "keep_80pct_umis" (paper: binomial thinning keeping 80% of UMIs, then
  the same transform; non-integer counts are rounded first) or "off" (the code used for the
  ~1M-cell run has no penalty). ``consistency_weight`` 0.001 and the sum over cells are code.
- ``kl_weight``: 0.001 on every KL term (code's hard-coded ``kl_scale``); 1.0 is the ELBO of
  the paper's equation (1).
- ``ae_updates_all``: True (code: the autoencoder optimizer has no var_list, so its step also
  moves the discriminator and the batch classifier, in the direction that lowers the AE loss);
  False updates only encoder/decoder (and the Sup prior networks and cell-type classifier).
- ``embedding``: "sample" (code: one posterior sample of z, dropout off) or "mean".
- ``shuffle``: "permute" (code ``shuffle_type=1``: a new permutation per epoch, consecutive
  slices, last partial minibatch dropped) or "contiguous" (``shuffle_type=2``: each step a
  contiguous random block of the cells in their stored order; used for some paper runs).
- ``use_discriminator`` / ``use_batch_classifier``: False gives the paper's ablations
  scDREAMER-woDis / scDREAMER-woBC (Supplementary Table 2).
- ``lr_ae`` / ``lr_dis`` / ``lr_cls``: code defaults 2e-4 / 7e-4 / 7e-4 (the code's docstring
  says lr_ae 7e-4); the paper's ~1M-cell runs used 1e-4 / 1e-5 / 7e-4.
- ``bias_init``: "zeros" (scDREAMER code: Glorot-uniform weights, zero biases) or "glorot"
  (scDREAMER-Sup code: Glorot-uniform biases too).
- ``transform_source``: "counts" (default here: CP10k from ``layers["counts"]`` of the HVGs)
  or "X" (``log2(X + 1)``, where X = log1p(CP10k) was normalized over all genes before HVG
  selection, which is what the released code computes when given all genes).
- NaN losses: the code stops training; here the run fails with TrainingDivergedError.
- ``holdout``: 0 (code: every cell trains) or a share of cells (seeded) kept out of training
  and used only to record their reconstruction per epoch (``reconstruction_validation``: ZINB
  NLL at the posterior means, eval mode, no random draws). On small data the training term
  keeps falling as the network memorises the cells; the held-out term shows when the model
  stops improving (the convergence rule in metrics/convergence.py judges it). Every cell is
  still embedded.

Not options (implementation choices with the same maths): x and its perturbed copy go through
the encoder in one call, and the discriminator step scores real and fake cells in one call
(no BatchNorm, so rows do not interact); each of the three steps draws its own z, library and
dropout masks, as each ``sess.run`` of the code does; ZINB eps 1e-4 and the zero test
``x < 1e-4`` as coded; the library prior is log(sum_g target + 1) over all cells, as coded
(the ~1M-cell variant drops the +1); fewer cells than ``batch_size`` is an error (the code
would train on nothing). The randomness differs from TensorFlow's, so results match the
released code in distribution, not bit for bit.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from methods.base import IntegrationResult, ParamError
from methods.nn.likelihoods import zinb_nll
from methods.nn.training import (
    LossHistory,
    check_finite,
    encode_in_batches,
    eval_mode,
    holdout_split,
    minibatch_indices,
    one_hot,
    pick_device,
    progress,
    seed_all,
    to_device_tensor,
)
from methods.scdreamer_module import (
    CONSISTENCY_VARIANTS,
    DreamerNet,
    bhattacharyya_coefficient,
    discriminator_scores,
    double_log_transform,
    gaussian_sample,
    glorot_init,
    kl_normal_clipped,
    kl_standard_clipped,
    log2p1_of_lognorm,
    matrix_max,
    perturb_input,
    torch_double_log_transform,
)

ZINB_EPS = 1e-4  # eps of the code's zinb_model
ENCODE_CHUNK = 15000  # the code embeds in chunks of 15 000 cells (no BatchNorm: chunking is exact)

CHOICES = {
    "consistency": CONSISTENCY_VARIANTS,
    "likelihood_input": ("scaled", "counts"),
    "transform_source": ("counts", "X"),
    "embedding": ("sample", "mean"),
    "shuffle": ("permute", "contiguous"),
    "bias_init": ("zeros", "glorot"),
}


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class DreamerConfig:
    epochs: int
    batch_size: int
    z_dim: int
    n_hidden: int
    dropout: float
    lr_ae: float
    lr_dis: float
    lr_cls: float
    beta1: float
    kl_weight: float
    consistency: str
    consistency_weight: float
    likelihood_input: str
    transform_source: str
    use_discriminator: bool
    use_batch_classifier: bool
    ae_updates_all: bool
    embedding: str
    shuffle: str
    bias_init: str
    holdout: float = 0.0
    y_dim: int = 6
    prior_hidden: int = 8
    celltype_weight: float = 10.0


def parse_params(params: dict[str, Any], method: str, supervised: bool) -> DreamerConfig:
    """Check parameter values; ParamError names the parameter and the value."""
    p = dict(params)
    for key, allowed in CHOICES.items():
        if p[key] not in allowed:
            raise ParamError(f"{method}: {key} must be one of {', '.join(allowed)}; got {p[key]!r}")
    for key in ("epochs", "batch_size", "z_dim", "n_hidden") + (("y_dim", "prior_hidden") if supervised else ()):
        if isinstance(p[key], bool) or not isinstance(p[key], (int, np.integer)) or p[key] < 1:
            raise ParamError(f"{method}: {key} must be a positive integer, got {p[key]!r}")
    bounds = {"lr_ae": (0, None), "lr_dis": (0, None), "lr_cls": (0, None), "kl_weight": (None, None),
              "consistency_weight": (None, None), "dropout": (None, 1), "beta1": (None, 1)}
    if supervised:
        bounds["celltype_weight"] = (None, None)
    for key, (above, below) in bounds.items():
        val = p[key]
        ok = isinstance(val, (int, float, np.number)) and not isinstance(val, bool) and np.isfinite(val)
        ok = ok and (val > above if above is not None else val >= 0) and (below is None or val < below)
        if not ok:
            rng = f"> {above}" if above is not None else ">= 0"
            rng += f" and < {below}" if below is not None else ""
            raise ParamError(f"{method}: {key} must be a number {rng}, got {val!r}")
    hold = p["holdout"]
    if isinstance(hold, bool) or not isinstance(hold, (int, float, np.number)) or not 0 <= hold < 0.5:
        raise ParamError(f"{method}: holdout must be a share of cells in [0, 0.5), got {hold!r}")
    for key in ("use_discriminator", "use_batch_classifier", "ae_updates_all"):
        if not isinstance(p[key], bool):
            raise ParamError(f"{method}: {key} must be true or false, got {p[key]!r}")
    fields = DreamerConfig.__dataclass_fields__
    return DreamerConfig(**{k: p[k] for k in fields if k in p})


# ----------------------------------------------------------------------------- data
@dataclass
class DreamerData:
    x: torch.Tensor  # scaled encoder input, cells x genes, on device
    target: torch.Tensor  # what the ZINB models (x itself, or raw counts)
    counts: torch.Tensor | None  # raw counts (only for keep_80pct_umis)
    batch_onehot: torch.Tensor
    batch_codes: torch.Tensor
    label_codes: torch.Tensor | None  # -1 = unlabelled
    library_mean: float
    library_var: float
    input_max: float


def _checked_counts(adata, method: str) -> Any:
    if "counts" not in adata.layers:
        raise ValueError(f"{method}: the dataset has no layers['counts'] (raw counts are required)")
    counts = adata.layers["counts"]
    values = counts.data if sp.issparse(counts) else np.asarray(counts)
    if values.size and not np.isfinite(values).all():
        raise ValueError(f"{method}: layers['counts'] contains NaN or inf values")
    if values.size and values.min() < 0:
        raise ValueError(f"{method}: layers['counts'] contains negative values (min {values.min()})")
    return counts


def _codes(adata, key: str, method: str) -> tuple[np.ndarray, list[str]]:
    if key not in adata.obs:
        raise ValueError(f"{method}: obs has no column '{key}'")
    col = adata.obs[key]
    if col.isna().any():
        raise ValueError(f"{method}: obs['{key}'] has missing values")
    cats = sorted(col.astype(str).unique())  # sklearn OneHotEncoder order (sorted categories)
    return np.searchsorted(cats, col.astype(str).to_numpy()), cats


def label_codes_with_missing(labels: Any) -> tuple[np.ndarray, list[str]]:
    """Integer codes of labels (sorted categories), -1 where the label is missing (NaN/None)."""
    import pandas as pd

    lab = pd.Series(np.asarray(labels, dtype=object))
    missing = lab.isna().to_numpy()
    cats = sorted(lab[~missing].astype(str).unique())
    codes = np.full(lab.shape[0], -1, dtype=np.int64)
    codes[~missing] = np.searchsorted(cats, lab[~missing].astype(str).to_numpy())
    return codes, cats


def _row_sums(M: Any) -> np.ndarray:
    return np.asarray(M.sum(axis=1), dtype=np.float64).ravel()


def prepare_data(adata, cfg: DreamerConfig, batch_key: str, label_key: str | None, device: torch.device,
                 method: str, like: DreamerData | None = None, label_values: Any = None
                 ) -> tuple[DreamerData, list[str], list[str]]:
    """Device tensors for training: scaled input, ZINB target, batch one-hot, label codes.

    ``like``: scale the input and set the library prior as in that (training) data instead of
    from ``adata``'s own cells; ``label_values``: these labels instead of ``obs[label_key]``.
    """
    counts = _checked_counts(adata, method)
    if cfg.transform_source == "X":
        scaled = log2p1_of_lognorm(adata.X)
    else:
        scaled = double_log_transform(counts)
    input_max = matrix_max(scaled) if like is None else like.input_max
    if not input_max > 0:
        raise ValueError(f"{method}: the input matrix is all zero")
    scaled = scaled.multiply(1.0 / input_max).tocsr() if sp.issparse(scaled) else scaled / input_max
    target_host = scaled if cfg.likelihood_input == "scaled" else counts
    # library prior: mean and variance over cells of log(sum_g target + 1), global constants as coded
    log_lib = np.log(_row_sums(target_host) + 1)
    batch_codes, batches = _codes(adata, batch_key, method)
    x = to_device_tensor(scaled, device)
    need_counts = cfg.consistency == "keep_80pct_umis"
    counts_t = to_device_tensor(counts, device) if (need_counts or cfg.likelihood_input == "counts") else None
    label_codes, labels = None, []
    if label_key is not None:
        if label_key not in adata.obs:
            raise ValueError(f"{method}: obs has no column '{label_key}'")
        codes, labels = label_codes_with_missing(adata.obs[label_key].to_numpy() if label_values is None else label_values)
        if not labels:
            raise ValueError(f"{method}: obs['{label_key}'] has no labelled cell (all missing)")
        label_codes = torch.as_tensor(codes, device=device)
    data = DreamerData(
        x=x, target=x if cfg.likelihood_input == "scaled" else counts_t,
        counts=counts_t if need_counts else None,
        batch_onehot=one_hot(batch_codes, len(batches), device=device),
        batch_codes=torch.as_tensor(batch_codes, device=device), label_codes=label_codes,
        library_mean=float(log_lib.mean()) if like is None else like.library_mean,
        library_var=float(log_lib.var()) if like is None else like.library_var, input_max=input_max,
    )
    return data, batches, labels


def epoch_minibatches(n: int, cfg: DreamerConfig, generator: torch.Generator,
                      device: torch.device) -> list[torch.Tensor]:
    """One epoch of ``n // batch_size`` minibatches (the code drops the last partial one)."""
    if cfg.shuffle == "permute":
        return minibatch_indices(n, cfg.batch_size, generator, device, shuffle=True, drop_last=True)
    # shuffle_type=2: blocks data[i:i+bs] with i ~ U[0, n - bs) in the stored cell order
    starts = torch.randint(0, max(n - cfg.batch_size, 1), (n // cfg.batch_size,), generator=generator)
    blocks = starts[:, None] + torch.arange(cfg.batch_size)[None, :]
    return list(blocks.to(device))


# ----------------------------------------------------------------------------- training
class DreamerTrainer:
    """Per minibatch: one autoencoder step, one discriminator step, one batch-classifier step."""

    def __init__(self, net: DreamerNet, data: DreamerData, cfg: DreamerConfig, generator: torch.Generator,
                 train_idx: torch.Tensor | None = None, heldout_idx: torch.Tensor | None = None):
        """train_idx / heldout_idx: cells trained on (default all) and held out (default none)."""
        self.net, self.data, self.cfg, self.gen = net, data, cfg, generator
        dev = data.x.device
        self.train_idx = torch.arange(data.x.shape[0], device=dev) if train_idx is None else train_idx
        self.heldout_idx = torch.arange(0, device=dev) if heldout_idx is None else heldout_idx
        betas = (cfg.beta1, 0.999)  # TF Adam defaults for beta2 and epsilon
        adversaries = [m for m in (net.discriminator, net.batch_classifier) if m is not None]
        adv_ids = {id(p) for m in adversaries for p in m.parameters()}
        ae_params = [p for p in net.parameters() if cfg.ae_updates_all or id(p) not in adv_ids]
        # fused Adam: one kernel per step instead of ~10 elementwise passes over 5M parameters
        adam = {"betas": betas, "eps": 1e-8, "fused": True}
        self.opt_ae = torch.optim.Adam(ae_params, lr=cfg.lr_ae, **adam)
        self.opt_dis = (torch.optim.Adam(net.discriminator.parameters(), lr=cfg.lr_dis, **adam)
                        if net.discriminator is not None else None)
        self.opt_cls = (torch.optim.Adam(net.batch_classifier.parameters(), lr=cfg.lr_cls, **adam)
                        if net.batch_classifier is not None else None)
        dev = data.x.device
        self.lib_mean = torch.tensor(data.library_mean, device=dev)
        self.lib_var = torch.tensor(data.library_var, device=dev)
        self.history = LossHistory()

    def autoencoder_loss(self, idx: torch.Tensor, history: LossHistory) -> torch.Tensor:
        """L_AE = -ELBO - CE_batch - log BC (+ weighted cell-type CE for scDREAMER-Sup)."""
        net, d, cfg = self.net, self.data, self.cfg
        x, b, target = d.x[idx], d.batch_onehot[idx], d.target[idx]
        x_pert = perturb_input(x, cfg.consistency, self.gen,
                               d.counts[idx] if d.counts is not None else None, d.input_max)
        if x_pert is None:
            z_mean, z_var, l_mean, l_var = net.encode(x, b)
        else:
            # x and its perturbed copy x' in one encoder call (one larger matmul is faster than
            # two; no BatchNorm, so the rows do not interact). z' is an independent sample.
            n = x.shape[0]
            both = net.encode(torch.cat([x, x_pert]), torch.cat([b, b]))
            z_pert = gaussian_sample(both[0][n:], both[1][n:])
            z_mean, z_var, l_mean, l_var = (t[:n] for t in both)
        z = gaussian_sample(z_mean, z_var)
        library = gaussian_sample(l_mean, l_var)
        hd = net.decoder(z, b)
        rate = torch.exp(library) * torch.softmax(net.scale_head(hd), dim=-1)
        nll = zinb_nll(target, rate, torch.exp(net.log_theta), net.dropout_head(hd), eps=ZINB_EPS)
        kl_l = kl_normal_clipped(l_mean, l_var, self.lib_mean, self.lib_var)
        terms: dict[str, torch.Tensor] = {"recon": nll.mean(), "kl_l": kl_l.mean()}
        if net.n_labels:
            kl_z, kl_y, sup_loss = self._supervised_terms(z, z_mean, z_var, idx, terms)
            kl_total = kl_l + kl_z + kl_y
        else:
            kl_z, sup_loss = kl_standard_clipped(z_mean, z_var), None
            kl_total = kl_l + kl_z
        terms["kl_z"] = kl_z.mean()
        neg_elbo = (nll + cfg.kl_weight * kl_total).mean()
        loss = neg_elbo
        if x_pert is not None:
            penalty = ((z - z_pert) ** 2).sum()  # summed over cells, as coded
            terms["consistency"] = penalty
            loss = loss + cfg.consistency_weight * penalty
        if net.batch_classifier is not None:
            ce_b = F.cross_entropy(net.batch_classifier(z), d.batch_codes[idx])
            terms["batch_ce"] = ce_b
            loss = loss - ce_b
        if net.discriminator is not None:
            # two calls here: one call on [x, fake] would also backpropagate to the real rows
            bc = bhattacharyya_coefficient(net.discriminator(x), net.discriminator(torch.sigmoid(net.fake_head(hd))))
            terms["neg_log_bc"] = -torch.log(bc)
            loss = loss - torch.log(bc)
        if sup_loss is not None:
            loss = loss + sup_loss
        terms["loss_ae"] = loss
        for k, v in terms.items():
            history.add(k, v)
        return loss

    def _supervised_terms(self, z, z_mean, z_var, idx, terms):
        """scDREAMER-Sup: KL to p(z | y, c_hat), KL(q(y) || N(0, I)), weighted cell-type CE.

        The prior is conditioned on the classifier's softmax c_hat for every cell (as coded),
        never on the given label; the CE is over the labelled cells of the minibatch only.
        """
        net, cfg = self.net, self.cfg
        logits = net.celltype_classifier(z)
        c_hat = torch.softmax(logits, dim=-1)
        hy = net.prior_encoder(z, c_hat)
        y_mean, y_var = net.y_mean(hy), torch.exp(net.y_logvar(hy))
        y = gaussian_sample(y_mean, y_var)
        hz = net.prior_decoder(y, c_hat)
        kl_z = kl_normal_clipped(z_mean, z_var, net.zc_mean(hz), torch.exp(net.zc_logvar(hz)))
        kl_y = kl_standard_clipped(y_mean, y_var)
        terms["kl_y"] = kl_y.mean()
        codes = self.data.label_codes[idx]
        labelled = codes >= 0
        # mean CE over labelled cells; 0 when the minibatch has none (no host sync to check)
        ce_sum = F.cross_entropy(logits, codes.clamp_min(0), reduction="none").mul(labelled).sum()
        ce = ce_sum / labelled.sum().clamp_min(1)
        terms["celltype_ce"] = ce
        return kl_z, kl_y, cfg.celltype_weight * ce

    def heldout_reconstruction(self) -> torch.Tensor:
        """Mean ZINB NLL of the held-out cells at the posterior means (eval mode, no draws)."""
        net, d, idx = self.net, self.data, self.heldout_idx
        b = d.batch_onehot[idx]
        with torch.no_grad(), eval_mode(net):
            z_mean, _, l_mean, _ = net.encode(d.x[idx], b)
            hd = net.decoder(z_mean, b)
            rate = torch.exp(l_mean) * torch.softmax(net.scale_head(hd), dim=-1)
            return zinb_nll(d.target[idx], rate, torch.exp(net.log_theta), net.dropout_head(hd), eps=ZINB_EPS).mean()

    def discriminator_step(self, idx: torch.Tensor, history: LossHistory) -> None:
        """Minimise log BC over the discriminator (a fresh forward pass, as each sess.run does)."""
        d, net = self.data, self.net
        x, b = d.x[idx], d.batch_onehot[idx]
        with torch.no_grad():
            x_fake = net.fake(net.sample_z(x, b), b)
        loss = torch.log(bhattacharyya_coefficient(*discriminator_scores(net, x, x_fake)))
        self.opt_dis.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_dis.step()
        history.add("loss_dis", loss)

    def classifier_step(self, idx: torch.Tensor, history: LossHistory) -> None:
        """Minimise the batch cross-entropy over the batch classifier (fresh z sample)."""
        d, net = self.data, self.net
        with torch.no_grad():
            z = net.sample_z(d.x[idx], d.batch_onehot[idx])
        loss = F.cross_entropy(net.batch_classifier(z), d.batch_codes[idx])
        self.opt_cls.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_cls.step()
        history.add("loss_cls", loss)

    def epoch_minibatches(self) -> list[torch.Tensor]:
        """One epoch's minibatches of trained cells (``epoch_minibatches``)."""
        return [self.train_idx[mb] for mb in epoch_minibatches(self.train_idx.numel(), self.cfg, self.gen,
                                                               self.data.x.device)]

    def step(self, idx: torch.Tensor) -> None:
        """One autoencoder step, then the discriminator and batch-classifier steps (when used)."""
        loss = self.autoencoder_loss(idx, self.history)
        self.opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_ae.step()
        if self.opt_dis is not None:
            self.discriminator_step(idx, self.history)
        if self.opt_cls is not None:
            self.classifier_step(idx, self.history)

    def end_epoch(self, epoch: int) -> None:
        """Held-out reconstruction, then the epoch's one host sync (loss means, NaN guard)."""
        if self.heldout_idx.numel():
            self.history.add("reconstruction_validation", self.heldout_reconstruction())
        check_finite(self.history.end_epoch(), epoch)

    def train(self, desc: str) -> tuple[LossHistory, list[float], list[float]]:
        """Run all epochs; returns the loss history and wall and CPU seconds per epoch."""
        epoch_seconds, epoch_cpu_seconds = [], []
        self.net.train()
        for epoch in progress(range(self.cfg.epochs), desc=desc, total=self.cfg.epochs):
            t0, c0 = time.perf_counter(), time.process_time()
            for idx in self.epoch_minibatches():
                self.step(idx)
            self.end_epoch(epoch)
            epoch_seconds.append(time.perf_counter() - t0)
            epoch_cpu_seconds.append(time.process_time() - c0)
        return self.history, epoch_seconds, epoch_cpu_seconds


def build_net(n_genes: int, n_batches: int, n_labels: int, cfg: DreamerConfig) -> DreamerNet:
    """The network with the code's initialisation (on the CPU; move it with ``.to``)."""
    net = DreamerNet(n_genes, n_batches, z_dim=cfg.z_dim, n_hidden=cfg.n_hidden, dropout=cfg.dropout,
                     use_discriminator=cfg.use_discriminator, use_batch_classifier=cfg.use_batch_classifier,
                     n_labels=n_labels, y_dim=cfg.y_dim, prior_hidden=cfg.prior_hidden)
    glorot_init(net, cfg.bias_init)
    with torch.no_grad():
        net.log_theta.normal_()  # re-draw after glorot_init so theta's init matches the code's N(0, 1)
    return net


def data_from_device_counts(counts: torch.Tensor, batch_codes: torch.Tensor, n_batches: int,
                            cfg: DreamerConfig, chunk_rows: int = 65536) -> DreamerData:
    """``prepare_data``'s tensors (default ``transform_source: counts``, no labels) from raw counts
    already on the device, transformed in row chunks: for timing training at sizes where the host
    preprocessing would dominate (benchmarks/gpu_check.py). ``counts`` is kept (as ZINB target or
    ``counts`` field) only where prepare_data keeps it."""
    if cfg.transform_source != "counts":
        raise ValueError("data_from_device_counts: only transform_source 'counts' is supported")
    scaled = torch.empty_like(counts)
    for start in range(0, counts.shape[0], chunk_rows):
        scaled[start:start + chunk_rows] = torch_double_log_transform(counts[start:start + chunk_rows], 1.0)
    input_max = float(scaled.max())
    if not input_max > 0:
        raise ValueError("data_from_device_counts: the counts are all zero")
    scaled /= input_max
    need_counts = cfg.consistency == "keep_80pct_umis"
    target = scaled if cfg.likelihood_input == "scaled" else counts
    log_lib = torch.log(target.sum(dim=1, dtype=torch.float64) + 1)
    return DreamerData(
        x=scaled, target=target, counts=counts if need_counts else None,
        batch_onehot=one_hot(batch_codes, n_batches, device=counts.device), batch_codes=batch_codes,
        label_codes=None, library_mean=float(log_lib.mean()), library_var=float(log_lib.var(unbiased=False)),
        input_max=input_max,
    )


# ----------------------------------------------------------------------------- entry point
def fit_dreamer(adata, *, batch_key: str, label_key: str | None, params: dict[str, Any], seed: int,
                device: str, method: str, supervised: bool) -> IntegrationResult:
    """Train scDREAMER or (``supervised``) scDREAMER-Sup and embed every cell. With a held-out
    novel type (methods/novel.py) the first phase trains on, and takes its input scale and library
    prior from, the other cells; the continuation keeps that scale, the type unlabelled."""
    from methods.novel import join_histories, split

    cfg = parse_params(params, method, supervised)
    novel = split(adata, label_key, params, method, keep_keys=(batch_key,))
    class_key = label_key if supervised else None
    dev = pick_device(device)
    generator = seed_all(seed)
    data, batches, labels = prepare_data(novel.seen_data(adata), cfg, batch_key, class_key, dev, method)
    n_cells = data.x.shape[0]
    train_idx, heldout_idx = holdout_split(n_cells, cfg.holdout, seed, dev)
    n = n_cells if train_idx is None else train_idx.numel()
    if n < cfg.batch_size:
        raise ParamError(f"{method}: batch_size {cfg.batch_size} exceeds the number of cells ({n}); "
                         "the code drops partial minibatches, so nothing would be trained")
    net = build_net(data.x.shape[1], len(batches), len(labels), cfg).to(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    trainer = DreamerTrainer(net, data, cfg, generator, train_idx, heldout_idx)
    history, epoch_seconds, epoch_cpu_seconds = trainer.train(desc=method)
    history, epochs = history.as_dict(), cfg.epochs
    if novel.active:  # every cell, scaled like the training cells; the held-out type unlabelled
        hidden = novel.hide_label(adata.obs[class_key].to_numpy()) if supervised else None
        data, _, _ = prepare_data(adata, cfg, batch_key, class_key, dev, method, like=data, label_values=hidden)
    if novel.finetune_epochs:
        more_cfg = replace(cfg, epochs=novel.finetune_epochs)
        train_idx, heldout_idx = holdout_split(data.x.shape[0], cfg.holdout, seed, dev)
        more, more_s, more_cpu_s = DreamerTrainer(net, data, more_cfg, generator, train_idx, heldout_idx).train(method)
        history, epochs = join_histories(history, more.as_dict()), epochs + novel.finetune_epochs
        epoch_seconds, epoch_cpu_seconds = epoch_seconds + more_s, epoch_cpu_seconds + more_cpu_s
    embed_fn = net.sample_z if cfg.embedding == "sample" else net.mean_z
    emb = encode_in_batches(embed_fn, data.x, data.batch_onehot, batch_size=ENCODE_CHUNK, module=net)
    predicted = None
    if supervised:
        with torch.no_grad():
            net.eval()
            logits = net.celltype_classifier(torch.as_tensor(emb, device=dev))
            predicted = np.asarray(labels, dtype=object)[logits.argmax(dim=1).cpu().numpy()]
    extra: dict[str, Any] = {
        "seconds_per_epoch": float(np.mean(epoch_seconds)) if epoch_seconds else None,
        "cpu_seconds_per_epoch": float(np.mean(epoch_cpu_seconds)) if epoch_cpu_seconds else None,
        "minibatches_per_epoch": n // cfg.batch_size, "n_train": n, "input_max": data.input_max,
        "library_prior": [data.library_mean, data.library_var], "batches": batches,
    }
    if supervised:
        extra["labels"] = labels
        extra["n_labelled"] = int((data.label_codes >= 0).sum())
    if dev.type == "cuda":
        extra["peak_gpu_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    if novel.active:
        extra["novel"] = novel.record()
    return IntegrationResult(embedding=emb, predicted_labels=predicted, loss_history=history,
                             epochs=epochs, extra=extra)


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    """scDREAMER (unsupervised): cell-type labels are not used."""
    return fit_dreamer(adata, batch_key=batch_key, label_key=label_key, params=params, seed=seed,
                       device=device, method="scdreamer", supervised=False)
