"""Item encoders: items -> vectors. Every encoder implements :class:`encoders.base.ItemEncoder`."""

from encoders.base import ItemEncoder
from encoders.id import IDItemEncoder

__all__ = ["ItemEncoder", "IDItemEncoder"]
