"""2-D UMAP coordinates of the representative runs listed in best.tsv.

For each dataset x method, the representative run file is read: an embedding
(``obsm["X_emb"]``) gets a kNN graph (scanpy, exact sklearn neighbours: on at most a few
thousand cells this is faster than pynndescent's JIT) and a UMAP; a graph method's own
graph (``obsp["connectivities"]``) is embedded directly; corrected expression (``X`` only)
is embedded through its PCA. Cells are subsampled (seeded) to at most ``max_cells``. A run
that failed, or has no run file, gives one row with ``status == "failed"`` and its error so
the figure shows it as failed.

Output table columns: dataset, method, cell, x, y, batch, label, status, error.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

COLUMNS = ["dataset", "method", "cell", "x", "y", "batch", "label", "status", "error"]
N_NEIGHBORS = 15


def subsample_index(n_obs: int, max_cells: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``max_cells`` cells drawn without replacement (seeded)."""
    if max_cells <= 0:
        raise ValueError(f"max_cells must be positive, got {max_cells}")
    if n_obs <= max_cells:
        return np.arange(n_obs)
    return np.sort(np.random.default_rng(seed).choice(n_obs, max_cells, replace=False))


def run_record(adata) -> dict:
    """The run record stored by the runner (``uns["run_json"]``), {} when absent."""
    raw = adata.uns.get("run_json")
    return json.loads(raw) if isinstance(raw, str) else {}


def graph_representation(conn, seed: int, n_comps: int = 10) -> np.ndarray:
    """Low-dimensional rows of the graph itself (truncated SVD of the connectivities).

    UMAP only uses the data matrix to lay out disconnected graph components relative to each
    other; a graph-only run has no embedding, so the graph's own leading singular vectors
    stand in for it.
    """
    from sklearn.decomposition import TruncatedSVD

    n_comps = max(1, min(n_comps, conn.shape[0] - 1))
    return TruncatedSVD(n_components=n_comps, random_state=seed).fit_transform(conn).astype(np.float32)


def umap_of_run(run, max_cells: int = 5000, seed: int = 0) -> pd.DataFrame:
    """UMAP coordinates (cell, x, y, batch, label) of one run AnnData."""
    import anndata as ad
    import scanpy as sc

    from cellgraph import scanpy_numpy_connectivities

    idx = subsample_index(run.n_obs, max_cells, seed)
    obs = run.obs.iloc[idx]
    work = ad.AnnData(obs=pd.DataFrame(index=obs.index.astype(str)))
    if "X_emb" in run.obsm:
        work.obsm["X_emb"] = np.asarray(run.obsm["X_emb"])[idx].astype(np.float32)
        with scanpy_numpy_connectivities():  # no numba JIT for the graph (UMAP's layout still has it)
            sc.pp.neighbors(work, n_neighbors=N_NEIGHBORS, use_rep="X_emb", transformer="sklearn",
                            random_state=seed)
    elif "connectivities" in run.obsp:
        conn = run.obsp["connectivities"][idx][:, idx].tocsr()
        dist = run.obsp["distances"][idx][:, idx].tocsr() if "distances" in run.obsp else conn.copy()
        work.obsp["connectivities"], work.obsp["distances"] = conn, dist
        work.obsm["X_graph"] = graph_representation(conn, seed)
        work.uns["neighbors"] = {"connectivities_key": "connectivities", "distances_key": "distances",
                                 "params": {"method": "umap", "n_neighbors": N_NEIGHBORS, "use_rep": "X_graph",
                                            "random_state": seed}}
    elif run.X is not None and run.n_vars > 0:
        work = ad.AnnData(X=np.asarray(run.X[idx].todense() if hasattr(run.X, "todense") else run.X[idx],
                                       dtype=np.float32), obs=work.obs)
        sc.pp.pca(work, n_comps=min(50, work.n_obs - 1, work.n_vars - 1), random_state=seed)
        with scanpy_numpy_connectivities():
            sc.pp.neighbors(work, n_neighbors=N_NEIGHBORS, use_rep="X_pca", transformer="sklearn",
                            random_state=seed)
    else:
        raise ValueError("run file has no obsm['X_emb'], no obsp['connectivities'] and no corrected X")
    sc.tl.umap(work, random_state=seed)
    xy = work.obsm["X_umap"]
    return pd.DataFrame({"cell": obs.index.astype(str), "x": xy[:, 0], "y": xy[:, 1],
                         "batch": obs["batch"].astype(str).values if "batch" in obs else "",
                         "label": obs["label"].astype(str).values if "label" in obs else ""})


def resolve_run_path(row: pd.Series, runs: pd.DataFrame | None, base_dirs: list[Path]) -> Path | None:
    """The representative run file of a best.tsv row: its ``representative_run`` when that is
    an existing path (as given or relative to one of ``base_dirs``), else runs.tsv's run_path of
    (dataset, method, best_setting, representative_seed)."""
    candidates = []
    if isinstance(row.get("representative_run"), str) and row["representative_run"]:
        candidates.append(row["representative_run"])
    if runs is not None and "run_path" in runs.columns and pd.notna(row.get("representative_seed")):
        match = runs[(runs["dataset"] == row["dataset"]) & (runs["method"] == row["method"])
                     & (runs["setting"] == row["best_setting"]) & (runs["seed"] == int(row["representative_seed"]))]
        if "label_missing" in match.columns:
            match = match[match["label_missing"].fillna(0) == 0]
        candidates += list(match["run_path"].dropna())
    for cand in candidates:
        for base in [Path.cwd(), *base_dirs]:
            path = Path(cand) if Path(cand).is_absolute() else base / cand
            if path.exists():
                return path
    return None


def failed_row(dataset: str, method: str, error: str) -> dict:
    """The single row that marks a dataset x method's representative run as failed."""
    return {"dataset": dataset, "method": method, "cell": "", "x": np.nan, "y": np.nan, "batch": "", "label": "",
            "status": "failed", "error": error}


def representative_umap(path: Path, max_cells: int, seed: int) -> pd.DataFrame | str:
    """UMAP coordinates of one representative run file, or the error of a failed run."""
    import anndata as ad

    run = ad.read_h5ad(path)
    record = run_record(run)
    if record.get("status", "ok") != "ok":
        return record.get("error", "run failed")
    return umap_of_run(run, max_cells=max_cells, seed=seed)


def umap_table(best: pd.DataFrame, runs: pd.DataFrame | None = None, max_cells: int = 5000, seed: int = 0,
               base_dirs: list[str | Path] | None = None, workers: int = 1) -> pd.DataFrame:
    """UMAP coordinates of every dataset x method's representative run (see module docstring);
    ``workers`` > 1 computes the runs in that many processes (same result: each run has its seed)."""
    bases = [Path(b) for b in (base_dirs or [])]
    parts: list = []
    todo: dict[int, Path] = {}
    for _, row in best.iterrows():
        dataset, method = row["dataset"], row["method"]
        if pd.isna(row.get("best_setting")) or pd.isna(row.get("overall")):
            parts.append(failed_row(dataset, method, "all runs failed"))
            continue
        path = resolve_run_path(row, runs, bases)
        if path is None:
            parts.append(failed_row(dataset, method, "representative run file not found: "
                                                     f"{row.get('representative_run')}"))
            continue
        todo[len(parts)] = path
        parts.append((dataset, method))
    if workers > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = dict(zip(todo, pool.map(representative_umap, todo.values(), [max_cells] * len(todo),
                                              [seed] * len(todo))))
    else:
        results = {i: representative_umap(path, max_cells, seed) for i, path in todo.items()}
    frames = []
    for i, part in enumerate(parts):
        if isinstance(part, dict):
            frames.append(pd.DataFrame([part]))
            continue
        dataset, method = part
        res = results[i]
        frames.append(pd.DataFrame([failed_row(dataset, method, res)]) if isinstance(res, str)
                      else res.assign(dataset=dataset, method=method, status="ok", error=""))
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write a TSV (gzip when the name ends in .gz) atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        df.to_csv(tmp, sep="\t", index=False, compression="gzip" if path.suffix == ".gz" else None)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
