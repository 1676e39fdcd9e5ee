"""Batches on the device: the device-held split gives the loader's batches and the same training result;
augmenting many batches per call keeps every image's transform distribution."""

import numpy as np
import pytest
import torch
from scipy import stats

from benchkit.config import ModelConfig, TrainConfig
from benchkit.data.decode import ImageArrayDataset
from benchkit.models.grader import build_model
from benchkit.training.batches import (DeviceLoader, ResidentSplits, ToDevice, batch_loader, choose_loader,
                                       chunk_batches, preprocessed, resolved_device)
from benchkit.training.engine import Engine
from benchkit.training.transforms import BatchPreprocessor, reference_augmentation

CPU = torch.device("cpu")


def _arrays(n: int = 50, size: int = 16, seed: int = 0) -> ImageArrayDataset:
    rng = np.random.default_rng(seed)
    return ImageArrayDataset(rng.integers(0, 256, (n, 3, size, size), dtype=np.uint8), rng.integers(0, 4, n))


@pytest.mark.parametrize("shuffle, drop_last", [(True, False), (True, True), (False, False)])
def test_the_device_held_split_gives_the_loaders_batches_and_random_draws(shuffle, drop_last):
    data = _arrays()
    seen = {}
    for name, make in (("loader", lambda g: batch_loader(data, 8, shuffle=shuffle, generator=g, drop_last=drop_last)),
                       ("device", lambda g: DeviceLoader(data, 8, CPU, shuffle=shuffle, generator=g,
                                                         drop_last=drop_last))):
        torch.manual_seed(3)
        loader = make(torch.Generator().manual_seed(5) if shuffle else None)
        epochs = [[(x.clone(), y.clone()) for x, y in loader] for _ in range(2)]
        seen[name] = (len(loader), epochs, torch.rand(1))  # the global stream after both epochs
    (n_loader, loader_epochs, loader_next), (n_device, device_epochs, device_next) = seen["loader"], seen["device"]
    assert n_loader == n_device == (6 if drop_last else 7) == len(loader_epochs[0])
    for loader_epoch, device_epoch in zip(loader_epochs, device_epochs):
        for (x, y), (dx, dy) in zip(loader_epoch, device_epoch, strict=True):
            assert torch.equal(x, dx) and torch.equal(y, dy)
    assert shuffle is False or not torch.equal(torch.cat([y for _, y in loader_epochs[0]]),
                                               torch.cat([y for _, y in loader_epochs[1]]))
    assert torch.equal(loader_next, device_next)


def test_auto_keeps_the_memory_mapped_loader_on_cpu_and_a_split_is_copied_to_the_device_once():
    data = _arrays()
    assert isinstance(choose_loader(data, 8, CPU, on_device="auto", shuffle=False), ToDevice)
    assert isinstance(choose_loader(data, 8, CPU, on_device=False, shuffle=False), ToDevice)
    resident = ResidentSplits()
    first = choose_loader(data, 8, CPU, on_device=True, shuffle=False, resident=resident)
    again = choose_loader(data, 16, CPU, on_device=True, shuffle=True, generator=torch.Generator(), resident=resident)
    assert isinstance(first, DeviceLoader) and first.images is again.images
    assert torch.equal(first.images, torch.from_numpy(data.images))


def test_a_held_split_is_gathered_once_however_the_device_is_spelled(monkeypatch):
    data, gathers = _arrays(), []
    gather = data.gather
    monkeypatch.setattr(data, "gather", lambda indices: gathers.append(len(indices)) or gather(indices))
    resident = ResidentSplits()
    held = [resident.get(data, device)[0] for device in (CPU, torch.device("cpu:0"), "cpu", torch.device("cpu", 0))]
    assert gathers == [len(data)] and all(images is held[0] for images in held)


def test_auto_keeps_using_a_held_split_without_measuring_free_memory_again(monkeypatch):
    data, resident, checks = _arrays(), ResidentSplits(), []
    fits_once = lambda dataset, device: checks.append(device) or len(checks) == 1  # noqa: E731
    monkeypatch.setattr("benchkit.training.batches.fits_on_device", fits_once)
    first = choose_loader(data, 8, CPU, on_device="auto", shuffle=False, resident=resident)
    again = choose_loader(data, 8, torch.device("cpu:0"), on_device="auto", shuffle=False, resident=resident)
    assert isinstance(again, DeviceLoader) and again.images is first.images and len(checks) == 1


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: 'cuda' and 'cuda:0' name one device")
def test_cuda_spellings_resolve_to_one_device():
    assert resolved_device(torch.device("cuda")) == resolved_device(torch.device("cuda", torch.cuda.current_device()))


def _train(data_on_device: bool, augment_chunk="auto", epochs: int = 2):
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="tiny_cnn", head="regression"), 4)
    prep = BatchPreprocessor(reference_augmentation(16), model.backbone.mean, model.backbone.std)
    config = TrainConfig(epochs=epochs, batch_size=8, optimizer={"lr": 3e-3}, ema={"enabled": True, "update_after_step": 2,
                                                                                  "update_every": 1},
                         data_on_device=data_on_device, augment_chunk=augment_chunk, device="cpu")
    engine = Engine(model, prep, config, 4)
    result = engine.fit(_arrays(50, seed=1), _arrays(20, seed=2), seed=7)
    return result, engine


def test_training_from_the_device_held_split_equals_training_from_the_loader():
    loader_result, loader_engine = _train(False)
    device_result, device_engine = _train(True)
    assert [r["train_loss"] for r in device_result.history] == [r["train_loss"] for r in loader_result.history]
    assert ([r["valid_score_mae"] for r in device_result.history]
            == [r["valid_score_mae"] for r in loader_result.history])
    for (name, a), (_, b) in zip(loader_engine.eval_model.state_dict().items(),
                                 device_engine.eval_model.state_dict().items()):
        assert torch.equal(a, b), name


def test_chunked_augmentation_trains_from_other_draws_of_the_same_recipe():
    per_batch, _ = _train(True, augment_chunk=8, epochs=1)
    chunked, _ = _train(True, augment_chunk=32, epochs=1)
    assert per_batch.history[0]["train_loss"] != chunked.history[0]["train_loss"]


def test_chunk_sizes():
    assert chunk_batches("auto", 32, CPU) == 1
    assert chunk_batches("auto", 32, torch.device("cuda")) == 8
    assert chunk_batches(256, 32, CPU) == 8 and chunk_batches(10, 32, CPU) == 1 and chunk_batches(100, 32, CPU) == 3


# ---------------------------------------------------------------- same per-sample distribution

CONTINUOUS = {"RandomRotation": "degrees", "RandomSaturation": "saturation_factor", "RandomHue": "hue_factor",
              "RandomContrast": "contrast_factor", "RandomBrightness": "brightness_factor"}


def _sampled_parameters(chunk: int, seed: int, batches: int = 32, batch: int = 32) -> tuple[dict, int]:
    """Every image's transform parameters and whether each transform changed it, through :func:`preprocessed`."""
    prep = BatchPreprocessor(reference_augmentation(24), (0.5,) * 3, (0.5,) * 3)
    drawn: dict[str, list] = {}
    calls = []
    forward = prep.forward

    def record(*args, **kwargs):
        out = forward(*args, **kwargs)
        calls.append(len(out))
        for module in prep.augmentation:
            name, params = type(module).__name__, module._params
            drawn.setdefault(f"{name}.applied", []).append(params["batch_prob"].float())
            if name in CONTINUOUS:
                drawn.setdefault(name, []).append(params[CONTINUOUS[name]].reshape(-1))
            if name == "RandomResizedCrop":  # kept area share of the crop box
                side = params["src"][:, 2] - params["src"][:, 0]
                drawn.setdefault(name, []).append(side.prod(-1) / params["input_size"].prod(-1))
            if name == "RandomPerspective":  # how far the corners move
                drawn.setdefault(name, []).append((params["end_points"] - params["start_points"]).abs().mean((1, 2)))
            if name == "RandomGaussianNoise":
                drawn.setdefault(name, []).append(params["gaussian_noise"].std((1, 2, 3)))
        return out

    prep.forward = record
    torch.manual_seed(seed)
    images = [(torch.randint(0, 256, (batch, 3, 24, 24), dtype=torch.uint8), torch.zeros(batch)) for _ in range(batches)]
    outputs = list(preprocessed(images, prep, chunk))
    assert len(outputs) == batches and all(x.shape == (batch, 3, 24, 24) for x, _ in outputs)
    return {k: torch.cat(v).numpy() for k, v in drawn.items()}, calls


def test_chunked_augmentation_draws_each_images_parameters_from_the_per_batch_distribution():
    per_batch, per_batch_calls = _sampled_parameters(chunk=1, seed=0)
    chunked, chunked_calls = _sampled_parameters(chunk=8, seed=1)
    assert (per_batch_calls, chunked_calls) == ([32] * 32, [256] * 4)  # images per kornia call
    assert set(per_batch) == set(chunked) and len(per_batch) == 9 + 8  # 9 applied flags, 8 parameters
    for name in per_batch:
        a, b = per_batch[name], chunked[name]
        assert len(a) == len(b) == 1024, name
        if name == "RandomResizedCrop.applied":  # decided per batch of 32: the batch is the unit
            a, b = a.reshape(32, 32)[:, 0], b.reshape(32, 32)[:, 0]
        if name.endswith(".applied"):  # Bernoulli(p) per image (per batch for the crop): same share applied
            table = [[a.sum(), len(a) - a.sum()], [b.sum(), len(b) - b.sum()]]
            assert stats.chi2_contingency(table).pvalue > 0.01, name
        else:
            assert stats.ks_2samp(a, b).pvalue > 0.01, name
            assert min(len(np.unique(call)) for call in b.reshape(4, 256)) > 10, name  # a draw per image
    # kornia crops a whole batch or none of it: chunked, the decision still covers one batch of 32
    crop = chunked["RandomResizedCrop.applied"].reshape(32, 32)
    assert (crop == crop[:, :1]).all()
    assert all(len(set(crop[call:call + 8, 0])) == 2 for call in range(0, 32, 8))  # not once per call
