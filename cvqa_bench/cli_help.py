"""How ``cvqa --help`` looks: no type column, and one or two examples under each command (:data:`EXAMPLES`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cvqa_bench import __version__

# Shown under each command's --help; a command without an entry shows none.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "run": ("cvqa run --config configs/default.yaml --out results/default",
            "cvqa run --sequence synthetic --method llaca --set train.max_steps=50 --set eval.limit=8"),
    "experiment": ("cvqa experiment configs/reproduce.yaml",
                   "cvqa experiment configs/regression.yaml --reference results/reference/regression"),
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


class HelpGroup(typer.core.TyperGroup):
    """The ``cvqa`` group: no type column in --help (an option shows a metavar only where one is set), and
    each command's :data:`EXAMPLES` as its epilog."""

    def get_command(self, ctx: Any, name: str) -> Any:
        command = super().get_command(ctx, name)
        if command is not None:
            no_type_column([*command.params, command.get_help_option(ctx)])
            if name in EXAMPLES and not command.epilog:
                command.epilog = examples(*EXAMPLES[name])
        return command

    def get_params(self, ctx: Any) -> list[Any]:
        return no_type_column(super().get_params(ctx))


def no_type_column(params: list[Any]) -> list[Any]:
    """``params`` with their type label hidden in --help (parsing is unchanged)."""
    for param in params:
        if isinstance(param, typer.core.TyperOption) and param.metavar is None:
            param.metavar = ""  # no value placeholder; the help text says what the value is
        elif isinstance(param, typer.core.TyperArgument):
            param.display_type_rich = lambda ctx: None  # the argument's name already stands for its value
    return params


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
