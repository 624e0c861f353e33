"""Per-cell log-likelihood and KL terms (each summed over genes / latent dims, shape (n,)).

Written here rather than taken from torch.distributions because the models reproduce their
authors' exact formulas (eps placement, no constants), which torch.distributions does not
expose; the formulas follow scvi-tools' conventions (theta = inverse dispersion).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Gaussian negative log-likelihood without the constant: 0.5 * (log var + (x-mean)^2 / var).

    Matches torch's ``GaussianNLLLoss(full=False)`` per element (callers clamp var if needed).
    ``var`` broadcasts against ``x`` (per gene, per cell or a scalar).
    """
    return (0.5 * (torch.log(var) + (x - mean) ** 2 / var)).sum(-1)


def nb_nll(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Negative binomial negative log-likelihood, mean ``mu``, inverse dispersion ``theta``."""
    log_theta_mu = torch.log(theta + mu + eps)
    ll = (theta * (torch.log(theta + eps) - log_theta_mu)
          + x * (torch.log(mu + eps) - log_theta_mu)
          + torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1))
    return -ll.sum(-1)


def zinb_nll(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, pi_logits: torch.Tensor,
             eps: float = 1e-8) -> torch.Tensor:
    """Zero-inflated NB negative log-likelihood; dropout probability sigmoid(pi_logits).

    The numerically stable softplus form used by scVI (Lopez et al. 2018).
    """
    softplus_pi = F.softplus(-pi_logits)
    log_theta_eps = torch.log(theta + eps)
    log_theta_mu_eps = torch.log(theta + mu + eps)
    pi_theta_log = -pi_logits + theta * (log_theta_eps - log_theta_mu_eps)
    case_zero = F.softplus(pi_theta_log) - softplus_pi
    case_non_zero = (-softplus_pi + pi_theta_log + x * (torch.log(mu + eps) - log_theta_mu_eps)
                     + torch.lgamma(x + theta) - torch.lgamma(theta) - torch.lgamma(x + 1))
    is_zero = (x < eps).to(x.dtype)
    ll = is_zero * case_zero + (1 - is_zero) * case_non_zero
    return -ll.sum(-1)


def kl_normal_standard(mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """KL( N(mu, var) || N(0, 1) ) summed over the last (latent) dimension."""
    return 0.5 * (var + mu ** 2 - 1.0 - torch.log(var)).sum(-1)


def kl_normal_normal(mu_q: torch.Tensor, var_q: torch.Tensor, mu_p: torch.Tensor,
                     var_p: torch.Tensor) -> torch.Tensor:
    """KL( N(mu_q, var_q) || N(mu_p, var_p) ) summed over the last dimension."""
    return 0.5 * (torch.log(var_p) - torch.log(var_q) + (var_q + (mu_q - mu_p) ** 2) / var_p - 1.0).sum(-1)


def normal_log_prob(x: torch.Tensor, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mu, var) (not summed)."""
    return -0.5 * (math.log(2 * math.pi) + torch.log(var) + (x - mu) ** 2 / var)
