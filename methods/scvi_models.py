"""scVI (Lopez et al. 2018) and scANVI (Xu et al. 2021) via scvi-tools, on ``layers["counts"]``.

One module for both registry entries: ``scanvi``'s registry defaults contain the
scANVI-only keys (``scanvi_max_epochs``, ``n_samples_per_label``), ``scvi``'s do not, and the
runner rejects unknown keys, so the presence of ``scanvi_max_epochs`` in ``params`` says
which model the entry runs.

``config`` picks the scVI set-up each seed paper used:
- ``default``: scvi-tools defaults (n_hidden 128, n_latent 10, n_layers 1, ZINB); scDREAMER's
  baseline.
- ``sccraft``: n_layers 2, n_latent 50, NB (n_hidden 128); scCRAFT's baseline.
- ``sysvi``: n_layers 2, n_hidden 256, n_latent 15, NB, KL warm-up over 1600 steps
  (``n_steps_kl_warmup=1600``, epoch warm-up off); sysVI's baseline, which tuned
  ``max_kl_weight`` over {0.5, 1, 1.5, 2}. The sysVI paper registered the *system* as
  scvi-tools' batch and the within-system batch as a categorical covariate; ``use_system``
  null (auto) does that for this config when ``obs["system"]`` has >= 2 values that differ
  from the batches, true forces it, false uses ``batch_key`` only.
Other configs use the scvi-tools default KL warm-up (400 epochs, linear).

``kl_warmup_epochs`` null keeps the config's KL warm-up; an integer sets a linear warm-up
over that many epochs (0 = none), e.g. to fit the warm-up to a short fixed epoch budget as the
sysVI authors did with ``n_steps_kl_warmup``. ``max_kl_weight`` is the KL weight reached after warm-up (scvi-tools ignores
``plan_kwargs={"kl_weight": ...}``, so this is the only working knob). ``max_epochs`` null =
scvi-tools' heuristic ``min(round(20000 / n_cells * 400), 400)``. ``batch_size`` 128 and the
90/10 train/validation split are scvi-tools defaults (the 10% validation cells are not
trained on but are embedded). Embedding = posterior mean (``get_latent_representation``).
Seeded with ``scvi.settings.seed`` (Lightning ``seed_everything``); CPU runs are
deterministic for a fixed seed and thread count.

scANVI: an scVI model trained as above, then ``SCANVI.from_scvi_model`` with labels from
``obs[label_key]``; cells whose label is hidden (NaN) get the unlabeled category ``Unknown``
(or ``Unknown_unlabeled`` if ``Unknown`` is a real label). ``scanvi_max_epochs`` null =
scvi-tools' heuristic for a pre-trained model (``min(10, max(2, round(heuristic / 3)))``).
``n_samples_per_label`` null = scvi-tools default (all labelled cells each epoch); scIB used
100. Predicted labels (``model.predict()``) are returned for every cell.
"""

from __future__ import annotations

import numpy as np

from methods.base import IntegrationResult, ParamError, TrainingDivergedError

CONFIGS: dict[str, dict] = {
    "default": {"model": {}, "plan": {}},
    "sccraft": {"model": {"n_layers": 2, "n_latent": 50, "gene_likelihood": "nb"}, "plan": {}},
    "sysvi": {"model": {"n_layers": 2, "n_hidden": 256, "n_latent": 15, "gene_likelihood": "nb"},
              "plan": {"n_steps_kl_warmup": 1600, "n_epochs_kl_warmup": None}},
}
UNLABELED = "Unknown"


def check_params(params: dict) -> None:
    """Raise ParamError naming the first bad value."""
    if params["config"] not in CONFIGS:
        raise ParamError(f"scvi: config must be one of {sorted(CONFIGS)}, got {params['config']!r}")
    if float(params["max_kl_weight"]) < 0:
        raise ParamError(f"scvi: max_kl_weight must be >= 0, got {params['max_kl_weight']}")
    for key in ("max_epochs", "scanvi_max_epochs"):
        if params.get(key) is not None and int(params[key]) < 1:
            raise ParamError(f"scvi: {key} must be null or >= 1, got {params[key]}")
    if params["kl_warmup_epochs"] is not None and int(params["kl_warmup_epochs"]) < 0:
        raise ParamError(f"scvi: kl_warmup_epochs must be null or >= 0, got {params['kl_warmup_epochs']}")
    if int(params["batch_size"]) < 2:
        raise ParamError(f"scvi: batch_size must be >= 2, got {params['batch_size']}")
    if params["use_system"] not in (None, True, False):
        raise ParamError(f"scvi: use_system must be null, true or false, got {params['use_system']!r}")


def counts_matrix(adata):
    """``layers["counts"]`` checked: present, finite, non-negative (scvi-tools warns on non-integers)."""
    import scipy.sparse as sp

    if "counts" not in adata.layers:
        raise ValueError("scvi: layers['counts'] is missing from the preprocessed data")
    counts = adata.layers["counts"]
    values = counts.data if sp.issparse(counts) else np.asarray(counts)
    if not np.isfinite(values).all() or (values < 0).any():
        raise ValueError("scvi: layers['counts'] has negative or non-finite values")
    return counts


def system_covariate(adata, batch_key: str, config: str, use_system) -> bool:
    """Whether to register obs['system'] as scvi-tools' batch (and the batch as a covariate)."""
    has_system = "system" in adata.obs and adata.obs["system"].nunique() >= 2
    if use_system is True and not has_system:
        raise ParamError("scvi: use_system=true needs obs['system'] with >= 2 values")
    if use_system is None:
        if config != "sysvi" or not has_system:
            return False
        pairs = adata.obs[[batch_key, "system"]].astype(str).drop_duplicates()
        return pairs.shape[0] > adata.obs["system"].nunique()  # batches nested in systems, not equal
    return bool(use_system)


def scanvi_labels(labels) -> tuple[np.ndarray, str]:
    """Labels as strings with hidden (NaN) cells set to an unlabeled category not used as a label."""
    import pandas as pd

    values = pd.Series(np.asarray(labels, dtype=object))
    known = set(values.dropna().astype(str))
    if not known:
        raise ValueError("scanvi: every label is missing; scANVI needs some labelled cells")
    unlabeled = UNLABELED if UNLABELED not in known else f"{UNLABELED}_unlabeled"
    out = values.astype(object).where(values.notna(), unlabeled).astype(str).to_numpy()
    return out, unlabeled


def _trainer_device(device: str) -> dict:
    if device.startswith("cuda"):
        index = device.split(":")[1] if ":" in device else None
        return {"accelerator": "gpu", "devices": [int(index)] if index else 1}
    return {"accelerator": "cpu", "devices": 1}


def history_lists(history: dict, prefix: str = "") -> dict[str, list[float]]:
    """scvi-tools' ``model.history`` (DataFrames per term) as {prefix+term: [per epoch]}."""
    out = {}
    for term, frame in history.items():
        values = np.asarray(frame).astype(float).ravel()
        out[prefix + term] = [float(v) for v in values]
    return out


def _check_finite(history: dict[str, list[float]]) -> None:
    for term, values in history.items():
        bad = [i for i, v in enumerate(values) if not np.isfinite(v)]
        if bad and term.startswith(("elbo", "scanvi_elbo", "train_loss", "scanvi_train_loss")):
            raise TrainingDivergedError(f"scvi-tools loss '{term}' is not finite at epoch {bad[0]}")


def continue_on(model, light, setup: dict, model_kwargs: dict, train_kwargs: dict):
    """A model of the same class on ``light`` (every cell) from ``model``'s weights, trained on for
    ``train_kwargs["max_epochs"]`` epochs at the full KL weight (no second warm-up)."""
    cls = type(model)
    cls.setup_anndata(light, **setup)
    fresh = cls(light, **model_kwargs)
    fresh.module.load_state_dict(model.module.state_dict())
    fresh.train(**train_kwargs)
    return fresh


def integrate(adata, *, batch_key, label_key, params, seed, device) -> IntegrationResult:
    """scVI / scANVI embedding (posterior means). A held-out novel type (``novel_label``,
    methods/novel.py) is not in the AnnData the model trains on; the continuation
    (``novel_finetune_epochs``) trains a copy of the model on every cell, the type unlabelled."""
    import anndata as ad
    import scvi

    from methods.novel import join_histories, split

    check_params(params)
    is_scanvi = "scanvi_max_epochs" in params
    counts = counts_matrix(adata)
    if adata.obs[batch_key].nunique() < 2:
        raise ValueError(f"scvi: obs['{batch_key}'] has a single batch; nothing to integrate")
    config = CONFIGS[params["config"]]
    with_system = system_covariate(adata, batch_key, params["config"], params["use_system"])
    novel = split(adata, label_key, params, "scanvi" if is_scanvi else "scvi",
                  keep_keys=(batch_key,) + (("system",) if with_system else ()))
    obs = adata.obs[[batch_key]].astype(str).copy()
    setup = {"layer": None, "batch_key": batch_key}
    if with_system:
        obs["system"] = adata.obs["system"].astype(str).values
        setup = {"layer": None, "batch_key": "system", "categorical_covariate_keys": [batch_key]}
    unlabeled = None
    if is_scanvi:
        if label_key not in adata.obs:
            raise ValueError(f"scanvi: obs['{label_key}'] is missing")
        obs["_scanvi_label"], unlabeled = scanvi_labels(novel.hide_label(adata.obs[label_key].values))
    # A light AnnData (counts only) so scvi-tools does not copy the log-normalized X and layers.
    light = ad.AnnData(X=counts.copy(), obs=obs)
    light.obs_names = adata.obs_names.copy()
    every_cell = light
    light = novel.seen_data(light)

    scvi.settings.seed = int(seed)
    scvi.model.SCVI.setup_anndata(light, **setup)
    model = scvi.model.SCVI(light, **config["model"])
    plan = {"max_kl_weight": float(params["max_kl_weight"]), **config["plan"]}
    if params["kl_warmup_epochs"] is not None:  # explicit warm-up replaces the config's
        plan.update(n_epochs_kl_warmup=int(params["kl_warmup_epochs"]), n_steps_kl_warmup=None)
    # validation every epoch: the held-out reconstruction is the convergence signal (the training
    # term keeps falling on small data); it changes no update, only the random stream after it
    trainer = {**_trainer_device(device), "enable_progress_bar": bool(params["progress_bar"]),
               "check_val_every_n_epoch": 1}
    model.train(max_epochs=params["max_epochs"], batch_size=int(params["batch_size"]),
                plan_kwargs=plan, **trainer)
    history = history_lists(model.history)
    extra = {"config": params["config"], "system_as_batch": with_system,
             "scvi_epochs": len(history.get("elbo_train", []))}
    predicted = None
    if is_scanvi:
        model = scvi.model.SCANVI.from_scvi_model(model, unlabeled_category=unlabeled,
                                                  labels_key="_scanvi_label")
        model.train(max_epochs=params["scanvi_max_epochs"], batch_size=int(params["batch_size"]),
                    n_samples_per_label=params["n_samples_per_label"], **trainer)
        scanvi_history = history_lists(model.history, prefix="scanvi_")
        history.update(scanvi_history)
        extra["scanvi_epochs"] = len(scanvi_history.get("scanvi_elbo_train", []))
        extra["unlabeled_category"] = unlabeled
        extra["n_unlabeled"] = int((light.obs["_scanvi_label"] == unlabeled).sum())
    epochs = extra["scvi_epochs"] + extra.get("scanvi_epochs", 0)
    if novel.finetune_epochs:
        full_kl = {"max_kl_weight": float(params["max_kl_weight"]), "n_epochs_kl_warmup": None,
                   "n_steps_kl_warmup": None}
        setup_again = ({**setup, "labels_key": "_scanvi_label", "unlabeled_category": unlabeled}
                       if is_scanvi else setup)
        model = continue_on(model, every_cell, setup_again, config["model"],
                            {"max_epochs": novel.finetune_epochs, "batch_size": int(params["batch_size"]),
                             "plan_kwargs": full_kl, **trainer})
        history = join_histories(history, history_lists(model.history, prefix="finetune_"))
        epochs += novel.finetune_epochs
    if novel.active:
        extra["novel"] = novel.record()
    if is_scanvi:
        predicted = np.asarray(model.predict(every_cell), dtype=str)
    _check_finite(history)
    embedding = np.asarray(model.get_latent_representation(every_cell), dtype=np.float32)
    return IntegrationResult(embedding=embedding, predicted_labels=predicted, loss_history=history,
                             epochs=epochs, extra=extra)
