"""VampPrior (Tomczak & Welling 2018) as the sysVI code uses it.

K trainable pseudo-inputs (expression, plus covariates) are pushed through the model's encoder;
the prior is the mixture of the resulting Gaussians with trainable mixing logits (initialised
to 0). As in the sysVI code (``_priors.py``) the mixture is taken **per latent
dimension**: log p(z) = sum_d logsumexp_k [log softmax(w)_k + log N(z_d; m_kd, v_kd)].
The caller's ``encode_fn`` decides train/eval mode; sysVI encodes the pseudo-inputs in eval
mode (see ``methods.nn.training.eval_mode``) while keeping gradients.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from methods.nn.likelihoods import normal_log_prob

EncodeFn = Callable[[torch.Tensor, "torch.Tensor | None"], tuple[torch.Tensor, torch.Tensor]]


def init_from_cells(X: torch.Tensor, cov: torch.Tensor | None, k: int,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor | None]:
    """K random cells (drawn with replacement, like the sysVI code) and their covariates.

    ``generator`` is a CPU generator so the draw is the same on every device.
    """
    if k < 1:
        raise ValueError(f"VampPrior: n_components must be >= 1, got {k}")
    idx = torch.randint(0, X.shape[0], (k,), generator=generator).to(X.device)
    return X[idx].detach().clone(), None if cov is None else cov[idx].detach().clone()


class VampPrior(nn.Module):
    """Mixture-of-variational-posteriors prior with per-dimension mixtures.

    n_components: K; pseudo_inputs: K x G initial expression; pseudo_cov: K x C covariates or
    None. trainable: the pseudo-inputs are learned (sysVI's ``trainable_priors``). The mixing
    logits are learned either way, as in both references (the sysVI paper code and scvi-tools'
    ``VampPrior`` create ``w`` without ``requires_grad=trainable_priors``). trainable_cov:
    covariates of the pseudo-inputs are learned too (sysVI paper code: a trainable continuous
    vector; the scvi-tools port keeps them fixed); default = ``trainable``.
    """

    def __init__(self, n_components: int, pseudo_inputs: torch.Tensor, pseudo_cov: torch.Tensor | None,
                 trainable: bool = True, *, trainable_cov: bool | None = None):
        super().__init__()
        if pseudo_inputs.shape[0] != n_components:
            raise ValueError(f"VampPrior: pseudo_inputs has {pseudo_inputs.shape[0]} rows, "
                             f"expected n_components={n_components}")
        if pseudo_cov is not None and pseudo_cov.shape[0] != n_components:
            raise ValueError(f"VampPrior: pseudo_cov has {pseudo_cov.shape[0]} rows, expected {n_components}")
        trainable_cov = trainable if trainable_cov is None else trainable_cov
        self.n_components = int(n_components)
        self.u = nn.Parameter(pseudo_inputs.detach().clone().float(), requires_grad=trainable)
        self.u_cov = (None if pseudo_cov is None else
                      nn.Parameter(pseudo_cov.detach().clone().float(), requires_grad=trainable_cov))
        self.w = nn.Parameter(torch.zeros(self.n_components))  # trainable whatever ``trainable`` says

    @classmethod
    def from_cells(cls, X: torch.Tensor, cov: torch.Tensor | None, k: int, generator: torch.Generator,
                   trainable: bool = True, *, trainable_cov: bool | None = None) -> VampPrior:
        """Build a prior whose pseudo-inputs are K random cells (see :func:`init_from_cells`)."""
        u, u_cov = init_from_cells(X, cov, k, generator)
        return cls(k, u, u_cov, trainable, trainable_cov=trainable_cov)

    init_from_cells = staticmethod(init_from_cells)

    def components(self, encode_fn: EncodeFn) -> tuple[torch.Tensor, torch.Tensor]:
        """Component means and variances, each K x d."""
        return encode_fn(self.u, self.u_cov)

    def log_prob(self, z: torch.Tensor, encode_fn: EncodeFn, *, component_var_power: float = 1.0
                 ) -> torch.Tensor:
        """log p(z) per cell (n,), summed over latent dimensions of per-dimension mixtures.

        component_var_power: the component variance used is ``var ** component_var_power``;
        1 is correct (sysVI paper code); 0.5 reproduces the scvi-tools port, whose components
        use std = sqrt(encoder std), i.e. variance = sqrt(encoder variance) (``VampPrior.log_prob``).
        """
        mu, var = self.components(encode_fn)
        if component_var_power != 1.0:
            var = var ** component_var_power
        log_w = torch.log_softmax(self.w, dim=0)[None, :, None]  # 1 x K x 1
        lp = normal_log_prob(z[:, None, :], mu[None], var[None]) + log_w  # n x K x d
        return torch.logsumexp(lp, dim=1).sum(-1)
