"""Test plugins that fail on purpose: a head whose training loss turns NaN at chosen steps, a backbone
that runs out of memory on large batches."""
import torch
from torch import nn

from benchkit import register_backbone, register_head
from benchkit.models.backbone import Backbone
from benchkit.heads.regression import RegressionHead


@register_head("nan_regression")
class NanRegressionHead(RegressionHead):
    """The regression head, except that the training loss is NaN at the given (1-based, global) steps."""

    def __init__(self, in_features: int, num_classes: int, nan_steps: list[int] = ()):
        super().__init__(in_features, num_classes)
        self.nan_steps = set(nan_steps)
        self.training_calls = 0

    def loss(self, outputs, targets):
        loss = super().loss(outputs, targets)
        if not self.training:
            return loss
        self.training_calls += 1
        return loss * float("nan") if self.training_calls in self.nan_steps else loss


class _MemoryHungry(nn.Module):
    def __init__(self, body: nn.Module, max_batch: int):
        super().__init__()
        self.body, self.max_batch = body, max_batch

    def forward(self, images):
        if images.shape[0] > self.max_batch:
            raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate 20.00 GiB "
                                         f"(batch of {images.shape[0]})")
        return self.body(images)


@register_backbone("oom_cnn")
def oom_cnn(max_batch: int = 4) -> Backbone:
    """A small CNN that raises ``torch.OutOfMemoryError`` on batches larger than ``max_batch``."""
    body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten())
    return Backbone(_MemoryHungry(body, max_batch), 8, input_size=32)
