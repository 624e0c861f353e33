"""End to end through Snakemake: the tiny study produces every table and the report; an
interrupted study resumes without redoing finished runs; a failing run is recorded, not dropped.

Each study runs in its own working directory (``--directory``; the repo goes on PYTHONPATH),
so Snakemake's metadata and locks never touch the repo's ``.snakemake`` that other people's
runs use. The tiny study is run once per session (``tiny_study``) and shared with
tests/test_reproducibility.py.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"
CONFIGS = REPO / "tests" / "configs"
STUDY_TIMEOUT_S = 1500  # the tiny study takes ~4 min on 2 busy cores; a hang must still end the test


# --- helpers shared with test_reproducibility.py ------------------------------------------------

def write_study_config(base: Path, workdir: Path, **overrides) -> Path:
    """Copy a study config with ``out`` set to ``workdir/out`` (plus top-level overrides)."""
    cfg = yaml.safe_load(base.read_text())
    cfg.update(out=str(workdir / "out"), **overrides)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def study_env() -> dict[str, str]:
    """Environment of a Snakemake call: one BLAS thread, the repo importable, this venv's python."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def snakemake_cmd(workdir: Path, *extra: str, cores: int = 2) -> list[str]:
    return [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--configfile",
            str(workdir / "config.yaml"), "--directory", str(workdir), "--cores", str(cores), *extra]


def run_snakemake(workdir: Path, *extra: str, timeout: float = STUDY_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run Snakemake in ``workdir`` (which holds config.yaml); stdout+stderr kept in the result."""
    return subprocess.run(snakemake_cmd(workdir, *extra), cwd=workdir, env=study_env(), capture_output=True,
                          text=True, timeout=timeout)


def log_tail(res: subprocess.CompletedProcess, n: int = 3000) -> str:
    return (res.stdout + res.stderr)[-n:]


_STUDIES: dict[str, tuple[Path, subprocess.CompletedProcess]] = {}


def tiny_study(tmp_path_factory, key: str = "tiny") -> Path:
    """Output folder of tests/configs/tiny.yaml run once per session and key (cached)."""
    if key not in _STUDIES:
        workdir = tmp_path_factory.mktemp(f"study_{key}")
        write_study_config(CONFIGS / "tiny.yaml", workdir)
        _STUDIES[key] = (workdir, run_snakemake(workdir))
    workdir, res = _STUDIES[key]
    assert res.returncode == 0, log_tail(res)
    return workdir / "out"


def read_tsv(out: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(out / "tables" / name, sep="\t")


def run_record(path: Path) -> dict:
    return json.loads(ad.read_h5ad(path, backed="r").uns["run_json"])


# --- the tiny study -------------------------------------------------------------------------------

TINY = yaml.safe_load((CONFIGS / "tiny.yaml").read_text())
N_TINY_RUNS = 2 * 2 * 2 * 2  # datasets x methods x settings x seeds


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> Path:
    return tiny_study(tmp_path_factory)


def test_runs_table_has_every_run_ok(tiny):
    runs = read_tsv(tiny, "runs.tsv")
    assert len(runs) == N_TINY_RUNS
    assert not runs.duplicated(["dataset", "method", "setting", "seed"]).any()
    assert (runs["status"] == "ok").all(), runs[["method", "setting", "error"]]
    assert set(runs["dataset"]) == set(TINY["datasets"]) and set(runs["method"]) == set(TINY["methods"])
    assert (runs["wall_s"] > 0).all() and (runs["peak_rss_mb"] > 0).all()
    for path in runs["run_path"]:
        assert Path(path).is_file() and (Path(path).parent / "metrics.json").is_file()


def test_metrics_table_has_bio_and_batch_for_every_run(tiny):
    metrics = read_tsv(tiny, "metrics.tsv")
    per_run = metrics.dropna(subset=["value"]).groupby(["dataset", "method", "setting", "seed"])
    types = per_run["metric_type"].agg(set)
    assert len(types) == N_TINY_RUNS
    assert all({"bio", "batch"} <= t for t in types), types
    # every run of a dataset is scored on the same metrics, and no metric is missing silently (e.g. the
    # isolated-label metrics are NA, with the reason, on a dataset where every label is in every batch)
    names = per_run["metric"].agg(frozenset)
    assert names.groupby(level="dataset").nunique().eq(1).all(), names
    assert metrics.loc[metrics["value"].isna(), "na_reason"].fillna("").ne("").all()


def test_scores_are_composites_in_unit_interval(tiny):
    scores = read_tsv(tiny, "scores.tsv")
    assert len(scores) == N_TINY_RUNS
    for col in ("bio", "batch", "overall"):
        assert scores[col].between(0, 1).all(), scores[col]
    weight = 0.6  # default selection.bio_weight
    assert (scores["overall"] - (weight * scores["bio"] + (1 - weight) * scores["batch"])).abs().max() < 1e-6


def test_best_has_one_existing_representative_per_dataset_and_method(tiny):
    best = read_tsv(tiny, "best.tsv")
    runs = read_tsv(tiny, "runs.tsv")
    assert len(best) == 4 and not best.duplicated(["dataset", "method"]).any()
    for row in best.itertuples():
        path = Path(row.representative_run)
        assert path.is_file(), path
        rec = run_record(path)
        assert (rec["method"], rec["setting"], rec["seed"]) == (row.method, row.best_setting,
                                                                row.representative_seed)
        assert row.best_setting in set(runs.loc[runs["method"] == row.method, "setting"])
        assert row.n_seeds == 2 and row.n_failed == 0
    for _, per_dataset in best.groupby("dataset"):  # rank 1 = best overall; ties share a rank
        higher = [(per_dataset["overall"] > o + 1e-12).sum() for o in per_dataset["overall"]]
        assert list(per_dataset["rank"]) == [1 + h for h in higher], per_dataset[["method", "overall", "rank"]]


def test_summary_ranks_methods(tiny):
    summary = read_tsv(tiny, "summary.tsv")
    assert set(summary["method"]) == set(TINY["methods"])
    higher = [(summary["overall"] > o + 1e-12).sum() for o in summary["overall"]]
    assert list(summary["rank"]) == [1 + h for h in higher], summary
    assert (summary["n_datasets"] == 2).all()


def test_scaling_table_has_every_size_and_method(tiny):
    scaling = read_tsv(tiny, "scaling.tsv")
    cells = {(m, n) for m in TINY["scaling"]["methods"] for n in TINY["scaling"]["sizes"]}
    assert set(zip(scaling["method"], scaling["n_cells"])) == cells
    assert (scaling["status"] == "ok").all()
    assert (scaling["s"] > 0).all() and (scaling["max_rss_mb"] > 0).all()


def test_report_embeds_every_figure_and_table(tiny):
    page = (tiny / "report.html").read_text()
    figures = sorted((tiny / "figures").glob("*.png"))
    assert figures, "no figure was produced"
    for png in figures:
        assert png.stat().st_size > 1000 and png.with_suffix(".pdf").is_file(), png
        assert f'id="fig-{png.stem}"' in page, f"report.html does not show figure {png.name}"
    assert page.count('src="data:image/png;base64,') >= len(figures)  # embedded, not linked
    for table in ("runs.tsv", "scores.tsv", "best.tsv", "summary.tsv", "scaling.tsv"):
        assert table in page, f"report.html does not mention {table}"
    for method in TINY["methods"]:
        assert method in page


def test_finished_study_has_nothing_to_do(tiny):
    res = run_snakemake(tiny.parent, "-n", timeout=300)
    assert res.returncode == 0, log_tail(res)
    assert "Nothing to be done" in res.stdout + res.stderr, log_tail(res)


def test_snakemake_report_registers_every_figure(tiny):
    import zipfile

    report = tiny.parent / "report.zip"
    res = run_snakemake(tiny.parent, "--report", str(report), timeout=300)
    assert res.returncode == 0, log_tail(res)
    names = zipfile.ZipFile(report).namelist()
    figures = {p.name for p in (tiny / "figures").glob("*.png")}
    assert figures and all(any(n.endswith(f) for n in names) for f in figures)
    assert any(n.endswith("report.html") for n in names)


def test_every_output_was_written_under_its_final_name_only(tiny):
    leftovers = [p for p in tiny.rglob("*") if re.search(r"\.tmp\d*$|\.err\d+$", p.name)]
    assert leftovers == []


# --- interrupted studies resume without redoing finished runs --------------------------------------

FINISHED_RE = re.compile(r"Finished jobid: (\d+) \(Rule: integrate\)")
JOB_BLOCK_RE = re.compile(r"^(?:local)?rule integrate:\n((?:[ \t]+\w+: .*\n)+)", re.MULTILINE)


def integrate_jobs(log: str) -> dict[str, str]:
    """jobid -> run file of every integrate job Snakemake started, from its log."""
    jobs = {}
    for block in JOB_BLOCK_RE.findall(log):
        fields = dict(line.strip().split(": ", 1) for line in block.splitlines())
        jobs[fields["jobid"]] = fields["output"]
    return jobs


def finished_runs(log: str) -> set[str]:
    """Run files whose integrate job Snakemake reported finished (its own bookkeeping done)."""
    jobs = integrate_jobs(log)
    return {jobs[j] for j in FINISHED_RE.findall(log) if j in jobs}


def file_identity(path: str) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_mtime_ns


def _terminal_signals() -> None:
    """Start Snakemake with SIGINT as in a terminal (default action, not blocked), whatever this
    pytest process inherited or set: an ignored SIGINT is inherited over exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def interrupt_after_runs(workdir: Path, n_runs: int, kill, repeat: bool = False) -> dict[str, tuple[int, int]]:
    """Start the study, wait until ``n_runs`` integrate jobs finished, interrupt it with ``kill(proc)``.

    Returns the identity (inode, mtime) of the run files finished before the interruption.
    """
    log_path = workdir / "first.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(snakemake_cmd(workdir), cwd=workdir, env=study_env(), stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_terminal_signals)
    try:
        deadline = time.monotonic() + STUDY_TIMEOUT_S
        while len(finished_runs(log_path.read_text())) < n_runs:
            assert proc.poll() is None, f"snakemake ended before the interruption:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no integrate job finished in time"
            time.sleep(0.2)
        # let Snakemake finish its bookkeeping of those jobs first: it runs it through
        # asyncio.Runner, which turns SIGINT into a cancel of its task, and a task that completes
        # before the cancel takes effect drops the interrupt (the likely reason a study once ran on
        # to success after this SIGINT, on a loaded machine)
        time.sleep(1.0)
        before = {path: file_identity(path) for path in finished_runs(log_path.read_text())}
        kill(proc)
        try:
            proc.wait(timeout=20 if repeat else 120)
        except subprocess.TimeoutExpired:
            if not repeat:
                raise
            kill(proc)  # a second Ctrl-C, as a user would press
            proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, "an interrupted snakemake must not report success"
    return before


def assert_final_names_are_complete(out: Path) -> None:
    """Every file under a final run name is a complete run (readable, status ok)."""
    for path in out.glob("runs/*/*/*/seed*/run.h5ad"):
        assert run_record(path)["status"] == "ok", path


def assert_not_redone(before: dict[str, tuple[int, int]], restart_log: str) -> None:
    redone = set(before) & set(integrate_jobs(restart_log).values())
    assert not redone, f"finished runs were redone: {sorted(redone)}"
    for path, identity in before.items():
        assert file_identity(path) == identity, f"{path} was rewritten"


def test_ctrl_c_then_restart_keeps_finished_runs_and_completes(tmp_path):
    """SIGINT to the whole process group, as Ctrl-C in a terminal: running jobs are interrupted too."""
    write_study_config(CONFIGS / "micro.yaml", tmp_path)
    before = interrupt_after_runs(tmp_path, 2, lambda proc: os.killpg(proc.pid, signal.SIGINT), repeat=True)
    out = tmp_path / "out"
    assert_final_names_are_complete(out)
    res = run_snakemake(tmp_path)
    assert res.returncode == 0, log_tail(res)
    assert_not_redone(before, res.stdout + res.stderr)
    runs = read_tsv(out, "runs.tsv")
    assert len(runs) == 8 and (runs["status"] == "ok").all(), runs[["setting", "seed", "error"]]
    assert (out / "report.html").is_file()


def test_sigterm_then_restart_keeps_finished_runs(tmp_path):
    """SIGTERM to snakemake: it stops scheduling, lets running jobs finish, and exits non-zero."""
    write_study_config(CONFIGS / "micro.yaml", tmp_path)
    before = interrupt_after_runs(tmp_path, 2, lambda proc: proc.send_signal(signal.SIGTERM))
    out = tmp_path / "out"
    assert_final_names_are_complete(out)
    res = run_snakemake(tmp_path, "--until", "integrate")
    assert res.returncode == 0, log_tail(res)
    assert_not_redone(before, res.stdout + res.stderr)
    assert len(list(out.glob("runs/*/*/*/seed*/run.h5ad"))) == 8
    assert_final_names_are_complete(out)


def test_sigkill_of_the_process_group_then_restart_keeps_finished_runs(tmp_path):
    """SIGKILL of snakemake and its jobs: no cleanup at all; --unlock, then --rerun-incomplete redoes the rest."""
    write_study_config(CONFIGS / "micro.yaml", tmp_path)
    before = interrupt_after_runs(tmp_path, 2, lambda proc: os.killpg(proc.pid, signal.SIGKILL))
    out = tmp_path / "out"
    assert_final_names_are_complete(out)
    # a killed snakemake leaves its lock behind: the documented recovery is --unlock, then rerun
    locked = run_snakemake(tmp_path, "--until", "integrate", timeout=300)
    assert locked.returncode != 0 and "lock" in log_tail(locked).lower()
    assert run_snakemake(tmp_path, "--unlock", timeout=300).returncode == 0
    res = run_snakemake(tmp_path, "--until", "integrate")
    assert res.returncode == 0, log_tail(res)
    assert_not_redone(before, res.stdout + res.stderr)
    assert len(list(out.glob("runs/*/*/*/seed*/run.h5ad"))) == 8
    assert_final_names_are_complete(out)


# --- a failing run is recorded, and fatal under strict ---------------------------------------------

FAILED_RUN = "runs/sim_fail/harmony/theta--1/seed0/run.h5ad"


def test_failing_setting_is_recorded_and_reported_then_fatal_when_strict(tmp_path):
    write_study_config(CONFIGS / "failing.yaml", tmp_path)
    res = run_snakemake(tmp_path)
    assert res.returncode == 0, log_tail(res)
    out = tmp_path / "out"
    runs = read_tsv(out, "runs.tsv").set_index("setting")
    assert runs.loc["theta--1", "status"] == "failed"
    assert "theta must be >= 0" in runs.loc["theta--1", "error"]
    assert (runs.drop(index="theta--1")["status"] == "ok").all()
    best = read_tsv(out, "best.tsv").set_index("method")
    assert best.loc["harmony", "best_setting"] == "theta-2" and best.loc["harmony", "n_failed"] == 1
    page = html.unescape((out / "report.html").read_text())
    start = page.index('<section id="failed">')
    failed_section = page[start:page.index("</section>", start)]
    assert "theta--1" in failed_section and "theta must be >= 0" in failed_section

    # strict: the same failing run now stops the workflow and leaves no run file behind
    write_study_config(CONFIGS / "failing.yaml", tmp_path, strict=True)
    (out / FAILED_RUN).unlink()
    strict = run_snakemake(tmp_path, str(out / FAILED_RUN), timeout=600)
    assert strict.returncode != 0
    assert "theta must be >= 0" in (out / "logs/integrate/sim_fail/harmony/theta--1/seed0.log").read_text()
    assert not (out / FAILED_RUN).exists()
