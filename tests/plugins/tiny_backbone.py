"""A backbone from a user's own file: register it, then list this file under an experiment's `plugins:`."""
from torch import nn

from benchkit import Backbone, register_backbone


@register_backbone("tiny_cnn")
def tiny_cnn(width: int = 8) -> Backbone:
    """A 3-stage CNN small enough for CPU tests; random initialisation."""
    stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
    stages = [nn.Sequential(nn.Conv2d(width << i, width << (i + 1), 3, stride=2, padding=1),
                            nn.BatchNorm2d(width << (i + 1)), nn.ReLU()) for i in range(3)]
    body = nn.Sequential(stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1))
    return Backbone(body, width << 3, stem=[stem], stages=stages, input_size=32)
