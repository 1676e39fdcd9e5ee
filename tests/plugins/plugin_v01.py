"""A plugin file written against benchkit 0.1.0: the 0.1 module paths and the 0.1 head contract
(``loss(outputs, targets, class_weights=None)``, ``predict``). benchkit 0.2 runs it, with deprecation warnings."""
import torch
import torch.nn.functional as F
from torch import nn

from benchkit.backbone import Backbone
from benchkit.head import Head, Prediction
from benchkit.registry import register_backbone, register_head


@register_backbone("v01_cnn", force=True)
def v01_cnn(width: int = 8) -> Backbone:
    stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
    stage = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.ReLU())
    body = nn.Sequential(stem, stage, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Backbone(body, 2 * width, stem=[stem], stages=[stage], input_size=32)


@register_head("v01_ordinal", force=True)
class V01OrdinalHead(Head):
    """K logits trained with cross-entropy; the 0.1 contract passes the class weights to ``loss``."""

    has_probabilities = True

    def __init__(self, in_features: int, num_classes: int):
        super().__init__(in_features, num_classes)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features):
        return self.fc(features)

    def loss(self, outputs, targets, class_weights=None):
        return F.cross_entropy(outputs.float(), targets.long(), weight=class_weights)

    def predict(self, outputs):
        probs = torch.softmax(outputs.float(), 1)
        return Prediction(probs.argmax(1), (probs * torch.arange(probs.shape[1])).sum(1), probs)
