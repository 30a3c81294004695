"""The shared foundation under ``encoders`` and ``reasoning``: what both need and neither owns.

``noise``: split-invariant randomness (a draw depends on a row's place in the global batch, or on an item's
id, never on how the batch is split over processes or micro-batches); ``dropout``: the dropout every module
of the project uses, built on it. Nothing here imports ``hybrid``, ``encoders`` or ``reasoning``.
"""
