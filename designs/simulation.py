"""Operating characteristics of a two-arm group-sequential trial by simulation, on Dask.

The pieces:

* :class:`Scenario` and :class:`SimulationSpec` (with :class:`HarmEventRule`):
  :mod:`designs.simulation_spec`;
* the protocol's criteria and decision rule (:class:`DecisionRules`, :class:`CriterionRule`,
  :class:`AnalysisRule`): :mod:`designs.simulation_criteria`;
* the summary-statistic and patient-level engines: :mod:`designs.simulation_engines`;
* :class:`SimulationResults` and :class:`ScenarioResult`: :mod:`designs.simulation_results`;
* :func:`plot_operating_characteristics`: :mod:`designs.simulation_plot`;
* :func:`run_simulation` (here): splits the trials into seeded chunks and runs them
  synchronously, on a local Dask cluster it starts, or on an existing one.

Example
-------
>>> from designs.boundaries import GroupSequentialDesign
>>> spec = SimulationSpec(GroupSequentialDesign((1/3, 2/3, 1)), direction="lower")
>>> null = Scenario("null", effect=0.0, sd=5.0, n_max=66)
>>> benefit = Scenario("benefit", effect=-2.5, sd=5.0, n_max=66)
>>> results = run_simulation(spec, [null, benefit], n_trials=10_000, seed=1,
...                          scheduler="synchronous", progress=False)
>>> results["null"].success  # type-I error  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from designs.simulation_criteria import (
    DECISIONS,
    AnalysisRule,
    CriterionRule,
    DecisionRules,
)
from designs.simulation_engines import REASONS, Tally, simulate_chunk
from designs.simulation_plot import plot_operating_characteristics
from designs.simulation_results import ScenarioResult, SimulationResults
from designs.simulation_spec import (
    HarmEventRule,
    LookPlan,
    Scenario,
    SimulationError,
    SimulationSpec,
)

__all__ = [
    "DECISIONS",
    "REASONS",
    "AnalysisRule",
    "CriterionRule",
    "DecisionRules",
    "HarmEventRule",
    "LookPlan",
    "Scenario",
    "ScenarioResult",
    "SimulationError",
    "SimulationResults",
    "SimulationSpec",
    "chunk_seeds",
    "plot_operating_characteristics",
    "run_simulation",
]

ENGINES = ("summary", "patient")
FITTERS = ("closed_form", "statsmodels")
#: Default trials per chunk (per Dask task). Results depend on it (it fixes the random streams),
#: never on the number of workers.
DEFAULT_CHUNK = {"summary": 100_000, "patient": 2_000}


def chunk_seeds(seed: int, n_scenarios: int, n_chunks: Sequence[int]
                ) -> list[list[np.random.SeedSequence]]:
    """The seed of chunk j of scenario i: ``SeedSequence(seed).spawn(S)[i].spawn(C_i)[j]``.

    Keyed by (scenario index, chunk index) alone, so a chunk draws the same numbers whichever
    worker runs it and in whatever order; its ``spawn_key`` is ``(i, j)``.
    """
    children = np.random.SeedSequence(seed).spawn(n_scenarios)
    return [child.spawn(c) for child, c in zip(children, n_chunks, strict=True)]


def run_simulation(
    spec: SimulationSpec,
    scenarios: Scenario | Sequence[Scenario],
    n_trials: int,
    seed: int,
    *,
    engine: str = "summary",
    scheduler: Any = None,
    chunk_size: int | None = None,
    n_workers: int | None = None,
    processes: bool | None = None,
    progress: bool = True,
    fitter: str = "closed_form",
) -> SimulationResults:
    """Simulate ``n_trials`` trials per scenario and summarise their operating characteristics.

    Parameters
    ----------
    spec
        The design and its stopping rules.
    scenarios
        One or more :class:`Scenario` with distinct names.
    n_trials
        Trials per scenario.
    seed
        Non-negative integer; the same seed gives the same results whatever runs them.
    engine
        ``"summary"`` (exact per-look increments of the difference in means; fast) or
        ``"patient"`` (participants simulated and the ANCOVA fitted at each look).
    scheduler
        ``None``: start a :class:`distributed.LocalCluster`, use it and shut it down;
        ``"synchronous"``: run every chunk here, without Dask; an address such as
        ``"tcp://127.0.0.1:8786"`` or a :class:`distributed.Client`: use that cluster.
    chunk_size
        Trials per task (default 100,000 for ``"summary"``, 2,000 for ``"patient"``).
    n_workers, processes
        For the cluster started when ``scheduler`` is None: workers (default: the number of
        CPUs, at most the number of chunks), one thread each; worker processes (default only
        for ``"patient"``, whose numpy work holds the GIL in short loops) or threads.
    progress
        Show a progress bar (tqdm, one step per chunk) on standard error.
    fitter
        Patient-level ANCOVA: ``"closed_form"`` (vectorised OLS) or ``"statsmodels"``
        (:func:`analysis.ancova.fit_ancova` at every look; slow, for checking).

    Returns
    -------
    SimulationResults

    Notes
    -----
    Scenario i's trials are cut into chunks of ``chunk_size``; chunk j draws from
    ``numpy.random.default_rng(SeedSequence(seed).spawn(S)[i].spawn(C_i)[j])`` (see
    :func:`chunk_seeds`) and returns a :class:`~designs.simulation_engines.Tally` of integer
    counts and sums. Tallies are merged in chunk order after every chunk has finished, so
    ``to_dict()`` is byte-identical for 1 or many workers, threads or processes, or no Dask at
    all. Changing ``chunk_size`` changes the random streams (as changing the seed would).
    """
    items = [scenarios] if isinstance(scenarios, Scenario) else list(scenarios)
    _check(spec, items, n_trials, seed, engine, fitter)
    size = int(chunk_size or DEFAULT_CHUNK[engine])
    if size < 1:
        raise SimulationError(f"chunk_size: must be a positive integer, got {chunk_size}")
    plans = [spec.plan(s) for s in items]
    counts = [[min(size, n_trials - start) for start in range(0, n_trials, size)]
              for _ in items]
    seeds = chunk_seeds(seed, len(items), [len(c) for c in counts])
    tasks = [(plans[i], items[i], counts[i][j], seeds[i][j], engine, fitter)
             for i in range(len(items)) for j in range(len(counts[i]))]
    if isinstance(scheduler, str) and scheduler == "synchronous":
        tallies = _run_here(tasks, progress)
    else:
        if processes is None:
            processes = engine == "patient"
        tallies = _run_dask(tasks, scheduler, n_workers, processes, progress)
    merged: list[ScenarioResult] = []
    position = 0
    for i, scenario in enumerate(items):
        total = Tally.empty(plans[i].looks)
        for part in tallies[position:position + len(counts[i])]:
            total = total.add(part)
        position += len(counts[i])
        merged.append(ScenarioResult.from_tally(scenario, plans[i], total))
    return SimulationResults(spec=spec, scenarios=tuple(merged), engine=engine,
                             fitter=fitter if engine == "patient" else None,
                             n_trials=int(n_trials), seed=int(seed), chunk_size=size)


def _check(spec: SimulationSpec, items: list[Scenario], n_trials: int, seed: int, engine: str,
           fitter: str) -> None:
    if not isinstance(spec, SimulationSpec):
        raise SimulationError(f"spec: give a SimulationSpec, got {type(spec).__name__}")
    if not items or not all(isinstance(s, Scenario) for s in items):
        raise SimulationError("scenarios: give one or more Scenario objects")
    names = [s.name for s in items]
    if len(set(names)) != len(names):
        raise SimulationError(f"scenarios: names must be distinct, got {names}")
    if isinstance(n_trials, bool) or int(n_trials) != n_trials or n_trials < 1:
        raise SimulationError(f"n_trials: must be a positive integer, got {n_trials}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise SimulationError(f"seed: must be a non-negative integer, got {seed!r}")
    if engine not in ENGINES:
        raise SimulationError(f"engine: use one of {ENGINES}, got {engine!r}")
    if fitter not in FITTERS:
        raise SimulationError(f"fitter: use one of {FITTERS}, got {fitter!r}")


def _bar(total: int, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not progress, desc="simulating", unit="chunk")


def _run_here(tasks: list[tuple[Any, ...]], progress: bool) -> list[Tally]:
    out = []
    with _bar(len(tasks), progress) as bar:
        for task in tasks:
            out.append(simulate_chunk(*task))
            bar.update()
    return out


def _run_dask(tasks: list[tuple[Any, ...]], scheduler: Any, n_workers: int | None,
              processes: bool, progress: bool) -> list[Tally]:
    from distributed import Client, LocalCluster, as_completed

    closers: list[Callable[[], Any]] = []
    try:
        if scheduler is None:
            workers = n_workers or max(1, min(os.cpu_count() or 1, len(tasks)))
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                   processes=processes, dashboard_address=None,
                                   silence_logs=logging.ERROR)
            closers.append(cluster.close)
            client = Client(cluster)
            closers.append(client.close)
        elif isinstance(scheduler, Client):
            client = scheduler
        elif isinstance(scheduler, str):
            client = Client(scheduler)
            closers.append(client.close)
        else:
            raise SimulationError(f"scheduler: give None, 'synchronous', an address or a "
                                  f"distributed.Client, got {scheduler!r}")
        futures = [client.submit(simulate_chunk, *task, pure=False) for task in tasks]
        with _bar(len(futures), progress) as bar:
            for _ in as_completed(futures):
                bar.update()
        return list(client.gather(futures))
    finally:
        for close in reversed(closers):
            close()
