"""Memory per run: the resident peak is the run's own (reset at each start), and a run that does not fit
says what to change."""

import pytest
import torch

from benchkit.training.memory import PeakMemory, describe_out_of_memory, is_out_of_memory, peak_rss_mb


def _hold(megabytes: int) -> bytes:
    return b"\x01" * (megabytes * 2 ** 20)  # written, so resident


def test_a_later_run_in_the_same_process_reports_its_own_smaller_peak():
    with PeakMemory("cpu") as big:
        held = _hold(300)
        first = big.row()
    del held
    with PeakMemory("cpu") as small:
        second = small.row()
    if not small.rss_is_per_run:
        pytest.skip("this kernel refuses to reset the peak resident set (/proc/self/clear_refs)")
    assert first["peak_rss_mb"] >= second["peak_rss_mb"] + 250
    assert first["peak_gpu_mb"] is None and second["peak_gpu_mb"] is None
    assert peak_rss_mb() >= second["peak_rss_mb"]


def test_out_of_memory_is_recognised_whichever_way_it_was_raised():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate: out of memory"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_the_message_halves_the_batch_and_names_the_sharing(monkeypatch):
    monkeypatch.delenv("BENCHKIT_RUNS_PER_DEVICE", raising=False)
    assert describe_out_of_memory(32, "cpu") == "out of memory with batch_size 32: try --set train.batch_size=16"
    monkeypatch.setenv("BENCHKIT_RUNS_PER_DEVICE", "6")
    assert describe_out_of_memory(1, "cpu").endswith("train.batch_size=1, or fewer runs per GPU (--jobs; 6 share this one)")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: the CUDA allocator's peak")
def test_the_cuda_peak_is_the_runs_own():
    device = torch.device("cuda")
    with PeakMemory(device) as big:
        block = torch.empty(256 * 2 ** 20, dtype=torch.uint8, device=device)
        first = big.row()
    del block
    with PeakMemory(device) as small:
        torch.empty(2 ** 20, dtype=torch.uint8, device=device)
        second = small.row()
    assert first["peak_gpu_mb"] >= 256 and second["peak_gpu_mb"] < 64
    assert "of" in describe_out_of_memory(32, device) and torch.cuda.get_device_name(device) in describe_out_of_memory(32, device)
