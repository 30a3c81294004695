"""Item encoders: items -> vectors. Every encoder implements :class:`encoders.base.ItemEncoder`."""

from .base import ItemEncoder
from .id import IDItemEncoder

__all__ = ["ItemEncoder", "IDItemEncoder"]
