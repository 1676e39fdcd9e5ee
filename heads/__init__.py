"""First-party head plugins, installed as ``benchkit.heads``; importing registers them.

Every head module registers one :class:`benchkit.Head` subclass (the contract: :mod:`benchkit.models.head`).
Heads that decode the same kind of estimate share its decodings through a mixin: class probabilities
(``_common.CategoricalDecoding``: softmax, soft labels, cumulative link) or exceedance probabilities
``P(y > k)`` (``_calibration.ExceedanceDecoding``: CORAL, CORN).
"""

from . import clm, coral, corn, regression, soft_label, softmax  # noqa: F401
