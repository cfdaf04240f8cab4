"""How long `python -m remaster --help` (and subcommand help) takes: the CLI must not import torch
or the nodes to print help. Usage: python bench/cli.py [repeats]"""
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(args, n):
    runs = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "remaster", *args], cwd=ROOT, check=True, capture_output=True)
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    base = timed_py = statistics.median(
        [(lambda t0: (subprocess.run([sys.executable, "-c", "pass"], check=True), time.perf_counter() - t0)[1])(time.perf_counter())
         for _ in range(n)])
    for args in (["--help"], ["run", "--help"], ["models", "--help"], ["workflows", "--help"]):
        print(f"python -m remaster {' '.join(args):18} {timed(args, n):.2f} s (median of {n}; bare python start {base:.2f} s)")
