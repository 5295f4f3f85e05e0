"""Benchmark the whole `trials demo` run: cold and warm wall time, peak memory.

Run it with the project's virtual environment (``make bench`` does this)::

    .venv/bin/python benchmarks/bench_demo.py [--repeat N] [--json PATH]

What happens, in order, all in subprocesses on this machine:

1. BASELINE: a fixed reference workload (import numpy, pandas, statsmodels.api and pymc, then a
   numpy OLS on a 400x10 matrix repeated 2,000 times). One untimed warm-up, then timed runs; the
   fastest timed run is the baseline. Demo times are also given as ratios to it, which makes
   results comparable across machines.
2. COLD: one demo run with a fresh, empty PyTensor compile cache (PYTENSOR_FLAGS=compiledir=...).
3. WARM: N demo runs (default 2) reusing that same compile cache.

Every run writes into a fresh temporary output folder and is measured by its own small wrapper
process (so measurements do not accumulate), which reports:

* wall time of the child command;
* peak resident memory of the child process tree: the larger of the sampled sum of RSS over the
  whole tree (psutil, if installed) and ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` (the largest
  single process).

The script exits 0 whether or not the goals are met (benchmarks report, they do not fail CI) and
non-zero only when a measured command itself fails, printing the tail of its stderr.

Standard library only (+ psutil when available).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# Goals from the issue (stated for a 2-core machine).
GOAL_COLD_S = 60.0
GOAL_WARM_S = 20.0
GOAL_PEAK_MB = 2048.0
GOAL_CORES = 2

BASELINE_CODE = """\
import numpy, pandas, statsmodels.api, pymc
import numpy as np
rng = np.random.default_rng(20240101)
X = rng.standard_normal((400, 10))
y = X @ np.arange(1.0, 11.0) + rng.standard_normal(400)
for _ in range(2000):
    beta = np.linalg.lstsq(X, y, rcond=None)[0]
assert beta.shape == (10,)
"""

# The measuring wrapper: runs in its own interpreter so that RUSAGE_CHILDREN only covers the one
# command it spawns. argv: result_json_path, sample_interval_s, timeout_s, cpus ("" = no pinning),
# then the command. The command inherits the wrapper's stdin/stdout/stderr and environment.
WRAPPER_CODE = r"""
import json, os, resource, signal, subprocess, sys, threading, time
result_path, interval, timeout, cpus, *cmd = sys.argv[1:]
interval, timeout = float(interval), float(timeout)
try:
    import psutil
except ImportError:
    psutil = None
if cpus:
    os.sched_setaffinity(0, [int(c) for c in cpus.split(",")])

tree_peak = [0]
samples = [0]
stop = threading.Event()

def tree_rss(root):
    procs = [root]
    try:
        procs += root.children(recursive=True)
    except psutil.Error:
        pass
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total

def sampler(pid):
    try:
        root = psutil.Process(pid)
    except psutil.Error:
        return
    while not stop.is_set():
        rss = tree_rss(root)
        samples[0] += 1
        if rss > tree_peak[0]:
            tree_peak[0] = rss
        stop.wait(interval)

def kill_tree(proc):
    victims = []
    if psutil is not None:
        try:
            victims = psutil.Process(proc.pid).children(recursive=True)
        except psutil.Error:
            victims = []
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    for v in victims:
        try:
            v.kill()
        except psutil.Error:
            pass
    proc.wait()

def interrupted(signum, frame):
    raise KeyboardInterrupt

signal.signal(signal.SIGTERM, interrupted)
start = time.perf_counter()
try:
    proc = subprocess.Popen(cmd, process_group=0)
except OSError as exc:
    print(f"cannot start {cmd[0]!r}: {exc}", file=sys.stderr)
    with open(result_path, "w") as fh:
        json.dump({"returncode": 127, "wall_s": 0.0, "timed_out": False,
                   "maxrss_bytes": 0, "tree_peak_bytes": None, "samples": 0}, fh)
    sys.exit(0)
thread = None
if psutil is not None:
    thread = threading.Thread(target=sampler, args=(proc.pid,), daemon=True)
    thread.start()
timed_out = False
try:
    proc.wait(timeout=timeout if timeout > 0 else None)
except subprocess.TimeoutExpired:
    timed_out = True
    kill_tree(proc)
except BaseException:  # Ctrl-C or SIGTERM: leave nothing running behind
    kill_tree(proc)
    raise
wall = time.perf_counter() - start
stop.set()
if thread is not None:
    thread.join()
maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
maxrss_bytes = maxrss if sys.platform == "darwin" else maxrss * 1024
with open(result_path, "w") as fh:
    json.dump({"returncode": proc.returncode, "wall_s": wall, "timed_out": timed_out,
               "maxrss_bytes": maxrss_bytes,
               "tree_peak_bytes": tree_peak[0] if psutil is not None else None,
               "samples": samples[0]}, fh)
"""

MB = 1024.0 * 1024.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def have_psutil() -> bool:
    try:
        import psutil  # noqa: F401
    except ImportError:
        return False
    return True


def pytensor_env(compiledir: Path) -> dict[str, str]:
    """The current environment with PyTensor's compiledir pointed at `compiledir`."""
    env = dict(os.environ)
    flags = [
        f
        for f in env.get("PYTENSOR_FLAGS", "").split(",")
        if f.strip() and not f.strip().startswith(("compiledir=", "base_compiledir="))
    ]
    flags.append(f"compiledir={compiledir}")
    env["PYTENSOR_FLAGS"] = ",".join(flags)
    return env


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


class CommandFailed(Exception):
    def __init__(self, label: str, result: dict, stderr_tail: str) -> None:
        super().__init__(label)
        self.label = label
        self.result = result
        self.stderr_tail = stderr_tail


def measure(
    label: str,
    cmd: list[str],
    *,
    env: dict[str, str],
    cwd: Path,
    logs: Path,
    interval: float,
    timeout: float,
    cpus: str,
) -> dict:
    """Run `cmd` under a fresh measuring wrapper; return its measurements."""
    slug = label.replace(" ", "-")
    result_path = logs / f"{slug}.result.json"
    out_path = logs / f"{slug}.stdout.txt"
    err_path = logs / f"{slug}.stderr.txt"
    wrapper = [
        sys.executable,
        "-c",
        WRAPPER_CODE,
        str(result_path),
        str(interval),
        str(timeout),
        cpus,
        *cmd,
    ]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        wrapper_proc = subprocess.Popen(
            wrapper, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        try:
            wrapper_rc = wrapper_proc.wait()
        except BaseException:
            # Ctrl-C reaches the wrapper too, and it then kills the command's tree; otherwise
            # (e.g. we got SIGTERM) ask it to with SIGTERM, and kill it as a last resort.
            for action, grace in (
                (None, 2),
                (wrapper_proc.terminate, 15),
                (wrapper_proc.kill, None),
            ):
                if action is not None:
                    action()
                try:
                    wrapper_proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            raise
    if wrapper_rc != 0 or not result_path.exists():
        raise CommandFailed(
            label, {"returncode": wrapper_rc, "wrapper_failed": True}, tail(err_path)
        )
    raw = json.loads(result_path.read_text())
    tree_peak = raw["tree_peak_bytes"]
    peak_bytes = max(raw["maxrss_bytes"], tree_peak or 0)
    result = {
        "run": label,
        "returncode": raw["returncode"],
        "timed_out": raw["timed_out"],
        "wall_s": round(raw["wall_s"], 3),
        "peak_mb": round(peak_bytes / MB, 1),
        "tree_peak_rss_mb": None if tree_peak is None else round(tree_peak / MB, 1),
        "max_single_process_mb": round(raw["maxrss_bytes"] / MB, 1),
        "memory_samples": raw["samples"],
    }
    if raw["returncode"] != 0:
        err_tail = tail(err_path) or tail(out_path)
        if raw["timed_out"]:
            err_tail = f"(killed after the {timeout:g} s timeout)\n" + err_tail
        raise CommandFailed(label, result, err_tail)
    return result


def write_json_atomic(path: Path, data: dict) -> None:
    path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp creates 0600; use the usual permissions
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 0


def machine_info(cpus: str) -> dict:
    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "cpu_count": os.cpu_count(),
        "usable_cores": len(cpus.split(",")) if cpus else usable_cores(),
        "pinned_cpus": cpus or None,
        "psutil": have_psutil(),
        "total_memory_mb": None,
    }
    if info["psutil"]:
        import psutil

        info["total_memory_mb"] = round(psutil.virtual_memory().total / MB)
    return info


def parse_cpus(value: str) -> str:
    """'2' -> the first 2 usable CPUs; '0,3' -> exactly those. Returns a comma list."""
    if not hasattr(os, "sched_setaffinity"):
        raise argparse.ArgumentTypeError("--cpus needs os.sched_setaffinity (Linux)")
    available = sorted(os.sched_getaffinity(0))
    if "," in value:
        chosen = [int(c) for c in value.split(",")]
        if not set(chosen) <= set(available):
            raise argparse.ArgumentTypeError(f"CPUs {chosen} not all in {available}")
    else:
        n = int(value)
        if not 1 <= n <= len(available):
            raise argparse.ArgumentTypeError(f"--cpus must be 1..{len(available)}")
        chosen = available[:n]
    return ",".join(str(c) for c in chosen)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Time the whole `trials demo` (cold and warm) and its peak memory, "
        "relative to a fixed baseline workload measured on the same machine."
    )
    p.add_argument("--repeat", type=int, default=2, help="number of WARM runs (default 2)")
    p.add_argument("--json", type=Path, metavar="PATH", help="write measurements to PATH")
    p.add_argument(
        "--baseline-repeat",
        type=int,
        default=2,
        help="timed baseline runs after one warm-up; the fastest is used (default 2)",
    )
    p.add_argument(
        "--cpus",
        type=parse_cpus,
        default=None,
        metavar="N|LIST",
        help="pin every measured run to N CPUs (or a comma list of CPU ids), e.g. --cpus 2 to "
        "emulate the 2-core target on a bigger machine (Linux only)",
    )
    p.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds per run before it is killed"
    )
    p.add_argument(
        "--sample-interval",
        type=float,
        default=0.1,
        help="seconds between memory samples of the process tree (default 0.1)",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary folders and logs")
    # Testing only: replace the demo command (shell-style string, run in a fresh temporary
    # folder; {out} = output folder, {python} = this interpreter).
    p.add_argument("--command", default=None, help=argparse.SUPPRESS)
    return p


def demo_command(override: str | None, outdir: Path) -> list[str]:
    if override is None:
        return [sys.executable, "-m", "trials.cli", "demo", "--out", str(outdir)]
    return [
        tok.replace("{out}", str(outdir)).replace("{python}", sys.executable)
        for tok in shlex.split(override)
    ]


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def print_report(data: dict) -> None:
    runs = [data["baseline"]] + data["runs"]
    print()
    print(f"{'run':<10} {'wall s':>8} {'peak MB':>9} {'ratio':>8}")
    print(f"{'-' * 10} {'-' * 8} {'-' * 9} {'-' * 8}")
    for r in runs:
        print(
            f"{r['run']:<10} {r['wall_s']:>8.2f} {r['peak_mb']:>9.0f} "
            f"{fmt_ratio(r.get('ratio_to_baseline')):>8}"
        )
    m = data["machine"]
    print()
    print(
        f"baseline = fixed reference workload ({data['baseline']['wall_s']:.2f} s); "
        f"ratio = wall / baseline"
    )
    print(
        f"machine: {m['usable_cores']} usable cores"
        + (f" (pinned to CPUs {m['pinned_cpus']})" if m["pinned_cpus"] else "")
        + (f", {m['total_memory_mb']} MB RAM" if m["total_memory_mb"] else "")
        + f", Python {m['python']}, {m['platform']}"
    )
    if not m["psutil"]:
        print("note: psutil not available; peak MB is the largest single process only")
    print()
    print(f"Goals (from the issue, on {GOAL_CORES} cores):")
    for g in data["goals"]:
        status = "met" if g["met"] else "NOT MET"
        print(f"  {g['name']:<32} {g['measured']:>10}   {status}")
    if m["usable_cores"] != GOAL_CORES:
        print(
            f"note: this machine has {m['usable_cores']} usable cores, not {GOAL_CORES}; "
            f"compare ratios, or rerun with --cpus {GOAL_CORES}"
        )
    if data.get("command_override"):
        print(f"note: demo command overridden for testing: {data['command_override']}")


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _terminated)  # clean up (children, temp files) as on Ctrl-C
    args = build_parser().parse_args(argv)
    args.cpus = args.cpus or ""
    if args.repeat < 1:
        build_parser().error("--repeat must be >= 1")
    if args.baseline_repeat < 1:
        build_parser().error("--baseline-repeat must be >= 1")

    work = Path(tempfile.mkdtemp(prefix="trials-bench-"))
    logs = work / "logs"
    logs.mkdir()
    common = dict(logs=logs, interval=args.sample_interval, timeout=args.timeout, cpus=args.cpus)
    started = _dt.datetime.now(_dt.UTC)
    failed: CommandFailed | None = None
    data: dict = {}
    try:
        # 1. Baseline: own compiledir, one untimed warm-up (fills it), then timed runs.
        base_env = pytensor_env(work / "compiledir-baseline")
        base_cmd = [sys.executable, "-c", BASELINE_CODE]
        log("baseline: warm-up ...")
        measure("baseline-warmup", base_cmd, env=base_env, cwd=work, **common)
        base_runs = []
        for i in range(1, args.baseline_repeat + 1):
            log(f"baseline: run {i}/{args.baseline_repeat} ...")
            base_runs.append(measure(f"baseline-{i}", base_cmd, env=base_env, cwd=work, **common))
        best = min(base_runs, key=lambda r: r["wall_s"])
        baseline = dict(best, run="baseline", ratio_to_baseline=1.0)
        baseline_s = baseline["wall_s"]

        # 2-3. Demo: one cold run (fresh, empty compiledir) then warm runs reusing it.
        demo_compiledir = work / "compiledir-demo"
        demo_compiledir.mkdir()
        demo_env = pytensor_env(demo_compiledir)
        labels = ["cold"] + [f"warm {i}" for i in range(1, args.repeat + 1)]
        runs = []
        for label in labels:
            run_dir = work / label.replace(" ", "-")
            run_dir.mkdir()
            outdir = run_dir / "out"  # fresh; the demo creates it
            cmd = demo_command(args.command, outdir)
            log(f"demo: {label} run ...")
            r = measure(label, cmd, env=demo_env, cwd=run_dir, **common)
            r["kind"] = "cold" if label == "cold" else "warm"
            r["ratio_to_baseline"] = round(r["wall_s"] / baseline_s, 3) if baseline_s else None
            if args.command is None:
                r["bundle_found"] = any(outdir.rglob("bundle.zip"))
                if not r["bundle_found"]:
                    log(f"warning: {label} run exited 0 but wrote no bundle.zip under {outdir}")
            runs.append(r)

        cold = runs[0]
        warm = [r for r in runs if r["kind"] == "warm"]
        warm_median = statistics.median(r["wall_s"] for r in warm)
        peak = max(r["peak_mb"] for r in runs)
        warm_desc = f"median of {len(warm)}" if len(warm) > 1 else "1 run"
        goals = [
            {
                "name": f"cold run <= {GOAL_COLD_S:g} s",
                "goal": GOAL_COLD_S,
                "value": cold["wall_s"],
                "measured": f"{cold['wall_s']:.1f} s",
                "met": cold["wall_s"] <= GOAL_COLD_S,
            },
            {
                "name": f"warm run <= {GOAL_WARM_S:g} s ({warm_desc})",
                "goal": GOAL_WARM_S,
                "value": round(warm_median, 3),
                "measured": f"{warm_median:.1f} s",
                "met": warm_median <= GOAL_WARM_S,
            },
            {
                "name": f"peak memory < {GOAL_PEAK_MB:g} MB",
                "goal": GOAL_PEAK_MB,
                "value": peak,
                "measured": f"{peak:.0f} MB",
                "met": peak < GOAL_PEAK_MB,
            },
        ]
        data = {
            "benchmark": "trials demo",
            "started_utc": started.isoformat(timespec="seconds"),
            "finished_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "machine": machine_info(args.cpus),
            "demo_command": demo_command(args.command, Path("<out>")),
            "command_override": args.command,
            "baseline_workload": {
                "code": BASELINE_CODE,
                "warmup_runs": 1,
                "timed_runs": base_runs,
                "statistic": "min wall_s of timed runs",
            },
            "baseline": baseline,
            "runs": runs,
            "goals": goals,
            "all_goals_met": all(g["met"] for g in goals),
            "memory_method": "max(sampled sum of RSS over the process tree [psutil], "
            "getrusage(RUSAGE_CHILDREN).ru_maxrss)",
        }
    except CommandFailed as exc:
        failed = exc
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if args.keep:
            log(f"kept temporary files in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    if failed is not None:
        rc = failed.result.get("returncode")
        log(f"\nFAILED: {failed.label} run exited with status {rc}.")
        if failed.stderr_tail:
            log("--- stderr (tail) ---")
            log(failed.stderr_tail)
            log("---------------------")
        return 1

    print_report(data)
    if args.json is not None:
        write_json_atomic(args.json, data)
        log(f"\nwrote {args.json}")
    return 0  # goals are reported, never enforced


if __name__ == "__main__":
    sys.exit(main())
