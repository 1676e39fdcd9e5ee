"""First-party head plugins, installed as ``benchkit.heads``; importing registers them.

Every head module registers one ``benchkit.models.head.Head`` subclass. Besides the base contract,
each head answers ``alternative_decodings(outputs) -> dict[str, Prediction]``: the predictions
of every decoding it offers (``decodings``), so a run can report them side by side.
"""

from . import clm, coral, corn, regression, soft_label, softmax  # noqa: F401
