"""Image paths of CoIN rows: resolved inside the image folder (symlinks followed), each file decoded once.

An image is refused when its path is absolute, climbs out with ``..``, or resolves (after following
symlinks) outside the image folder, unless the sequence sets ``allow_outside_root: true``; and when
its width x height exceeds the sequence's ``max_image_pixels`` (checked from the header, before
decoding), so a huge image cannot take the run's memory.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from cvqa_bench.config.sequence import DEFAULT_MAX_IMAGE_PIXELS
from cvqa_bench.data.image_cache import IMAGES
from cvqa_bench.data.rows import DataError, Problems


class ImageChecker:
    """Decodes each image path at most once and remembers what was wrong with it; ``keep_decoded``: the
    decode goes to the run's image cache (``data/image_cache.py``), so training and evaluation do not
    decode the image again."""

    def __init__(self, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, keep_decoded: bool = False) -> None:
        self.max_pixels = max_pixels
        self.keep_decoded = keep_decoded
        self._cache: dict[Path, str | None] = {}

    def problem(self, path: Path) -> str | None:
        """``None`` for an image that decodes within the pixel limit, else a short reason."""
        if path not in self._cache:
            self._cache[path] = self._check(path)
        return self._cache[path]

    def _check(self, path: Path) -> str | None:
        if not path.is_file():
            return "not found"
        try:
            with Image.open(path) as image:
                width, height = image.size
                if width * height > self.max_pixels:
                    return (f"is {width}x{height} = {width * height} pixels, above max_image_pixels "
                            f"{self.max_pixels} (set it in the sequence YAML to allow more)")
                image.load()  # a full decode: verify() passes files whose pixel data is broken
                if self.keep_decoded:
                    IMAGES.keep(str(path), image.convert("RGB"))
        # Decoders of hostile files raise many types (OSError, SyntaxError, ValueError, EOFError,
        # zlib.error, struct.error, DecompressionBombError): all mean "not a usable image".
        except Exception as exc:  # noqa: BLE001
            return f"cannot be read as an image ({type(exc).__name__}: {exc})"
        return None


def resolved(path: Path) -> Path:
    """``path`` made absolute with symlinks followed.

    Raises:
        DataError: the path holds a NUL character, or is a symlink loop.
    """
    try:
        return Path(path).resolve()
    except ValueError as exc:  # "embedded null byte": no file system takes such a name
        raise DataError(f"{str(path)!r}: the path holds a NUL character") from exc
    except (RuntimeError, OSError) as exc:  # RuntimeError("Symlink loop ...") before Python 3.13, ELOOP after
        raise DataError(f"{path}: a symlink loop, which never reaches a file") from exc


def inside(path: Path, root: Path) -> bool:
    """Whether ``path`` lies in ``root`` once both are resolved with symlinks followed (DataError as
    :func:`resolved`)."""
    return resolved(path).is_relative_to(resolved(root))


class ImagePaths:
    """The image paths of one split file, resolved inside ``image_root`` and checked: each distinct path
    once (a split may name the same image on many rows), the folder itself once."""

    def __init__(self, image_root: Path, images: ImageChecker | None, allow_outside: bool = False) -> None:
        self.image_root = image_root
        self.images = images
        self.allow_outside = allow_outside
        self._real_root: Path | None = None
        self._found: dict[str, tuple[Path | None, str | None]] = {}

    def resolve(self, relative: str, where: str, problems: Problems) -> Path | None:
        """The absolute path of a row's image, or ``None`` after reporting (with ``where``) why it cannot be used."""
        if relative not in self._found:
            self._found[relative] = self._check(relative)
        path, reason = self._found[relative]
        if reason is not None:
            problems.add(f"{where}: {reason}")
        return path

    def _check(self, relative: str) -> tuple[Path | None, str | None]:
        root = self.image_root
        if not self.allow_outside:
            if Path(relative).is_absolute() or relative.startswith(("/", "\\")):
                return None, f"{relative!r} is absolute; image paths are relative to the image folder {root}"
            if ".." in Path(relative).parts:
                return None, f"{relative!r} escapes the image folder {root} ('..')"
        path = root / relative
        if not self.allow_outside:
            try:
                if self._real_root is None:
                    self._real_root = resolved(root)
                real = resolved(path)
            except DataError as exc:
                return None, str(exc)
            if not real.is_relative_to(self._real_root):
                return None, (f"{relative!r} resolves to {real}, outside the image folder {root} "
                              "(a symlink?); set allow_outside_root: true in the sequence YAML to allow it")
        reason = self.images.problem(path) if self.images is not None else None
        if reason is not None:
            return None, f"{relative!r} {reason} (looked in {root})"
        return path, None
