"""scDREAMER's module: the input transform, the consistency perturbations, the loss pieces and
the networks (encoder, ZINB decoder, discriminator, batch classifier). The training loop, the
options and the data preparation are in ``methods/scdreamer.py``, whose docstring says which
released-code behaviour each piece follows."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from methods.base import ParamError
from methods.nn.layers import MLP, Linear

CONSISTENCY_VARIANTS = ("zero_genes_10pct", "zero_first_100", "keep_80pct_umis", "off")
VAR_CLIP_LOW, VAR_CLIP_HIGH = 1e-4, 1e4  # the code's capL / capU
LEAK = 0.2
CP10K = 1e4
N_FIRST_GENES = 100  # "zero_first_100"
ZERO_GENE_FRACTION = 0.1  # "zero_genes_10pct"
KEEP_UMI_FRACTION = 0.8  # "keep_80pct_umis"


# ----------------------------------------------------------------------------- input transform
def double_log_transform(counts: Any) -> Any:
    """``log2(log1p(CP10k) + 1)`` of a cells x genes count matrix (sparse stays sparse).

    The transform maps 0 to 0, so it is applied to the stored values of a sparse matrix only.
    Cells with no counts stay all-zero.
    """
    if sp.issparse(counts):
        out = sp.csr_matrix(counts, dtype=np.float32, copy=True)
        lib = np.asarray(out.sum(axis=1)).ravel()
        scale = np.divide(CP10K, lib, out=np.zeros_like(lib, dtype=np.float64), where=lib > 0)
        out.data = np.log2(np.log1p(out.data * np.repeat(scale, np.diff(out.indptr))) + 1).astype(np.float32)
        return out
    arr = np.asarray(counts, dtype=np.float64)
    lib = arr.sum(axis=1, keepdims=True)
    scale = np.divide(CP10K, lib, out=np.zeros_like(lib), where=lib > 0)
    return np.log2(np.log1p(arr * scale) + 1).astype(np.float32)


def log2p1_of_lognorm(X: Any) -> Any:
    """``log2(X + 1)`` of an already log1p(CP10k)-normalized matrix (sparse stays sparse)."""
    if sp.issparse(X):
        out = sp.csr_matrix(X, dtype=np.float32, copy=True)
        out.data = np.log2(out.data + 1).astype(np.float32)
        return out
    return np.log2(np.asarray(X, dtype=np.float32) + 1)


def matrix_max(X: Any) -> float:
    """Largest entry of a dense or sparse matrix (the code scales by one global max)."""
    if sp.issparse(X):
        return float(X.max()) if X.nnz else 0.0
    return float(np.max(X))


def torch_double_log_transform(counts: torch.Tensor, input_max: float) -> torch.Tensor:
    """Device version of the scaled input, ``log2(log1p(CP10k) + 1) / input_max``, for a minibatch."""
    lib = counts.sum(dim=1, keepdim=True)
    cp = counts * torch.where(lib > 0, CP10K / lib.clamp_min(1e-12), torch.zeros_like(lib))
    return torch.log2(torch.log1p(cp) + 1) / input_max


# ----------------------------------------------------------------------------- consistency
def zero_gene_columns(x: torch.Tensor, genes: torch.Tensor) -> torch.Tensor:
    """Copy of ``x`` with the given gene columns set to 0 (same genes for every cell)."""
    out = x.clone()
    out[:, genes] = 0.0
    return out


def random_gene_subset(n_genes: int, fraction: float, generator: torch.Generator) -> torch.Tensor:
    """``int(fraction * n_genes)`` distinct gene indices drawn uniformly (CPU generator)."""
    return torch.randperm(n_genes, generator=generator)[: int(fraction * n_genes)]


def thin_umis(counts: torch.Tensor, keep: float) -> torch.Tensor:
    """Binomial thinning: each UMI kept with probability ``keep`` (counts rounded first).

    Uses the device's global RNG (seeded by ``seed_all``) because torch.binomial cannot take a
    CPU generator for device tensors.
    """
    return torch.binomial(counts.round(), torch.full_like(counts, keep))


def perturb_input(x: torch.Tensor, variant: str, generator: torch.Generator,
                  counts: torch.Tensor | None = None, input_max: float = 1.0) -> torch.Tensor | None:
    """The perturbed encoder input x' of the consistency penalty (None for "off").

    x: scaled encoder input of the minibatch; counts: its raw counts (needed for
    "keep_80pct_umis"); input_max: the global max used to scale x.
    """
    if variant == "off":
        return None
    if variant == "zero_genes_10pct":
        genes = random_gene_subset(x.shape[1], ZERO_GENE_FRACTION, generator).to(x.device)
        return zero_gene_columns(x, genes)
    if variant == "zero_first_100":
        return zero_gene_columns(x, torch.arange(min(N_FIRST_GENES, x.shape[1]), device=x.device))
    if variant == "keep_80pct_umis":
        if counts is None:
            raise ValueError("consistency 'keep_80pct_umis' needs the minibatch's raw counts")
        return torch_double_log_transform(thin_umis(counts, KEEP_UMI_FRACTION), input_max)
    raise ParamError(f"scdreamer: unknown consistency '{variant}'; known: {', '.join(CONSISTENCY_VARIANTS)}")


# ----------------------------------------------------------------------------- loss pieces
def clip_var(v: torch.Tensor) -> torch.Tensor:
    """The code's ``clip``: variances clamped to [1e-4, 1e4] (used inside logs only)."""
    return v.clamp(VAR_CLIP_LOW, VAR_CLIP_HIGH)


def kl_standard_clipped(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, var) || N(0, 1)) per cell as coded: the log uses the clipped variance.

    Written here instead of ``methods.nn.likelihoods.kl_normal_standard`` because of that clip.
    """
    return 0.5 * (-torch.log(clip_var(var)) + var + mean ** 2 - 1).sum(-1)


def kl_normal_clipped(mean: torch.Tensor, var: torch.Tensor, mean_p: torch.Tensor,
                      var_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, var) || N(mean_p, var_p)) per cell, clipped inside the logs as coded.

    Serves the library KL (prior mean/var are data constants) and scDREAMER-Sup's conditional
    prior p(z | y, c_hat).
    """
    return 0.5 * (-torch.log(clip_var(var)) + var / var_p + (mean - mean_p) ** 2 / var_p
                  + torch.log(clip_var(var_p)) - 1).sum(-1)


def bhattacharyya_coefficient(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The code's minibatch Bhattacharyya coefficient between discriminator outputs.

    Each score vector is normalised by its minibatch sum and paired per cell:
    ``clip(sum_i sqrt(|r_i / sum r * f_i / sum f|), 1e-4, 1e4)`` (raw logits, no sigmoid).
    """
    r = real_scores.reshape(-1)
    f = fake_scores.reshape(-1)
    bc = torch.sqrt(torch.abs((r / r.sum()) * (f / f.sum()))).sum()
    return bc.clamp(VAR_CLIP_LOW, VAR_CLIP_HIGH)


def gaussian_sample(mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Reparameterised sample of N(mean, var)."""
    return mean + torch.sqrt(var) * torch.randn_like(mean)


# ----------------------------------------------------------------------------- networks
def _lrelu_mlp(n_in: int, hidden: list[int], n_out: int | None, n_cov: int, dropout: float) -> MLP:
    """The code's dense -> LeakyReLU(0.2) -> Dropout blocks (no normalization)."""
    return MLP(n_in, hidden, n_out, n_cov=n_cov, inject_cov="first" if n_cov else "none", norm=None,
               activation="leaky_relu", leaky_slope=LEAK, dropout=dropout)


def glorot_init(module: nn.Module, bias_init: str) -> None:
    """TF ``dense`` initialisation: Glorot-uniform kernels; biases 0 or Glorot-uniform.

    Glorot-uniform of a bias vector of length n has limit sqrt(6 / (n + n)).
    """
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            nn.init.xavier_uniform_(layer.weight)
            if bias_init == "glorot":
                limit = float(np.sqrt(3.0 / layer.bias.shape[0]))
                nn.init.uniform_(layer.bias, -limit, limit)
            else:
                nn.init.zeros_(layer.bias)


class DreamerNet(nn.Module):
    """Encoder, ZINB decoder with a sigmoid "fake" head, discriminator, batch classifier.

    With ``n_labels`` > 0 also scDREAMER-Sup's linear cell-type classifier and the prior
    networks E_y ([z, c_hat] -> y) and D_y ([y, c_hat] -> p(z | y, c_hat)).
    """

    def __init__(self, n_genes: int, n_batches: int, *, z_dim: int, n_hidden: int, dropout: float,
                 use_discriminator: bool, use_batch_classifier: bool, n_labels: int = 0,
                 y_dim: int = 6, prior_hidden: int = 8):
        super().__init__()
        self.encoder = _lrelu_mlp(n_genes, [n_hidden], None, n_batches, dropout)
        self.z_mean = Linear(n_hidden, z_dim)
        self.z_logvar = Linear(n_hidden, z_dim)
        self.l_hidden = Linear(n_hidden, z_dim)  # the code's ReLU(Dense(512 -> z_dim)) library branch
        self.l_mean = Linear(z_dim, 1)
        self.l_logvar = Linear(z_dim, 1)
        self.decoder = _lrelu_mlp(z_dim, [n_hidden], None, n_batches, dropout)
        self.scale_head = Linear(n_hidden, n_genes)
        self.dropout_head = Linear(n_hidden, n_genes)
        self.log_theta = nn.Parameter(torch.randn(n_genes))  # tf.Variable(tf.random_normal([p]))
        self.fake_head = Linear(n_hidden, n_genes) if use_discriminator else None
        self.discriminator = _lrelu_mlp(n_genes, [n_hidden], 1, 0, dropout) if use_discriminator else None
        self.batch_classifier = (_lrelu_mlp(z_dim, [n_hidden], n_batches, 0, dropout)
                                 if use_batch_classifier else None)
        self.n_labels = n_labels
        if n_labels:
            self.celltype_classifier = Linear(z_dim, n_labels)
            self.prior_encoder = _lrelu_mlp(z_dim, [n_hidden], None, n_labels, dropout)
            self.y_mean = Linear(n_hidden, y_dim)
            self.y_logvar = Linear(n_hidden, y_dim)
            self.prior_decoder = _lrelu_mlp(y_dim, [prior_hidden], None, n_labels, dropout)
            self.zc_mean = Linear(prior_hidden, z_dim)
            self.zc_logvar = Linear(prior_hidden, z_dim)

    def encode(self, x: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """q(z | x, s) and q(l | x, s): (z_mean, z_var, l_mean, l_var)."""
        h = self.encoder(x, b)
        h2 = torch.relu(self.l_hidden(h))
        return (self.z_mean(h), torch.exp(self.z_logvar(h)), self.l_mean(h2), torch.exp(self.l_logvar(h2)))

    def sample_z(self, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        z_mean, z_var, _, _ = self.encode(x, b)
        return gaussian_sample(z_mean, z_var)

    def mean_z(self, x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.encode(x, b)[0]

    def fake(self, z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The separate sigmoid head the discriminator compares with the real input."""
        return torch.sigmoid(self.fake_head(self.decoder(z, b)))

    def prior_networks(self) -> list[nn.Module]:
        return [self.celltype_classifier, self.prior_encoder, self.y_mean, self.y_logvar,
                self.prior_decoder, self.zc_mean, self.zc_logvar] if self.n_labels else []


def discriminator_scores(net: DreamerNet, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Discriminator outputs for real and fake inputs, in one call (one matmul; no BatchNorm).

    For the discriminator step, where neither input needs a gradient.
    """
    scores = net.discriminator(torch.cat([real, fake]))
    return scores[: real.shape[0]], scores[real.shape[0]:]
