"""Where tasks render: local worker processes, a Ray cluster, or running ComfyUI servers.

A task is ``{"id", "prompt", "output", "expected"}``: an API workflow whose Save Video writes
``output`` (a segment or a whole file). Every executor has the same contract: ``run(tasks,
on_done)`` renders each task, re-runs a task whose worker/server died or failed on another
worker (at most two attempts, then the job fails with the task's error), and calls
``on_done(task, seconds)`` as each one completes (the caller validates and records it).
"""
from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from pathlib import Path

MAX_ATTEMPTS = 2


class TaskFailed(Exception):
    """A task failed on every attempt; the job stops with its error."""


def render_task(task: dict, dirs: dict | None = None) -> float:
    """Render one task in this process (what every worker runs). Returns seconds.
    ``dirs``: host folders (models_dir, temp_dir) as the driver has them."""
    from .. import host
    from . import runner
    from .cli import node_mappings

    host.set_dirs(**(dirs or {}))
    hook = os.environ.get("REMASTER_TEST_KILL_ONCE")  # tests: die mid-task once, like a lost machine
    if hook and task["id"] == hook.split(":")[0]:
        marker = Path(hook.split(":", 1)[1])
        if not marker.exists():
            marker.write_text("killed")
            host.add_progress_listener(lambda info: os._exit(9) if info.get("done") else None)
    t0 = time.perf_counter()
    Path(task["output"]).unlink(missing_ok=True)
    runner.run(task["prompt"], node_mappings())
    return time.perf_counter() - t0


class _Tracker:
    """Attempts per task; raises when one fails twice."""

    def __init__(self, tasks):
        self.todo = list(tasks)
        self.attempts = {t["id"]: 0 for t in tasks}

    def failed(self, task, error: str) -> None:
        self.attempts[task["id"]] += 1
        if self.attempts[task["id"]] >= MAX_ATTEMPTS:
            raise TaskFailed(f"{task['id']} failed {MAX_ATTEMPTS} times; last error: {error}")
        self.todo.append(task)


# ---------------------------------------------------------------------------------------- in-process
class InProcessExecutor:
    """One worker: this process (no start-up cost; a crash here is resumed by re-running)."""

    def __init__(self, dirs: dict | None = None) -> None:
        self.dirs = dirs

    def run(self, tasks: list, on_done) -> None:
        track = _Tracker(tasks)
        while track.todo:
            task = track.todo.pop(0)
            try:
                secs = render_task(task, self.dirs)
                on_done(task, secs)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                track.failed(task, f"{exc.__class__.__name__}: {exc}".replace("\n", " "))


# ------------------------------------------------------------------------------------------- local
def _worker_main(conn, dirs):
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    while True:
        task = conn.recv()
        if task is None:
            return
        try:
            conn.send(("ok", render_task(task, dirs)))
        except BaseException as exc:  # reported to the driver, which retries elsewhere
            conn.send(("error", f"{exc.__class__.__name__}: {exc}".replace("\n", " ")[:2000]))


class LocalExecutor:
    """N worker processes (spawned once, each imports the nodes once). A worker that dies is
    replaced and its task re-queued."""

    def __init__(self, workers: int, dirs: dict | None = None) -> None:
        self.n = max(1, int(workers))
        self.dirs = dirs

    def _spawn(self, ctx):
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_worker_main, args=(child, self.dirs), daemon=True)
        p.start()
        child.close()
        return {"proc": p, "conn": parent, "task": None, "t0": 0.0}

    def run(self, tasks: list, on_done) -> None:
        import multiprocessing as mp
        from multiprocessing.connection import wait

        ctx = mp.get_context("spawn")
        track = _Tracker(tasks)
        workers = [self._spawn(ctx) for _ in range(min(self.n, len(tasks)) or 1)]
        try:
            while track.todo or any(w["task"] for w in workers):
                for w in workers:
                    if w["task"] is None and track.todo:
                        w["task"], w["t0"] = track.todo.pop(0), time.perf_counter()
                        w["conn"].send(w["task"])
                busy = [w for w in workers if w["task"]]
                ready = wait([w["conn"] for w in busy] + [w["proc"].sentinel for w in busy])
                for w in list(busy):
                    if w["conn"] in ready and w["conn"].poll():
                        try:
                            status, value = w["conn"].recv()
                        except EOFError:
                            status, value = "died", None
                    elif w["proc"].sentinel in ready or not w["proc"].is_alive():
                        status, value = "died", None
                    else:
                        continue
                    task, w["task"] = w["task"], None
                    if status == "ok":
                        try:
                            on_done(task, value)
                            continue
                        except (ValueError, OSError) as exc:  # the output failed its check
                            status, value = "error", f"{exc.__class__.__name__}: {exc}"
                    if status == "died":
                        value = f"worker process {w['proc'].pid} died (exit code {w['proc'].exitcode})"
                        w["conn"].close()
                        workers[workers.index(w)] = self._spawn(ctx)
                    track.failed(task, value)
        finally:
            for w in workers:
                try:
                    w["conn"].send(None)
                except (OSError, BrokenPipeError):
                    pass
            for w in workers:
                w["proc"].join(timeout=5)
                if w["proc"].is_alive():
                    w["proc"].kill()


# --------------------------------------------------------------------------------------------- ray
class RayExecutor:
    """Tasks on a Ray cluster (``ray.init(address)``); inputs and outputs by path (shared storage).
    Each task asks for one CPU, or one GPU where the cluster has GPUs."""

    def __init__(self, address: str, dirs: dict | None = None) -> None:
        self.address = address
        self.dirs = dirs

    def run(self, tasks: list, on_done) -> None:
        try:
            import ray
        except ImportError:
            from .cli import UsageError

            raise UsageError("--ray needs the ray package: pip install 'ray[default]'") from None
        if not ray.is_initialized():
            ray.init(address=None if self.address in ("local", "") else self.address,
                     runtime_env={"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}}, log_to_driver=False)
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        root = str(Path(__file__).resolve().parents[2])

        @ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)
        def remote_render(task, dirs, env):
            import sys

            os.environ.update(env)
            if root not in sys.path:
                sys.path.insert(0, root)
            from remaster.headless.executors import render_task as rt

            return rt(task, dirs)

        env = {k: v for k, v in os.environ.items() if k.startswith("REMASTER_")}
        track = _Tracker(tasks)
        running = {}
        while track.todo or running:
            while track.todo:
                t = track.todo.pop(0)
                running[remote_render.remote(t, self.dirs, env)] = t
            done, _ = ray.wait(list(running), num_returns=1)
            ref = done[0]
            task = running.pop(ref)
            try:
                on_done(task, ray.get(ref))
            except TaskFailed:
                raise
            except Exception as exc:  # RayTaskError, WorkerCrashedError, NodeDiedError
                track.failed(task, f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")


# ----------------------------------------------------------------------------------------- servers
class ServerExecutor:
    """Tasks on running ComfyUI servers: each submitted as an API workflow, followed over the
    websocket, its file fetched through ``/view``. A server that fails a task gets no more of
    them; the task runs on another server."""

    def __init__(self, servers: list[str]) -> None:
        self.servers = [s.rstrip("/") for s in servers]

    def run(self, tasks: list, on_done) -> None:
        from .client import submit_prompt, fetch_view

        track = _Tracker(tasks)
        results: queue.Queue = queue.Queue()
        free = list(self.servers)
        dead: set = set()
        busy = 0

        def work(server, task):
            t0 = time.perf_counter()
            try:
                files = submit_prompt(task["prompt"], server, 24 * 3600, quiet=True)
                fetch_view(server, files[0], task["output"])
                results.put((server, task, "ok", time.perf_counter() - t0))
            except BaseException as exc:
                results.put((server, task, "error", f"{server}: {exc.__class__.__name__}: {exc}"))

        while track.todo or busy:
            while track.todo and free:
                server = free.pop(0)
                threading.Thread(target=work, args=(server, track.todo.pop(0)), daemon=True).start()
                busy += 1
            if not busy:
                raise TaskFailed("no ComfyUI server is left that did not fail: " + ", ".join(sorted(dead)))
            server, task, status, value = results.get()
            busy -= 1
            if status == "ok":
                free.append(server)
                try:
                    on_done(task, value)
                except (ValueError, OSError) as exc:
                    track.failed(task, f"{exc.__class__.__name__}: {exc}")
            else:
                dead.add(server)
                track.failed(task, value)


def make(args, dirs: dict | None = None):
    if getattr(args, "ray", None):
        return RayExecutor(args.ray, dirs)
    if getattr(args, "servers", None):
        return ServerExecutor([s for s in args.servers.split(",") if s.strip()])
    if (args.workers or 1) == 1:
        return InProcessExecutor(dirs)
    return LocalExecutor(args.workers, dirs)


def format_exc() -> str:
    return traceback.format_exc()
