"""The generic registry: decorator and lazy entries, duplicates, did-you-mean errors, lazy import errors."""

from __future__ import annotations

import pytest

from cvqa_bench.registry import Registry, UnknownNameError


def test_register_and_get():
    reg: Registry = Registry("thing")

    @reg.register("alpha", "the first")
    class Alpha:
        pass

    assert reg.get("alpha") is Alpha
    assert reg.names() == ["alpha"] and reg.descriptions() == {"alpha": "the first"}


def test_duplicate_names_raise():
    reg: Registry = Registry("thing")
    reg.register("a")(object)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a")(int)
    with pytest.raises(ValueError, match="already registered"):
        reg.add_lazy("a", "json:dumps", "")


def test_unknown_name_suggests_close_matches():
    reg: Registry = Registry("method")
    for name in ["llaca", "finetune", "ema", "replay"]:
        reg.add_lazy(name, "json:dumps", name)
    with pytest.raises(UnknownNameError) as err:
        reg.get("lacca")
    assert str(err.value) == "unknown method 'lacca'. Did you mean 'llaca'? Known: ema, finetune, llaca, replay"
    with pytest.raises(UnknownNameError, match="^unknown method 'zzz'. Known:"):
        reg.check("zzz")


def test_lazy_entry_imports_on_lookup_and_broken_import_fails_only_then():
    reg: Registry = Registry("thing")
    reg.add_lazy("dumps", "json:dumps", "serialise")
    reg.add_lazy("broken", "cvqa_bench_no_such_module:thing", "never importable")
    assert reg.names() == ["broken", "dumps"]  # listing never imports
    import json

    assert reg.get("dumps") is json.dumps
    with pytest.raises(ModuleNotFoundError):
        reg.get("broken")


def test_base_class_is_enforced():
    reg: Registry = Registry("method", base_cls=dict)
    with pytest.raises(TypeError, match="must subclass dict"):
        reg.register("x")(list)
