"""Kill this process with SIGKILL at a chosen, deterministic moment (for the fault tests).

Does nothing unless ``BENCHKIT_TEST_KILL`` is set when it is imported (as a plugin, or by a test's script):

- ``step:N``: as the N-th optimizer step of the process begins (its N-1 predecessors done);
- ``write:NAME:N``: inside the N-th atomic write of a file whose name contains NAME: as the finished temporary
  file is about to replace it (``os.replace``), the temporary file is cut to half its size (a write the kill
  interrupted) and the process dies. A file written in place, not through a temporary file, is never killed
  there, so the test that expects the kill fails.
"""
import os
import signal

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
    replace = os.replace

    def replacing(src, dst, *args, **kwargs):
        if name in os.path.basename(os.fspath(dst)):
            writes[0] += 1
            if writes[0] == n:
                os.truncate(src, os.path.getsize(src) // 2)
                _die()
        return replace(src, dst, *args, **kwargs)

    os.replace = replacing


if SPEC.startswith("step:"):
    _kill_at_step(int(SPEC.split(":")[1]))
elif SPEC.startswith("write:"):
    _, target_name, count = SPEC.split(":")
    _kill_inside_write(target_name, int(count))
elif SPEC:
    raise ValueError(f"BENCHKIT_TEST_KILL={SPEC!r}: expected step:N or write:NAME:N")
