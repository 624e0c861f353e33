"""Fully connected building blocks shared by the torch models.

``MLP`` is the block every model here is made of: ``Linear -> norm -> activation -> dropout``
per hidden layer (the order scvi-tools' FCLayers and Keras' Dense/BN/Activation/Dropout stacks
use), with optional covariate injection, as in the conditional VAEs of sysVI, DAVAE and
scDREAMER. ``GradientReversal`` is the identity forward and ``-scale * grad`` backward
(DAVAE's domain classifier, Ganin & Lempitsky 2015).
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("batch", "batch_no_scale", "layer", None)
ACTIVATIONS = ("relu", "leaky_relu", "elu", "none")
INJECT = ("all", "first", "none")
OUT_ACTIVATIONS = (None, "softplus", "exp", "sigmoid", "relu", "softmax")


class BatchNormNoScale(nn.Module):
    """BatchNorm with a learnable shift but the scale fixed at 1 (Keras ``scale=False``).

    torch's BatchNorm1d has no such switch; a non-affine BatchNorm plus a bias parameter is
    exactly Keras' ``center=True, scale=False``.
    """

    def __init__(self, n: int, momentum: float, eps: float):
        super().__init__()
        self.bn = nn.BatchNorm1d(n, momentum=momentum, eps=eps, affine=False)
        self.bias = nn.Parameter(torch.zeros(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x) + self.bias


def _onednn_linear_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


ONEDNN_LINEAR = _onednn_linear_available()


class _OneDNNLinear(torch.autograd.Function):
    """y = x W^T + b and its gradients, each one oneDNN fp32 matrix product (brgemm).

    Why: on CPU, torch sends fp32 ``F.linear`` and its backward to MKL's sgemm, which on AMD
    CPUs ran an AVX2 path: measured on 2026-11-21 (AMD EPYC, AVX-512), oneDNN's fp32 kernels were
    ~2x faster for every layer shape of these models (128 x 2000 x 256: 0.60 vs 1.35 ms). Measured
    again on 2026-12-06, MKL runs as fast (sysVI epochs at 10k cells: oneDNN / MKL 1.00 at 2
    threads, 0.97 at 1); kept because it is not slower and changing it would change every run's
    rounding. Accuracy as MKL's (relative error ~1e-6 against float64).
    ``mkldnn::_linear_pointwise`` is the op torch's own compiler (inductor) uses for CPU linear
    layers; it has no autograd formula, so the backward is written here: dX = dY W, dW = dY^T X,
    db = sum(dY).
    """

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        pointwise = torch.ops.mkldnn._linear_pointwise
        grad_x = pointwise(grad, weight.t(), None, "none", [], "") if ctx.needs_input_grad[0] else None
        grad_w = pointwise(grad.t(), x.t(), None, "none", [], "") if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear``, through oneDNN for 2-D fp32 CPU inputs (see ``_OneDNNLinear``).

    Anything else (GPU, other dtypes, bf16 autocast, which already uses oneDNN) is ``F.linear``.
    """
    if (ONEDNN_LINEAR and x.dim() == 2 and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")):
        return _OneDNNLinear.apply(x, weight, bias)
    return nn.functional.linear(x, weight, bias)


class Linear(nn.Linear):
    """``nn.Linear`` (same parameters, init and state dict) computed by :func:`linear`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def _norm_layer(norm: str | None, n: int, momentum: float, eps: float) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm1d(n, momentum=momentum, eps=eps)
    if norm == "batch_no_scale":
        return BatchNormNoScale(n, momentum, eps)
    if norm == "layer":
        return nn.LayerNorm(n, elementwise_affine=False)  # scvi-tools' use_layer_norm style
    return nn.Identity()


def _activation(name: str, leaky_slope: float) -> nn.Module:
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(leaky_slope)
    if name == "elu":
        return nn.ELU()
    return nn.Identity()


def apply_out_activation(x: torch.Tensor, name: str | None) -> torch.Tensor:
    """Apply a named output activation (None = linear)."""
    if name is None:
        return x
    if name == "softplus":
        return nn.functional.softplus(x)
    if name == "exp":
        return torch.exp(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    if name == "relu":
        return torch.relu(x)
    if name == "softmax":
        return torch.softmax(x, dim=-1)
    raise ValueError(f"unknown out_activation '{name}'; known: {OUT_ACTIVATIONS}")


def _check_choice(what: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"MLP: unknown {what} '{value}'; known: {', '.join(map(str, allowed))}")


class MLP(nn.Module):
    """Stack of ``Linear -> norm -> activation -> dropout`` layers, optional linear output.

    n_in: input width; hidden: widths of the hidden layers (may be empty); n_out: width of a
    final plain Linear layer (None = no output layer, the last hidden layer is the output).
    n_cov: width of the covariate tensor passed to ``forward`` (one-hot and/or continuous).
    inject_cov: "all" concatenates the covariates to the input of every hidden layer and of the
    output layer (scvi-tools ``inject_covariates=True``); "first" only to the first layer
    (Keras-style conditional VAEs that concatenate once); "none" ignores them.
    norm: "batch" (BatchNorm1d), "batch_no_scale" (shift only, Keras ``scale=False``),
    "layer" (LayerNorm without affine), or None. bn_momentum uses torch's convention
    (Keras momentum 0.99 == torch 0.01).
    out_activation: None (linear) or "softplus" | "exp" | "sigmoid" | "relu" | "softmax".
    """

    def __init__(self, n_in: int, hidden: list[int], n_out: int | None = None, *, n_cov: int = 0,
                 inject_cov: str = "all", norm: str | None = "batch", activation: str = "relu",
                 leaky_slope: float = 0.2, dropout: float = 0.0, bn_momentum: float = 0.1,
                 bn_eps: float = 1e-5, out_activation: str | None = None):
        super().__init__()
        _check_choice("inject_cov", inject_cov, INJECT)
        _check_choice("norm", norm, NORMS)
        _check_choice("activation", activation, ACTIVATIONS)
        _check_choice("out_activation", out_activation, OUT_ACTIVATIONS)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP: dropout must be in [0, 1), got {dropout}")
        if not hidden and n_out is None:
            raise ValueError("MLP: needs at least one hidden layer or an output layer")
        self.n_cov = int(n_cov)
        self.inject_cov = inject_cov
        self.out_activation = out_activation
        self.layers = nn.ModuleList()
        self._layer_takes_cov: list[bool] = []
        width = n_in
        for i, h in enumerate(hidden):
            takes = self._injects(i)
            self.layers.append(nn.Sequential(
                Linear(width + (self.n_cov if takes else 0), h),
                _norm_layer(norm, h, bn_momentum, bn_eps),
                _activation(activation, leaky_slope),
                nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
            ))
            self._layer_takes_cov.append(takes)
            width = h
        self.out = None
        self._out_takes_cov = False
        if n_out is not None:
            self._out_takes_cov = self._injects(len(hidden))
            self.out = Linear(width + (self.n_cov if self._out_takes_cov else 0), n_out)
            width = n_out
        self.n_out = width

    def _injects(self, layer_index: int) -> bool:
        if self.n_cov == 0 or self.inject_cov == "none":
            return False
        return self.inject_cov == "all" or layer_index == 0

    def forward(self, x: torch.Tensor, cov: torch.Tensor | None = None) -> torch.Tensor:
        if self.n_cov and self.inject_cov != "none":
            if cov is None or cov.shape[-1] != self.n_cov:
                got = None if cov is None else tuple(cov.shape)
                raise ValueError(f"MLP expects covariates of width {self.n_cov}, got {got}")
        for layer, takes in zip(self.layers, self._layer_takes_cov):
            x = layer(torch.cat([x, cov], dim=-1) if takes else x)
        if self.out is not None:
            x = self.out(torch.cat([x, cov], dim=-1) if self._out_takes_cov else x)
        return apply_out_activation(x, self.out_activation)


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def grad_reverse(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity in the forward pass; multiplies the gradient by ``-scale`` in the backward pass."""
    return _GradReverse.apply(x, float(scale))


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.scale)
