"""The Ray executor on a local Ray cluster (2 CPUs, ~100 MB object store) with a tiny model: a
ray run equals the single-process run cell for cell, and a worker that dies mid-run (os._exit
after computing a cell, before returning it) loses and duplicates nothing, within the run (a
fresh worker takes its cells) or after a rerun."""

import json
import os
import sys
from pathlib import Path

import pytest

from evals.rundir import RunDir
from harness.cli import main
from harness.sweep.config import load_config
from harness.sweep.executors import RayExecutor, SweepWorker, WorkersDied
from harness.sweep.grid import expand_grid
from harness.sweep.run import run_sweep
from tests.harness.sweep.test_run import config_text
from tests.helpers import tiny_llama_folder


def ray_config_text(model: Path, ref: Path, data: Path | None = None) -> str:
    return config_text(model, ref, magnitudes=[0, 2], questions=6, max_new_tokens=3,
                       answer_questions=4, data=data)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep_ray")
    model = tiny_llama_folder(root / "tiny")
    ref = root / "ref.txt"
    ref.write_text("The cat sat on the mat.\nA week has seven days.\n")
    config = root / "sweep.toml"
    config.write_text(ray_config_text(model, ref))
    local, cellwise = root / "local_run", root / "local_cell_by_cell"
    run_sweep(load_config(config), local, progress=False)  # packed, as by default
    run_sweep(load_config(config), cellwise, progress=False, pack=1)
    return {"root": root, "config": config, "local": local, "cellwise": cellwise}


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024 ** 2,
             log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def cell_files(run: Path) -> dict[str, bytes | dict]:
    """Every file of RUN_DIR/cells: answer rows as bytes, descriptions without their timing,
    pack size and code version (other commits land while a test runs), with the run dir's own
    path, which direction file names start with, as RUN_DIR."""
    out = {}
    for p in sorted((run / "cells").iterdir()):
        if p.suffix == ".json":
            desc = json.loads(p.read_text().replace(json.dumps(str(run))[1:-1], "RUN_DIR"))
            desc.pop("seconds")
            desc.pop("packed_cells", None)
            desc.pop("code")
            out[p.name] = desc
        else:
            out[p.name] = p.read_bytes()
    return out


def assert_same_run(run: Path, local: Path) -> None:
    """Same cells, byte-identical answer rows, equal descriptions (metrics, coefficients,
    direction files named in RUN_DIR), same run.json and fitted directions; nothing else."""
    assert cell_files(run) == cell_files(local)
    info = [{k: v for k, v in json.loads((d / "run.json").read_text()).items() if k != "code"}
            for d in (run, local)]
    assert info[0] == info[1]
    assert {p.name: p.read_bytes() for p in (run / "directions").iterdir()} == \
        {p.name: p.read_bytes() for p in (local / "directions").iterdir()}


def dying_once(marker: Path) -> type:
    """A worker that, the first time any worker computes a cell, computes it and then exits the
    process before returning it (a crash after the work, before the driver has it)."""

    class DyingOnce(SweepWorker):
        def run(self, cells):
            results = super().run(cells)
            if not marker.exists():
                marker.touch()
                os._exit(1)
            return results

    return DyingOnce


@pytest.mark.slow
def test_sweep_ray__equals_the_single_process_run(setup, ray_cluster, tmp_path, capsys):
    out = tmp_path / "ray_run"
    assert main(["sweep", str(setup["config"]), "--out", str(out), "--executor", "ray",
                 "--workers", "2", "--no-progress"]) == 0
    n = len(expand_grid(load_config(setup["config"])))
    assert n == 4 and f"{n} cell(s) computed" in capsys.readouterr().out
    assert_same_run(out, setup["local"])
    # the description names the driver's direction files, not a worker's private copy
    desc = json.loads((out / "cells" / "md__blocks.1.hook_resid_post__m2.json").read_text())
    assert all(f.startswith(str(out)) for f in desc["source"]["files"])


@pytest.mark.slow
def test_sweep_ray__a_worker_killed_mid_run_then_a_rerun_lose_and_duplicate_nothing(
        setup, ray_cluster, tmp_path):
    cfg, out = load_config(setup["config"]), tmp_path / "run"
    killer = RayExecutor(workers=2, max_worker_deaths=0, worker_class=dying_once(tmp_path / "x"))
    with pytest.raises(WorkersDied, match=r"cell\(s\) not computed: 1 Ray worker\(s\) died.*"
                                          "rerun the same command"):
        run_sweep(cfg, out, progress=False, executor=killer, pack=1)  # a call: one cell
    partial = cell_files(out)
    assert (tmp_path / "x").exists()  # a worker did die after computing a cell
    cells = {c.cell_id for c in expand_grid(cfg)}
    done = RunDir(out).finished_cells()
    assert done < cells  # the dead worker's cell is not there
    assert set(partial) == {f"{c}{ext}" for c in done for ext in (".json", ".jsonl")}
    reference = cell_files(setup["cellwise"])
    assert all(partial[name] == reference[name] for name in partial)  # whole and right
    summary = run_sweep(cfg, out, progress=False, executor=RayExecutor(workers=2), pack=1)
    assert summary["already_done"] == len(done)
    assert summary["computed"] == len(cells) - len(done)  # each missing cell once, no repeats
    assert_same_run(out, setup["cellwise"])


@pytest.mark.slow
def test_sweep_ray__a_dead_worker_s_cells_go_to_a_fresh_worker(setup, ray_cluster, tmp_path):
    out = tmp_path / "run"
    executor = RayExecutor(workers=2, worker_class=dying_once(tmp_path / "x"))
    summary = run_sweep(load_config(setup["config"]), out, progress=False, executor=executor,
                        pack=1)
    assert (tmp_path / "x").exists() and summary["computed"] == 4
    assert_same_run(out, setup["cellwise"])


def test_sweep_cli__executor_ray_without_ray_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    config = tmp_path / "c.toml"
    config.write_text(ray_config_text(tmp_path, tmp_path, data=tmp_path / "q.csv"))
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert main(["sweep", str(config), "--out", str(tmp_path / "run"), "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "pip install 'truthsteer[ray]'" in err
    assert not (tmp_path / "run").exists()
    assert main(["sweep", str(config), "--out", str(tmp_path / "run"), "--workers", "2"]) == 2
    assert "--workers go with --executor ray" in capsys.readouterr().err
