"""A head whose training step kills its own process: a worker lost mid-run (for executor tests)."""
import os

from benchkit import register_head
from benchkit.heads.regression import RegressionHead


@register_head("dies_in_training")
class DiesInTrainingHead(RegressionHead):
    """The regression head, except that the first training loss ends the process (exit status 3)."""

    def loss(self, outputs, targets):
        if self.training:
            os._exit(3)
        return super().loss(outputs, targets)
