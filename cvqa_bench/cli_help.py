"""How ``cvqa --help`` looks: each option with its value type (TEXT, INTEGER, PATH, as click names them), and one
or two examples under each command (:data:`EXAMPLES`) that work from an installed wheel in any folder."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cvqa_bench import __version__

# Shown under each command's --help; a command without an entry shows none.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "run": ("cvqa run --limit 8 --set train.max_steps=20",
            "cvqa run --config configs/default.yaml --method finetune --device cuda --out results/finetune",
            "cvqa run --sequence my-tasks.yaml --model ./llava-1.5-7b-hf --limit 100"),
    "experiment": ("cvqa experiment configs/reproduce.yaml",
                   "cvqa experiment regression --reference results/reference/regression"),
    "score": ("cvqa score results/default", "cvqa score results/default --protocol official"),
    "report": ("cvqa report results/default --format md --format latex",
               "cvqa report results/a-seed0 results/a-seed1 results/b-seed0 --out results/report"),
    "export": ("cvqa export results/default --stage 2 --merge --out exported/stage2",
               "cvqa export results/default --stage 1 --out exported/stage1"),
    "status": ("cvqa status results/default",),
    "plan": ("cvqa plan coin8 --config configs/coin-official.yaml --data-root /data/coin",
             "cvqa plan synthetic --method llaca --json"),
    "assemble": ("cvqa assemble --llm vicuna-7b-v1.5 --vision clip-vit-large-patch14-336 "
                 "--projector mm_projector.bin --out models/llava-coin-base",),
    "list": ("cvqa list methods", "cvqa list sequences"),
    "validate": ("cvqa validate synthetic", "cvqa validate coin8 --data-root /data/coin"),
}
# configs/... and tasks/... in these examples are the built-in files from any folder (config/base.py,
# resolve_path); tests/test_cli_help.py checks that every such path resolves.


class HelpGroup(typer.core.TyperGroup):
    """The ``cvqa`` group: each command's :data:`EXAMPLES` as its epilog."""

    def get_command(self, ctx: Any, name: str) -> Any:
        command = super().get_command(ctx, name)
        if command is not None and name in EXAMPLES and not command.epilog:
            command.epilog = examples(*EXAMPLES[name])
        return command


def examples(*lines: str) -> str:
    """A command's epilog: each line an example command."""
    return "Examples:\n\n" + "\n\n".join(f"  $ {line}" for line in lines)


def print_version(value: bool) -> None:
    """``cvqa --version``: print the package version and exit."""
    if value:
        typer.echo(f"cvqa-bench {__version__}")
        raise typer.Exit()


VersionOption = Annotated[bool, typer.Option("--version", callback=print_version, is_eager=True,
                                             help="print the version and exit")]
