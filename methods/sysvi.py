"""sysVI family (Hrovatin, Moinfar et al., BMC Genomics 2025): one conditional VAE with switches.

Registry names: ``cvae`` (standard prior), ``vamp`` (VampPrior), ``cyc`` (latent
cycle-consistency), ``sysvi`` (VampPrior + cycle = VAMP+CYC) and ``adv`` (adversarial system
classifier on z, weight ``kappa``). They differ only in their registry defaults.

Faithful by default to the paper's code (theislab/cross_system_integration ``XXJointModel``).
Where scvi-tools 1.4.2's port (``scvi.external.SysVI``, run as ``sysvi_scvitools``) differs, an
option below reproduces it; with all four set (``cycle_input: own_system``, ``system_encoding:
one_hot``, ``cycle_covariates: real``, ``variant: scvi_tools``) the port's mixing matches it.
- Input: log-normalized HVGs (``X``). Covariates = one-hot ``obs[batch_key]`` (within-system
  batch; ``use_batch_covariate="auto"`` drops it when it splits cells exactly like the system,
  e.g. two simulated batches that are the systems) plus the system (``obs[system_key]``: one
  0/1 column for two systems, one-hot for more; ``system_encoding``), concatenated to the input
  of every encoder/decoder layer.
- Encoder/decoder MLP (G+c)->256->256 (Linear, BatchNorm momentum 0.01 eps 1e-3, ReLU,
  dropout 0.1); q_m, q_v = exp(lin) + 1e-4; decoder mean linear, per-gene variance
  exp(theta) + 1e-4 (theta init 0); Gaussian NLL (clamped at 1e-6, no constant).
- Prior: standard normal (analytic KL) or VampPrior with K pseudo-inputs initialised from K
  random cells (with replacement) incl. covariates, trainable, encoded in eval mode, mixture
  per latent dimension, single-sample Monte-Carlo KL.
- Cycle: system flipped (random other system when > 2), batch covariates zeroed, decode the
  same z, re-encode the decoded mean; loss = squared distance of latent means standardised
  jointly over [z_mean; z_mean_cycle] (unbiased std, with gradients), summed over dims.
- Loss: mean over cells of rec + kl_weight * KL + cycle_weight * cycle; no KL warm-up.
- Adam lr 1e-3, eps 0.01, weight decay 1e-6; batch 128; 90 % of cells trained on (train_size);
  epochs min(round(8e6 / N), 400) unless ``max_epochs`` is set; embedding = posterior mean of
  all cells in eval mode.

Options for code-vs-paper / code-vs-port differences:
- ``cycle_covariates``: "zero" (paper code) | "real" (scvi-tools SysVI keeps the covariates).
- ``cycle_distance``: "mse_standard" (paper runs; joint standardisation as coded) |
  "mse_standard_separate" (the paper text: cells and cycle pairs standardised separately) |
  "mse" (raw latent means; module default of the paper code).
- ``cycle_input``: what the cycle encoder reads: "other_system" (paper code and text: the decode
  of z under the other system) | "own_system" (scvi-tools 1.4.2, ``_get_inference_cycle_input``:
  the reconstruction in the cell's own system, ``px.loc``, labelled with the other system; its
  other-system decode ``px_cycle`` is computed and never used). A different objective: on
  Splatter common-3 it is most of the gap in mixing between this port and scvi-tools' SysVI.
- ``system_encoding``: "column" (paper code: one 0/1 column for two systems, one-hot for more) |
  "one_hot" (scvi-tools: one column per system, also for two).
- ``variant``: "paper" | "scvi_tools": the port's numerical quirks (scvi-tools): softplus
  encoder variance (clipped; ``VarEncoder``), Gaussian NLL given the std as "var"
  (``SysVAE.loss``), VampPrior component std sqrt(std) (``VampPrior.log_prob``), pseudo-input
  covariates fixed (``VampPrior.u_cat``, sampled by ``torch.multinomial``: no gradient), and
  the VampPrior KL evaluated after the cycle pass (``SysVAE.loss`` runs after ``forward``), so
  the pseudo-inputs' eval-mode encode reads BatchNorm running statistics the cycle encode has
  updated. With all four options set as scvi-tools, one minibatch gives scvi-tools' loss terms
  and gradients (tests/test_sysvi.py); what is left differs in random draws only.
- ``precision``: "fp32" (the authors' code) | "bf16-mixed": encoder/decoder matrix products in
  bfloat16 under ``torch.autocast`` (fp32 accumulation), with the latent heads, likelihood, KL,
  cycle and adversarial losses, parameters, gradients and Adam state in fp32; the embedding is
  always computed in fp32. 1.3x faster per epoch than fp32 on this AVX512-BF16 CPU (see
  benchmarks/bench_sysvi.py); slower on CPUs without bf16 instructions. Not a change of the model.
- ``adv`` (not in the paper's code; the paper "adapted the MultiVI adversarial classifier"):
  scvi-tools' AdversarialTrainingPlan scheme: classifier z->32->32->n_systems (BN, ReLU,
  dropout 0.1) on the sampled z; VAE step adds kappa * CE against uniform wrong systems; then a
  classifier step on z.detach() with kappa * CE(true system), its own Adam (same lr/eps/wd).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from methods.base import IntegrationResult, ParamError
from methods.nn.training import PRECISIONS

PRIORS = ("standard", "vamp")
CYCLE_COVARIATES = ("zero", "real")
CYCLE_DISTANCES = ("mse_standard", "mse_standard_separate", "mse")
CYCLE_INPUTS = ("other_system", "own_system")
SYSTEM_ENCODINGS = ("column", "one_hot")
VARIANTS = ("paper", "scvi_tools")
MIN_LAST_BATCH = 3  # BatchNorm and the minibatch std need a few cells; scvi moves <3 to validation


@dataclass(frozen=True)
class SysVIConfig:
    """Validated hyperparameters (names as in the registry)."""

    n_latent: int
    n_hidden: int
    n_layers: int
    dropout: float
    prior: str
    n_prior_components: int
    trainable_prior: bool
    kl_weight: float
    reconstruction_weight: float
    cycle_weight: float
    cycle_covariates: str
    cycle_distance: str
    cycle_input: str
    system_encoding: str
    kappa: float
    variant: str
    batch_size: int
    lr: float
    adam_eps: float
    weight_decay: float
    max_epochs: int | None
    train_size: float
    system_key: str
    use_batch_covariate: bool | str
    precision: str


def _choice(params: dict, key: str, allowed: tuple, method: str) -> str:
    value = params[key]
    if value not in allowed:
        raise ParamError(f"{method}: {key} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _number(params: dict, key: str, method: str, *, low: float = 0.0, strict: bool = False,
            integer: bool = False, high: float | None = None) -> Any:
    value = params[key]
    try:
        num = int(value) if integer else float(value)
    except (TypeError, ValueError):
        raise ParamError(f"{method}: {key} must be a number, got {value!r}") from None
    if integer and float(value) != num:
        raise ParamError(f"{method}: {key} must be an integer, got {value!r}")
    bad = num <= low if strict else num < low
    if bad or not math.isfinite(num) or (high is not None and num > high):
        rng = f"{'>' if strict else '>='} {low}" + (f" and <= {high}" if high is not None else "")
        raise ParamError(f"{method}: {key} must be {rng}, got {value!r}")
    return num


def _batch_covariate_choice(value: Any, method: str) -> bool | str:
    if value in ("auto", True, False):
        return value
    raise ParamError(f"{method}: use_batch_covariate must be 'auto', true or false; got {value!r}")


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """True when two code vectors split the cells identically (one label set renames the other)."""
    pairs = np.unique(np.stack([a, b], axis=1), axis=0)
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def parse_params(params: dict[str, Any], method: str = "sysvi") -> SysVIConfig:
    """Check parameter values; ParamError names the offending parameter."""
    max_epochs = params.get("max_epochs")
    if max_epochs is not None:
        max_epochs = _number(params, "max_epochs", method, low=0, strict=True, integer=True)
    dropout = _number(params, "dropout", method)
    if dropout >= 1:
        raise ParamError(f"{method}: dropout must be in [0, 1), got {dropout}")
    return SysVIConfig(
        n_latent=_number(params, "n_latent", method, low=0, strict=True, integer=True),
        n_hidden=_number(params, "n_hidden", method, low=0, strict=True, integer=True),
        n_layers=_number(params, "n_layers", method, low=0, strict=True, integer=True),
        dropout=dropout,
        prior=_choice(params, "prior", PRIORS, method),
        n_prior_components=_number(params, "n_prior_components", method, low=0, strict=True, integer=True),
        trainable_prior=bool(params["trainable_prior"]),
        kl_weight=_number(params, "kl_weight", method),
        reconstruction_weight=_number(params, "reconstruction_weight", method),
        cycle_weight=_number(params, "cycle_weight", method),
        cycle_covariates=_choice(params, "cycle_covariates", CYCLE_COVARIATES, method),
        cycle_distance=_choice(params, "cycle_distance", CYCLE_DISTANCES, method),
        cycle_input=_choice(params, "cycle_input", CYCLE_INPUTS, method),
        system_encoding=_choice(params, "system_encoding", SYSTEM_ENCODINGS, method),
        kappa=_number(params, "kappa", method),
        variant=_choice(params, "variant", VARIANTS, method),
        batch_size=_number(params, "batch_size", method, low=MIN_LAST_BATCH, integer=True),
        lr=_number(params, "lr", method, low=0, strict=True),
        adam_eps=_number(params, "adam_eps", method, low=0, strict=True),
        weight_decay=_number(params, "weight_decay", method),
        max_epochs=max_epochs,
        train_size=_number(params, "train_size", method, low=0, strict=True, high=1.0),
        system_key=str(params["system_key"]),
        use_batch_covariate=_batch_covariate_choice(params["use_batch_covariate"], method),
        precision=_choice(params, "precision", PRECISIONS, method),
    )


def default_epochs(n_cells: int) -> int:
    """scvi-tools / sysVI heuristic: min(round(20000 / N * 400), 400), at least 1."""
    return max(1, min(round(8e6 / n_cells), 400))


class SysVAE(nn.Module):
    """The conditional VAE (encoder, decoder, optional VampPrior and adversarial classifier)."""

    def __init__(self, n_genes: int, n_cov: int, n_systems: int, cfg: SysVIConfig):
        super().__init__()
        from methods.nn.layers import MLP, Linear

        self.cfg = cfg
        hidden = [cfg.n_hidden] * cfg.n_layers
        mlp = dict(n_cov=n_cov, inject_cov="all", norm="batch", activation="relu", dropout=cfg.dropout,
                   bn_momentum=0.01, bn_eps=1e-3)
        self.encoder = MLP(n_genes, hidden, **mlp)
        self.z_mean = Linear(cfg.n_hidden, cfg.n_latent)
        self.z_var = Linear(cfg.n_hidden, cfg.n_latent)
        self.decoder = MLP(cfg.n_latent, hidden, **mlp)
        self.x_mean = Linear(cfg.n_hidden, n_genes)
        self.x_var_param = nn.Parameter(torch.zeros(n_genes))
        self.prior = None  # VampPrior, set by attach_vamp_prior
        self.classifier = None
        if cfg.kappa > 0:
            self.classifier = MLP(cfg.n_latent, [32, 32], n_systems, norm="batch", activation="relu",
                                  dropout=0.1, bn_momentum=0.01, bn_eps=1e-3)

    def attach_vamp_prior(self, X: torch.Tensor, cov: torch.Tensor, generator: torch.Generator) -> None:
        from methods.nn.vamp_prior import VampPrior

        fixed_cov = self.cfg.variant == "scvi_tools"  # the port keeps pseudo-input categories fixed
        self.prior = VampPrior.from_cells(X, cov, self.cfg.n_prior_components, generator,
                                          trainable=self.cfg.trainable_prior,
                                          trainable_cov=False if fixed_cov else None)

    def encode(self, x: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and variance (fp32 also under bf16 autocast: the heads are tiny)."""
        h = self.encoder(x, cov).float()
        with torch.autocast(device_type=h.device.type, enabled=False):
            mean, lin = self.z_mean(h), self.z_var(h)
        if self.cfg.variant == "scvi_tools":
            bound = math.log(torch.finfo(lin.dtype).max) - 1e-4
            std = torch.sqrt(nn.functional.softplus(lin.clamp(-bound, bound))) + 1e-12
            return mean, std ** 2
        return mean, torch.exp(lin) + 1e-4

    def decode(self, z: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
        """Decoder mean (expression). Under bf16 autocast it stays bf16: the Gaussian NLL promotes it
        to fp32 against the fp32 input, and the cycle pass feeds it to the encoder without a cast."""
        return self.x_mean(self.decoder(z, cov))

    def decoder_var(self) -> torch.Tensor:
        """Per-gene variance as the Gaussian NLL sees it (clamped like GaussianNLLLoss, eps 1e-6)."""
        if self.cfg.variant == "scvi_tools":
            var = torch.sqrt(nn.functional.softplus(self.x_var_param))  # port passes the std as "var"
        else:
            var = torch.exp(self.x_var_param) + 1e-4
        return var.clamp(min=1e-6)

    def encode_eval(self, x: torch.Tensor, cov: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode in eval mode with gradients (VampPrior pseudo-inputs)."""
        from methods.nn.training import eval_mode

        with eval_mode(self.encoder):
            return self.encode(x, cov)


def cycle_distance(m: torch.Tensor, m_cyc: torch.Tensor, how: str) -> torch.Tensor:
    """Per-cell latent cycle distance, summed over latent dims (shape (n,))."""
    if how == "mse":
        return ((m - m_cyc) ** 2).sum(-1)
    if how == "mse_standard":
        joint = torch.cat([m, m_cyc], dim=0)
        mu, sd = joint.mean(0), joint.std(0)
        return (((m - mu) / sd - (m_cyc - mu) / sd) ** 2).sum(-1)
    # the paper text: each side standardised with its own minibatch mean and std
    return (((m - m.mean(0)) / m.std(0) - (m_cyc - m_cyc.mean(0)) / m_cyc.std(0)) ** 2).sum(-1)


def system_columns(codes: torch.Tensor, n_systems: int, encoding: str) -> torch.Tensor:
    """System covariate: one 0/1 column for two systems with ``encoding="column"`` (paper code),
    one-hot otherwise (scvi-tools; any number of systems)."""
    if n_systems == 2 and encoding == "column":
        return codes.to(torch.float32)[:, None]
    return nn.functional.one_hot(codes, n_systems).to(torch.float32)


def other_system(codes: torch.Tensor, n_systems: int) -> torch.Tensor:
    """A uniformly random different system per cell (== flip for two systems)."""
    shift = torch.randint(1, n_systems, codes.shape, device=codes.device)
    return (codes + shift) % n_systems


def _codes(adata, key: str, what: str) -> tuple[np.ndarray, list[str]]:
    if key not in adata.obs:
        raise ValueError(f"obs['{key}'] ({what}) is missing; available obs columns: "
                         f"{', '.join(map(str, adata.obs.columns))}")
    col = adata.obs[key]
    if col.isna().any():
        raise ValueError(f"obs['{key}'] ({what}) has {int(col.isna().sum())} missing values")
    cats, codes = np.unique(col.astype(str).to_numpy(), return_inverse=True)
    return codes.astype(np.int64), [str(c) for c in cats]


def step_losses(model: SysVAE, x: torch.Tensor, batch_oh: torch.Tensor | None, sys_codes: torch.Tensor,
                n_systems: int) -> dict[str, torch.Tensor]:
    """Per-cell loss terms of one minibatch (each shape (n,)) plus the sampled z."""
    from methods.nn.likelihoods import gaussian_nll, kl_normal_standard, normal_log_prob

    cfg = model.cfg
    sys_cols = system_columns(sys_codes, n_systems, cfg.system_encoding)
    cov = sys_cols if batch_oh is None else torch.cat([batch_oh, sys_cols], dim=1)
    mu, var = model.encode(x, cov)
    z = mu + torch.sqrt(var) * torch.randn_like(mu)
    out = {"z": z}
    x_rec = model.decode(z, cov)
    out["reconstruction"] = gaussian_nll(x, x_rec, model.decoder_var())

    def kl() -> torch.Tensor:
        if model.prior is None:
            return kl_normal_standard(mu, var)
        power = 0.5 if cfg.variant == "scvi_tools" else 1.0
        log_q = normal_log_prob(z, mu, var).sum(-1)
        return log_q - model.prior.log_prob(z, model.encode_eval, component_var_power=power)

    if cfg.variant == "paper":
        out["kl"] = kl()
    if cfg.cycle_weight > 0:
        cyc_cols = system_columns(other_system(sys_codes, n_systems), n_systems, cfg.system_encoding)
        if batch_oh is None:
            cov_cyc = cyc_cols
        else:
            cyc_batch = batch_oh if cfg.cycle_covariates == "real" else torch.zeros_like(batch_oh)
            cov_cyc = torch.cat([cyc_batch, cyc_cols], dim=1)
        # scvi-tools re-encodes the own-system reconstruction under the other system's label
        cyc_x = model.decode(z, cov_cyc) if cfg.cycle_input == "other_system" else x_rec
        mu_cyc, _ = model.encode(cyc_x, cov_cyc)
        out["cycle"] = cycle_distance(mu, mu_cyc, cfg.cycle_distance)
    if "kl" not in out:
        # scvi-tools evaluates the VampPrior in SysVAE.loss, after forward's cycle pass: the
        # pseudo-inputs' eval-mode encode sees BatchNorm running stats the cycle encode updated
        out["kl"] = kl()
    return out


def validation_reconstruction(model: SysVAE, X: torch.Tensor, batch_oh: torch.Tensor | None,
                              sys_codes: torch.Tensor, val_idx: torch.Tensor, n_systems: int) -> torch.Tensor:
    """Mean reconstruction NLL of the held-out cells (``1 - train_size``), decoded from the
    posterior mean in eval mode: the convergence signal. The training term keeps falling for
    thousands of epochs on small data as the decoder memorises the training cells and its
    per-gene variance shrinks; the held-out term stops improving when the model does. It draws
    no random numbers, so recording it leaves training unchanged."""
    from methods.nn.likelihoods import gaussian_nll
    from methods.nn.training import eval_mode

    cov = system_columns(sys_codes[val_idx], n_systems, model.cfg.system_encoding)
    if batch_oh is not None:
        cov = torch.cat([batch_oh[val_idx], cov], dim=1)
    with torch.no_grad(), eval_mode(model):
        mu, _ = model.encode(X[val_idx], cov)
        return gaussian_nll(X[val_idx], model.decode(mu, cov), model.decoder_var()).mean()


def adversarial_ce(logits: torch.Tensor, codes: torch.Tensor, n_classes: int, true_class: bool) -> torch.Tensor:
    """scvi-tools' adversarial CE: against the true class, or uniform over the wrong classes."""
    log_p = torch.log_softmax(logits.float(), dim=1)
    target = nn.functional.one_hot(codes, n_classes).to(log_p.dtype)
    if not true_class:
        target = (1 - target) / (n_classes - 1)
    return -(log_p * target).sum(1).mean()


def build_sysvae(X: torch.Tensor, batch_oh: torch.Tensor | None, sys_codes: torch.Tensor, n_systems: int,
                 cfg: SysVIConfig, generator: torch.Generator) -> SysVAE:
    """The network on X's device (VampPrior pseudo-inputs drawn from X with ``generator``)."""
    n_cov = (0 if batch_oh is None else batch_oh.shape[1]) + system_columns(sys_codes[:1], n_systems,
                                                                            cfg.system_encoding).shape[1]
    model = SysVAE(X.shape[1], n_cov, n_systems, cfg)
    if cfg.prior == "vamp":
        full_cov = system_columns(sys_codes, n_systems, cfg.system_encoding)
        if batch_oh is not None:
            full_cov = torch.cat([batch_oh, full_cov], dim=1)
        model.attach_vamp_prior(X, full_cov, generator)
    return model.to(X.device)


class SysVITrainer:
    """Optimizers, the training/validation split and one training step, as ``train_sysvae`` runs
    them (benchmarks/gpu_check.py times the same steps)."""

    def __init__(self, model: SysVAE, X: torch.Tensor, batch_oh: torch.Tensor | None, sys_codes: torch.Tensor,
                 n_systems: int, generator: torch.Generator, mixed) -> None:
        """``mixed``: the precision context of ``methods.nn.training.autocast``."""
        from methods.nn.training import LossHistory, adam

        cfg = model.cfg
        self.model, self.X, self.batch_oh, self.sys_codes = model, X, batch_oh, sys_codes
        self.n_systems, self.generator, self.mixed = n_systems, generator, mixed
        vae_params = [p for name, p in model.named_parameters()
                      if not name.startswith("classifier.") and p.requires_grad]
        self.opt = adam(vae_params, lr=cfg.lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
        self.opt_cls = None
        if model.classifier is not None:
            self.opt_cls = adam(model.classifier.parameters(), lr=cfg.lr, eps=cfg.adam_eps,
                                weight_decay=cfg.weight_decay)
        n = X.shape[0]
        self.n_train = min(n, max(MIN_LAST_BATCH, math.ceil(cfg.train_size * n)))
        order = torch.randperm(n, generator=generator)
        self.train_idx, self.val_idx = order[:self.n_train].to(X.device), order[self.n_train:].to(X.device)
        self.history = LossHistory()

    def epoch_minibatches(self) -> list[torch.Tensor]:
        """One epoch's minibatches of training cells (a last one under MIN_LAST_BATCH cells dropped)."""
        from methods.nn.training import minibatch_indices

        return [self.train_idx[mb] for mb in minibatch_indices(self.n_train, self.model.cfg.batch_size,
                                                               self.generator, self.X.device)
                if mb.numel() >= MIN_LAST_BATCH]

    def step(self, idx: torch.Tensor) -> None:
        """One VAE update on cells ``idx`` (then one classifier update for ``adv``)."""
        model, cfg, hist, mixed = self.model, self.model.cfg, self.history, self.mixed
        sc = self.sys_codes[idx]
        with mixed:
            terms = step_losses(model, self.X[idx], None if self.batch_oh is None else self.batch_oh[idx], sc,
                                self.n_systems)
            logits = None if model.classifier is None else model.classifier(terms["z"])
        loss = (cfg.reconstruction_weight * terms["reconstruction"] + cfg.kl_weight * terms["kl"]).mean()
        if "cycle" in terms:
            loss = loss + cfg.cycle_weight * terms["cycle"].mean()
            hist.add("cycle", terms["cycle"].mean())
        if logits is not None:
            fool = adversarial_ce(logits, sc, self.n_systems, true_class=False)
            loss = loss + cfg.kappa * fool
            hist.add("adversarial_fool", fool)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        if self.opt_cls is not None:
            with mixed:
                cls_logits = model.classifier(terms["z"].detach())
            cls_loss = cfg.kappa * adversarial_ce(cls_logits, sc, self.n_systems, true_class=True)
            self.opt_cls.zero_grad(set_to_none=True)
            cls_loss.backward()
            self.opt_cls.step()
            hist.add("classifier", cls_loss)
        hist.add("loss", loss)
        hist.add("reconstruction", terms["reconstruction"].mean())
        hist.add("kl", terms["kl"].mean())

    def end_epoch(self, epoch: int) -> None:
        """Held-out reconstruction, then the epoch's one host sync (loss means, NaN guard)."""
        from methods.nn.training import check_finite

        if self.val_idx.numel():
            self.history.add("reconstruction_validation",
                             validation_reconstruction(self.model, self.X, self.batch_oh, self.sys_codes,
                                                       self.val_idx, self.n_systems))
        check_finite(self.history.end_epoch(), epoch)


def data_tensors(adata, batch_key: str, cfg: SysVIConfig, dev: torch.device, batch_covariate: bool | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor | None]:
    """(X, system codes, systems, batch one-hot or None) on ``dev``; ``batch_covariate`` forces
    the batch covariate's presence (that of a trained model) instead of the config's rule."""
    from methods.nn.training import one_hot, to_device_tensor

    sys_np, systems = _codes(adata, cfg.system_key, "system")
    X = to_device_tensor(adata.X, dev)
    if not bool(torch.isfinite(X).all()):
        raise ValueError("adata.X (log-normalized expression) contains NaN or inf values")
    batch_oh = None
    if cfg.use_batch_covariate or batch_covariate:
        b_np, batches = _codes(adata, batch_key, "batch")
        # "auto": a batch column that merely renames the systems would duplicate the system
        # covariate, and zeroing it in the cycle pass would feed the decoder an unseen input
        use = batch_covariate if batch_covariate is not None else (
            cfg.use_batch_covariate is True or not same_partition(b_np, sys_np))
        if use:
            batch_oh = one_hot(b_np, len(batches), device=dev)
    return X, torch.as_tensor(sys_np, device=dev), systems, batch_oh


def train_sysvae(adata, *, batch_key: str, cfg: SysVIConfig, seed: int, device: str,
                 desc: str = "sysvi", init: SysVAE | None = None) -> tuple[SysVAE, dict[str, Any]]:
    """Build and train the model (from the weights of ``init`` when given); returns it and a
    record (history, epochs, timings)."""
    from methods.nn.training import autocast, pick_device, progress, seed_all

    dev = pick_device(device)
    mixed = autocast(dev, cfg.precision)  # fails early on a GPU without bf16
    gen = seed_all(seed)
    X, sys_codes, systems, batch_oh = data_tensors(adata, batch_key, cfg, dev,
                                                   None if init is None else init.batch_covariate)
    n_systems = len(systems)
    if n_systems < 2 and (cfg.cycle_weight > 0 or cfg.kappa > 0):
        raise ValueError(f"obs['{cfg.system_key}'] has a single system ({systems[0]}); the cycle and "
                         "adversarial terms need at least two")
    model = build_sysvae(X, batch_oh, sys_codes, n_systems, cfg, gen)
    model.batch_covariate = batch_oh is not None
    if init is not None:  # continue training a trained model (held-out novel type, methods/novel.py)
        model.load_state_dict(init.state_dict())
    trainer = SysVITrainer(model, X, batch_oh, sys_codes, n_systems, gen, mixed)
    epochs = cfg.max_epochs or default_epochs(X.shape[0])
    t0 = time.perf_counter()
    model.train()
    for epoch in progress(range(1, epochs + 1), desc, total=epochs):
        for idx in trainer.epoch_minibatches():
            trainer.step(idx)
        trainer.end_epoch(epoch)
    train_s = time.perf_counter() - t0
    record = {"loss_history": trainer.history.as_dict(), "epochs": epochs, "train_s": train_s,
              "s_per_epoch": train_s / epochs, "n_train": int(trainer.n_train), "systems": systems,
              "device": str(dev), "precision": cfg.precision, "batch_covariate": batch_oh is not None,
              "X": X, "batch_oh": batch_oh, "sys_codes": sys_codes}
    return model, record


def embed(model: SysVAE, X: torch.Tensor, batch_oh: torch.Tensor | None, sys_codes: torch.Tensor,
          n_systems: int) -> np.ndarray:
    """Posterior means of all cells, eval mode."""
    from methods.nn.training import encode_in_batches

    cov = system_columns(sys_codes, n_systems, model.cfg.system_encoding)
    if batch_oh is not None:
        cov = torch.cat([batch_oh, cov], dim=1)
    return encode_in_batches(lambda x, c: model.encode(x, c)[0], X, cov, module=model)


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    from dataclasses import replace

    from methods.novel import join_histories, split

    cfg = parse_params(params)
    novel = split(adata, label_key, params, "sysvi", keep_keys=(batch_key, cfg.system_key))
    model, rec = train_sysvae(novel.seen_data(adata), batch_key=batch_key, cfg=cfg, seed=seed, device=device)
    history, epochs = rec["loss_history"], rec["epochs"]
    cells = rec  # the tensors of every cell, the held-out type's included
    if novel.finetune_epochs:
        model, cells = train_sysvae(adata, batch_key=batch_key, cfg=replace(cfg, max_epochs=novel.finetune_epochs),
                                    seed=seed, device=device, init=model)
        history, epochs = join_histories(history, cells["loss_history"]), epochs + cells["epochs"]
    if novel.active and not novel.finetune_epochs:  # the trained network embeds the held-out type too
        X, sys_codes, _, batch_oh = data_tensors(adata, batch_key, cfg, torch.device(rec["device"]),
                                                 model.batch_covariate)
    else:
        X, sys_codes, batch_oh = cells["X"], cells["sys_codes"], cells["batch_oh"]
    emb = embed(model, X, batch_oh, sys_codes, len(rec["systems"]))
    extra = {k: rec[k] for k in ("train_s", "s_per_epoch", "n_train", "systems", "device", "precision",
                                 "batch_covariate")}
    extra.update(prior=cfg.prior, variant=cfg.variant, cycle_weight=cfg.cycle_weight, kappa=cfg.kappa)
    if novel.active:
        extra["novel"] = novel.record()
    return IntegrationResult(embedding=emb, loss_history=history, epochs=epochs, extra=extra)
