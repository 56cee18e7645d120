"""Decoded RGB images kept in memory up to a byte budget (least recently used evicted first).

Training and evaluation read the same images again and again; keeping them decoded saves time, and
bounding the cache by bytes (not by count) keeps a few huge images from taking the run's memory.
``CVQA_IMAGE_CACHE_MB`` sets the budget (default 256 MiB; 0 turns the cache off).

A batch's images are handed to the model's image processor as :class:`OneByOne`: each is decoded when the
processor reaches it and dropped once processed, so a batch of huge images (each under
``max_image_pixels``) holds one full-size decode at a time beyond the cache, never the whole batch's.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

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
        self._store(path, image)
        return image

    def _store(self, path: str, image: Image.Image) -> None:
        size = image.width * image.height * 3
        if size > self.max_bytes:
            return
        with self._lock:
            if path not in self._items:
                self._items[path] = image
                self.bytes += size
            while self.bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self.bytes -= old.width * old.height * 3

    def keep(self, path: str, image: Image.Image) -> None:
        """Cache an RGB decode of ``path`` made elsewhere (the run's image check), as :meth:`get` would."""
        self._store(path, image)

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


class OneByOne(Sequence[Image.Image | None]):
    """Row i's image, decoded by ``decode(paths[i])`` only when asked for (``None`` where a row has no image).

    Iterating decodes one image per step and keeps none, so a consumer that processes each image before
    taking the next (the families' ``build_inputs``, ``ModelInputs.image_inputs``) holds one at a time.
    """

    def __init__(self, paths: Sequence[str | None], decode: Callable[[str], Image.Image]) -> None:
        self.paths = list(paths)
        self.decode = decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Image.Image | None:  # type: ignore[override]
        path = self.paths[index]
        return self.decode(path) if path else None

    def __iter__(self) -> Iterator[Image.Image | None]:
        for path in self.paths:
            yield self.decode(path) if path else None
