"""TrainConfig: one dataclass, read from a small YAML file plus key=value overrides, flowing one way into the run."""

import inspect
from dataclasses import asdict, dataclass, field, fields

import yaml


@dataclass
class TrainConfig:
    # Model: a preset name, or explicit tower ids/paths (tests use tiny local towers).
    preset: str | None = "embedded"
    encoder: str | None = None
    decoder: str | None = None
    model_overrides: dict = field(default_factory=dict)  # passed to ASRConfig (frozen_dtype, instruction, ...)
    init_from: str | None = None  # start from an existing checkpoint's projector
    init_ctc_from: str | None = None  # give the model a separate CTC projector, started from this checkpoint's CTC head
    init_ctc_context: int = 0  # ... reading this many stacked neighbours each side (started as that head's function)

    make_corpus: dict | None = None  # {out, clips, engines}: synthesize train data first if the first source is missing
    # Data. Each source: {type: jsonl|audiofolder|disk, path} or {type: hub, name, config, split, weight, text_column}.
    train_sources: list = field(default_factory=list)
    eval_sets: dict = field(default_factory=dict)  # name -> source; WER is measured on each
    select_on: str | None = None  # eval set whose WER picks the "best" checkpoint (real speech if you have it)
    select_metric: str = "wer"  # "wer" (the LLM's transcript) or "ctc_wer" (the projector alone: CTC warm-up)
    cache_features: bool = True  # frozen encoder outputs computed once (local sources only)
    feature_cache_dir: str | None = None  # default: <output_dir>/features
    spec_augment: bool = True  # mask time spans and channel bands of cached encoder frames while training
    spec_augment_masks: dict = field(default_factory=dict)  # train.data.mask_frames' counts and widths; {} = its defaults
    max_audio_seconds: float = 30.0  # longer clips are skipped (counted)
    batch_seconds: float = 160.0  # padded audio seconds per batch (per process)
    max_batch_size: int = 48

    # Optimisation (AdamW on the projector only; cosine with warmup).
    learning_rate: float = 1e-3
    min_lr_ratio: float = 0.1  # cosine floor, as a fraction of learning_rate
    warmup_steps: int = 200
    max_steps: int = 5000
    max_minutes: float | None = None  # also stop (checkpoint, final, plot) once this much training time has passed
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    lm_weight: float = 1.0  # next-token loss on the transcript through the frozen LLM (0 = CTC-only warm-up, no LLM)
    ctc_weight: float = 0.5  # auxiliary CTC on projector outputs vs LLM token embeddings (0 = off)
    ctc_blank: str = " "  # text of the one token used as CTC blank ("eos" = the LLM's eos); see ASRModel.ctc_loss
    ctc_vocab_sample: int = 4096  # CTC normalizes over the batch's tokens + this many random words (0 = all)
    match_output_scale: bool = True  # start the projector at the LLM embeddings' RMS
    # Autocast to bf16: "auto" only where the hardware has native bf16 matmuls (AMX / AVX512-BF16 on
    # CPU, tensor cores on GPU). Without them oneDNN emulates bf16 and a matmul runs ~400x slower
    # than fp32 (measured on an AVX2-only EPYC: 0.3 vs 130 GFLOP/s).
    bf16: bool | str = "auto"
    gradient_checkpointing: bool = False  # trade compute for activation memory (large decoders)
    seed: int = 0
    num_threads: int | None = None  # torch CPU threads; 1 is as fast as 2 here for bf16 and immune to a busy neighbour

    # Bookkeeping.
    output_dir: str = "runs/default"
    log_every: int = 10
    eval_every: int = 250
    save_every: int = 100
    snapshot_every: int = 0  # > 0: also keep the projector every N steps in snapshots/ (to average later)
    eval_samples: int = 64  # per eval set, first N in fixed order
    eval_num_beams: int = 1  # greedy during training: fast, and ranks checkpoints the same way
    eval_max_new_tokens: int = 64  # a runaway hypothesis costs time, not information
    eval_ctc_weight: float = 0.0  # > 0: decode jointly with the CTC head, as the shipped model does (slower)
    samples_to_show: int = 3


def _coerce(value: str, current):
    if value.lower() in ("null", "none", "~"):
        return None
    if isinstance(current, bool):
        return value.lower() in ("1", "true", "yes")
    if isinstance(current, int) and not isinstance(current, bool):
        return int(value)
    if isinstance(current, float):
        return float(value)
    if current is None or isinstance(current, (dict, list)):
        parsed = yaml.safe_load(value)
        return parsed
    return value


def load_config(path: str | None, overrides: list[str] = ()) -> TrainConfig:
    data = {}
    if path:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    known = {f.name for f in fields(TrainConfig)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown config keys in {path}: {sorted(unknown)}")
    config = TrainConfig(**data)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ValueError(f"override must be key=value with a known key, got {item!r}")
        setattr(config, key, _coerce(value, getattr(config, key)))
    if isinstance(config.bf16, str) and config.bf16 != "auto":
        config.bf16 = yaml.safe_load(config.bf16.lower())  # "false" from the command line or a YAML string
    if config.bf16 not in (True, False, "auto"):
        raise ValueError(f"bf16 takes true, false or auto, got {config.bf16!r}")
    from train.data import mask_frames  # here, not at the top: data.py needs torch, this file does not

    masks = set(inspect.signature(mask_frames).parameters) - {"frames", "lengths", "generator"}
    if set(config.spec_augment_masks) - masks:  # fail now, not after the feature cache is built
        raise ValueError(f"spec_augment_masks takes {sorted(masks)}, got {sorted(config.spec_augment_masks)}")
    return config


def to_dict(config: TrainConfig) -> dict:
    return asdict(config)
