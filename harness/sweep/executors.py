"""Who computes a sweep's cells: this process (``harness.sweep.run.LocalExecutor``) or workers
on a Ray cluster (``RayExecutor``).

``harness.sweep.run.run_sweep`` does everything that must happen once (check RUN_DIR, fit the
directions per fold into RUN_DIR/directions, resolve every cell, write run.json) and then hands
the unfinished cells to an executor. Every executor computes cells with
``harness.sweep.run.compute_cells`` and writes each with the one atomic cell writer
(``RunDir.write_cell``), so resume, ``--shard`` and ``--merge`` work the same whichever ran.

Ray: one actor per worker loads the model once (``num_gpus=1`` each when the driver's model is
on CUDA, one CPU otherwise). The driver ships what a worker needs as data: the config, the
questions, the bytes of RUN_DIR/directions and the reference text, so workers need the model
(hub cache or folder) but no shared filesystem. Workers return (cell id, rows, description) and
the DRIVER writes the cell: a worker that dies mid-cell leaves nothing behind, its cells are
handed to a fresh worker (up to ``max_worker_deaths`` deaths), and a rerun of the same command
computes whatever is still missing.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

from evals.errors import InputError
from harness.config import ConfigError
from harness.sweep.grid import Cell
from harness.sweep.run import LocalExecutor, build_context, compute_cells

EXECUTORS = ("local", "ray")


def import_ray():
    """The ``ray`` module, or a one-line error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray, which is not installed: "
                          "pip install 'truthsteer[ray]' (or pip install 'ray>=2.9')") from None
    return ray


@dataclasses.dataclass(frozen=True)
class WorkerPayload:
    """What the driver ships to every worker (once, through Ray's object store)."""

    cfg: Any                          # the SweepConfig
    tqa: Any                          # the questions (evals.truthfulqa.TruthfulQA)
    directions: dict[str, bytes]      # RUN_DIR/directions/* by file name
    ref_texts: list[str] | None       # the side-effect reference sentences
    fingerprint: dict[str, str]       # the driver's model fingerprint (run.json's)
    code: dict[str, str]              # the driver's code version, recorded in every cell
    run_dir: str
    pack: int = 1                     # cells whose batches are shared (the driver's setting)


class SweepWorker:
    """A Ray actor's state: the model, loaded once, and a sweep context over a private copy of
    the driver's fitted directions. ``run`` computes cells and returns them; it writes nothing
    the driver reads."""

    def __init__(self, payload: WorkerPayload):
        from harness.models import load_model

        cfg, fingerprint = payload.cfg, payload.fingerprint
        self.tmp = Path(tempfile.mkdtemp(prefix="truthsteer-worker-"))
        for name, data in payload.directions.items():
            target = self.tmp / "directions" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        self.run_dir = payload.run_dir
        model_cfg = cfg.model
        if model_cfg.device.startswith("cuda"):
            model_cfg = dataclasses.replace(model_cfg, device="cuda")  # Ray's one visible GPU
        model = load_model(model_cfg)
        if model.fingerprint() != fingerprint:
            raise ConfigError(f"worker: loaded model {model.fingerprint()}, but the run was made "
                              f"with {fingerprint} (same model files and dtype on every node)")
        self.ctx = build_context(cfg, payload.tqa, self.tmp, model, payload.ref_texts,
                                 payload.code, progress=False)
        self.ctx.pack = payload.pack

    def run(self, cells: list[Cell]) -> list[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
        return [(cell_id, rows, self._relocate(desc))
                for cell_id, rows, desc in compute_cells(self.ctx, cells)]

    def _relocate(self, desc: dict[str, Any]) -> dict[str, Any]:
        """Name the driver's RUN_DIR/directions files, of which this worker read byte copies."""
        files = (desc.get("source") or {}).get("files")
        if files:
            desc["source"] = dict(desc["source"], files=[
                f.replace(str(self.tmp), self.run_dir, 1) for f in files])
        return desc

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


@dataclasses.dataclass
class RayExecutor:
    """Compute cells on Ray actors; the driver writes each returned cell.

    ``address``: an existing cluster (``ray start --head`` prints it; ``auto`` finds the local
    one); None starts a local Ray instance for this run unless ``ray.init`` was already called.
    ``workers``: actors (default: one per GPU of the cluster on CUDA, one per CPU otherwise).
    ``cells_per_task``: cells per call (default: the run's pack size, so a call is one packed
    batch of cells; fewer spread a small grid over more workers; a death loses one call's).
    ``max_worker_deaths``: deaths tolerated (each one's cells go to a fresh actor) before the
    run stops dispatching, keeps what finished, and says to rerun.
    """

    address: str | None = None
    workers: int | None = None
    num_gpus: float | None = None
    cells_per_task: int | None = None
    max_worker_deaths: int = 2
    worker_class: type = SweepWorker
    init_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers {self.workers}: give at least 1")
        if self.cells_per_task is not None and self.cells_per_task < 1:
            raise ConfigError(f"cells_per_task={self.cells_per_task}: give at least 1")

    def run(self, ctx, cells: list[Cell], out: Path, progress: bool = True) -> int:
        ray = import_ray()
        started = not ray.is_initialized()
        if started:
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         **self.init_kwargs)
            except ConnectionError as err:
                raise ConfigError(f"--address {self.address}: no Ray cluster there ({err}); "
                                  "start one with `ray start --head`") from None
        try:
            return self._run(ray, ctx, cells, Path(out), progress)
        finally:
            if started:
                ray.shutdown()

    def _run(self, ray, ctx, cells: list[Cell], out: Path, progress: bool) -> int:
        from evals.io import progress as progress_bar
        from evals.rundir import RunDir
        from harness.sideeffects import load_reference_text

        cfg, run = ctx.cfg, RunDir(out)
        gpus = self.num_gpus if self.num_gpus is not None else (
            1.0 if ctx.model.device.type == "cuda" else 0.0)
        resources = ray.cluster_resources()
        if gpus and resources.get("GPU", 0) < gpus:
            raise ConfigError(f"the Ray cluster has {resources.get('GPU', 0):g} GPU(s); the "
                              "model is on CUDA, so each worker needs one (add GPU nodes or set "
                              "[model] device = \"cpu\")")
        n_workers = self.workers or max(1, int(resources.get("GPU", 0) // gpus if gpus
                                               else resources.get("CPU", 1)))
        pack = ctx.pack
        per_task = self.cells_per_task or ctx.pack_size()
        groups = deque(cells[i:i + per_task] for i in range(0, len(cells), per_task))
        n_workers = min(n_workers, len(groups))
        directions = {p.name: p.read_bytes() for p in sorted((out / "directions").glob("*"))
                      if p.is_file()} if (out / "directions").is_dir() else {}
        ref_texts = load_reference_text(cfg.metrics.reference_text) \
            if cfg.metrics.side_effects else None
        shared = ray.put(WorkerPayload(cfg, ctx.tqa, directions, ref_texts,
                                       ctx.model.fingerprint(), ctx.code, str(out), pack))
        actor_cls = ray.remote(num_gpus=gpus, num_cpus=1, max_restarts=0)(self.worker_class)

        def spawn():
            return _Spawned(actor_cls, shared)

        pending: dict[Any, tuple[Any, list[Cell]]] = {}
        deaths, lost, computed, last_error = 0, [], 0, ""

        def submit(actor) -> bool:
            while groups:
                done = run.finished_cells()
                group = [c for c in groups.popleft() if c.cell_id not in done]
                if group:
                    pending[actor.handle.run.remote(group)] = (actor, group)
                    return True
            return False

        bar = progress_bar(total=len(cells), desc="sweep cells (ray)", unit="cell",
                           disable=not progress)
        try:
            for _ in range(n_workers):
                actor = spawn()
                if not submit(actor):
                    actor.close(ray)
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                actor, group = pending.pop(ready[0])
                try:
                    results = ray.get(ready[0])
                except ray.exceptions.RayActorError as err:
                    deaths += 1
                    last_error = str(err).strip().splitlines()[-1][:200] if str(err) else ""
                    if deaths <= self.max_worker_deaths:
                        groups.appendleft(group)
                        fresh = spawn()
                        if not submit(fresh):
                            fresh.close(ray)
                    else:
                        lost += group
                    continue
                except ray.exceptions.RayTaskError as err:  # a cell failed: fail as locally
                    cause = getattr(err, "cause", None)
                    raise (cause if isinstance(cause, InputError) else err) from None
                for cell_id, rows, desc in results:
                    if cell_id not in run.finished_cells():
                        run.write_cell(cell_id, rows, desc)
                        computed += 1
                    bar.update(1)
                if deaths > self.max_worker_deaths or not submit(actor):
                    actor.close(ray)
        finally:
            bar.close()
            for actor, _ in pending.values():
                ray.kill(actor.handle)
        lost += [c for g in groups for c in g]
        missing = [c.cell_id for c in lost if c.cell_id not in run.finished_cells()]
        if missing:
            raise WorkersDied(f"{len(missing)} cell(s) not computed: {deaths} Ray worker(s) died "
                              f"(last: {last_error or 'no message'}); {computed} finished cell(s) "
                              "are saved: rerun the same command to compute the rest")
        return computed


class WorkersDied(RuntimeError):
    """More Ray workers died than the executor tolerates; finished cells are saved."""


class _Spawned:
    def __init__(self, actor_cls, shared):
        self.handle = actor_cls.remote(shared)  # a top-level ObjectRef arrives as its value

    def close(self, ray) -> None:
        try:
            ray.get(self.handle.close.remote())
        except Exception:  # noqa: BLE001 - a dead worker has nothing left to clean
            pass
        ray.kill(self.handle)


def make_executor(name: str, address: str | None = None, workers: int | None = None):
    """The executor ``truthsteer sweep --executor NAME`` asks for."""
    if name not in EXECUTORS:
        raise ConfigError(f"--executor {name!r} is unknown (choose {', '.join(EXECUTORS)})")
    if name == "local":
        if address or workers:
            raise ConfigError("--address and --workers go with --executor ray")
        return LocalExecutor()
    import_ray()
    return RayExecutor(address=address, workers=workers)
