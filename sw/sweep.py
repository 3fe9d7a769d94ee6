"""Run a design-space sweep on a Dask cluster (``tritile sweep``).

:func:`plan_sweep` turns a :class:`~tritile.sw.sweep_spec.SweepSpec` into the points to
build (config x board x seed); :func:`run_sweep` builds the ones the
:class:`~tritile.sw.sweep_store.ResultStore` has no final record of, one Dask task per
point (:func:`tritile.sw.sweep_point.run_point`), on an embedded ``LocalCluster`` of
process workers or on the cluster whose scheduler address is given.

On the embedded cluster a point whose worker dies is given to a worker once more
(``distributed.scheduler.allowed-failures`` = 1) and then recorded as failed; on an
external cluster its scheduler's own setting decides (Dask's default is 3). Either way
the sweep goes on with the other points.
"""

import contextlib
import dataclasses
import logging
import os
import queue
import time
import uuid

from .sweep_point import EVENT_TOPIC, run_point
from .sweep_spec import SweepError, expand_spec, load_model
from .sweep_store import SweepPoint, tool_versions

__all__ = ["SweepEntry", "plan_sweep", "run_sweep", "default_workers",
           "CONNECT_TIMEOUT", "LOCAL_ALLOWED_FAILURES"]

#: Seconds to wait for an external scheduler to answer.
CONNECT_TIMEOUT = 10
#: Times the embedded cluster gives a point to a new worker after its worker died.
LOCAL_ALLOWED_FAILURES = 1
# Seconds between two progress lines while nothing happens.
_QUIET_PROGRESS = 30


@dataclasses.dataclass(frozen=True)
class SweepEntry:
    """A point of a sweep with what the SPEC says of it.

    Members
    -------
    parameters : dict
        The SPEC's parameter values of the point (the rest is the base config).
    point : SweepPoint
    model_cost : ModelCost or None
        The model's predicted cost on the point's config.
    """

    parameters: dict
    point: SweepPoint
    model_cost: object = None


def default_workers():
    """Return the workers of the embedded cluster: one per core this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def plan_sweep(spec, boards=(), stage="pnr", seeds=1):
    """Return ``(entries, invalid)`` for ``spec`` on ``boards`` (default: the SPEC's).

    ``entries`` lists a :class:`SweepEntry` per valid config, board and placement seed
    (seeds 1 to ``seeds``; one seedless point per config and board for ``synth``);
    ``invalid`` lists ``(parameters, reason)`` for the points that are not built.
    Raises :class:`SweepError` for an unknown board or stage, or no valid point.
    """
    from tritile.hw.bitstream import STAGES, flow_tools
    from tritile.hw.board import get_board

    if stage not in STAGES:
        raise SweepError(f"stage must be one of {', '.join(STAGES)}, not {stage!r}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise SweepError(f"seeds must be a positive integer, not {seeds!r}")
    boards = tuple(boards) or spec.boards
    if not boards:
        raise SweepError(f"no board to sweep on: give boards in {spec.path} or --board")
    try:
        boards = [get_board(name) for name in dict.fromkeys(boards)]
    except ValueError as exc:
        raise SweepError(str(exc)) from None
    model = load_model(spec.model) if spec.model is not None else None
    valid, invalid = expand_spec(spec, model)
    if not valid:
        reasons = "; ".join(f"{params}: {reason}" for params, reason in invalid[:2])
        raise SweepError(f"every point of {spec.path} is invalid ({reasons})")
    tools = {board.family: tool_versions(flow_tools(board.family, stage))
             for board in boards}
    placement = [None] if stage == "synth" else range(1, seeds + 1)
    entries = [SweepEntry(parameters, SweepPoint(config, board.name, stage, seed,
                                                 tools[board.family]), cost)
               for parameters, config, cost in valid for board in boards
               for seed in placement]
    return entries, invalid


@contextlib.contextmanager
def _cluster(scheduler, workers):
    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise SweepError(f"cannot reach the Dask scheduler at {scheduler}: "
                             f"{reason}") from None
        with client:
            yield client
        return
    settings = {"distributed.scheduler.allowed-failures": LOCAL_ALLOWED_FAILURES,
                # A worker holds only the point it builds, so a worker's death costs
                # no other point one of its attempts.
                "distributed.scheduler.worker-saturation": 1.0}
    with dask.config.set(settings):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
    with cluster, Client(cluster) as client:
        client.register_plugin(_ignore_interrupt(), name="tritile-ignore-interrupt")
        yield client


def _ignore_interrupt():
    """Return a worker plugin by which a local worker leaves Ctrl-C to the sweep.

    The terminal sends SIGINT to every process of the sweep's group, the local workers
    too; without this each would print a KeyboardInterrupt traceback as it dies, while
    the sweep stops them itself.
    """
    import signal

    from distributed import WorkerPlugin

    class IgnoreInterrupt(WorkerPlugin):
        idempotent = True

        def setup(self, worker):
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreInterrupt()


class _Progress:
    """Counts of a running sweep, told in one line whenever they change."""

    def __init__(self, total, reused, say):
        self.total, self.reused, self.say = total, reused, say
        self.done = reused
        self.failed = 0
        self.running = set()
        self.started = time.monotonic()
        self.last = None

    def tell(self, news="", force=False):
        elapsed = int(time.monotonic() - self.started)
        line = (f"{self.done}/{self.total} done ({self.reused} reused), "
                f"{len(self.running)} running, {self.failed} failed, "
                f"{elapsed // 60}:{elapsed % 60:02d}")
        state = (self.done, len(self.running), self.failed)
        if force or news or state != self.last:
            self.say(f"{line}{'  ' + news if news else ''}")
            self.last = state


def _describe(record):
    if record["status"] == "ok":
        logic = record["report"].get("resources", {}).get("logic")
        used = f", logic {logic['used']}/{logic['available']}" if logic else ""
        return f"ok{used}, {record['seconds']:.0f} s"
    return f"{record['status']}: {record['reason']}"


def run_sweep(entries, store, *, scheduler=None, workers=None, say=print,
              on_start=None):
    """Build every entry that ``store`` has no final record of; return key -> record.

    Parameters
    ----------
    entries : list of SweepEntry
    store : ResultStore
    scheduler : str, optional
        Address of a Dask scheduler (``tcp://HOST:PORT``); default: an embedded
        ``LocalCluster`` of ``workers`` process workers (default
        :func:`default_workers`).
    say : callable
        Receives the progress lines.
    on_start : callable, optional
        Receives the message of each task start (worker address, worker and build
        process ids, build directory).

    Each record is written to ``store`` as soon as its point finishes. A
    KeyboardInterrupt stops the running builds and is raised again; the records written
    until then stay.
    """
    records = {}
    for entry in entries:
        record = store.finished(entry.point)
        if record is not None:
            records[entry.point.key] = record
    missing = {entry.point.key: entry.point for entry in entries
               if entry.point.key not in records}
    progress = _Progress(len(entries), len(records), say)
    if not missing:
        progress.tell(force=True)
        return records
    workers = workers or default_workers()
    where = scheduler or f"a local cluster of {workers} worker(s)"
    say(f"building {len(missing)} point(s) on {where}")
    news = queue.Queue()
    starts = {}

    run_id = uuid.uuid4().hex[:8]
    stop_name = f"tritile-sweep-stop-{run_id}"

    def started(event):
        # Other sweeps on the same cluster log to the same topic.
        if event[1].get("sweep") == stop_name:
            news.put(("start", event[1]))

    with _cluster(scheduler, workers) as client:
        from distributed import CancelledError, Event, KilledWorker

        stop = Event(stop_name, client=client)
        client.subscribe_topic(EVENT_TOPIC, started)
        futures, handles = {}, []
        for key, point in missing.items():
            future = client.submit(run_point, point.request(store.build_dir(point)),
                                   stop_name, key=f"tritile-sweep-{key}-{run_id}",
                                   pure=False)
            future.add_done_callback(lambda f: news.put(("done", f)))
            futures[future.key] = (key, point)
            handles.append(future)
        progress.tell(force=True)
        try:
            while progress.done < progress.total:
                try:
                    kind, item = news.get(timeout=_QUIET_PROGRESS)
                except queue.Empty:
                    progress.tell(force=True)
                    continue
                if kind == "start":
                    starts[item["key"]] = starts.get(item["key"], 0) + 1
                    if item["key"] not in records:
                        progress.running.add(item["key"])
                    if on_start is not None:
                        on_start(item)
                    progress.tell()
                    continue
                key, point = futures[item.key]
                try:
                    result = item.result()
                except KilledWorker:
                    result = {"status": "failed", "reason": "its worker died while "
                              "building it, on every attempt the scheduler allows"}
                except CancelledError:
                    result = {"status": "failed", "reason": "the cluster cancelled it"}
                except Exception as exc:  # noqa: BLE001 -- any task error fails one point
                    result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
                record = {**point.record("failed"), **result, "starts": starts.get(key, 0)}
                store.put(record)
                records[key] = record
                progress.running.discard(key)
                progress.done += 1
                progress.failed += record["status"] == "failed"
                progress.tell(f"{point.board} {point.config.config_id}: "
                              f"{_describe(record)}")
        except KeyboardInterrupt:
            say("stopping: ending the running builds; finished points are kept")
            stop.set()
            client.cancel(handles)
            raise
        finally:
            client.unsubscribe_topic(EVENT_TOPIC)
    return records
