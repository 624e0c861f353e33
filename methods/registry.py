"""Method registry: one entry per method. Cheap to import (no torch, no scanpy).

The Snakefile reads it at plan time (output type, GPU, conda env, parameter names for config
validation); the runner reads it to merge defaults and reject unknown parameters. Adding a
method = one module exposing ``integrate`` (see ``methods/base.py``) + one entry here, or,
without touching the repo, a ``module:`` in the config (methods/external.py), which the
Snakefile and the runner ``register``.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

OUTPUTS = ("embedding", "graph", "corrected")
INPUTS = ("lognorm", "counts")


@dataclass(frozen=True)
class MethodSpec:
    module: str  # python module with integrate(), or the absolute path of a .py file (your own method)
    output: str  # "embedding" | "graph" | "corrected"
    input: str  # "lognorm" (X) | "counts" (layers["counts"])
    env: str  # conda env file in envs/ (without .yaml), or the absolute path of an env file
    gpu: bool = False  # deep model: rule requests resources gpu=1, runs on CPU without one
    supervised: bool = False  # uses cell-type labels (label_missing applies)
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    external: bool = False  # named in the config (module:), not in METHODS below


METHODS: dict[str, MethodSpec] = {
    # --- baselines ---
    "unintegrated": MethodSpec("methods.unintegrated", "embedding", "lognorm", "harmony",
                               defaults={"n_comps": 50}, description="PCA of the log-normalized HVGs"),
    "harmony": MethodSpec("methods.harmony", "embedding", "lognorm", "harmony",
                          defaults={"theta": 2.0, "n_comps": 50, "max_iter": 10},
                          description="Harmony on PCA (harmonypy)"),
    "scdreamer": MethodSpec("methods.scdreamer", "embedding", "counts", "torch", gpu=True, defaults={
        "epochs": 300, "batch_size": 128, "z_dim": 10, "n_hidden": 512, "dropout": 0.1,
        "lr_ae": 2e-4, "lr_dis": 7e-4, "lr_cls": 7e-4, "beta1": 0.9, "kl_weight": 0.001,
        "consistency": "zero_genes_10pct", "consistency_weight": 0.001, "likelihood_input": "scaled",
        "transform_source": "counts", "use_discriminator": True, "use_batch_classifier": True,
        "ae_updates_all": True, "embedding": "sample", "shuffle": "permute", "bias_init": "zeros", "holdout": 0.0},
        description="adversarial ZINB VAE + Bhattacharyya discriminator + batch classifier (torch)"),
    "scdreamer_sup": MethodSpec("methods.scdreamer_sup", "embedding", "counts", "torch", gpu=True,
                                supervised=True, defaults={
        "epochs": 300, "batch_size": 128, "z_dim": 10, "n_hidden": 512, "dropout": 0.1,
        "lr_ae": 2e-4, "lr_dis": 7e-4, "lr_cls": 7e-4, "beta1": 0.9, "kl_weight": 0.001,
        "consistency": "zero_genes_10pct", "consistency_weight": 0.001, "likelihood_input": "scaled",
        "transform_source": "counts", "use_discriminator": True, "use_batch_classifier": True,
        "ae_updates_all": True, "embedding": "sample", "shuffle": "permute", "bias_init": "glorot",
        "y_dim": 6, "prior_hidden": 8, "celltype_weight": 10.0, "holdout": 0.0},
        description="scDREAMER + hierarchical prior on z and cell-type classifier (partial labels)"),
    # baselines (Baselines issue): scanorama, bbknn, combat, scvi, scanvi, seurat_cca, seurat_rpca
    "scanorama": MethodSpec("methods.scanorama", "embedding", "lognorm", "scanorama", defaults={
        "output": "embedding", "dimred": 100, "knn": 20, "sigma": 15.0, "alpha": 0.1, "approx": True,
        "batch_size": 5000}, description="Scanorama panorama stitching (embedding; corrected X optional)"),
    "bbknn": MethodSpec("methods.bbknn", "graph", "lognorm", "bbknn", defaults={
        "neighbors_within_batch": 3, "n_pcs": 50, "trim": None, "computation": "annoy",
        "annoy_n_trees": 10, "metric": "euclidean"}, description="batch-balanced kNN graph on the PCA"),
    "combat": MethodSpec("methods.combat", "corrected", "lognorm", "scanorama", defaults={
        "n_comps": 50, "covariates": []}, description="ComBat (scanpy) corrected X + PCA of it"),
    "scvi": MethodSpec("methods.scvi_models", "embedding", "counts", "scvi", gpu=True, defaults={
        "config": "default", "max_kl_weight": 1.0, "kl_warmup_epochs": None, "max_epochs": None,
        "batch_size": 128, "use_system": None, "progress_bar": False}, description="scVI (scvi-tools) on counts"),
    "scanvi": MethodSpec("methods.scvi_models", "embedding", "counts", "scvi", gpu=True, supervised=True,
                         defaults={"config": "default", "max_kl_weight": 1.0, "kl_warmup_epochs": None,
                                   "max_epochs": None,
                                   "batch_size": 128, "use_system": None, "progress_bar": False,
                                   "scanvi_max_epochs": None, "n_samples_per_label": None},
                         description="scANVI (scvi-tools) from a trained scVI; partial labels"),
    "seurat_cca": MethodSpec("methods.seurat", "embedding", "lognorm", "seurat", defaults={
        "reduction": "cca", "k_anchor": 5, "k_filter": 200, "k_score": 30, "k_weight": 100, "dims": 30,
        "n_pcs": 50}, description="Seurat v4 CCA anchors (Rscript); PCA of the integrated assay"),
    "seurat_rpca": MethodSpec("methods.seurat", "embedding", "lognorm", "seurat", defaults={
        "reduction": "rpca", "k_anchor": 5, "k_filter": 200, "k_score": 30, "k_weight": 100, "dims": 30,
        "n_pcs": 50}, description="Seurat v4 RPCA anchors (Rscript); PCA of the integrated assay"),
    "sccraft": MethodSpec("methods.sccraft", "embedding", "lognorm", "torch", gpu=True, defaults={
        "n_latent": 256, "lambda_D": 0.2, "lambda_T": 1.0, "kl_weight": 0.005, "cos_weight": 20.0,
        "triplet_margin": 5.0, "n_pos": 15, "triplet_distance": "euclidean", "d_steps": 10, "lr": 1e-3,
        "max_epochs": None, "warmup_epochs": 50, "cells_per_batch": 512, "minibatch_size": 1024,
        "balanced_minibatches": False, "low_resolution": 0.5, "high_resolution": 7.0,
        "cluster_method": "leiden", "high_res_scope": "global", "n_neighbors": 15, "latent": "sample",
        "pca_dims": 50, "holdout": 0.0}, description="VAE + multi-domain GAN + dual-resolution triplet loss (torch)"),
    "imap": MethodSpec("methods.imap", "corrected", "lognorm", "imap", gpu=True, defaults={
        "stage1_epochs": 150, "stage2_epochs": 150, "epoch_samples": 10240, "lr": 5e-4, "lambda_co": 3.0,
        "lambda_rc": 1.0, "latent_dim": 256, "inc": False, "metric": "angular", "k1": None, "k2": None,
        "n_sample": 3000, "n_comps": 50},
        description="iMAP (PyPI imap 1.0.0): content autoencoder + rwMNN-paired GAN; corrected X + PCA"),
    # --- sysVI family (one cVAE with switches), DAVAE, scvi-tools SysVI ---
    **{name: MethodSpec("methods.sysvi", "embedding", "lognorm", "torch", gpu=True, defaults={
        "n_latent": 15, "n_hidden": 256, "n_layers": 2, "dropout": 0.1, "prior": prior,
        "n_prior_components": 5, "trainable_prior": True, "kl_weight": 1.0, "reconstruction_weight": 1.0,
        "cycle_weight": cycle, "cycle_covariates": "zero", "cycle_distance": "mse_standard",
        "cycle_input": "other_system", "system_encoding": "column", "kappa": kappa, "variant": "paper",
        "batch_size": 128, "lr": 1e-3, "adam_eps": 0.01, "weight_decay": 1e-6,
        "max_epochs": None, "train_size": 0.9, "system_key": "system", "use_batch_covariate": "auto",
        "precision": "fp32"},
        description=desc)
       for name, prior, cycle, kappa, desc in [
           ("cvae", "standard", 0.0, 0.0, "sysVI ablation: conditional VAE, standard prior (torch)"),
           ("vamp", "vamp", 0.0, 0.0, "sysVI ablation: cVAE + VampPrior (torch)"),
           ("cyc", "standard", 2.0, 0.0, "sysVI ablation: cVAE + latent cycle-consistency (torch)"),
           ("sysvi", "vamp", 2.0, 0.0, "sysVI = VampPrior + cycle-consistency (torch, paper code)"),
           ("adv", "standard", 0.0, 1.0, "sysVI ablation: cVAE + adversarial system classifier (torch)")]},
    "davae": MethodSpec("methods.davae", "embedding", "counts", "torch", gpu=True, defaults={
        "domain_lambda": 1.0, "epochs": 20, "batch_size": 128, "lr": 0.01, "hidden_layers": [128, 64, 32],
        "n_latent": 5, "dropout": 0.1, "classifier_dropout": 0.01, "reference_batch": None,
        "reconstruction": "code", "reconstruct_all_batches": False, "adversarial_scale_genes": True,
        "target_sum": 1e6}, description="DAVAE (scbean DACVAE): cVAE + gradient-reversal domain classifier"),
    "sysvi_scvitools": MethodSpec("methods.sysvi_scvitools", "embedding", "lognorm", "scvi", gpu=True, defaults={
        "n_latent": 15, "n_hidden": 256, "n_layers": 2, "dropout": 0.1, "prior": "vamp",
        "n_prior_components": 5, "kl_weight": 1.0, "cycle_weight": 2.0, "batch_size": 128, "lr": 1e-3,
        "max_epochs": None, "system_key": "system", "precision": "fp32"},
        description="scvi-tools SysVI (scvi.external.SysVI), reference implementation"),
    # --- end of methods ---
}

# Held-out novel cell type (methods/novel.py): the methods whose trained network embeds cells it
# never saw. Not iMAP (the imap package trains and transforms in one call on the cells it is
# given) nor scvi-tools' SysVI (the torch sysVI family is this benchmark's sysVI).
NOVEL_PARAMS: dict[str, Any] = {"novel_label": None, "novel_finetune_epochs": 0}
NOVEL_METHODS = ("cvae", "vamp", "cyc", "sysvi", "adv", "sccraft", "scdreamer", "scdreamer_sup", "davae",
                 "scvi", "scanvi")
for _name in NOVEL_METHODS:
    METHODS[_name] = replace(METHODS[_name], defaults={**METHODS[_name].defaults, **NOVEL_PARAMS})


def get(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method '{name}'; known: {', '.join(sorted(METHODS))}") from None


def value_problem(default: Any, value: Any) -> str | None:
    """Why ``value`` cannot stand for a parameter whose default is ``default``, else None: a number
    for a number, true/false for a flag, a list for a list (a parameter that defaults to null, or
    to a name, takes what its method documents). ``theta: "abc"`` failed inside the method with
    a message that named no parameter."""
    if value is None or default is None or isinstance(default, str):
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"{value!r} is not true or false"
    if isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return None if ok else f"{value!r} is not a number (default {default!r})"
    if isinstance(default, (list, tuple)):
        return None if isinstance(value, (list, tuple)) else f"{value!r} is not a list (default {default!r})"
    return None


def merge_params(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Registry defaults updated with ``params``; unknown keys and values of the wrong kind are
    errors naming them."""
    spec = get(name)
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec.defaults))
    if set(unknown) & set(NOVEL_PARAMS):
        from methods.base import ParamError

        raise ParamError(f"method '{name}' cannot hold out a novel cell type ({', '.join(set(unknown) & set(NOVEL_PARAMS))}): "
                         "it has no trained network that embeds cells it was not fitted on; methods that can: "
                         f"{', '.join(NOVEL_METHODS)}")
    if unknown:
        raise KeyError(
            f"method '{name}' has no parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(spec.defaults)) or '(none)'}"
        )
    for key, value in params.items():
        problem = value_problem(spec.defaults[key], value)
        if problem:
            from methods.base import ParamError

            raise ParamError(f"method '{name}' parameter {key}: {problem}")
    return {**spec.defaults, **params}


def register(name: str, spec: MethodSpec) -> None:
    """Add your own method (methods/external.py) under ``name``; a built-in name is refused."""
    if name in METHODS and not METHODS[name].external:
        raise KeyError(f"'{name}' is a built-in method; give your own method another name")
    METHODS[name] = spec


def load_module(name: str) -> ModuleType:
    """The module holding ``integrate`` of method ``name`` (a .py file is loaded from its path, with
    its folder first on sys.path so that it can import the files beside it)."""
    spec = get(name)
    if not spec.module.endswith(".py"):
        return importlib.import_module(spec.module)
    path = Path(spec.module)
    sys.path.insert(0, str(path.parent))
    loader_spec = importlib.util.spec_from_file_location(f"external_method_{name}", path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[loader_spec.name] = module
    loader_spec.loader.exec_module(module)
    return module


def code_file(name: str) -> Path | None:
    """The source file of method ``name``'s module (not imported), None when it has none."""
    spec = get(name)
    if spec.module.endswith(".py"):
        return Path(spec.module)
    found = importlib.util.find_spec(spec.module)
    return Path(found.origin) if found is not None and found.origin else None


def code_identity(name: str) -> dict[str, str]:
    """The code that makes method ``name``'s runs: its module, source file and that file's sha256
    (recorded in every run; an edited file of your own method also reruns its runs, workflow)."""
    import hashlib

    path = code_file(name)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path is not None and path.is_file() else ""
    return {"module": get(name).module, "path": str(path or ""), "sha256": digest}
