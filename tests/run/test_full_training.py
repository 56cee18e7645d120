"""Full-parameter training is a mode, not a fork: the same methods act on the language model's own tensors."""

from __future__ import annotations

import json

from safetensors.torch import load_file

from conftest import invoke


def test_full_parameter_llaca_trains_the_language_model_and_keeps_one_state_per_group(tmp_path, small_config,
                                                                                       llaca_sequence):
    out = tmp_path / "full"
    result = invoke("run", "--config", small_config, "--sequence", llaca_sequence, "--method", "llaca",
                    "--set", "model.lora=null", "--set", "train.max_steps=4", "--set", "train.lr=1e-4",
                    "--out", out)
    assert result.exit_code == 0, result.output

    weights = load_file(str(out / "stages" / "2-count" / "weights.safetensors"))
    assert not any("lora_" in name for name in weights)  # no adapter: the tensors themselves
    assert any(name.endswith("language_model.layers.0.self_attn.q_proj.weight") for name in weights)
    assert any("multi_modal_projector" in name for name in weights)
    assert not any("vision_tower" in name for name in weights)  # the CLIP tower stays frozen

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["trainable_params"] == sum(t.numel() for t in weights.values())
    records = json.loads((out / "method_records.json").read_text())
    by_task = {t["task"]: t for t in records["tasks"]}
    assert by_task["count"]["group"] == by_task["color"]["group"] and by_task["count"]["ema"] is True
    assert by_task["count"]["alpha"]["n_updates"] == 4 * len(weights)  # every trainable tensor, every step
    state = load_file(str(out / "stages" / "3-position" / "method_state.safetensors"))
    assert {k.split(".", 2)[1] for k in state if k.startswith("group.")} == {"0", "1"}
