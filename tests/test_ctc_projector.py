"""A separate CTC projector (config.ctc_projector): the CTC head reads it, the LLM reads the projector,
and each loss trains only the one it reads (README item 30)."""

import pytest
import torch
from safetensors.torch import load_file

from conftest import tone
from test_model import build
from tiny_audio import ASRModel

TEXTS = ["hello world", "one two three"]


def grads(model, batch, **weights) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    model(**batch, ctc_blank_id=3, **weights).loss.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def test_each_loss_trains_only_the_projector_it_reads(tiny_config):
    torch.manual_seed(0)
    model, processor = build(tiny_config, ctc_projector=True)
    batch = processor([tone(1.0), tone(1.7, seed=1)], text=TEXTS)
    lm = grads(model, batch, lm_weight=1.0, ctc_weight=0.0)
    ctc = grads(model, batch, lm_weight=0.0, ctc_weight=1.0)
    both = grads(model, batch, lm_weight=1.0, ctc_weight=1.0)
    assert lm and all(name.startswith("projector.") for name in lm)
    assert ctc and all(name.startswith("ctc_projector.") for name in ctc)
    assert both.keys() == lm.keys() | ctc.keys()
    for name, grad in both.items():  # decoupled: the joint loss's gradient is each loss's own, unmixed
        torch.testing.assert_close(grad, (lm | ctc)[name])


def test_without_a_ctc_projector_the_ctc_loss_still_trains_the_one_projector(tiny_config):
    model, processor = build(tiny_config)
    batch = processor([tone(1.0)], text=TEXTS[:1])
    ctc = grads(model, batch, lm_weight=0.0, ctc_weight=1.0)
    assert model.ctc_projector is None and ctc and all(name.startswith("projector.") for name in ctc)


def test_joint_decoding_scores_the_ctc_projector_and_the_llm_reads_the_other(tiny_config):
    torch.manual_seed(0)
    model, processor = build(tiny_config, generation={"max_new_tokens": 6, "num_beams": 1, "ctc_weight": 0.5},
                             ctc_projector=True)
    model.config.ctc_blank_id = 3
    batch = processor([tone(1.0), tone(1.5, freq=300.0)])
    seen = []
    original = model.word_ctc_head
    model.word_ctc_head = lambda embeds, *args: seen.append(embeds) or original(embeds, *args)
    plain = model.generate(**batch, ctc_weight=0.0)
    joint = model.generate(**batch)
    frames, lengths = model.encode(batch["input_features"], batch["feature_lengths"])
    torch.testing.assert_close(seen[-1], model.project(frames, lengths, model.ctc_projector)[0])
    assert not torch.allclose(seen[-1], model.project(frames, lengths)[0])
    with torch.no_grad():  # the CTC projector changes what joint decoding may write, never what the LLM alone writes
        for p in model.ctc_projector.parameters():
            p.mul_(-3.0)
    assert torch.equal(model.generate(**batch, ctc_weight=0.0), plain)
    assert joint.shape[0] == 2


def test_save_load_keeps_both_projectors_and_a_plain_model_refuses_them(tiny_config, tmp_path):
    torch.manual_seed(0)
    model, _ = build(tiny_config, ctc_projector=True)
    model.save_pretrained(tmp_path / "two", weights_dtype=torch.bfloat16)
    saved = load_file(tmp_path / "two" / "model.safetensors")
    assert {k.split(".", 1)[0] for k in saved} == {"projector", "ctc_projector"}
    loaded = ASRModel.from_pretrained(tmp_path / "two")
    assert loaded.config.ctc_projector
    for name, module in model.projectors().items():
        for key, value in module.state_dict().items():
            torch.testing.assert_close(loaded.projectors()[name].state_dict()[key], value.to(torch.bfloat16).float())
    plain, _ = build(tiny_config)
    with pytest.raises(ValueError, match="ctc_projector"):
        plain.load_projector(saved)
    with pytest.raises(RuntimeError):  # strict: a two-projector model needs both
        loaded.load_projector({k: v for k, v in saved.items() if k.startswith("projector.")})


def test_start_ctc_projector_takes_a_plain_checkpoints_projector(tiny_config, tmp_path):
    torch.manual_seed(0)
    ctc_run, _ = build(tiny_config)
    torch.nn.init.normal_(ctc_run.projector.linear_1.weight)
    ctc_run.save_pretrained(tmp_path / "ctc")
    model, _ = build(tiny_config)
    before = {k: v.clone() for k, v in model.projector.state_dict().items()}
    model.start_ctc_projector(tmp_path / "ctc")
    assert model.config.ctc_projector
    for key, value in ctc_run.projector.state_dict().items():
        assert torch.equal(model.ctc_projector.state_dict()[key], value)
        assert torch.equal(model.projector.state_dict()[key], before[key])  # the LLM's projector is untouched
    assert model.ctc_projector.linear_1.weight.data_ptr() != model.projector.linear_1.weight.data_ptr()
    # from a two-projector checkpoint it takes that checkpoint's CTC projector, not its LLM projector
    model.save_pretrained(tmp_path / "two")
    other, _ = build(tiny_config)
    other.start_ctc_projector(tmp_path / "two")
    assert torch.equal(other.ctc_projector.linear_1.weight, ctc_run.projector.linear_1.weight)
    # a head trained on other frames (another frame_norm) cannot join
    stranger, _ = build(tiny_config, frame_norm="meanvar")
    stranger.save_pretrained(tmp_path / "stranger")
    with pytest.raises(ValueError, match="frame_norm"):
        model.start_ctc_projector(tmp_path / "stranger")


def test_ship_adds_the_ctc_projector_and_its_lineage(tiny_config, tmp_path, monkeypatch):
    """ship.py --ctc-from: the LLM projector from the checkpoint, the CTC projector from another run's
    head, both lineages on the card; a gone manifest stops the ship unless --assume-engines names its voices."""
    import json
    import os
    import sys

    from train import ship

    def run(name, model, manifest_rows):
        folder = tmp_path / name
        model.save_pretrained(folder / "final")
        manifest = tmp_path / f"{name}.jsonl"
        if manifest_rows is not None:  # written before the run's log, as a run reads it
            manifest.write_text("".join(json.dumps(r) + "\n" for r in manifest_rows))
        (folder / "log.csv").write_text("step,loss,samples,audio_hours,elapsed_s,eval_set\n10,2.5,40,0.1,60,\n")
        (folder / "train_config.json").write_text(json.dumps({
            "train_sources": [{"type": "jsonl", "path": str(manifest)}], "lm_weight": 1.0, "ctc_weight": 0.0,
            "learning_rate": 1e-4, "batch_seconds": 100}))
        return folder

    torch.manual_seed(0)
    llm, _ = build(tiny_config)
    ctc, _ = build(tiny_config)
    llm_run = run("llm-a", llm, [{"audio": "a.wav", "text": "a", "engine": "espeak"}])
    ctc_run = run("ctc-b", ctc, None)  # its manifest is gone
    target = tmp_path / "shipped"
    monkeypatch.setattr(ship, "TARGET", target)
    argv = ["ship.py", str(llm_run / "final"), "--runs", str(llm_run), "--ctc-from", str(ctc_run / "final"),
            "--ctc-runs", str(ctc_run)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match="missing"):
        ship.main()
    # a manifest rewritten after its run (a corpus rebuilt since) is not trusted either
    monkeypatch.setattr(sys, "argv", ["ship.py", str(llm_run / "final"), "--runs", str(llm_run)])
    ship.main()  # as the run read it: fine
    assert "ctc_propose" not in (target / "README.md").read_text()  # no proposals set: the card names none
    future = (llm_run / "log.csv").stat().st_mtime + 60
    os.utime(tmp_path / "llm-a.jsonl", (future, future))
    with pytest.raises(SystemExit, match="newer than the run"):
        ship.main()
    past = future - 120
    os.utime(tmp_path / "llm-a.jsonl", (past, past))
    monkeypatch.setattr(sys, "argv", argv + ["--assume-engines", "flite,silero", "--set", "generation.ctc_propose=2"])
    ship.main()
    shipped = load_file(target / "model.safetensors")
    for key, value in ctc.projector.state_dict().items():
        torch.testing.assert_close(shipped[f"ctc_projector.{key}"], value.to(torch.bfloat16))
    for key, value in llm.projector.state_dict().items():
        torch.testing.assert_close(shipped[f"projector.{key}"], value.to(torch.bfloat16))
    assert json.loads((target / "config.json").read_text())["ctc_projector"] is True
    lineage = json.loads((target / "lineage.json").read_text())
    assert lineage["engines"] == ["espeak", "flite", "silero"]
    assert [line.split("`")[1] for line in lineage["runs"]] == ["llm-a"]
    assert [line.split("`")[1] for line in lineage["ctc_runs"]] == ["ctc-b"]
    card = (target / "README.md").read_text()
    assert "CTC projector" in card and "`ctc-b`" in card and "engines taken for them: flite, silero" in card
    assert "The manifests of `ctc-b` were not on the shipping machine" in card
    assert "license: cc-by-nc-sa-4.0" in card and "**Licence.**" in card  # an assumed Silero still sets the licence,
    assert "Silero TTS v3_en" in card  # and the voices are named, with no corpus folder given
    assert json.loads((target / "config.json").read_text())["generation"]["ctc_propose"] == 2
    assert "in the CTC head's top 2 at some frame of the\nclip (`generation.ctc_propose`)" in card


def test_a_context_head_starts_as_the_plain_head_and_reads_a_clip_alone_as_in_a_batch(tiny_config, tmp_path):
    """config.ctc_context: the CTC projector also reads its neighbours. Started from a plain head it is
    the same function (new weights zero) until training moves them; padding never leaks into a clip."""
    torch.manual_seed(0)
    plain, processor = build(tiny_config)
    torch.nn.init.normal_(plain.projector.linear_1.weight, std=0.05)
    plain.save_pretrained(tmp_path / "plain")
    model, _ = build(tiny_config, ctc_context=2)
    model.start_ctc_projector(tmp_path / "plain")
    assert model.ctc_projector.linear_1.in_features == 5 * plain.projector.linear_1.in_features
    batch = processor([tone(0.6), tone(1.7, seed=1)])
    frames, lengths = model.encode(batch["input_features"], batch["feature_lengths"])
    wide, positions = model.ctc_embeddings(frames, lengths)
    torch.testing.assert_close(wide, plain.project(frames, lengths)[0])
    # trained a little: the neighbours matter now, and the short clip still reads the same alone
    torch.nn.init.normal_(model.ctc_projector.linear_1.weight, std=0.05)
    wide, _ = model.ctc_embeddings(frames, lengths)
    assert not torch.allclose(wide, plain.project(frames, lengths)[0], atol=1e-3)
    alone = processor([tone(0.6)])
    one, _ = model.ctc_embeddings(*model.encode(alone["input_features"], alone["feature_lengths"]))
    torch.testing.assert_close(one[0, : positions[0]], wide[0, : positions[0]], atol=1e-5, rtol=1e-4)
    # saved and loaded back as a context head; a plain model given it (ship.py --ctc-from) takes its context
    model.save_pretrained(tmp_path / "wide")
    loaded = ASRModel.from_pretrained(tmp_path / "wide")
    assert loaded.config.ctc_context == 2
    torch.testing.assert_close(loaded.ctc_embeddings(frames, lengths)[0], wide)
    plain.start_ctc_projector(tmp_path / "wide")
    assert plain.config.ctc_context == 2
    torch.testing.assert_close(plain.ctc_embeddings(frames, lengths)[0], wide)
    with pytest.raises(ValueError, match="narrower context"):
        model.ctc_projector.load_narrower({k: v[:, :3] if k == "linear_1.weight" else v
                                           for k, v in model.ctc_projector.state_dict().items()})


def test_averaged_checkpoints_hold_the_mean_and_name_their_sources(tiny_config, tmp_path, monkeypatch):
    """average_checkpoints.py: the mean of each tensor, the first folder's config beside it, the
    sources written down for ship.py's card; folders holding other tensors are refused."""
    import sys

    from train import average_checkpoints, ship

    torch.manual_seed(0)
    folders = []
    for name in ("a", "b"):
        model, _ = build(tiny_config)
        torch.nn.init.normal_(model.projector.linear_1.weight)
        model.save_pretrained(tmp_path / name / "final")
        folders.append(tmp_path / name / "final")
    out = tmp_path / "avg" / "final"
    monkeypatch.setattr(sys, "argv", ["average_checkpoints.py", *map(str, folders), "--out", str(out)])
    average_checkpoints.main()
    a, b, mean = (load_file(f / "model.safetensors") for f in (*folders, out))
    assert not torch.equal(a["projector.linear_1.weight"], b["projector.linear_1.weight"])
    for key in a:
        torch.testing.assert_close(mean[key], (a[key] + b[key]) / 2)
    assert (out / "config.json").read_text() == (folders[0] / "config.json").read_text()
    ASRModel.from_pretrained(out)  # a checkpoint like any other
    assert ship.averaged_from(out) == (" (the mean of the weights of `a/final` and `b/final`, "
                                       "`train/average_checkpoints.py`)")
    assert ship.averaged_from(folders[0]) == ""

    other, _ = build(tiny_config, ctc_context=2)
    other.start_ctc_projector(folders[0])
    other.save_pretrained(tmp_path / "c" / "final")
    monkeypatch.setattr(sys, "argv", ["average_checkpoints.py", str(folders[0]), str(tmp_path / "c" / "final"),
                                      "--out", str(tmp_path / "bad")])
    with pytest.raises(SystemExit, match="other tensors"):
        average_checkpoints.main()
    assert not (tmp_path / "bad").exists()  # nothing written on a refusal
