"""The shared training engine: one loop for every backbone and head.

The optimizer and schedule of :mod:`benchkit.training.optim` (timm's factories), mixed precision
(float16 + GradScaler on CUDA, bfloat16 autocast on request), an EMA of the weights (ema-pytorch) used for evaluation and selection, early stopping on a
validation metric, gradient clipping, and a resumable checkpoint after every epoch. The loop never
waits for the device inside a step (losses add up on the device; a non-finite loss is found at the end
of the epoch, naming its first step) except where ``nan_policy: skip`` must decide per step.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from ema_pytorch import EMA
from torch import nn
from torch.utils.data import Dataset

from benchkit.config.schema import TrainConfig
from benchkit.errors import BenchkitError
from benchkit.io import load_torch, save_torch
from benchkit.evaluation.metrics import HIGHER_IS_BETTER, compute_metrics
from benchkit.training.batches import ResidentSplits, preprocessed
from benchkit.training.optim import Schedule, create_optimizer, create_schedule
from benchkit.training.runtime import Runtime, forward_all
from benchkit.training.transforms import BatchPreprocessor, augmentation_seed


class NonFiniteLossError(BenchkitError):
    """The training loss became NaN or infinite."""


@dataclass
class TrainResult:
    """What training produced besides the weights."""

    history: list[dict]
    best_epoch: int
    best_value: float
    epochs_run: int
    stopped_early: bool
    train_seconds: float
    skipped_steps: int = 0
    resumed_from_epoch: int | None = None


@dataclass
class _State:
    epoch: int = 0
    best_value: float = math.nan
    best_epoch: int = 0
    bad_epochs: int = 0
    global_step: int = 0
    skipped_steps: int = 0
    train_seconds: float = 0.0
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (whose global state draws the dropout masks); return the generator that
    orders the training batches. The augmentation draws from a stream of its own (:func:`augmentation_seed`)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def monitor_is_max(monitor: str, mode: str) -> bool:
    if mode != "auto":
        return mode == "max"
    return False if monitor == "loss" else HIGHER_IS_BETTER.get(monitor, True)


class Engine:
    """Trains one model. ``fit`` runs the epochs; ``outputs`` gives raw head outputs for a split."""

    def __init__(self, model: nn.Module, preprocessor: BatchPreprocessor, config: TrainConfig,
                 num_classes: int, *, runtime: Runtime | None = None,
                 on_epoch: Callable[[dict], None] | None = None,
                 on_step: Callable[[int, torch.Tensor | None], None] | None = None,
                 on_resume: Callable[[int], None] | None = None):
        self.config = config
        self.runtime = runtime or Runtime.resolve(config)
        self.device = self.runtime.device
        self.model = self.runtime.place(model)
        self.preprocessor = preprocessor.to(self.device)
        self.num_classes = num_classes
        self.on_epoch = on_epoch or (lambda row: None)
        self.on_step = on_step or (lambda step, loss: None)
        self.on_resume = on_resume or (lambda epoch: None)
        self.optimizer = create_optimizer(self.model, config.optimizer, fused=self.runtime.fused)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.runtime.amp_dtype == torch.float16)
        self.ema = (EMA(self.model, beta=config.ema.beta, update_after_step=config.ema.update_after_step,
                        update_every=config.ema.update_every, include_online_model=False,
                        use_foreach=True)  # one lerp launch for all tensors, not one per tensor
                    if config.ema.enabled else None)
        self._forward = self.runtime.compiled(self.model)
        self.schedule = Schedule()
        self._resident = ResidentSplits()
        self.state = _State()
        self.best_state: dict | None = None
        self._seed = 0

    @property
    def eval_model(self) -> nn.Module:
        """The model used for validation, selection and prediction (the EMA copy when enabled)."""
        return self.ema.ema_model if self.ema is not None else self.model

    # ------------------------------------------------------------------ training

    def fit(self, train_set: Dataset, valid_set: Dataset, seed: int,
            checkpoint_path: Path | None = None, resume: bool = False) -> TrainResult:
        """Train with early stopping; keeps the best eval-model weights in ``best_state``."""
        cfg = self.config
        generator = seed_everything(seed)
        self._seed = seed
        loader = self._loader(train_set, shuffle=True, generator=generator)
        steps_per_epoch = min(len(loader), cfg.max_train_batches or len(loader))
        self.schedule = create_schedule(self.optimizer, cfg.scheduler, cfg.epochs, steps_per_epoch)
        resumed_from = None
        if resume and checkpoint_path is not None and Path(checkpoint_path).is_file():
            resumed_from = self._load_checkpoint(checkpoint_path, generator)
            self.on_resume(resumed_from)
        maximize = monitor_is_max(cfg.early_stopping.monitor, cfg.early_stopping.mode)
        valid_targets = _targets(valid_set)
        while self.state.epoch < cfg.epochs and not self.state.stopped_early:
            epoch = self.state.epoch + 1
            start = time.perf_counter()
            train_loss = self._train_epoch(loader, epoch, steps_per_epoch)
            row = {"epoch": epoch, "train_loss": train_loss,
                   "lr": max(group["lr"] for group in self.optimizer.param_groups)}
            row.update(self._validate(valid_set, valid_targets))
            self.schedule.after_epoch(epoch)
            self.state.train_seconds += time.perf_counter() - start
            row["seconds"] = self.state.train_seconds
            self.state.history.append(row)
            self.state.epoch = epoch
            value = row.get(f"valid_{cfg.early_stopping.monitor}")
            if value is None:
                raise BenchkitError(f"early_stopping.monitor {cfg.early_stopping.monitor!r} is not a "
                                    f"validation metric (have: {', '.join(k[6:] for k in row if k.startswith('valid_'))})")
            if self._improved(value, maximize):
                self.state.best_value, self.state.best_epoch, self.state.bad_epochs = value, epoch, 0
                self.best_state = _cpu_state(self.eval_model)
            else:
                self.state.bad_epochs += 1
            self.on_epoch(row)
            patience = cfg.early_stopping.patience
            self.state.stopped_early = patience is not None and self.state.bad_epochs >= patience
            if checkpoint_path is not None:
                self._save_checkpoint(checkpoint_path, generator)
        return TrainResult(self.state.history, self.state.best_epoch, self.state.best_value,
                           self.state.epoch, self.state.stopped_early, self.state.train_seconds,
                           self.state.skipped_steps, resumed_from)

    def _train_epoch(self, loader, epoch: int, steps_per_epoch: int) -> float:
        cfg = self.config
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        first_bad = torch.full((), -1, device=self.device, dtype=torch.long)
        seen = 0
        batches = preprocessed(itertools.islice(loader, steps_per_epoch), self.preprocessor,
                               self.runtime.augment_batches,
                               seeds=lambda call: augmentation_seed(self._seed, epoch, call))
        for step, (inputs, targets) in enumerate(batches, start=1):
            if self.runtime.cuda_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with self.runtime.autocast():
                outputs = self._forward(self.runtime.inputs(inputs))
            loss = self.model.head.loss(outputs.float(), targets)
            finite = torch.isfinite(loss)
            if cfg.nan_policy == "skip" and not bool(finite):
                self.state.skipped_steps += 1
                continue
            first_bad = torch.where((~finite) & (first_bad < 0), step, first_bad)
            self._optimizer_step(loss)
            loss_sum += loss.detach() * len(targets)
            seen += len(targets)
            self.state.global_step += 1
            if step % cfg.log_every == 0 or step == steps_per_epoch:
                self.on_step(step, loss_sum / max(seen, 1))  # a device tensor: no wait unless it is shown
        self._raise_if_bad(first_bad, epoch)
        return loss_sum.item() / max(seen, 1)

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.schedule.after_update()
        if self.ema is not None:
            self.ema.update()

    @staticmethod
    def _raise_if_bad(first_bad: torch.Tensor, epoch: int) -> None:
        step = int(first_bad.item())
        if step >= 0:
            raise NonFiniteLossError(f"non-finite training loss at epoch {epoch}, step {step} "
                                     f"(lower the learning rate, enable grad_clip, or set "
                                     f"train.nan_policy: skip)")

    def _improved(self, value: float, maximize: bool) -> bool:
        best, delta = self.state.best_value, self.config.early_stopping.min_delta
        if math.isnan(best):
            return not math.isnan(value)
        return value > best + delta if maximize else value < best - delta

    def _validate(self, valid_set: Dataset, targets: torch.Tensor) -> dict:
        outputs = self.outputs(valid_set)
        head = self.eval_model.head
        with head.unweighted():
            loss = head.loss(outputs, targets).item()
        pred = head.predict(outputs)
        probs = None if pred.probs is None else pred.probs.numpy()  # rps, nll, ece can be monitored
        metrics = compute_metrics(targets.numpy(), pred.level.numpy(), pred.score.numpy(), self.num_classes, probs)
        return {"valid_loss": loss, **{f"valid_{k}": v for k, v in metrics.items()}}

    # ------------------------------------------------------------------ inference

    def outputs(self, dataset: Dataset, model: nn.Module | None = None,
                preprocessor: nn.Module | None = None) -> torch.Tensor:
        """Raw head outputs (float32, CPU) of ``model`` (default: the eval model) for every item of ``dataset``
        (``preprocessor``: another preprocessing than the engine's, e.g. a test-time view)."""
        return forward_all(model or self.eval_model, self._loader(dataset, shuffle=False), self.runtime,
                           preprocessor or self.preprocessor)

    def load_best(self) -> None:
        """Put the selected weights into the eval model (no-op if no epoch improved)."""
        if self.best_state is not None:
            self.eval_model.load_state_dict(self.best_state)

    # ------------------------------------------------------------------ plumbing

    def _loader(self, dataset: Dataset, shuffle: bool, generator: torch.Generator | None = None):
        batch = self.config.batch_size if shuffle else None
        return self.runtime.loader(dataset, shuffle=shuffle, generator=generator, batch_size=batch,
                                   resident=self._resident)

    def _save_checkpoint(self, path: Path, generator: torch.Generator) -> None:
        state = self.state
        save_torch(path, {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "best_state": self.best_state,
            "state": {k: v for k, v in vars(state).items() if k != "history"},
            "history": state.history,
            "rng": {"python": _python_rng_state(), "numpy": _numpy_rng_state(),
                    "torch": torch.get_rng_state(), "loader": generator.get_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        })

    def _load_checkpoint(self, path: Path, generator: torch.Generator) -> int:
        ckpt = load_torch(path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.schedule.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        if self.ema is not None and ckpt["ema"] is not None:
            self.ema.load_state_dict(ckpt["ema"])
        self.best_state = ckpt["best_state"]
        self.state = _State(**ckpt["state"], history=list(ckpt["history"]))
        rng = ckpt["rng"]
        random.setstate(_restore_python_rng(rng["python"]))
        np.random.set_state(_restore_numpy_rng(rng["numpy"]))
        torch.set_rng_state(rng["torch"])
        generator.set_state(rng["loader"])
        if rng["cuda"] and torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(rng["cuda"])
        return self.state.epoch


def _targets(dataset: Dataset) -> torch.Tensor:
    labels = getattr(dataset, "labels", None)
    if labels is None:
        labels = [dataset[i][1] for i in range(len(dataset))]
    return torch.as_tensor(np.asarray(labels), dtype=torch.long)


def _cpu_state(model: nn.Module) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _python_rng_state():
    version, internal, gauss = random.getstate()
    return {"version": version, "internal": list(internal), "gauss": gauss}


def _restore_python_rng(state):
    return state["version"], tuple(state["internal"]), state["gauss"]


def _numpy_rng_state():
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
            "has_gauss": has_gauss, "cached": cached}


def _restore_numpy_rng(state):
    return (state["name"], state["keys"].numpy().astype(np.uint32), state["pos"], state["has_gauss"],
            state["cached"])
