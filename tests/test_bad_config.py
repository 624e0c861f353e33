"""Bad study config, paths and command-line input: one line naming the key, file or value and what
to do, at plan time where the value can be checked then; no traceback; nothing outside the study
written. Unit tests of the checks (guards/, methods/registry.py) first, then a few dry runs that
show the workflow wires them, and one small study whose output folder has a space and an accent.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pytest
import yaml
from test_bad_inputs import REPO, dry_run, env, preprocess_cli, run_cli, tiny_with

from guards import study_config
from guards.cli import guarded, written_paths
from guards.study_config import PlanError
from guards.yaml_files import DuplicateKeyError, load_unique

# --- the output folder -------------------------------------------------------------------------------

@pytest.mark.parametrize(("out", "needle"), [
    ("", "out is empty"),
    ("   ", "out is empty"),
    ("/", "filesystem root"),
    ("results ", "starts or ends with a space"),
    ("res\nults", "control character"),
    ("results/{dataset}", "wildcards"),
    ("~no_such_user_here/results", "no such user's home folder"),
    ("$BENCH_NO_SUCH_VARIABLE/results", "environment variable that is not set"),
])
def test_output_folder_that_would_write_elsewhere_is_refused(out, needle):
    with pytest.raises(PlanError, match=None) as err:
        study_config.check_out(out)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_output_folder_naming_or_crossing_a_file_is_refused(tmp_path):
    afile = tmp_path / "proj"
    afile.write_text("precious")
    for out, word in ((afile, "names the existing file"), (afile / "sub", "goes through the existing file")):
        with pytest.raises(PlanError, match=word):
            study_config.check_out(str(out))
    assert afile.read_text() == "precious"


def test_output_folder_home_and_trailing_slash_are_expanded(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("BENCH_RESULTS", str(tmp_path / "r"))
    assert study_config.check_out("~/res/") == f"{tmp_path}/res"
    assert study_config.check_out("$BENCH_RESULTS/a") == f"{tmp_path}/r/a"
    assert study_config.check_out("results/x") == "results/x"  # relative: to the working directory


# --- metrics, sizes, device ----------------------------------------------------------------------------

@pytest.mark.parametrize(("metrics", "needle"), [
    ({"set": "scbi"}, "metrics.set: 'scbi' is not a metric set (did you mean 'scib'?)"),
    ({"bio": ["nmi", "ari_typo"]}, "metrics.bio: 'ari_typo' is not a metric"),
    ({"batch": ["ilsi"]}, "metrics.batch: 'ilsi' is not a metric (did you mean 'ilisi'?)"),
    ({"options": {"n_neigbors": 60}}, "metrics.options: unknown metrics option(s): n_neigbors"),
    ({"options": {"metrics": ["nmi"]}, "bio": ["nmi", "ari"]}, "metrics.options.metrics leaves out ari"),
])
def test_metric_names_and_options_are_checked(metrics, needle):
    with pytest.raises(PlanError) as err:
        study_config.check_metrics({"n_neighbors": 90, **metrics})
    assert str(err.value).startswith(needle), err.value


def test_valid_metric_sections_pass():
    study_config.check_metrics({"set": "sysvi", "n_neighbors": 90})
    study_config.check_metrics({"bio": ["nmi"], "batch": ["ilisi"], "n_neighbors": 50,
                                "options": {"metrics": ["nmi", "ilisi", "ari"]}})


def test_sizes_against_the_data():
    with pytest.raises(PlanError, match=r"metrics.n_neighbors: 90 .* 'toy' has 80 \(here\): lower"):
        study_config.check_neighbors(90, "toy", 80, "here")
    study_config.check_neighbors(90, "toy", 91, "here")
    study_config.check_neighbors(90, "toy", None, "unknown size")  # not known before the data exist
    with pytest.raises(PlanError, match="methods.harmony \\(setting n_comps-300\\): n_comps 300 is more than the 199"):
        study_config.check_components("harmony", "n_comps-300", {"n_comps": 300}, "toy", 400, 200, "here")
    study_config.check_components("harmony", "n_comps-199", {"n_comps": 199}, "toy", 400, 200, "here")
    with pytest.raises(PlanError, match="scaling.method_sizes.scvi: 500 is more than the 400 cells"):
        study_config.check_scaling_sizes({"": [100, 400], "scvi": [500]}, "toy", 400, "here")


def test_cuda_on_a_machine_without_gpu_is_refused_locally_only():
    with pytest.raises(PlanError, match="device: cuda, but this machine shows no GPU"):
        study_config.check_device("cuda", local=True, has_gpu=False)
    study_config.check_device("cuda", local=False, has_gpu=False)  # a cluster node may have one
    study_config.check_device("auto", local=True, has_gpu=False)


def test_run_record_says_the_device_actually_used(monkeypatch):
    from methods import runner

    monkeypatch.setattr(runner, "_cuda_available", lambda: False)
    assert runner.resolve_device("cuda", gpu_method=False) == "cpu"  # recorded "cuda" before
    assert runner.resolve_device("auto", gpu_method=True) == "cpu"
    with pytest.raises(ValueError, match="device 'cuda' was asked for, but torch sees no GPU"):
        runner.resolve_device("cuda", gpu_method=True)


# --- YAML keys given twice, schema values -----------------------------------------------------------

def test_a_key_given_twice_is_named_with_its_lines(tmp_path):
    path = tmp_path / "study.yaml"
    path.write_text("out: x\nmethods:\n  harmony:\n    grid: {theta: [1, 2]}\n  scvi:\n  harmony:\n    params: {}\n")
    with pytest.raises(DuplicateKeyError) as err:
        load_unique(path)
    assert str(err.value).startswith(f"{path} line 6: key 'harmony' is given twice in one section (first on line 3)")
    path.write_text("a: {b: 1, c: {b: 2}}\nd: [{b: 1}, {b: 2}]\n")  # the same key in different sections
    assert load_unique(path) == {"a": {"b": 1, "c": {"b": 2}}, "d": [{"b": 1}, {"b": 2}]}


@pytest.mark.parametrize(("cfg", "key", "needle"), [
    ({"seeds": [0, 0]}, "seeds", "0 is given twice"),
    ({"label_missing": [0.5, 0.5]}, "label_missing", "0.5 is given twice"),
    ({"max_mem_mb": 10}, "max_mem_mb", "at least 1000"),
])
def test_schema_names_repeats_and_too_small_memory(cfg, key, needle):
    from datasets.schemas import dotted, first_problem

    base = {"out": "x", "datasets": {"d": {"simulate": {"scenario": "baseline"}}}, "methods": {"harmony": None}}
    path, problem = first_problem("config", {**base, **cfg})
    assert dotted(path) == key and needle in problem, problem


def test_schema_memory_minimum_is_the_runners():
    from datasets.schemas import load_schema
    from methods.attempts import MIN_MEM_LIMIT_MB

    assert load_schema("config")["properties"]["max_mem_mb"]["anyOf"][0]["minimum"] == MIN_MEM_LIMIT_MB


def test_run_command_refuses_a_memory_limit_it_cannot_start_under(tmp_path):
    res = run_cli("methods", "run", "--data", "x.h5ad", "--out", str(tmp_path / "run.h5ad"), "--method", "harmony",
                  "--max-mem-mb", "10")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--max-mem-mb: 10 MB is below the 1000 MB" in res.stderr.splitlines()[-1]


# --- parameter values ----------------------------------------------------------------------------

@pytest.mark.parametrize(("section", "needle"), [
    ({"grid": {"theta": [1.0, "abc"]}}, "methods.harmony.grid.theta: 'abc' is not a number (default 2.0)"),
    ({"params": {"max_iter": True}}, "methods.harmony.params.max_iter: True is not a number (default 10)"),
    ({"settings": [{"theta": [1]}]}, "methods.harmony.settings[0].theta: [1] is not a number (default 2.0)"),
])
def test_parameter_of_the_wrong_kind_names_its_key(section, needle):
    from methods.settings import ConfigError, expand_settings

    with pytest.raises(ConfigError) as err:
        expand_settings("harmony", section)
    assert str(err.value) == needle


def test_parameter_kinds_follow_the_defaults():
    from methods.registry import merge_params, value_problem

    assert value_problem(2.0, 3) is None and value_problem(50, 1.5) is None  # ints and floats mix
    assert value_problem(True, "yes") == "'yes' is not true or false"
    assert value_problem([], "age") == "'age' is not a list (default [])"
    assert value_problem(None, "anything") is None and value_problem("rpca", "cca") is None
    with pytest.raises(ValueError, match="method 'harmony' parameter theta: 'abc' is not a number"):
        merge_params("harmony", {"theta": "abc"})


def test_methods_record_the_components_they_used(sim_small):
    from methods import harmony, unintegrated

    small = sim_small[:40].copy()
    small.obsm.pop("X_pca")
    result = unintegrated.integrate(small, batch_key="batch", label_key="label", params={"n_comps": 1000},
                                    seed=0, device="cpu")
    assert result.embedding.shape[1] == result.extra["n_comps"] == 39
    result = harmony.integrate(sim_small, batch_key="batch", label_key="label", seed=0, device="cpu",
                               params={"theta": 2.0, "n_comps": 80, "max_iter": 2})
    assert result.extra["n_comps"] == sim_small.obsm["X_pca"].shape[1] == result.embedding.shape[1]


# --- data-dependent checks at run time -----------------------------------------------------------------

def test_scoring_refuses_more_neighbours_than_cells(sim_small_path):
    from metrics.run_inputs import DataCache
    from metrics.score import resolve_options

    n = ad.read_h5ad(sim_small_path, backed="r").n_obs
    data = DataCache(sim_small_path, resolve_options({"n_neighbors": n}))
    with pytest.raises(ValueError, match=f"has {n} cells, not more than metrics.n_neighbors \\({n}\\): lower"):
        data.check()


def test_subsample_larger_than_the_data_is_a_failed_record(sim_small_path, tmp_path):
    from datasets.__main__ import main as datasets_main
    from datasets.failure import failed_dataset

    out = tmp_path / "n100000.h5ad"
    assert datasets_main(["subsample", "--data", str(sim_small_path), "--n", "100000", "--out", str(out)]) == 0
    record = failed_dataset(out)
    assert record["stage"] == "subsample" and "cannot subsample 100000 cells" in record["error"]
    assert "use scaling sizes from 1 to" in record["error"]


# --- command lines: one line, not a traceback ------------------------------------------------------

def test_float16_counts_are_read(raw, tmp_path, capsys):
    from test_bad_inputs import modified

    def half(a):
        a.X = a.X.toarray().astype(np.float16)

    code, err, out = preprocess_cli(modified(raw, half), tmp_path, capsys)
    assert code == 0, err
    assert ad.read_h5ad(out).layers["counts"].dtype == np.float32


@pytest.fixture(scope="module")
def raw():
    from datasets.simulate import published_params, splat_simulate

    return splat_simulate(published_params(n_cells=200, n_genes=400), seed=11)


def test_symlink_loop_as_data_path(tmp_path, capsys):
    from datasets.__main__ import main as datasets_main
    from datasets.local_file import LocalFileError, file_entry

    (tmp_path / "a.h5ad").symlink_to(tmp_path / "b.h5ad")
    (tmp_path / "b.h5ad").symlink_to(tmp_path / "a.h5ad")
    code = datasets_main(["preprocess", "--raw", str(tmp_path / "a.h5ad"), "--out", str(tmp_path / "o.h5ad"),
                          "--name", "toy", "--batch-key", "batch"])
    assert code == 2
    assert capsys.readouterr().err == (f"error: input file '{tmp_path / 'a.h5ad'}' is a symbolic link that leads "
                                       "nowhere (a loop, or its target is gone): point it to the real file\n")
    with pytest.raises(LocalFileError, match="datasets.mine.file.path: a.h5ad cannot be followed"):
        file_entry("mine", {"path": "a.h5ad", "batch_key": "batch"}, tmp_path, "here")


def test_h5ad_named_h5_gets_advice(raw, tmp_path):
    from datasets.local_file import LocalFileError, file_entry

    raw.write_h5ad(tmp_path / "atlas.h5")
    with pytest.raises(LocalFileError) as err:
        file_entry("mine", {"path": "atlas.h5", "batch_key": "batch"}, tmp_path, "here")
    assert "is read as 10x_h5, but it holds h5ad" in str(err.value)
    assert "give it the ending .h5ad or set datasets.mine.file.format: h5ad" in str(err.value)
    assert file_entry("mine", {"path": "atlas.h5", "batch_key": "batch", "format": "h5ad"}, tmp_path,
                      "here")["format"] == "h5ad"


def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_while_the_report_is_written(tmp_path, monkeypatch, capsys):
    from reports import html
    from reports.cli import main as reports_main

    monkeypatch.setattr(html.Path, "write_text", no_space)
    (tmp_path / "tables").mkdir()
    report = tmp_path / "study" / "report.html"
    code = guarded("python -m reports", reports_main,
                   ["render", "--tables", str(tmp_path / "tables"), "--out-dir", str(tmp_path / "study" / "figures"),
                    "--html", str(report)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[-1] == (f"error: python -m reports: {tmp_path / 'study' / 'figures'}, {report}: no space "
                                    "left on device: free space there (or give the study an out folder on another "
                                    "disk) and run again")
    assert not report.exists() and not [p for p in report.parent.iterdir() if p.is_file()]  # nor a temporary


def test_full_disk_while_scoring(sim_small_path, tmp_path, monkeypatch, capsys):
    from metrics import json_output
    from metrics.__main__ import main as metrics_main

    run = tmp_path / "run" / "run.h5ad"
    assert run_cli("methods", "run", "--data", str(sim_small_path), "--out", str(run),
                   "--method", "harmonee").returncode == 0  # a failed run: scored without computing metrics
    monkeypatch.setattr(json_output.json, "dump", no_space)
    out = tmp_path / "run" / "metrics.json"
    code = guarded("python -m metrics", metrics_main,
                   ["score", "--data", str(sim_small_path), "--runs", str(run), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.splitlines()[-1].startswith(f"error: python -m metrics: {out}: no space left on device")
    assert sorted(p.name for p in out.parent.iterdir()) == ["run.h5ad"]


def test_unexpected_error_keeps_its_traceback_before_the_line(capsys):
    def broken(argv):
        raise ZeroDivisionError("division by zero")

    assert guarded("python -m x", broken, []) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err
    assert err.splitlines()[-1].startswith("error: python -m x: ZeroDivisionError: division by zero (unexpected")


def test_symlink_loop_and_missing_file_get_one_line(capsys, tmp_path):
    def reads(argv):
        Path(argv[0]).read_text()

    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert guarded("python -m x", reads, [str(loop)]) == 1
    assert capsys.readouterr().err == f"error: python -m x: {loop}: a symbolic link that leads back to itself (a " \
                                      "loop): point it to the real file\n"
    assert guarded("python -m x", reads, [str(tmp_path / "nope.json")]) == 1
    assert capsys.readouterr().err.endswith("nope.json: does not exist: check the path\n")
    assert written_paths(["score", "--runs", "a", "--out", "m1", "m2", "--options", "{}"]) == ["m1", "m2"]


def test_aggregate_tables_leave_no_temporary_on_a_full_disk(tmp_path, monkeypatch):
    import pandas as pd

    from metrics.aggregate import write_table

    monkeypatch.setattr(pd.DataFrame, "to_csv", no_space)
    with pytest.raises(OSError):
        write_table(pd.DataFrame({"a": [1]}), tmp_path / "runs.tsv")
    assert list(tmp_path.iterdir()) == []


# --- the workflow wires the checks (dry runs) -------------------------------------------------------

def config_error_line(res: subprocess.CompletedProcess) -> str:
    text = res.stdout + res.stderr
    return next((ln for ln in text.splitlines() if ln.startswith("invalid config")), text[-2000:])


@pytest.mark.parametrize(("change", "needle"), [
    (lambda c: c["metrics"].update(n_neighbors=500),
     "invalid config: metrics.n_neighbors: 500 needs more cells than that, but dataset 'sim_base' has 400 "
     "(datasets.sim_base.simulate.n_cells)"),
    (lambda c: c["scaling"].update(sizes=[100, 5000]), "invalid config: scaling.sizes: 5000 is more than the 400"),
    (lambda c: c.update(out="afile"), "invalid config: out: 'afile' names the existing file afile"),
    (lambda c: c["methods"]["harmony"]["grid"].update(theta=[1.0, "abc"]),
     "invalid config: methods.harmony.grid.theta: 'abc' is not a number"),
], ids=["neighbors_vs_cells", "scaling_vs_cells", "out_is_a_file", "theta_abc"])
def test_plan_refuses_config_values_in_one_line(tmp_path, change, needle):
    (tmp_path / "afile").write_text("precious")
    res = dry_run(tmp_path, tiny_with(change))
    assert res.returncode != 0 and config_error_line(res).startswith(needle), config_error_line(res)
    assert (tmp_path / "afile").read_text() == "precious" and not (tmp_path / "never").exists()


def test_plan_refuses_a_config_file_with_a_key_given_twice(tmp_path):
    text = yaml.safe_dump(tiny_with(lambda c: None), sort_keys=False)
    assert "\nscaling:" in text
    (tmp_path / "config.yaml").write_text(text + "scaling: {dataset: sim_common3, sizes: [100]}\n")
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow/Snakefile"), "--configfile",
                          "config.yaml", "-n"], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    assert config_error_line(res).startswith(f"invalid config: {tmp_path / 'config.yaml'} line ")
    assert "key 'scaling' is given twice" in config_error_line(res)


# --- a study whose output folder has a space and an accent ----------------------------------------

@pytest.mark.slow
def test_study_with_a_space_and_an_accent_in_out_writes_only_there(tmp_path):
    """`out: .../proj résultats` overwrote the file `.../proj` (unquoted `> {log}` in the rules)."""
    cfg = yaml.safe_load((REPO / "tests/configs/micro.yaml").read_text())
    out = tmp_path / "proj résultats"
    cfg.update(out=str(out), seeds=[0], methods={"unintegrated": None, "harmony": None})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    (tmp_path / "proj").write_text("precious")
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow/Snakefile"), "--configfile",
                          "config.yaml", "--cores", "2"], cwd=tmp_path, env=env(), capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert (tmp_path / "proj").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "config.yaml", "proj", "proj résultats"]
    assert (out / "report.html").stat().st_size > 0
    runs = (out / "tables" / "runs.tsv").read_text()
    assert runs.count("\tok\t") == 2, runs
    assert json.loads((out / "config_used.json").read_text())["out"] == str(out)


def test_malformed_json_arguments_are_one_line(capsys, tmp_path):
    from methods.__main__ import main as methods_main
    from metrics.aggregate import main as aggregate_main

    code = methods_main(["run", "--data", "x.h5ad", "--out", str(tmp_path / "run.h5ad"), "--method", "mine",
                         "--external", "{bad"])
    assert code == 2 and capsys.readouterr().err.startswith("error: --external is not a method spec as JSON")
    with pytest.raises(SystemExit, match="error: --selection is not valid JSON"):
        aggregate_main(["tables", "--metrics", "m.json", "--tables", str(tmp_path), "--selection", "not json"])
    assert list(tmp_path.iterdir()) == []
