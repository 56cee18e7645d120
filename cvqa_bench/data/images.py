"""Image paths of CoIN rows: resolved inside the image folder, each file opened once to check it."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from cvqa_bench.data.rows import Problems


class ImageChecker:
    """Opens each image path at most once (PIL ``verify``) and remembers what was wrong with it."""

    def __init__(self) -> None:
        self._cache: dict[Path, str | None] = {}

    def problem(self, path: Path) -> str | None:
        """``None`` for a readable image, else a short reason."""
        if path not in self._cache:
            self._cache[path] = self._verify(path)
        return self._cache[path]

    @staticmethod
    def _verify(path: Path) -> str | None:
        if not path.is_file():
            return "not found"
        try:
            with Image.open(path) as image:
                image.verify()
        # PIL reports truncated/corrupt files as OSError, SyntaxError or ValueError depending on format.
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            return f"cannot be read as an image ({exc})"
        return None


def resolve_image(
    relative: str, image_root: Path, where: str, problems: Problems, images: ImageChecker | None
) -> Path | None:
    """The absolute path of a row's image, or ``None`` after reporting why it cannot be used."""
    parts = Path(relative).parts
    if Path(relative).is_absolute() or relative.startswith(("/", "\\")):
        problems.add(
            f"{where}: {relative!r} is absolute; image paths are relative to the image folder {image_root}"
        )
        return None
    if ".." in parts:
        problems.add(f"{where}: {relative!r} escapes the image folder {image_root} ('..')")
        return None
    path = image_root / relative
    reason = images.problem(path) if images is not None else None
    if reason is not None:
        problems.add(f"{where}: {relative!r} {reason} (looked in {image_root})")
        return None
    return path
