"""Train the projector (only the projector) between a frozen encoder and a frozen LLM.

    python train/train.py --config train/configs/smoke.yaml --output-dir runs/smoke [key=value ...]
    accelerate launch --num_processes 2 train/train.py --config ...     # DDP (torchrun works too)

Built on accelerate (device placement, DDP, process groups) with a short explicit loop rather
than transformers.Trainer: batches come from cached encoder features in length-aware groups,
checkpoints hold only the projector + optimizer state (safetensors, no pickle), and resuming
regenerates the exact batch order, so an explicit loop is shorter and easier to verify.
A run killed at any point (SIGTERM saves first; SIGKILL loses at most save_every steps)
resumes from <output_dir>/checkpoints/latest with the same step count and a continuous log.
"""

import argparse
import csv
import json
import logging
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # repo root: eval/ and train/ as packages
from eval.metrics import wer  # noqa: E402
from tiny_audio import ASRConfig, ASRModel, ASRProcessor  # noqa: E402
from tiny_audio.presets import make_config, preset_config  # noqa: E402
from train import data  # noqa: E402
from train.config import TrainConfig, load_config, to_dict  # noqa: E402
from train.plots import plot_run  # noqa: E402

log = logging.getLogger("train")
LOG_FIELDS = ["step", "epoch", "loss", "lm_loss", "ctc_loss", "lr", "samples", "audio_hours", "elapsed_s",
              "samples_per_s", "audio_h_per_h", "eval_set", "eval_loss", "eval_wer", "eval_ctc_wer"]


def get_lr(step: int, cfg: TrainConfig) -> float:
    # 1) linear warmup, 2) cosine decay to the floor at max_steps, 3) the floor after that
    if step < cfg.warmup_steps:
        return cfg.learning_rate * (step + 1) / cfg.warmup_steps
    floor = cfg.learning_rate * cfg.min_lr_ratio
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return floor + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.learning_rate - floor)


def build_corpus(spec: dict) -> None:
    """The smoke config's data: synthesize a small corpus on the spot with train/make_corpus.py."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).with_name("make_corpus.py")), "--out", spec["out"],
           "--clips", str(spec.get("clips", 64)), "--engines", spec.get("engines", "espeak")]
    log.info("building corpus: " + " ".join(cmd))
    subprocess.run(cmd, check=True)


def build_model(cfg: TrainConfig) -> ASRModel:
    if cfg.init_from:
        model = ASRModel.from_pretrained(cfg.init_from)
    elif cfg.preset:
        model = ASRModel(preset_config(cfg.preset, **cfg.model_overrides))
    else:
        model = ASRModel(make_config(cfg.encoder, cfg.decoder, **cfg.model_overrides))
    if cfg.init_ctc_from:
        model.config.ctc_context = max(model.config.ctc_context, cfg.init_ctc_context)
        model.start_ctc_projector(cfg.init_ctc_from)
    return model


# --- checkpoints: projector + optimizer (safetensors) + loop state (JSON) --------------------------
def save_checkpoint(folder: Path, model: ASRModel, optimizer, state: dict) -> None:
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    opt = optimizer.state_dict()
    tensors = {f"state.{i}.{k}": v for i, s in opt["state"].items() for k, v in s.items()}
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / "optimizer.safetensors"))
    (tmp / "optimizer.json").write_text(json.dumps(opt["param_groups"]))
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)  # a checkpoint either exists whole or not at all


def load_checkpoint(folder: Path, model: ASRModel, optimizer) -> dict:
    model.load_projector(load_file(str(folder / "model.safetensors")))
    tensors = load_file(str(folder / "optimizer.safetensors"))
    state = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads((folder / "optimizer.json").read_text())})
    return json.loads((folder / "trainer_state.json").read_text())


class CsvLog:
    """Append-only metrics log; on resume, rows past the checkpoint's step are dropped (continuous curve)."""

    def __init__(self, path: Path, resume_step: int):
        self.path = path
        rows = []
        if path.exists() and resume_step > 0:
            with open(path) as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, LOG_FIELDS)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, **row):
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, LOG_FIELDS).writerow({k: row.get(k, "") for k in LOG_FIELDS})


# --- evaluation ---------------------------------------------------------------------------------
def ctc_blank_id(processor, cfg: TrainConfig) -> int:
    if cfg.ctc_blank == "eos":
        return processor.tokenizer.eos_token_id
    ids = processor.tokenizer(cfg.ctc_blank, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"ctc_blank {cfg.ctc_blank!r} is {len(ids)} tokens; it must be exactly one")
    return ids[0]


@torch.no_grad()
def resolve_bf16(setting: bool | str, device_type: str) -> bool:
    """bf16=auto: on only where bf16 matmuls are native (see TrainConfig.bf16 for why)."""
    if setting != "auto":
        return bool(setting)
    if device_type == "cuda":
        return torch.cuda.is_bf16_supported()
    # PyTorch's own probe for AVX512-BF16 / AMX (used by its tests and inductor to choose bf16 paths).
    return device_type == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def evaluate(model, processor, clips, collate, cfg, autocast) -> dict:
    """Teacher-forced loss, greedy-decoding WER, and the CTC best-path WER of the projector alone."""
    model.eval()
    losses, refs, hyps, ctc_hyps = [], [], [], []
    blank = ctc_blank_id(processor, cfg)
    model.config.ctc_blank_id = blank  # saved with every checkpoint: joint CTC decoding needs it
    k = model.config.downsample_rate
    for start in range(0, len(clips), 16):
        group = clips[start : start + 16]
        batch = collate(group)
        with autocast():
            losses.append(model(**batch).loss.item())
        # Decoding runs in the towers' own dtype, outside autocast: one-row bf16 matmuls are
        # ~20x slower than fp32 on CPUs without AMX (measured on this AMD EPYC).
        if "encoder_frames" in batch:
            frames, frame_lengths = batch["encoder_frames"], batch["frame_lengths"]
        else:  # encoded once here, for both the CTC best path and generate
            frames, frame_lengths = model.encode(batch["input_features"], batch["feature_lengths"])
        ctc_hyps += processor.tokenizer.batch_decode(model.ctc_greedy(*model.ctc_embeddings(frames, frame_lengths), blank))
        prompt = processor.token_batch([math.ceil(int(n) / k) for n in frame_lengths])
        tokens = model.generate(**prompt, encoder_frames=frames, frame_lengths=frame_lengths, num_beams=cfg.eval_num_beams,
                                max_new_tokens=cfg.eval_max_new_tokens, ctc_weight=cfg.eval_ctc_weight,
                                tokenizer=processor.tokenizer)  # ctc_propose and a spelling head need it
        refs += [c.text for c in group]
        hyps += processor.batch_decode(tokens)
    scores = wer(refs, hyps)
    samples = list(zip(refs, hyps, ctc_hyps))[: cfg.samples_to_show]
    return {"loss": sum(losses) / len(losses), "wer": scores["wer"], "ctc_wer": wer(refs, ctc_hyps)["wer"], "samples": samples}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--output-dir")
    parser.add_argument("overrides", nargs="*", help="key=value, e.g. max_steps=100 learning_rate=5e-4")
    args = parser.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    out = Path(cfg.output_dir)

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    logging.basicConfig(level=logging.INFO if accelerator.is_main_process else logging.WARNING,
                        format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.manual_seed(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out.mkdir(parents=True, exist_ok=True)
    (out / "train_config.json").write_text(json.dumps(to_dict(cfg), indent=2))

    log.info(f"processes: {accelerator.num_processes} ({accelerator.distributed_type}, {accelerator.device})")
    model = build_model(cfg)
    processor = ASRProcessor.from_config(model.config)
    blank = ctc_blank_id(processor, cfg)
    counts = model.parameter_counts()
    log.info(f"parameters: trainable {counts['trainable']:,} (projector) of "
             f"{sum(v for k, v in counts.items() if k != 'trainable'):,} total")
    if cfg.gradient_checkpointing:
        model.decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    device_type = accelerator.device.type
    bf16 = resolve_bf16(cfg.bf16, device_type)
    log.info(f"bf16 autocast: {'on' if bf16 else 'off'} (bf16={cfg.bf16})")
    autocast = lambda: torch.autocast(device_type, dtype=torch.bfloat16, enabled=bf16)  # noqa: E731

    # Data: local sources are checked (bad clips counted) and their encoder features cached once;
    # hub sources stream and run the encoder every step.
    streaming = any(s["type"] == "hub" for s in cfg.train_sources)
    use_cache = cfg.cache_features and not streaming
    clips, skipped = [], {}
    if not streaming:
        first = cfg.train_sources[0] if cfg.train_sources else {}
        if cfg.make_corpus and accelerator.is_main_process and not os.path.exists(os.path.expanduser(first.get("path", ""))):
            build_corpus(cfg.make_corpus)
        accelerator.wait_for_everyone()
        clips = [c for s in cfg.train_sources for c in data.load_source(s)]
        clips, skipped = data.check_clips(clips, cfg.max_audio_seconds)
    eval_sets = {}
    for name, source in cfg.eval_sets.items():
        eval_sets[name] = data.check_clips(data.load_source(source, cfg.eval_samples * 2), cfg.max_audio_seconds)[0][: cfg.eval_samples]
    cache = data.FeatureCache(cfg.feature_cache_dir or str(out / "features"), model, processor, bf16) if use_cache else None
    if cache is not None:
        if accelerator.is_main_process:
            clips, failed = cache.build(clips)
            skipped["undecodable"] = failed
            for name in eval_sets:
                eval_sets[name], _ = cache.build(eval_sets[name])
        accelerator.wait_for_everyone()
        clips = [c for c in clips if cache.path(c).exists()]
        for name in eval_sets:
            eval_sets[name] = [c for c in eval_sets[name] if cache.path(c).exists()]
    if not streaming and not clips:
        raise SystemExit("no usable training clips")
    if clips:
        log.info(f"train clips: {len(clips)} ({sum(c.duration for c in clips) / 3600:.2f} h); skipped: {skipped}")
    k = model.config.downsample_rate

    def collate(group):
        return data.collate_cached(group, cache, processor, k) if cache else data.collate_audio(group, processor)

    def epoch_batches(epoch: int, start: int):
        """(index, clips) for this process's share of one epoch, from batch ``start`` on."""
        if streaming:
            stream = data.stream_batches(data.stream_hub(cfg.train_sources, cfg.seed + epoch), cfg.batch_seconds,
                                         cfg.max_batch_size, cfg.max_audio_seconds, skipped)
            for index, group in enumerate(stream):
                if index % accelerator.num_processes == accelerator.process_index and index // accelerator.num_processes >= start:
                    yield index // accelerator.num_processes, group
            return
        batches = data.length_batches(clips, cfg.batch_seconds, cfg.max_batch_size, cfg.seed, epoch)
        batches = batches[accelerator.process_index :: accelerator.num_processes]
        for index in range(start, len(batches)):
            yield index, [clips[i] for i in batches[index]]

    # Every projector the model has (a CTC projector too); each loss reaches only the one it reads, so
    # with a CTC projector a loss weighted 0 leaves its projector frozen (and DDP sees no unused weights).
    if model.ctc_projector is not None:
        model.ctc_projector.requires_grad_(cfg.ctc_weight > 0)
        model.projector.requires_grad_(cfg.lm_weight > 0)
    if model.spelling_head is not None:  # no loss here reads it (train/train_spelling_head.py trains it): carried as is
        model.spelling_head.requires_grad_(False)
    training = {name: [p for p in module.parameters() if p.requires_grad] for name, module in model.projectors().items()}
    clip_groups = [params for params in training.values() if params]
    trained = [p for params in clip_groups for p in params]
    log.info(f"training {sum(p.numel() for p in trained):,} parameters: "
             + ", ".join(name for name, params in training.items() if params))
    optimizer = torch.optim.AdamW(trained, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    latest = out / "checkpoints" / "latest"
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "samples": 0, "audio_seconds": 0.0, "elapsed_s": 0.0,
             "best_wer": None, "skipped": skipped}
    if latest.exists():
        state = load_checkpoint(latest, model, optimizer)
        log.info(f"resumed from {latest} at step {state['step']}")
    elif cfg.match_output_scale and not cfg.init_from:
        _, first = next(epoch_batches(0, 0))
        batch = collate(first[:16])
        sample = batch.get("encoder_frames")
        if sample is None:
            sample, _ = model.encode(batch["input_features"], batch["feature_lengths"])
        target = model.decoder.get_input_embeddings().weight.float().pow(2).mean().sqrt().item()
        factor = model.projector.match_output_scale(target, sample)
        log.info(f"projector output scaled x{factor:.2f} to the LLM embedding RMS {target:.4f}")
    csv_log = CsvLog(out / "log.csv", state["step"]) if accelerator.is_main_process else None
    model, optimizer = accelerator.prepare(model, optimizer)
    inner = accelerator.unwrap_model(model)

    stop = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(flag=True))  # finish the step, save, exit

    def checkpoint():
        if accelerator.is_main_process:
            save_checkpoint(latest, inner, optimizer, state)

    window_start, window_samples, window_audio = time.perf_counter(), 0, 0.0
    run_start = time.perf_counter() - state["elapsed_s"]
    model.train()
    def out_of_time() -> bool:
        return cfg.max_minutes is not None and time.perf_counter() - run_start > 60 * cfg.max_minutes

    while state["step"] < cfg.max_steps and not stop["flag"] and not out_of_time():
        for index, group in epoch_batches(state["epoch"], state["batch_in_epoch"]):
            if state["step"] >= cfg.max_steps or stop["flag"] or out_of_time():
                break
            batch = collate(group)
            if cfg.spec_augment and "encoder_frames" in batch:
                generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + state["step"])
                batch["encoder_frames"] = data.mask_frames(batch["encoder_frames"], batch["frame_lengths"], generator,
                                                           **cfg.spec_augment_masks)
            batch = {key: v.to(accelerator.device) for key, v in batch.items()}
            lr = get_lr(state["step"], cfg)
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            with autocast():
                output = model(**batch, ctc_weight=cfg.ctc_weight, lm_weight=cfg.lm_weight, ctc_vocab_sample=cfg.ctc_vocab_sample,
                               ctc_blank_id=blank)
            accelerator.backward(output.loss)
            for params in clip_groups:  # each projector on its own: one loss's spike never shrinks the other's step
                accelerator.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            audio = sum(c.duration for c in group) * accelerator.num_processes
            state["step"] += 1
            state["batch_in_epoch"] = index + 1
            state["samples"] += len(group) * accelerator.num_processes
            state["audio_seconds"] += audio
            state["elapsed_s"] = time.perf_counter() - run_start
            window_samples += len(group) * accelerator.num_processes
            window_audio += audio

            if state["step"] % cfg.log_every == 0 and accelerator.is_main_process:
                spent = time.perf_counter() - window_start
                row = {"step": state["step"], "epoch": state["epoch"], "loss": f"{output.loss.item():.4f}",
                       "lm_loss": "" if output.lm_loss is None else f"{output.lm_loss.item():.4f}",
                       "ctc_loss": "" if output.ctc_loss is None else f"{output.ctc_loss.item():.4f}",
                       "lr": f"{lr:.2e}", "samples": state["samples"], "audio_hours": f"{state['audio_seconds'] / 3600:.3f}",
                       "elapsed_s": f"{state['elapsed_s']:.0f}", "samples_per_s": f"{window_samples / spent:.2f}",
                       "audio_h_per_h": f"{window_audio / spent:.1f}"}
                csv_log.write(**row)
                log.info(f"step {state['step']}/{cfg.max_steps} loss {row['loss']} (lm {row['lm_loss']} ctc {row['ctc_loss']}) "
                         f"lr {row['lr']} | {state['step'] / max(state['elapsed_s'], 1e-9):.2f} steps/s "
                         f"{row['samples_per_s']} samples/s {row['audio_h_per_h']} audio-h/h")
                window_start, window_samples, window_audio = time.perf_counter(), 0, 0.0

            if state["step"] % cfg.eval_every == 0 or state["step"] == cfg.max_steps:
                run_evals(inner, processor, eval_sets, collate, cfg, autocast, state, csv_log, out, accelerator)
                model.train()
            if state["step"] % cfg.save_every == 0:
                checkpoint()
            if cfg.snapshot_every and state["step"] % cfg.snapshot_every == 0 and accelerator.is_main_process:
                # weights only, never overwritten: train/average_checkpoints.py averages a stretch of them
                inner.save_pretrained(out / "snapshots" / f"step-{state['step']:06d}")
        else:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    if state.get("last_eval") != state["step"] and not stop["flag"]:  # stopped by time: score the end too
        run_evals(inner, processor, eval_sets, collate, cfg, autocast, state, csv_log, out, accelerator)
    checkpoint()
    if accelerator.is_main_process:
        inner.save_pretrained(out / "final")
        plot_run(out)
        log.info(f"done at step {state['step']}: {state['samples']} samples, {state['audio_seconds'] / 3600:.2f} audio-h, "
                 f"{state['elapsed_s'] / 60:.1f} min; skipped clips: {state['skipped']}")
    # Every rank waits here, and the DDP wrapper (its Reducer holds the process group) goes while all
    # are alive: a rank that finished first and exited left the other hung for good at exit, in
    # ProcessGroupGloo's destructor (seen in CI: py-spy showed ~Reducer -> ~ProcessGroupGloo -> join).
    accelerator.wait_for_everyone()
    del model, optimizer
    accelerator.free_memory()
    accelerator.end_training()


def run_evals(model, processor, eval_sets, collate, cfg, autocast, state, csv_log, out, accelerator):
    state["last_eval"] = state["step"]
    if not accelerator.is_main_process or not eval_sets:
        return
    for name, clips in eval_sets.items():
        result = evaluate(model, processor, clips, collate, cfg, autocast)
        csv_log.write(step=state["step"], eval_set=name, eval_loss=f"{result['loss']:.4f}", eval_wer=f"{result['wer']:.4f}",
                      eval_ctc_wer=f"{result['ctc_wer']:.4f}")
        decoding = f"joint, CTC weight {cfg.eval_ctc_weight}" if cfg.eval_ctc_weight else "LLM alone"
        log.info(f"eval {name} @ {state['step']}: loss {result['loss']:.3f} WER {result['wer']:.3f} ({decoding}; "
                 f"CTC alone {result['ctc_wer']:.3f})")
        for ref, hyp, ctc in result["samples"]:
            log.info(f"   ref: {ref}\n   hyp: {hyp}\n   ctc: {ctc}")
        if name == (cfg.select_on or next(iter(eval_sets))):
            score = result[cfg.select_metric]
            if state["best_wer"] is None or score < state["best_wer"]:
                state["best_wer"] = score
                state["best_step"] = state["step"]
                model.save_pretrained(out / "best")
                (out / "best" / "selection.json").write_text(json.dumps(
                    {"eval_set": name, "metric": cfg.select_metric, "step": state["step"], "wer": score,
                     "samples_seen": state["samples"], "ctc_weight": cfg.eval_ctc_weight}))
    plot_run(out)


if __name__ == "__main__":
    main()
