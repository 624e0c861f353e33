"""Scaling, composites and best-setting selection. Pure pandas.

Every rule below is also stated in README.md "Selection"; the columns are in docs/contracts.md.

Within a method (per dataset x method), ``score_runs`` (scores.tsv):
  * Each metric is min-max scaled over the method's fully labelled runs (``label_missing`` 0;
    every setting and seed; failed runs excluded); a constant metric scales to 0.5.
    bio = mean of the scaled bio metrics, batch = mean of the scaled batch metrics (a metric
    without a value is skipped), overall = w * bio + (1 - w) * batch, w = ``bio_weight`` (0.6).
  * Hidden-label runs (``label_missing`` > 0, the missing-label experiment) do not set these
    ranges, so they cannot shift the choice among fully labelled settings; they are scaled with
    the ranges of the fully labelled runs (their scaled values fall outside [0, 1] where they do
    better or worse than every labelled run) and are never candidates for the best setting.
    The missing-label figure compares methods on raw metrics and on a composite of its own
    (``reports/missing_labels.py``).
  * The label-free score ``unsupervised`` = w * proxy + (1 - w) * batch, where proxy = mean of
    the scaled per-batch cluster conservation metrics (``batch_cluster_nmi``/``_ari``, scCRAFT's
    label-free proxy of bio conservation, metrics/unsupervised.py). The proxy takes bio's place
    instead of being used alone because alone it favours the least integrated setting: an
    embedding that mixes no batches keeps every batch's own clusters. On unlabelled data the
    batch metrics that need labels are null, so batch is made of the label-free ones (iLISI,
    PCR comparison); on labelled data chosen with ``unsupervised`` it is the study's batch score.

Best setting (``select_best``, best.tsv), among the fully labelled settings:
  * Criterion: ``datasets.<name>.selection.criterion`` for that dataset, else the study's
    ``selection.criterion``: ``composite`` (the overall score, default) or ``unsupervised``
    (the label-free score). When no run of a dataset x method has a composite score (an
    unlabelled dataset: every bio metric is null), the label-free score chooses automatically,
    and the composite when no run has a label-free score (proxy metrics not computed).
    Columns ``criterion`` and ``criterion_source`` say which score chose and why.
  * A seed counts as failed for the selection when its run failed or it has no score under the
    criterion. ``selection.failed_seeds``: ``rank_below`` (default) ranks settings by their
    number of failed seeds first and by the mean score of their scored seeds second, so a
    setting that failed on a seed is chosen only when every setting failed on some seed;
    ``count_as_worst`` ranks by the mean over all seeds with a failed seed counted as 0 (the
    lowest within-method score), so a setting far better on its other seeds can still win.
    Ties go to the setting name that sorts first. best.tsv shows ``n_failed_seeds`` of the
    best setting beside ``within_overall`` (the mean over its scored seeds).
  * Representative run: the scored seed whose score is the median of the best setting's scored
    seeds (the lower middle one for an even count; the lowest seed among equal scores).
  * A dataset x method with no scored seed in any setting has no best setting (empty
    ``best_setting``); the reports show it as failed.

Across methods (per dataset, ``across_methods``): the raw metric means over the ok seeds of each
method's best setting are min-max scaled across methods, with the same composite; rank 1 = the
highest overall. On a dataset without any bio metric value (unlabelled) the overall uses the
scaled proxy (column ``bio_proxy``) in bio's place and ``bio`` stays empty. scDREAMER's 50/50
composite (``combined_5050``) is a second view. Raw values are kept beside scaled ones.

Across datasets (``summarize``, summary.tsv): per method, the mean over datasets of overall,
bio and batch, where a failed dataset (no overall) counts as 0, the lowest scaled score, and
an unlabelled dataset has no bio. Methods rank by their number of failed datasets first and
their mean overall second, so a failure never improves a rank (without this, scaling the other
methods again without the failed one can lower their scores).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

RUN_KEYS = ["dataset", "method", "setting", "seed"]
UNSUPERVISED_PROXY = ["batch_cluster_nmi", "batch_cluster_ari"]
CRITERIA = {"composite": "overall", "unsupervised": "unsupervised"}  # criterion -> scores.tsv column
FAILED_SEED_RULES = ("rank_below", "count_as_worst")


def check_selection(selection: dict) -> None:
    """Raise ValueError naming the key when a selection value is unknown."""
    known = ", ".join(CRITERIA)
    if selection.get("criterion", "composite") not in CRITERIA:
        raise ValueError(f"selection.criterion: '{selection['criterion']}' is unknown; known: {known}")
    for dataset, section in (selection.get("datasets") or {}).items():
        criterion = (section or {}).get("criterion", "composite")
        if criterion not in CRITERIA:
            raise ValueError(f"datasets.{dataset}.selection.criterion: '{criterion}' is unknown; known: {known}")
    rule = selection.get("failed_seeds", "rank_below")
    if rule not in FAILED_SEED_RULES:
        raise ValueError(f"selection.failed_seeds: '{rule}' is unknown; known: {', '.join(FAILED_SEED_RULES)}")


def minmax(values: pd.Series, higher_is_better: bool = True, reference: pd.Series | None = None) -> pd.Series:
    """Scale to [0, 1] with the range of ``reference`` (default ``values``); NaN stays NaN;
    a constant reference gives 0.5 (no information)."""
    v = values.astype(float)
    ref = v if reference is None else reference.astype(float)
    lo, hi = ref.min(skipna=True), ref.max(skipna=True)
    if not np.isfinite(lo) or not np.isfinite(hi):
        return v * np.nan
    if hi == lo:
        out = v * 0 + 0.5
    else:
        out = (v - lo) / (hi - lo)
    return out if higher_is_better else 1 - out


def composite(scaled: pd.DataFrame, bio: list[str], batch: list[str], bio_weight: float = 0.6) -> pd.DataFrame:
    """bio, batch and overall columns from scaled metric columns (missing metrics ignored)."""
    bio_cols = [m for m in bio if m in scaled]
    batch_cols = [m for m in batch if m in scaled]
    out = pd.DataFrame(index=scaled.index)
    out["bio"] = scaled[bio_cols].mean(axis=1, skipna=True) if bio_cols else np.nan
    out["batch"] = scaled[batch_cols].mean(axis=1, skipna=True) if batch_cols else np.nan
    if bio_cols and batch_cols:
        out["overall"] = bio_weight * out["bio"] + (1 - bio_weight) * out["batch"]
    else:  # a metric set without bio (or batch) metrics: the other score alone
        out["overall"] = out["bio"] if bio_cols else out["batch"]
    out["combined_5050"] = 0.5 * out["bio"] + 0.5 * out["batch"]
    return out


def proxy_score(scaled: pd.DataFrame) -> pd.Series:
    """Mean of the scaled label-free proxy metrics (NaN where none has a value)."""
    cols = [m for m in UNSUPERVISED_PROXY if m in scaled]
    return scaled[cols].mean(axis=1) if cols else pd.Series(np.nan, index=scaled.index)


def fully_labelled(df: pd.DataFrame) -> pd.Series:
    """Mask of the runs with every label visible (label_missing 0 or absent)."""
    if "label_missing" not in df:
        return pd.Series(True, index=df.index)
    return df["label_missing"].fillna(0) == 0


def _scale_block(block: pd.DataFrame, metrics: list[str], direction: dict[str, bool]) -> pd.DataFrame:
    ok = block["status"] == "ok"
    reference = ok & fully_labelled(block)
    scaled = pd.DataFrame(index=block.index)
    for m in metrics:
        scaled[m] = minmax(block[m].where(ok), direction.get(m, True), block[m].where(reference))
    return scaled


def score_runs(wide: pd.DataFrame, bio: list[str], batch: list[str], direction: dict[str, bool] | None = None,
               bio_weight: float = 0.6) -> pd.DataFrame:
    """Per run: within-method scaled metrics and composites (scores.tsv)."""
    direction = direction or {}
    metrics = [m for m in wide.columns if m not in RUN_KEYS + ["label_missing", "status", "error"]]
    parts = []
    for _, block in wide.groupby(["dataset", "method"], sort=False):
        scaled = _scale_block(block, metrics, direction)
        comp = composite(scaled, bio, batch, bio_weight)
        comp["proxy"] = proxy_score(scaled)
        comp["unsupervised"] = bio_weight * comp["proxy"] + (1 - bio_weight) * comp["batch"]
        parts.append(pd.concat([block, comp, scaled.add_prefix("scaled_")], axis=1))
    out = pd.concat(parts) if parts else wide.assign(bio=[], batch=[], overall=[])
    return out


def _has_score(block: pd.DataFrame, column: str) -> bool:
    return bool(block.loc[block["status"] == "ok", column].notna().any())


def resolve_criterion(block: pd.DataFrame, dataset: str, criterion: str, dataset_criteria: dict[str, str],
                      unlabelled: set[str]) -> tuple[str, str]:
    """(criterion, source) for one dataset x method's fully labelled runs."""
    if dataset in dataset_criteria:
        criterion, source = dataset_criteria[dataset], f"datasets.{dataset}.selection"
    else:
        source = "selection"
    other = "unsupervised" if criterion == "composite" else "composite"
    if not _has_score(block, CRITERIA[criterion]) and _has_score(block, CRITERIA[other]):
        if criterion == "unsupervised":
            why = "no label-free proxy value"
        elif dataset in unlabelled:
            why = "dataset unlabelled"
        else:
            why = "no composite score (no bio or batch metric value)"
        return other, f"automatic: {why}"
    return criterion, source


def setting_stats(block: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per setting: seeds, failed seeds (run failed or no score), mean over scored seeds, and
    the mean over all seeds with failed ones counted as 0."""
    rows = []
    for setting, sblock in block.groupby("setting", sort=False):
        score = sblock[key].where(sblock["status"] == "ok").astype(float)
        rows.append({"setting": setting, "n_seeds": len(sblock), "n_failed_seeds": int(score.isna().sum()),
                     "mean": score.mean(), "mean_failed_as_0": score.fillna(0.0).mean()})
    st = pd.DataFrame(rows)
    st["selectable"] = st["mean"].notna()
    return st


def rank_settings(st: pd.DataFrame, failed_seeds: str) -> pd.DataFrame:
    """Settings best first under the failed-seed rule (module docstring)."""
    if failed_seeds == "rank_below":
        keys, ascending = ["selectable", "n_failed_seeds", "mean", "setting"], [False, True, False, True]
    else:
        keys, ascending = ["selectable", "mean_failed_as_0", "n_failed_seeds", "setting"], [False, False, True, True]
    return st.sort_values(keys, ascending=ascending, kind="mergesort")


def representative_seed(runs: pd.DataFrame, key: str) -> float:
    """Seed of the scored run with the median score (lower middle; lowest seed on ties)."""
    scored = runs[(runs["status"] == "ok") & runs[key].notna()].sort_values("seed")
    if scored.empty:
        return np.nan
    vals = scored[key].to_numpy(float)
    median = np.sort(vals)[(len(vals) - 1) // 2]
    return int(scored["seed"].iloc[int(np.flatnonzero(vals == median)[0])])


def select_best(scores: pd.DataFrame, criterion: str = "composite", failed_seeds: str = "rank_below",
                dataset_criteria: dict[str, str] | None = None, unlabelled: set[str] | None = None) -> pd.DataFrame:
    """One row per dataset x method: best setting, how it was chosen, representative seed."""
    check_selection({"criterion": criterion, "failed_seeds": failed_seeds,
                     "datasets": {d: {"criterion": c} for d, c in (dataset_criteria or {}).items()}})
    dataset_criteria, unlabelled = dataset_criteria or {}, unlabelled or set()
    rows = []
    for (dataset, method), all_runs in scores.groupby(["dataset", "method"], sort=False):
        block = all_runs[fully_labelled(all_runs)]
        chosen, source = resolve_criterion(block, dataset, criterion, dataset_criteria, unlabelled)
        row = {"dataset": dataset, "method": method, "best_setting": np.nan, "criterion": chosen,
               "criterion_source": source, "within_overall": np.nan, "n_seeds": 0, "n_failed_seeds": 0,
               "failed_seeds_rule": failed_seeds, "representative_seed": np.nan,
               "n_failed": int(block["status"].ne("ok").sum())}
        if block.empty:
            row["criterion_source"] = "no fully labelled run (label_missing has no 0)"
            rows.append(row)
            continue
        key = CRITERIA[chosen]
        best = rank_settings(setting_stats(block, key), failed_seeds).iloc[0]
        row.update(n_seeds=int(best["n_seeds"]), n_failed_seeds=int(best["n_failed_seeds"]))
        if best["selectable"]:
            row.update(best_setting=best["setting"], within_overall=best["mean"],
                       representative_seed=representative_seed(block[block["setting"] == best["setting"]], key))
        rows.append(row)
    return pd.DataFrame(rows)


def across_methods(scores: pd.DataFrame, best: pd.DataFrame, metrics: list[str], bio: list[str],
                   batch: list[str], direction: dict[str, bool] | None = None,
                   bio_weight: float = 0.6) -> pd.DataFrame:
    """Each method's best setting (raw metric means over ok seeds), scaled across methods."""
    direction = direction or {}
    rows = []
    for _, b in best.iterrows():
        sel = scores[(scores["dataset"] == b["dataset"]) & (scores["method"] == b["method"])
                     & (scores["setting"] == b["best_setting"]) & (scores["status"] == "ok")]
        sel = sel[fully_labelled(sel)]
        rows.append({**b.to_dict(), **{m: sel[m].mean() if len(sel) else np.nan for m in metrics}})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    bio_present = [m for m in bio if m in table]
    parts = []
    for _, block in table.groupby("dataset", sort=False):
        scaled = pd.DataFrame({m: minmax(block[m], direction.get(m, True)) for m in metrics}, index=block.index)
        comp = composite(scaled, bio, batch, bio_weight)
        comp.insert(2, "bio_proxy", proxy_score(scaled))
        if bio_present and block[bio_present].isna().all().all():  # unlabelled: the proxy stands in for bio
            comp["overall"] = bio_weight * comp["bio_proxy"] + (1 - bio_weight) * comp["batch"]
        comp["bio_weight"] = bio_weight
        block = pd.concat([block, comp, scaled.add_prefix("scaled_")], axis=1)
        block["rank"] = block["overall"].rank(ascending=False, method="min", na_option="bottom").astype(int)
        parts.append(block)
    return pd.concat(parts).sort_values(["dataset", "rank"])


def summarize(best: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean over datasets of the across-method scores (a failed dataset counts as 0),
    failed datasets named, ranked by number of failed datasets, then mean overall."""
    columns = ["method", "overall", "bio", "batch", "rank", "n_datasets", "n_failed_datasets", "failed_datasets"]
    if best.empty:
        return pd.DataFrame(columns=columns)
    b = best.copy()
    b["failed"] = b["overall"].isna()
    for col in ("overall", "bio", "batch"):
        b[col] = b[col].mask(b["failed"], 0.0)  # an unlabelled dataset keeps its empty bio
    out = b.groupby("method").agg(overall=("overall", "mean"), bio=("bio", "mean"), batch=("batch", "mean"),
                                  n_datasets=("dataset", "nunique"), n_failed_datasets=("failed", "sum"))
    out["failed_datasets"] = b[b["failed"]].groupby("method")["dataset"].agg(lambda d: ", ".join(sorted(d)))
    out["failed_datasets"] = out["failed_datasets"].fillna("")
    out["n_failed_datasets"] = out["n_failed_datasets"].astype(int)
    better = [((out["n_failed_datasets"] < f) | ((out["n_failed_datasets"] == f) & (out["overall"] > o + 1e-12))).sum()
              for f, o in zip(out["n_failed_datasets"], out["overall"])]
    out["rank"] = [1 + int(n) for n in better]
    return out.reset_index().sort_values(["rank", "method"])[columns]


def fit_exponent(n: np.ndarray, y: np.ndarray) -> float:
    """Slope of log(y) on log(n): the empirical scaling exponent (NaN with < 2 sizes)."""
    n, y = np.asarray(n, float), np.asarray(y, float)
    keep = (n > 0) & (y > 0) & np.isfinite(y)
    if np.unique(n[keep]).size < 2:
        return float("nan")
    return float(np.polyfit(np.log(n[keep]), np.log(y[keep]), 1)[0])
