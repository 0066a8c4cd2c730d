"""Core model: projector, freezing, padding invariance, save/load, training signal."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import tone
from tiny_audio import ASRModel, ASRProcessor, AudioProjector
from tiny_audio.modeling import normalize_frames
from tiny_audio.processing import AUDIO_TOKEN_ID
from tiny_audio.projector import projector_param_count

ENCODERS = ["whisper", "hubert", "wav2vec2"]


def build(tiny_config, encoder="whisper", decoder="llama", **overrides):
    config = tiny_config(encoder, decoder, **overrides)
    return ASRModel(config), ASRProcessor.from_config(config)


def test_projector_shapes_and_param_count():
    projector = AudioProjector(encoder_dim=16, llm_dim=24, downsample_rate=5, hidden_dim=32)
    out = projector(torch.randn(3, 7, 16))  # 7 frames -> 2 tokens: the tail is padded, not dropped
    assert out.shape == (3, 2, 24)
    assert sum(p.numel() for p in projector.parameters()) == projector_param_count(16, 24, 5, 32) == (80 + 1) * 32 + 33 * 24


def test_projector_tail_padding_is_zeros():
    projector = AudioProjector(4, 6, downsample_rate=5, hidden_dim=8)
    frames = torch.randn(1, 7, 4)
    padded = torch.cat([frames, torch.zeros(1, 3, 4)], dim=1)
    torch.testing.assert_close(projector(frames), projector(padded))


@pytest.mark.parametrize("dims,readme_count", [((384, 576), 5_114_432), ((1024, 2048), 14_684_160)])
def test_preset_projector_sizes(dims, readme_count):
    """The README's per-preset counts (embedded: Whisper tiny 384 -> SmolLM2 576; full: HuBERT 1024 -> SmolLM3 2048)."""
    real = sum(p.numel() for p in AudioProjector(*dims).parameters())
    assert real == projector_param_count(*dims) == readme_count


@pytest.mark.parametrize("encoder", ENCODERS)
def test_audio_token_count_matches_model(tiny_config, encoder):
    model, processor = build(tiny_config, encoder)
    for seconds in (0.5, 1.03, 2.0):
        batch = processor([tone(seconds)])
        frames, lengths = model.encode(batch["input_features"], batch["feature_lengths"])
        _, tokens = model.project(frames, lengths)
        assert tokens.item() == processor.audio_tokens(len(tone(seconds)))
        assert (batch["input_ids"] == AUDIO_TOKEN_ID).sum().item() == tokens.item()


def test_only_projector_trains(tiny_config):
    model, processor = build(tiny_config)
    towers_before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("projector.")}
    projector_before = {k: v.clone() for k, v in model.projector.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert sum(p.numel() for p in trainable) == sum(p.numel() for p in model.projector.parameters())
    optimizer = torch.optim.AdamW(trainable, lr=1e-3)
    model.train()
    assert not model.encoder.training and not model.decoder.training
    batch = processor([tone(1.0), tone(1.7, seed=1)], text=["hello world", "one two three"])
    for _ in range(2):
        loss = model(**batch).loss
        loss.backward()
        for name, param in model.named_parameters():
            assert (param.grad is not None) == name.startswith("projector."), name
        optimizer.step()
        optimizer.zero_grad()
    for key, value in model.state_dict().items():
        if not key.startswith("projector."):
            assert torch.equal(value, towers_before[key]), key
    assert any(not torch.equal(v, model.projector.state_dict()[k]) for k, v in projector_before.items())


@pytest.mark.parametrize("mode", ["mean", "meanvar"])
def test_frame_norm_uses_each_clips_valid_frames_only(mode):
    torch.manual_seed(0)
    frames = torch.randn(2, 9, 4) * 3 + torch.tensor([1.0, -2.0, 5.0, 0.5])  # channel offsets to take away
    lengths = torch.tensor([9, 5])
    frames[1, 5:] = 100.0  # junk in the padding must not leak into the statistics
    out = normalize_frames(frames, lengths, mode)
    for i, n in enumerate(lengths.tolist()):
        valid = out[i, :n]
        torch.testing.assert_close(valid.mean(0), torch.zeros(4), atol=1e-5, rtol=0)
        if mode == "meanvar":
            torch.testing.assert_close(valid.pow(2).mean(0), torch.ones(4), atol=1e-3, rtol=0)
        else:  # centred only: the spread is the clip's own
            torch.testing.assert_close(valid.std(0, unbiased=False), frames[i, :n].std(0, unbiased=False))
        # the same clip alone (no padding) normalizes the same
        torch.testing.assert_close(valid, normalize_frames(frames[i : i + 1, :n], lengths[i : i + 1], mode)[0])
    assert out[1, 5:].abs().max() == 0
    assert normalize_frames(frames, lengths, None) is frames


def test_frame_norm_is_validated_and_saved(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="frame_norm"):
        tiny_config(frame_norm="std")
    model, _ = build(tiny_config, frame_norm="meanvar")
    model.save_pretrained(tmp_path)
    assert ASRModel.from_pretrained(tmp_path).config.frame_norm == "meanvar"


@pytest.mark.parametrize("encoder,decoder,frame_norm", [
    ("whisper", "llama", None), ("hubert", "smollm3", None), ("wav2vec2", "llama", None), ("whisper", "llama", "meanvar"),
])
def test_padding_does_not_change_a_clip(tiny_config, encoder, decoder, frame_norm):
    model, processor = build(tiny_config, encoder, decoder, frame_norm=frame_norm)
    clips = [tone(0.6, freq=300), tone(2.3, freq=500, seed=1), tone(1.1, freq=700, seed=2)]
    batch = processor(clips)
    embeds, lengths = model.audio_embeddings(batch["input_features"], batch["feature_lengths"])
    for i, clip in enumerate(clips):
        one = processor([clip])
        e1, l1 = model.audio_embeddings(one["input_features"], one["feature_lengths"])
        assert l1.item() == lengths[i].item()
        torch.testing.assert_close(embeds[i, : l1.item()], e1[0], atol=1e-5, rtol=1e-4)
    # End to end: the batched transcript equals the one-by-one transcript (greedy).
    batched = processor.batch_decode(model.generate(**batch, num_beams=1, max_new_tokens=6))
    single = [processor.batch_decode(model.generate(**processor([c]), num_beams=1, max_new_tokens=6))[0] for c in clips]
    assert batched == single


def test_training_batch_padding_does_not_change_loss(tiny_config):
    model, processor = build(tiny_config)
    clips, texts = [tone(0.6), tone(2.0, seed=3)], ["hello world", "the quick brown fox jumps"]
    together = processor(clips, text=texts)
    hidden_ids = model.embed(together["input_ids"], together["input_features"], together["feature_lengths"])
    for i in range(2):
        one = processor([clips[i]], text=[texts[i]])
        alone = model.embed(one["input_ids"], one["input_features"], one["feature_lengths"])
        torch.testing.assert_close(hidden_ids[i, : alone.shape[1]], alone[0], atol=1e-5, rtol=1e-4)


def test_save_load_round_trip(tiny_config, tmp_path):
    model, processor = build(tiny_config, "hubert", "smollm3")
    torch.nn.init.normal_(model.projector.linear_2.weight)  # make the projector differ from a fresh init
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert sorted(saved) == sorted(f"projector.{k}" for k in model.projector.state_dict())
    assert (tmp_path / "model.safetensors").stat().st_size < 1.1 * 4 * model.parameter_counts()["projector"] + 10_000
    for code in ("modeling.py", "configuration.py", "pipeline.py", "processing.py", "projector.py", "audio.py", "weights.py"):
        assert (tmp_path / code).exists(), code
    loaded = ASRModel.from_pretrained(tmp_path)
    batch = processor([tone(1.2)], text=["hello world"])
    with torch.no_grad():
        a = model(batch["input_ids"], batch["attention_mask"], input_features=batch["input_features"],
                  feature_lengths=batch["feature_lengths"]).logits
        b = loaded(batch["input_ids"], batch["attention_mask"], input_features=batch["input_features"],
                   feature_lengths=batch["feature_lengths"]).logits
    assert torch.equal(a, b)

    # weights_dtype: the file holds bf16 tensors at half the size; loading gives the rounded fp32 weights
    model.save_pretrained(tmp_path / "bf16", weights_dtype=torch.bfloat16)
    halved = load_file(tmp_path / "bf16" / "model.safetensors")
    assert all(v.dtype == torch.bfloat16 for v in halved.values())
    assert (tmp_path / "bf16" / "model.safetensors").stat().st_size < 0.6 * (tmp_path / "model.safetensors").stat().st_size
    reloaded = ASRModel.from_pretrained(tmp_path / "bf16").projector.state_dict()
    for name, value in model.projector.state_dict().items():
        assert reloaded[name].dtype == torch.float32
        torch.testing.assert_close(reloaded[name], value.to(torch.bfloat16).float())


def test_load_rejects_foreign_keys(tiny_config):
    model, _ = build(tiny_config)
    with pytest.raises(ValueError, match="non-projector"):
        model.load_projector({"decoder.lm_head.weight": torch.zeros(1)})
    with pytest.raises(RuntimeError):  # strict: a missing projector key is an error
        model.load_projector({"projector.linear_1.weight": model.projector.linear_1.weight})


def test_dimension_mismatch_is_a_clear_error(tiny_config):
    config = tiny_config()
    config.llm_dim = 999
    with pytest.raises(ValueError, match="999"):
        ASRModel(config)


def test_overfit_one_batch(tiny_config):
    torch.manual_seed(0)
    model, processor = build(tiny_config)
    batch = processor([tone(1.0), tone(1.4, freq=600, seed=5)], text=["hello world", "one two three"])
    optimizer = torch.optim.AdamW(model.projector.parameters(), lr=1e-2)
    model.train()
    losses = []
    for _ in range(100):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_beam_and_greedy_generate(tiny_config):
    model, processor = build(tiny_config)
    batch = processor([tone(1.0), tone(0.7, seed=2)])
    greedy = model.generate(**batch, num_beams=1, max_new_tokens=5)
    beams = model.generate(**batch, num_beams=3, max_new_tokens=5, length_penalty=1.0)
    assert greedy.shape[0] == beams.shape[0] == 2
    assert greedy.shape[1] <= 5 and beams.shape[1] <= 5


def test_default_length_cap_follows_audio_duration(tiny_config):
    model, processor = build(tiny_config, generation={"max_new_tokens": 500, "num_beams": 1, "max_tokens_per_second": 6.0})
    batch = processor([tone(1.0)])  # 1 s of audio: at most 6 + 10 new tokens by default
    tokens = model.generate(**batch, min_new_tokens=40)  # the random LM would go on; the cap stops it
    assert tokens.shape[1] == 16
    assert model.generate(**batch, max_new_tokens=12, min_new_tokens=12).shape[1] == 12  # a lower ceiling holds
    assert model.generate(**batch, max_new_tokens=30, min_new_tokens=30).shape[1] == 16  # a higher one is capped
    assert model.generate(**batch, max_new_tokens=30, min_new_tokens=30, max_tokens_per_second=0).shape[1] == 30
    # Batched with a 4 s clip (cap 34), the 1 s clip still stops at 16: the rest of its row is padding.
    batch = processor([tone(1.0), tone(4.0)])
    never = model.decoder.config.vocab_size + 1  # an eos the random LM cannot emit: rows end only by their caps
    tokens = model.generate(**batch, eos_token_id=never, pad_token_id=0)
    assert tokens.shape[1] == 34
    assert (tokens[0, 16:] == 0).all() and (tokens[1, 16:] != 0).any()


def test_first_word_is_the_same_token_as_anywhere_else(tiny_config):
    """Targets start with a space, so a word has one token whether it opens the transcript or not
    (otherwise the CTC head learns two and joint decoding wrote both: "Please please try again")."""
    _, processor = build(tiny_config)
    alone = processor.target_ids("tokenizer")[:-1]  # without the eos
    after = processor.target_ids("tiny tokenizer")[:-1]  # the test BPE has " to" but not "to"
    assert after[-len(alone):] == alone
    assert processor.tokenizer.decode(processor.target_ids("hello world")[:-1]).strip() == "hello world"
