"""Decoded RGB images kept in memory up to a byte budget (least recently used evicted first).

Training and evaluation read the same images again and again; keeping them decoded saves time, and
bounding the cache by bytes (not by count) keeps a few huge images from taking the run's memory.
``CVQA_IMAGE_CACHE_MB`` sets the budget (default 256 MiB; 0 turns the cache off).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

from PIL import Image

DEFAULT_BUDGET_MB = 256


class ImageCache:
    """Path → decoded RGB image, evicting the least recently used beyond ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, Image.Image] = OrderedDict()
        self._lock = threading.Lock()  # DataLoader worker threads may share it

    def get(self, path: str) -> Image.Image:
        """The image at ``path`` as RGB, decoded now or taken from the cache."""
        with self._lock:
            if path in self._items:
                self._items.move_to_end(path)
                return self._items[path]
        with Image.open(path) as img:
            image = img.convert("RGB")
        size = image.width * image.height * 3
        if size <= self.max_bytes:
            with self._lock:
                if path not in self._items:
                    self._items[path] = image
                    self.bytes += size
                while self.bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self.bytes -= old.width * old.height * 3
        return image

    def clear(self) -> None:
        """Drop every cached image."""
        with self._lock:
            self._items.clear()
            self.bytes = 0


def _budget() -> int:
    try:
        return max(0, int(float(os.environ.get("CVQA_IMAGE_CACHE_MB", DEFAULT_BUDGET_MB)) * 2**20))
    except ValueError:
        return DEFAULT_BUDGET_MB * 2**20


IMAGES = ImageCache(_budget())


def load_rgb(path: str) -> Image.Image:
    """The process-wide cached RGB decode of ``path`` (:data:`IMAGES`)."""
    return IMAGES.get(path)
