"""train/train.py end to end on tiny random towers and a small espeak-ng dataset: loss, resume, DDP, bad files."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parent.parent
SENTENCES = [
    "the quick brown fox jumps over the lazy dog", "hello world this is a test", "one two three four five",
    "please call me back tomorrow", "the weather is nice today", "transcribe the speech to text",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """12 espeak-ng clips + 1 corrupt file + 1 empty transcript + 1 missing file, as a JSONL manifest."""
    root = tmp_path_factory.mktemp("data")
    rows = []
    for i in range(12):
        path = root / f"clip{i}.wav"
        text = SENTENCES[i % len(SENTENCES)]
        subprocess.run(["espeak-ng", "-s", str(150 + 5 * i), "-w", str(path), text], check=True)
        rows.append({"audio": path.name, "text": text})
    (root / "corrupt.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)
    rows += [{"audio": "corrupt.wav", "text": "broken"}, {"audio": "clip0.wav", "text": "   "},
             {"audio": "missing.wav", "text": "gone"}]
    with open(root / "train.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with open(root / "dev.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows[:3])
    return root


def overrides(tower_dir, dataset, **extra):
    values = {
        "preset": "null", "encoder": str(tower_dir / "whisper"), "decoder": str(tower_dir / "llama"),
        "model_overrides": "{projector_hidden_dim: 64, generation: {max_new_tokens: 6}}",
        "train_sources": f"[{{type: jsonl, path: {dataset / 'train.jsonl'}}}]",
        "eval_sets": f"{{dev: {{type: jsonl, path: {dataset / 'dev.jsonl'}}}}}",
        "batch_seconds": 8, "max_batch_size": 4, "learning_rate": 0.01, "warmup_steps": 2, "max_steps": 24,
        "log_every": 2, "eval_every": 12, "save_every": 4, "eval_samples": 3, "ctc_weight": 0.5,
        "make_corpus": "null", "feature_cache_dir": str(dataset / "features"),
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]


def run(args, out, env_extra=None, launcher=None, timeout: float = 600):
    """train.py in its own process group: on a timeout the whole group dies (a launcher's workers
    too, which a plain subprocess timeout would leave running) and the test fails with the log tail."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **(env_extra or {})}
    cmd = (launcher or [sys.executable]) + [str(REPO / "train" / "train.py"), "--config", str(REPO / "train/configs/smoke.yaml"),
                                            "--output-dir", str(out)] + args
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"train.py ran past {timeout:.0f} s; stderr tail:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_log(out):
    with open(out / "log.csv") as f:
        return list(csv.DictReader(f))


def test_smoke_run_lowers_loss_and_writes_a_loadable_checkpoint(tower_dir, dataset, tmp_path, monkeypatch):
    out = tmp_path / "run"
    # evals decode as a shipped model does: jointly, with the CTC head's proposals (which need the tokenizer)
    decoding = "{projector_hidden_dim: 64, generation: {max_new_tokens: 6, ctc_propose: 1}}"
    result = run(overrides(tower_dir, dataset, eval_ctc_weight=0.5, model_overrides=decoding, snapshot_every=12), out)
    assert result.returncode == 0, result.stderr[-3000:]
    # snapshots: kept at steps 12 and 24, the last the final weights, the first not
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step-000012", "step-000024"]
    final, middle, last = (load_file(out / d / "model.safetensors") for d in ("final", "snapshots/step-000012", "snapshots/step-000024"))
    assert all(torch.equal(final[k], last[k]) for k in final)
    assert not all(torch.equal(final[k], middle[k]) for k in final)
    losses = [float(r["loss"]) for r in read_log(out) if r["loss"]]
    assert losses[-1] < losses[0], losses
    assert "'unreadable': 2" in result.stderr and "'empty_text': 1" in result.stderr  # corrupt + missing; blank text
    assert (out / "curves.png").stat().st_size > 10_000
    assert any(r["eval_wer"] for r in read_log(out))
    saved = load_file(out / "final" / "model.safetensors")
    assert all(k.startswith("projector.") for k in saved)
    from transformers import pipeline

    pipe = pipeline("automatic-speech-recognition", model=str(out / "final"), trust_remote_code=True, device="cpu")
    assert isinstance(pipe(str(dataset / "clip0.wav"))["text"], str)

    # keep_run: the run in ~half the bytes, loadable as a starting point, its log kept for ship.py
    from train.keep_run import keep
    from tiny_audio import ASRModel

    kept = keep(out, dest_root=tmp_path / "kept")
    assert (kept / "log.csv").read_text() == (out / "log.csv").read_text()
    assert (kept / "final" / "model.safetensors").stat().st_size < 0.6 * (out / "final" / "model.safetensors").stat().st_size
    reloaded = ASRModel.from_pretrained(str(kept / "final")).state_dict()
    for name, value in saved.items():
        assert reloaded[name].dtype == torch.float32
        torch.testing.assert_close(reloaded[name], value.to(torch.bfloat16).float())

    # ship.py from the kept run: the shipped folder holds the same bf16 projector and a card
    from train import ship

    monkeypatch.setattr(ship, "TARGET", tmp_path / "shipped")
    monkeypatch.setattr(sys, "argv", ["ship.py", str(kept / "final"), "--runs", str(kept), "--set", "generation.ctc_top_k=64"])
    ship.main()
    shipped = load_file(tmp_path / "shipped" / "model.safetensors")
    assert shipped.keys() == saved.keys() and all(v.dtype == torch.bfloat16 for v in shipped.values())
    for name, value in saved.items():
        torch.testing.assert_close(shipped[name], value.to(torch.bfloat16))
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert "Tiny Audio" in card
    # the override reaches the shipped config, and the card's decoding line reads it from there
    assert json.loads((tmp_path / "shipped" / "config.json").read_text())["generation"]["ctc_top_k"] == 64
    assert "the LLM's top 64\nnext tokens" in card


def test_resume_after_sigkill_continues_exactly(tower_dir, dataset, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    assert run(overrides(tower_dir, dataset, eval_every=1000), full).returncode == 0
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(REPO / "train/train.py"), "--config", str(REPO / "train/configs/smoke.yaml"),
           "--output-dir", str(killed)] + overrides(tower_dir, dataset, eval_every=1000)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = killed / "checkpoints" / "latest" / "trainer_state.json"
    deadline = time.time() + 300
    while time.time() < deadline and not (state.exists() and json.loads(state.read_text())["step"] >= 8):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads(state.read_text())["step"] < 24
    assert run(overrides(tower_dir, dataset, eval_every=1000), killed).returncode == 0
    a, b = read_log(full), read_log(killed)
    assert [r["step"] for r in a] == [r["step"] for r in b]  # same steps, no gaps or repeats in the curve
    for ra, rb in zip(a, b):
        if ra["loss"]:
            assert abs(float(ra["loss"]) - float(rb["loss"])) < 1e-3 * max(1.0, float(ra["loss"])), (ra, rb)
    assert json.loads(state.read_text())["step"] == 24


@pytest.mark.parametrize("ctc_weight, context", [(0.0, 0), (0.5, 0), (0.5, 1)])
def test_init_ctc_from_joins_a_ctc_projector_that_trains_only_on_ctc(tower_dir, dataset, tiny_config, tmp_path,
                                                                     ctc_weight, context):
    """init_ctc_from: a second run's head joins as the CTC projector; with ctc_weight=0 only the LLM's
    projector moves, with ctc_weight>0 both do, and the run's checkpoint holds both (what ship.py and
    the pipeline load). init_ctc_context widens the head to read its neighbours."""
    from tiny_audio import ASRModel

    torch.manual_seed(0)
    ASRModel(tiny_config(projector_hidden_dim=64, generation={"max_new_tokens": 6})).save_pretrained(tmp_path / "llm")
    ASRModel(tiny_config(projector_hidden_dim=64, generation={"max_new_tokens": 6})).save_pretrained(tmp_path / "ctc")
    out = tmp_path / "run"
    args = overrides(tower_dir, dataset, init_from=tmp_path / "llm", init_ctc_from=tmp_path / "ctc", ctc_weight=ctc_weight,
                     max_steps=6, eval_every=1000, init_ctc_context=context)
    result = run(args, out)
    assert result.returncode == 0, result.stderr[-3000:]
    trained = "projector, ctc_projector\n" if ctc_weight else "projector\n"
    assert f"parameters: {trained}" in result.stderr  # the log says which projectors train
    final, llm, ctc = (load_file(path / "model.safetensors") for path in (out / "final", tmp_path / "llm", tmp_path / "ctc"))
    if context:  # the neighbours' weights start at zero, the centre block at the head's
        width = ctc["projector.linear_1.weight"].shape[1]
        assert final["ctc_projector.linear_1.weight"].shape[1] == 3 * width
        final["ctc_projector.linear_1.weight"] = final["ctc_projector.linear_1.weight"][:, width : 2 * width]
    moved = [not torch.equal(final["ctc_" + key], value) for key, value in ctc.items()]
    assert any(moved) if ctc_weight else not any(moved)  # frozen when no loss reads it
    assert any(not torch.equal(final[key], value) for key, value in llm.items())  # trained
    config = json.loads((out / "final" / "config.json").read_text())
    assert config["ctc_projector"] is True and config["ctc_context"] == context


def test_sigterm_saves_then_exits(tower_dir, dataset, tmp_path):
    out = tmp_path / "term"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, str(REPO / "train/train.py"), "--config", str(REPO / "train/configs/smoke.yaml"),
           "--output-dir", str(out)] + overrides(tower_dir, dataset, eval_every=1000, save_every=1000, max_steps=500)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not ((out / "log.csv").exists() and len(read_log(out)) >= 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    step = json.loads((out / "checkpoints/latest/trainer_state.json").read_text())["step"]
    assert 4 <= step < 500


def test_ddp_two_processes(tower_dir, dataset, tmp_path):
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port())]
    result = run(overrides(tower_dir, dataset, max_steps=6, eval_every=1000, save_every=3), out, launcher=launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "processes: 2 (" in result.stderr
    rows = [r for r in read_log(out) if r["loss"]]
    assert rows[-1]["step"] == "6"
    assert int(rows[-1]["samples"]) >= 12  # each step consumes one batch per process
    assert (out / "final" / "model.safetensors").exists()


def test_frame_masking_is_seeded_and_masks_only_spans():
    import torch

    from train.data import mask_frames

    frames, lengths = torch.ones(2, 50, 64), torch.tensor([50, 30])
    a = mask_frames(frames, lengths, torch.Generator().manual_seed(3))
    b = mask_frames(frames, lengths, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(frames, torch.ones(2, 50, 64))  # same seed, same masks; input untouched
    zeroed = (a == 0).float().mean().item()
    assert 0 < zeroed < 0.9
    narrow = torch.ones(1, 20, 8)  # fewer channels than the widest band: bands are capped, no error
    assert mask_frames(narrow, torch.tensor([20]), torch.Generator().manual_seed(0)).shape == narrow.shape


def test_spec_augment_masks_set_the_masking_and_bad_keys_fail_at_load():
    import torch

    from train.config import load_config
    from train.data import mask_frames

    config = load_config(None, ["spec_augment_masks={time_masks: 8, max_time: 20, channel_masks: 0}"])
    assert config.spec_augment_masks == {"time_masks": 8, "max_time": 20, "channel_masks": 0}
    frames, lengths = torch.ones(64, 200, 32), torch.full((64,), 200)
    mild = (mask_frames(frames, lengths, torch.Generator().manual_seed(0), channel_masks=0) == 0).float().mean()
    strong = (mask_frames(frames, lengths, torch.Generator().manual_seed(0), **config.spec_augment_masks) == 0).float().mean()
    assert strong > 3 * mild > 0  # 8 spans of up to 20 frames against the default 2 of up to 10
    with pytest.raises(ValueError, match="spec_augment_masks takes"):
        load_config(None, ["spec_augment_masks={time_mask: 8}"])


def test_bf16_auto_turns_autocast_off_where_the_cpu_only_emulates_bf16(monkeypatch):
    from train import train as train_script
    from train.config import load_config

    assert load_config(None, []).bf16 == "auto"
    assert load_config(None, ["bf16=false"]).bf16 is False
    assert load_config(None, ["bf16=True"]).bf16 is True
    with pytest.raises(ValueError, match="bf16 takes"):
        load_config(None, ["bf16=sometimes"])
    # The probe PyTorch itself uses for AVX512-BF16/AMX decides "auto"; an explicit setting wins.
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert train_script.resolve_bf16("auto", "cpu") is False
    assert train_script.resolve_bf16(True, "cpu") is True
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    assert train_script.resolve_bf16("auto", "cpu") is True
    assert train_script.resolve_bf16(False, "cpu") is False


def test_eval_points_between_logged_steps_get_interpolated_samples():
    from train.plots import samples_at

    train = [{"step": "10", "samples": "300"}, {"step": "20", "samples": "700"}]
    assert samples_at([10, 15, 20], train) == [300.0, 500.0, 700.0]  # eval_every=15, log_every=10
    assert samples_at([5], train) == [150.0]  # before the first logged row: from zero
    assert samples_at([3], []) == [3.0]  # no training rows yet: the step itself


def test_model_card_takes_the_strictest_licence_of_the_voices_its_lineage_heard(tmp_path):
    from train.ship import card_licence, earlier_lineage, heard_engines

    def run(name, rows):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        folder = tmp_path / name
        folder.mkdir()
        (folder / "train_config.json").write_text(json.dumps({"train_sources": [
            {"type": "jsonl", "path": str(tmp_path / f"{name}.jsonl")}, {"type": "hub", "path": "some/dataset"}]}))
        return folder

    classic = run("classic", [{"audio": "a.wav", "text": "a", "engine": "espeak"}, {"audio": "b.wav", "text": "b"}])
    silero = run("silero", [{"audio": "c.wav", "text": "c", "engine": "silero"}, {"audio": "d.wav", "text": "d", "engine": "flite"}])
    assert heard_engines([classic]) == ["espeak"]  # rows without an engine (real speech) and hub sources add none
    assert card_licence(heard_engines([classic])) == "apache-2.0"
    assert heard_engines([classic, silero]) == ["espeak", "flite", "silero"]  # the union over the lineage's runs
    assert card_licence(heard_engines([classic, silero])) == "cc-by-nc-sa-4.0"
    # A run that starts from a shipped model inherits the voices its lineage.json records
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "lineage.json").write_text(json.dumps({"engines": ["kokoro"], "runs": ["- `old`: 10 steps"]}))
    config = json.loads((classic / "train_config.json").read_text())
    (classic / "train_config.json").write_text(json.dumps({**config, "init_from": str(shipped)}))
    assert earlier_lineage([classic, silero])["runs"] == ["- `old`: 10 steps"]
    assert heard_engines([classic]) == ["espeak", "kokoro"]
    assert earlier_lineage([silero]) == {"engines": [], "runs": []}  # from scratch: nothing earlier
    (tmp_path / "silero.jsonl").unlink()
    with pytest.raises(SystemExit, match="missing"):
        heard_engines([silero])


def test_feature_cache_reencodes_a_clip_whose_audio_was_rebuilt_after_its_features(tmp_path):
    """A corpus clip rebuilt under the same id and path (round 7, README item 26) must not keep the
    frames of the audio it replaced; a clip listed three times is encoded once."""
    import numpy as np
    import soundfile as sf
    from train import data

    class Encoder:
        config = type("Config", (), {"encoder_name_or_path": "fake"})()
        calls = 0

        def encode(self, features, lengths):
            Encoder.calls += 1
            return features, lengths  # the "frames" are the audio itself, so they show which audio was encoded

    class Processor:
        def features(self, audio):
            longest = max(len(a) for a in audio)
            padded = torch.zeros(len(audio), longest, 1)
            for i, a in enumerate(audio):
                padded[i, : len(a), 0] = torch.from_numpy(a)
            return {"input_features": padded, "feature_lengths": torch.tensor([len(a) for a in audio])}

    wav = tmp_path / "clip.wav"
    sf.write(wav, np.full(1600, 0.25, dtype=np.float32), 16000)
    clip = data.Clip(id="train-078000", audio=str(wav), text="first", duration=0.1)
    cache = data.FeatureCache(str(tmp_path / "features"), Encoder(), Processor(), bf16=False)
    cache.build([clip, clip, clip])
    assert Encoder.calls == 1 and cache.load(clip)[0, 0].item() == pytest.approx(0.25, abs=1e-3)
    cache.build([clip])
    assert Encoder.calls == 1  # fresh features are reused
    sf.write(wav, np.full(1600, -0.5, dtype=np.float32), 16000)  # the clip is rebuilt with other audio
    later = cache.path(clip).stat().st_mtime_ns + 1_000_000_000  # newer for sure, whatever the clock's granularity
    os.utime(wav, ns=(later, later))
    cache.build([clip])
    assert Encoder.calls == 2 and cache.load(clip)[0, 0].item() == pytest.approx(-0.5, abs=1e-3)


def test_a_spelling_head_rides_along_untrained(tower_dir, dataset, tiny_config, tmp_path):
    """A model with a spelling head (train/train_spelling_head.py trains it) keeps it as it is through train.py."""
    from tiny_audio import ASRModel

    torch.manual_seed(0)
    shape = {"downsample_rate": 2, "hidden_dim": 16, "context": 1}
    ASRModel(tiny_config(projector_hidden_dim=64, generation={"max_new_tokens": 6}, spelling_head=shape)).save_pretrained(tmp_path / "m")
    out = tmp_path / "run"
    result = run(overrides(tower_dir, dataset, init_from=tmp_path / "m", max_steps=4, eval_every=1000), out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "parameters: projector\n" in result.stderr
    start, final = (load_file(path / "model.safetensors") for path in (tmp_path / "m", out / "final"))
    spelling = [key for key in start if key.startswith("spelling_head.")]
    assert spelling and all(torch.equal(final[key], start[key]) for key in spelling)
    assert any(not torch.equal(final[key], start[key]) for key in start if key.startswith("projector."))
