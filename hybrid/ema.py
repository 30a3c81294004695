"""Exponential moving average (Polyak averaging) of a model's trainable weights.

With a constant learning rate and heavy dropout the weights, and with them validation NDCG@10, jump from
epoch to epoch; early stopping then picks a lucky epoch. The average moves slowly, so it is the smoother
(and usually better) model to validate, test and save. Only trainable parameters are averaged: frozen
tables (text vectors, a frozen LM) would only cost memory.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

UPDATES_KEY = "__ema_updates__"  # stored beside the averaged tensors in a checkpoint


class WeightAverage:
    """shadow <- decay * shadow + (1 - decay) * weights after every optimizer step.

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so the first steps are not
    averaged with the random initialisation for thousands of steps.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}.")
        self.decay, self.updates = decay, 0
        self.parameters = {name: p for name, p in model.named_parameters() if p.requires_grad}
        self.shadow = {name: p.detach().clone() for name, p in self.parameters.items()}
        # The same tensors as flat lists, built once: update runs after every optimizer step.
        self._shadow_list = list(self.shadow.values())
        self._parameter_list = [p.detach() for p in self.parameters.values()]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self._shadow_list, self._parameter_list, 1 - decay)

    @contextlib.contextmanager
    @torch.no_grad()
    def applied(self) -> Iterator[None]:
        """Inside the block the model holds the averaged weights; the trained ones come back after it."""
        trained = {name: p.detach().clone() for name, p in self.parameters.items()}
        for name, p in self.parameters.items():
            p.copy_(self.shadow[name])
        try:
            yield
        finally:
            for name, p in self.parameters.items():
                p.copy_(trained[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {**self.shadow, UPDATES_KEY: torch.tensor(self.updates)}

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        missing = set(self.shadow) - set(tensors)
        if missing or UPDATES_KEY not in tensors:
            raise ValueError(f"the saved weight average lacks {sorted(missing) or [UPDATES_KEY]}")
        with torch.no_grad():
            for name, tensor in self.shadow.items():
                tensor.copy_(tensors[name])
        self.updates = int(tensors[UPDATES_KEY])
