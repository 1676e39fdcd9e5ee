"""A backbone that says which Ray node trains it: for the test that removes a node while a run is on it.

``signalling_cnn`` is ``tiny_cnn`` whose training forward touches ``<signals>/<node id>`` (``here`` outside
Ray) and then pauses ``pause`` seconds, so a run stays on its node long enough for the test to remove it.
"""
import sys
import time
from pathlib import Path

from torch import nn

from benchkit import register_backbone
from benchkit.models.backbone import Backbone


class _Signal(nn.Module):
    def __init__(self, signals: str, pause: float):
        super().__init__()
        self.signals, self.pause = signals, pause

    def forward(self, x):
        if self.training and self.signals:
            ray = sys.modules.get("ray")
            node = ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else "here"
            (Path(self.signals) / node).touch()
            time.sleep(self.pause)
        return x


@register_backbone("signalling_cnn")
def signalling_cnn(signals: str = "", pause: float = 0.0, width: int = 8) -> Backbone:
    stem = nn.Sequential(_Signal(signals, pause), nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU())
    stages = [nn.Sequential(nn.Conv2d(width << i, width << (i + 1), 3, stride=2, padding=1),
                            nn.BatchNorm2d(width << (i + 1)), nn.ReLU()) for i in range(3)]
    body = nn.Sequential(stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.1))
    return Backbone(body, width << 3, stem=[stem], stages=stages, input_size=32)
