"""scvi-tools' SysVI (``scvi.external.SysVI``), the reference implementation run beside ours.

Setup as the sysVI tutorial: ``setup_anndata(batch_key=<system>, categorical_covariate_keys=
[<batch>])`` on the log-normalized ``X`` (the batch covariate is left out when it splits the
cells exactly like the system, as in ``methods.sysvi`` with ``use_batch_covariate="auto"``).
Same defaults as ours: n_latent 15, n_hidden 256, n_layers 2, dropout 0.1, VampPrior K=5,
cycle weight 2, KL weight 1, batch 128, Adam lr 1e-3 (scvi's TrainingPlan defaults eps 0.01,
weight decay 1e-6), epochs min(round(8e6/N), 400) unless ``max_epochs`` is set.
The KL weight goes through ``plan_kwargs["max_kl_weight"]``: scvi-tools ignores
``plan_kwargs["kl_weight"]`` (its TrainingPlan overwrites it with the warm-up weight). Epochs
trained are recorded; the loss history comes from ``model.history`` (per-epoch training losses).
Its model differs from the paper code that ``methods.sysvi`` follows (the cycle encoder reads the
own-system reconstruction ``px.loc``, the system is one-hot, the cycle keeps the real covariates,
numerical choices); ``methods.sysvi``'s options ``cycle_input``, ``system_encoding``,
``cycle_covariates`` and ``variant`` reproduce each.
``precision`` "fp32" | "bf16-mixed" goes to Lightning's Trainer ("32-true" | "bf16-mixed", the
same torch.autocast to bfloat16 as ``methods.sysvi``), so both can be timed at equal precision.
"""

from __future__ import annotations

import time

import numpy as np

from methods.base import IntegrationResult, ParamError
from methods.sysvi import default_epochs, same_partition

PRIORS = {"vamp": "vamp", "standard": "standard_normal"}
LIGHTNING_PRECISION = {"fp32": "32-true", "bf16-mixed": "bf16-mixed"}


def _check(params: dict) -> dict:
    out = dict(params)
    for key in ("kl_weight", "cycle_weight", "lr"):
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
            raise ParamError(f"sysvi_scvitools: {key} must be a number >= 0, got {value!r}")
    if params["lr"] <= 0:
        raise ParamError(f"sysvi_scvitools: lr must be > 0, got {params['lr']!r}")
    if params["prior"] not in PRIORS:
        raise ParamError(f"sysvi_scvitools: prior must be one of {', '.join(PRIORS)}; got {params['prior']!r}")
    for key in ("n_latent", "n_hidden", "n_layers", "n_prior_components", "batch_size"):
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ParamError(f"sysvi_scvitools: {key} must be a positive integer, got {value!r}")
    if params["max_epochs"] is not None and (not isinstance(params["max_epochs"], (int, np.integer))
                                             or params["max_epochs"] < 1):
        raise ParamError(f"sysvi_scvitools: max_epochs must be a positive integer or null, "
                         f"got {params['max_epochs']!r}")
    if params["precision"] not in LIGHTNING_PRECISION:
        raise ParamError(f"sysvi_scvitools: precision must be one of {', '.join(LIGHTNING_PRECISION)}; "
                         f"got {params['precision']!r}")
    if not 0 <= float(params["dropout"]) < 1:
        raise ParamError(f"sysvi_scvitools: dropout must be in [0, 1), got {params['dropout']!r}")
    return out


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    import scvi
    import torch
    from scvi.external import SysVI

    p = _check(params)
    system_key = str(p["system_key"])
    for key in (system_key, batch_key):
        if key not in adata.obs:
            raise ValueError(f"obs['{key}'] is missing; available: {', '.join(map(str, adata.obs.columns))}")
    scvi.settings.seed = int(seed)
    data = adata.copy()
    data.obs[system_key] = data.obs[system_key].astype(str).astype("category")
    data.obs[batch_key] = data.obs[batch_key].astype(str).astype("category")
    sys_codes = data.obs[system_key].cat.codes.to_numpy()
    batch_codes = data.obs[batch_key].cat.codes.to_numpy()
    covariates = None if same_partition(batch_codes, sys_codes) else [batch_key]
    SysVI.setup_anndata(data, batch_key=system_key, categorical_covariate_keys=covariates)
    model = SysVI(data, prior=PRIORS[p["prior"]], n_prior_components=int(p["n_prior_components"]),
                  n_latent=int(p["n_latent"]), n_hidden=int(p["n_hidden"]), n_layers=int(p["n_layers"]),
                  dropout_rate=float(p["dropout"]))
    epochs = int(p["max_epochs"]) if p["max_epochs"] is not None else default_epochs(data.n_obs)
    use_gpu = str(device).startswith("cuda") and torch.cuda.is_available()
    t0 = time.perf_counter()
    model.train(max_epochs=epochs, batch_size=int(p["batch_size"]),
                accelerator="gpu" if use_gpu else "cpu", devices=1, enable_progress_bar=False,
                check_val_every_n_epoch=1,  # held-out reconstruction: the convergence signal
                precision=LIGHTNING_PRECISION[p["precision"]],
                plan_kwargs={"lr": float(p["lr"]), "max_kl_weight": float(p["kl_weight"]),
                             "z_distance_cycle_weight": float(p["cycle_weight"])})
    train_s = time.perf_counter() - t0
    emb = model.get_latent_representation(data)
    history = {}
    for name, frame in model.history.items():
        if name.endswith(("_train", "_validation")) or name == "train_loss_epoch":
            history[name] = [float(v) for v in np.asarray(frame).ravel()]
    trained = len(next(iter(history.values()), [])) or epochs
    return IntegrationResult(embedding=np.asarray(emb), loss_history=history, epochs=trained,
                             extra={"train_s": train_s, "s_per_epoch": train_s / max(trained, 1),
                                    "scvi_tools": scvi.__version__, "covariates": covariates or [],
                                    "device": "cuda" if use_gpu else "cpu", "precision": p["precision"]})
