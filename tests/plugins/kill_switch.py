"""Kill this process with SIGKILL at a chosen, deterministic moment (for the fault tests).

Does nothing unless ``BENCHKIT_TEST_KILL`` is set when it is imported (as a plugin, or by a test's script):

- ``step:N``: as the N-th optimizer step of the process begins (its N-1 predecessors done);
- ``write:NAME:N``: inside the N-th write of a file whose name contains NAME, by ``torch.save``,
  ``DataFrame.to_csv`` or openpyxl's ``Workbook.save``: the writer writes its output, the file is cut to half
  its size (a write the kill interrupted), then the process dies.
"""
import os
import signal

import pandas as pd
import torch
from openpyxl import Workbook
from torch.optim.optimizer import register_optimizer_step_pre_hook

SPEC = os.environ.get("BENCHKIT_TEST_KILL", "")


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_at_step(n: int) -> None:
    steps = [0]

    def before_step(optimizer, args, kwargs):
        steps[0] += 1
        if steps[0] == n:
            _die()

    register_optimizer_step_pre_hook(before_step)


def _kill_inside_write(name: str, n: int) -> None:
    writes = [0]

    def wrap(write, target_of):
        def writing(*args, **kwargs):
            target = target_of(*args, **kwargs)
            if not isinstance(target, (str, os.PathLike)) or name not in os.fspath(target):
                return write(*args, **kwargs)
            writes[0] += 1
            if writes[0] != n:
                return write(*args, **kwargs)
            write(*args, **kwargs)
            os.truncate(target, os.path.getsize(target) // 2)
            _die()
        return writing

    torch.save = wrap(torch.save, lambda obj, f, *a, **k: getattr(f, "name", f))  # a path or an open file
    pd.DataFrame.to_csv = wrap(pd.DataFrame.to_csv, lambda self, path=None, *a, **k: path)
    Workbook.save = wrap(Workbook.save, lambda self, filename: filename)


if SPEC.startswith("step:"):
    _kill_at_step(int(SPEC.split(":")[1]))
elif SPEC.startswith("write:"):
    _, target_name, count = SPEC.split(":")
    _kill_inside_write(target_name, int(count))
elif SPEC:
    raise ValueError(f"BENCHKIT_TEST_KILL={SPEC!r}: expected step:N or write:NAME:N")
