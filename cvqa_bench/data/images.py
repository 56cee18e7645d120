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


def resolve_image(
    relative: str, image_root: Path, where: str, problems: Problems, images: ImageChecker | None,
    allow_outside: bool = False,
) -> Path | None:
    """The absolute path of a row's image, or ``None`` after reporting why it cannot be used."""
    parts = Path(relative).parts
    if not allow_outside and (Path(relative).is_absolute() or relative.startswith(("/", "\\"))):
        problems.add(
            f"{where}: {relative!r} is absolute; image paths are relative to the image folder {image_root}"
        )
        return None
    if not allow_outside and ".." in parts:
        problems.add(f"{where}: {relative!r} escapes the image folder {image_root} ('..')")
        return None
    path = image_root / relative
    try:
        outside = not allow_outside and not inside(path, image_root)
    except DataError as exc:
        problems.add(f"{where}: {exc}")
        return None
    if outside:
        problems.add(f"{where}: {relative!r} resolves to {path.resolve()}, outside the image folder {image_root} "
                     "(a symlink?); set allow_outside_root: true in the sequence YAML to allow it")
        return None
    reason = images.problem(path) if images is not None else None
    if reason is not None:
        problems.add(f"{where}: {relative!r} {reason} (looked in {image_root})")
        return None
    return path
