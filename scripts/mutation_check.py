"""Does the test suite notice real bugs? Plant each curated one-line bug in a copy of the repo and run its tests.

Every mutant in :mod:`mutants` names a file, an exact snippet of it, the replacement (a plausible one-line
bug) and the tests that must fail because of it. For each mutant this script copies the checkout's files
(tracked and untracked-but-not-ignored, as they are in the working tree) to a temporary folder once, plants
the bug there, runs the tests with the copy first on ``PYTHONPATH``, and puts the file back.

    python scripts/mutation_check.py              # all mutants (about 20-30 min on 2 cores)
    python scripts/mutation_check.py -k ema best  # the mutants whose name contains "ema" or "best"
    python scripts/mutation_check.py --list
    python scripts/mutation_check.py --no-baseline --cuda-only   # on a GPU machine (scripts/gpu_check.sh)

Exit status 0 only when every mutant was killed: a survivor (its tests still pass), a snippet not found
exactly once (the code moved: update the list), or tests that fail before any bug is planted (the baseline)
all exit 1. Not part of CI (too slow there); run it before calling an issue resolved.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutants import MUTANTS, Mutant  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def checkout_files(repo: Path) -> list[str]:
    """The working tree's files git knows or would add (tracked, plus untracked not ignored)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
                            cwd=repo, check=True, capture_output=True).stdout.decode()
    return [name for name in listed.split("\0") if name and (repo / name).is_file()]


def copy_checkout(repo: Path, target: Path) -> None:
    for name in checkout_files(repo):
        destination = target / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / name, destination)


def test_files(mutants: list[Mutant]) -> list[str]:
    """The test files the mutants' selections name (their ``-k`` filters left out): the baseline's tests."""
    files = set()
    for mutant in mutants:
        args = iter(mutant.tests)
        for arg in args:
            if arg in ("-k", "-m"):
                next(args, None)
            elif not arg.startswith("-"):
                files.add(arg.split("::")[0])
    return sorted(files)


def pytest_command(tests: list[str]) -> list[str]:
    return [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", *tests]


def run_tests(copy: Path, tests: list[str], timeout: float) -> tuple[int | None, str, float]:
    """Exit status of pytest on ``tests`` inside ``copy`` (None on timeout), its last lines, seconds."""
    # the copy first; what PYTHONPATH held stays behind it (on a GPU machine the bundle's packages live there)
    path = os.pathsep.join(filter(None, [str(copy), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "MPLBACKEND": "Agg", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("BENCHKIT_CACHE_DIR", None)
    real_data = REPO.parent / "shared" / "data" / "hair-loss"  # the copy has no ../shared beside it
    if "BENCHKIT_HAIR_LOSS" not in env and real_data.is_dir():
        env["BENCHKIT_HAIR_LOSS"] = str(real_data)
    started = time.perf_counter()
    try:
        done = subprocess.run(pytest_command(tests), cwd=copy, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, "timed out", time.perf_counter() - started
    lines = (done.stdout + done.stderr).strip().splitlines()
    failed = [line for line in lines if line.startswith(("FAILED ", "ERROR "))][:1]
    return done.returncode, "\n".join(lines[-3:] + failed), time.perf_counter() - started


def cuda_available() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
                           capture_output=True, text=True)
    return probe.stdout.strip() == "True"


def plant(copy: Path, mutant: Mutant) -> str | None:
    """Apply ``mutant`` to the copy; returns the original text, or None when the snippet is not there once."""
    path = copy / mutant.file
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    if text.count(mutant.original) != 1:
        return None
    path.write_text(text.replace(mutant.original, mutant.replacement), encoding="utf-8")
    return text


def check(copy: Path, mutant: Mutant, timeout: float) -> tuple[str, str, float]:
    """``(verdict, detail, seconds)``: killed, survived, missing (snippet), error (pytest could not run) or
    skipped (the mutant needs CUDA, which this machine lacks)."""
    original = plant(copy, mutant)
    if original is None:
        return "missing", f"snippet not found exactly once in {mutant.file}", 0.0
    if mutant.needs_cuda and not cuda_available():
        (copy / mutant.file).write_text(original, encoding="utf-8")
        return "skipped", "only tests marked gpu can kill it and CUDA is absent here", 0.0
    try:
        code, tail, seconds = run_tests(copy, mutant.tests, timeout)
        for _ in range(2):  # pytest itself was killed (out of memory, a stray signal): try again
            if code is None or code >= 0:
                break
            code, tail, seconds = run_tests(copy, mutant.tests, timeout)
    finally:
        (copy / mutant.file).write_text(original, encoding="utf-8")
    if code is None:
        return "killed", f"timed out after {timeout:.0f}s", seconds
    if code == 1:
        return "killed", tail.splitlines()[-1][:160] if tail else "", seconds
    if code == 0:
        return "survived", tail.splitlines()[-1] if tail else "", seconds
    return "error", f"pytest exit status {code}: {tail}", seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", nargs="*", default=[], help="only mutants whose name contains one of these")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip running the selected tests once without any bug (faster, less honest)")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant's tests (default 900)")
    parser.add_argument("--cuda-only", action="store_true",
                        help="only the mutants that need CUDA (scripts/gpu_check.sh runs these on the GPU machine)")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if (not args.k or any(k in m.name for k in args.k))
              and (m.needs_cuda or not args.cuda_only)]
    if args.list:
        for m in chosen:
            print(f"{m.name:32s} {m.file}: {m.why}")
        return 0
    if not chosen:
        print("no mutant matches", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="benchkit-mutants-") as tmp:
        copy = Path(tmp) / "repo"
        copy_checkout(REPO, copy)
        if not args.no_baseline:
            tests = test_files(chosen)
            code, tail, seconds = run_tests(copy, tests, args.timeout * 2)
            if code is not None and code < 0:
                code, tail, seconds = run_tests(copy, tests, args.timeout * 2)
            print(f"baseline (no bug planted): {'pass' if code == 0 else 'FAIL'} in {seconds:.0f}s", flush=True)
            if code != 0:
                print(tail)
                return 1
        verdicts = []
        for i, mutant in enumerate(chosen, start=1):
            verdict, detail, seconds = check(copy, mutant, args.timeout)
            verdicts.append((mutant, verdict))
            print(f"[{i:2d}/{len(chosen)}] {verdict.upper():8s} {mutant.name:32s} {seconds:5.0f}s  {detail}",
                  flush=True)
    killed = sum(v == "killed" for _, v in verdicts)
    skipped = sum(v == "skipped" for _, v in verdicts)
    print(f"\n{killed}/{len(verdicts) - skipped} mutants killed" + (f", {skipped} skipped (need CUDA)" if skipped else ""))
    for mutant, verdict in verdicts:
        if verdict not in ("killed", "skipped"):
            print(f"  {verdict}: {mutant.name} ({mutant.file}) -> tests {' '.join(mutant.tests)}")
    return 0 if killed + skipped == len(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
