"""ASRModel: frozen audio encoder -> trainable AudioProjector -> frozen causal LM."""

import functools
import math

import torch
from safetensors.torch import load_file
from torch import nn

from transformers import (
    AutoConfig, AutoModel, AutoModelForCausalLM, LogitsProcessorList, PreTrainedModel, StoppingCriteria, StoppingCriteriaList,
)
from transformers.dynamic_module_utils import custom_object_save
from transformers.modeling_outputs import ModelOutput
from transformers.models.whisper.modeling_whisper import WhisperEncoder
from transformers.utils import cached_file, logging

from .configuration import ASRConfig
from .ctc_decoding import LETTERS, CTCHead, CTCPrefixScorer, spelling_of
from .ctc_head import log_probs_at
from .pipeline import ASRPipeline
from .processing import AUDIO_TOKEN_ID, encoder_frames
from .projector import AudioProjector
from .weights import resolve

logger = logging.get_logger(__name__)

ENCODER_FRAME_SECONDS = 0.02  # Whisper, HuBERT and wav2vec2 all emit 50 frames per second
CTC_SCALE = 30.0  # cosine -> logit scale of the CTC head (as in cosine-softmax classifiers)
NORM_WEIGHT = 0.1  # weight of the output-length pull in the CTC loss
# Config keys a CTC head's scores depend on (the frames it reads, the tokens and blank it scores): two
# checkpoints that agree on them can swap or share CTC heads (eval/ctc_best_path.py, start_ctc_projector).
CTC_HEAD_KEYS = ("encoder_name_or_path", "decoder_name_or_path", "encoder_type", "downsample_rate", "ctc_blank_id")
HUB_KWARGS = ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder", "proxies")


def length_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """(B, size) bool mask, True at each row's first lengths[b] positions (the real, unpadded ones)."""
    return torch.arange(size, device=lengths.device) < lengths[:, None]


def normalize_frames(frames: torch.Tensor, lengths: torch.Tensor, mode: str | None) -> torch.Tensor:
    """Per-clip normalization of encoder frames over time ("mean": subtract each channel's mean,
    "meanvar": and divide by its std), over each clip's valid frames only; padding stays zero.
    Why: it takes away per-clip offsets (voice, microphone, room) that the synthetic training voices
    and real recordings do not share; measured in README item 15 (the CTC head reads real speech better)."""
    if not mode:
        return frames
    valid = length_mask(lengths, frames.shape[1]).unsqueeze(-1)
    count = lengths.clamp(min=1)[:, None, None].to(frames.dtype)
    frames = frames - (frames * valid).sum(1, keepdim=True) / count
    if mode == "meanvar":
        frames = frames / ((frames * valid).pow(2).sum(1, keepdim=True) / count + 1e-5).sqrt()
    return frames * valid


def ctc_collapse(best: list[int], blank: int) -> list[int]:
    """A CTC best path (one token per position) -> its labels: repeats merged, blanks dropped."""
    ids, previous = [], None
    for token in best:
        if token != previous and token != blank:
            ids.append(token)
        previous = token
    return ids


class PerClipLengthCap(StoppingCriteria):
    """Stops each sequence at its own number of new tokens (generate's max_new_tokens is per batch)."""

    def __init__(self, caps: torch.Tensor):
        self.caps = caps

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        # With inputs_embeds, generate's input_ids hold only new tokens; beams come clip by clip.
        caps = self.caps.to(input_ids.device).repeat_interleave(input_ids.shape[0] // len(self.caps))
        return input_ids.shape[1] >= caps


class WhisperAudioEncoder(WhisperEncoder):
    """transformers' WhisperEncoder, loadable from a full Whisper checkpoint (decoder keys skipped)."""

    _keys_to_ignore_on_load_unexpected = [r"^model\.decoder\.", r"^proj_out\."]


def load_encoder(config: ASRConfig, **hub_kwargs) -> nn.Module:
    path = resolve(config.encoder_name_or_path, config.weights_source)
    dtype = getattr(torch, config.frozen_dtype)
    if config.encoder_type == "whisper":
        # Whisper checkpoints hold the whole seq2seq model; we keep only its encoder.
        return WhisperAudioEncoder.from_pretrained(path, dtype=dtype, key_mapping={r"^model\.encoder\.": ""}, **hub_kwargs)
    return AutoModel.from_pretrained(path, dtype=dtype, **hub_kwargs)  # HubertModel / Wav2Vec2Model


def load_decoder(config: ASRConfig, **hub_kwargs) -> nn.Module:
    path = resolve(config.decoder_name_or_path, config.weights_source)
    return AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, config.frozen_dtype), **hub_kwargs)


class ASRModel(PreTrainedModel):
    config_class = ASRConfig
    main_input_name = "input_features"
    supports_gradient_checkpointing = True
    _no_split_modules = []

    def __init__(self, config: ASRConfig, encoder: nn.Module | None = None, decoder: nn.Module | None = None):
        super().__init__(config)
        self.encoder = encoder if encoder is not None else load_encoder(config)
        self.decoder = decoder if decoder is not None else load_decoder(config)
        enc_dim = self.encoder.config.hidden_size if config.encoder_type != "whisper" else self.encoder.config.d_model
        llm_dim = self.decoder.get_input_embeddings().embedding_dim
        if (enc_dim, llm_dim) != (config.encoder_dim, config.llm_dim):
            raise ValueError(
                f"config says encoder_dim={config.encoder_dim}, llm_dim={config.llm_dim} but the towers have "
                f"{enc_dim} and {llm_dim}"
            )
        self.projector = self.new_projector()
        # Optional: the CTC head reads its own projector, so the LM loss (through self.projector) and the
        # CTC loss (through this one) stop pulling one set of weights two ways (README item 30).
        self.ctc_projector = self.new_projector(config.ctc_context) if config.ctc_projector else None
        # Optional: a CTC head that spells (letters at 25 Hz), for joint decoding only: it scores the
        # LLM's words by their letters, so also words too rare in the corpus for the word head (README item 33).
        self.spelling_head = self.new_spelling_head(config.spelling_head) if config.spelling_head else None
        self.freeze_towers()
        self.post_init()

    def new_projector(self, context: int = 0) -> AudioProjector:
        """A freshly initialised projector of this config's shape (``context``: the CTC projector's)."""
        config = self.config
        return AudioProjector(config.encoder_dim, config.llm_dim, config.downsample_rate, config.projector_hidden_dim,
                              context=context)

    def new_spelling_head(self, shape: dict) -> AudioProjector:
        return AudioProjector(self.config.encoder_dim, len(LETTERS) + 1, shape["downsample_rate"], shape["hidden_dim"],
                              context=shape["context"])

    def _init_weights(self, module):
        pass  # towers arrive pretrained; the projector initialises itself (nn.Linear defaults)

    def freeze_towers(self) -> None:
        """The one place the encoder and decoder are frozen: no grads, eval mode (no dropout)."""
        for tower in (self.encoder, self.decoder):
            tower.requires_grad_(False)
            tower.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen towers stay in eval mode whatever the trainer asks
        self.decoder.eval()
        return self

    def parameter_counts(self) -> dict:
        count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
        return {
            "encoder": count(self.encoder),
            "projector": count(self.projector),
            "ctc_projector": count(self.ctc_projector) if self.ctc_projector is not None else 0,
            "spelling_head": count(self.spelling_head) if self.spelling_head is not None else 0,
            "decoder": count(self.decoder),
            "trainable": sum(p.numel() for p in self.parameters() if p.requires_grad),
        }

    # --- audio -> LLM embeddings -------------------------------------------------------
    def encoder_lengths(self, feature_lengths: torch.Tensor) -> torch.Tensor:
        """Encoder frames per clip from feature lengths (mel frames for Whisper, samples otherwise)."""
        if self.config.encoder_type == "whisper":
            return (feature_lengths + 1) // 2
        return self.encoder._get_feat_extract_output_lengths(feature_lengths).long()

    def _whisper_encode(self, features: torch.Tensor, mel_lengths: torch.Tensor) -> torch.Tensor:
        """Whisper's encoder on inputs of any length up to 30 s, with padded frames masked out.

        transformers' WhisperEncoder insists on 3000 mel frames; this is its forward without that
        check, with positional embeddings sliced to the clip and padding masked in the convs and
        in self-attention, so a clip gives the same features alone or in a padded batch.
        """
        enc = self.encoder
        mel_mask = length_mask(mel_lengths, features.shape[-1]).unsqueeze(1)
        x = nn.functional.gelu(enc.conv1(features)) * mel_mask  # B, C, T_mel
        x = nn.functional.gelu(enc.conv2(x)).transpose(1, 2)  # B, T, C (T = ceil(T_mel / 2))
        frames = x.shape[1]
        if frames > enc.embed_positions.num_embeddings:
            raise ValueError(f"audio gives {frames} encoder frames, above Whisper's {enc.embed_positions.num_embeddings} (30 s)")
        x = x + enc.embed_positions.weight[:frames].to(x.dtype)
        valid = length_mask(self.encoder_lengths(mel_lengths), frames)  # B, T
        mask = torch.zeros(valid.shape, dtype=x.dtype, device=x.device).masked_fill(~valid, torch.finfo(x.dtype).min)
        mask = mask[:, None, None, :]  # B, 1, 1, T: padded keys get -inf
        for layer in enc.layers:
            x = layer(x, mask)
        return enc.layer_norm(x)

    def encode(self, input_features: torch.Tensor, feature_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Frozen encoder: (B, T, encoder_dim) frames with padded frames zeroed, and frame counts."""
        dtype = self.encoder.dtype
        with torch.no_grad():
            if self.config.encoder_type == "whisper":
                hidden = self._whisper_encode(input_features.to(dtype), feature_lengths)
            else:
                sample_mask = length_mask(feature_lengths, input_features.shape[1])
                # Only models with layer-norm feature extractors were trained with attention masks.
                use_mask = getattr(self.encoder.config, "feat_extract_norm", "layer") == "layer"
                hidden = self.encoder(
                    input_features.to(dtype), attention_mask=sample_mask.long() if use_mask else None
                ).last_hidden_state
        lengths = self.encoder_lengths(feature_lengths)
        valid = length_mask(lengths, hidden.shape[1])
        return hidden * valid.unsqueeze(-1), lengths

    def project(self, frames: torch.Tensor, frame_lengths: torch.Tensor, projector: nn.Module | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Projector output (B, ceil(T/k), llm_dim) and LLM positions per clip (``projector``: default the LLM's)."""
        projector = projector or self.projector
        frames = frames.to(projector.linear_1.weight.dtype)  # towers may be stored in another dtype
        frames = normalize_frames(frames, frame_lengths, self.config.frame_norm)  # old configs load as None
        return projector(frames), self.audio_positions(frame_lengths)

    def audio_positions(self, frame_lengths: torch.Tensor, k: int | None = None) -> torch.Tensor:
        """LLM positions per clip (or a head's that stacks ``k`` frames): k encoder frames each, a partial
        last group included."""
        k = k or self.config.downsample_rate
        return (frame_lengths + k - 1) // k

    def ctc_embeddings(self, frames: torch.Tensor, frame_lengths: torch.Tensor,
                       audio_embeds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """What the CTC head reads, and its lengths: the CTC projector's outputs where the model has one,
        else the LLM's own inputs (``audio_embeds`` if already computed)."""
        if self.ctc_projector is not None:
            return self.project(frames, frame_lengths, self.ctc_projector)
        if audio_embeds is not None:
            return audio_embeds, self.audio_positions(frame_lengths)
        return self.project(frames, frame_lengths)

    def spelling_log_probs(self, frames: torch.Tensor, frame_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The spelling head's (B, T', letters + blank) log-probs (blank first), and its positions per clip."""
        head = self.spelling_head
        frames = normalize_frames(frames.to(head.linear_1.weight.dtype), frame_lengths, self.config.frame_norm)
        return head(frames).float().log_softmax(-1), self.audio_positions(frame_lengths, head.k)

    def encoder_output(self, input_features=None, feature_lengths=None, encoder_frames=None, frame_lengths=None):
        """Encoder frames and their counts: cached ones as given, else the frozen encoder's."""
        if encoder_frames is None:
            if input_features is None:
                raise ValueError("pass input_features (with feature_lengths) or cached encoder_frames (with frame_lengths)")
            encoder_frames, frame_lengths = self.encode(input_features, feature_lengths)
        return encoder_frames, frame_lengths

    def merge_embeddings(self, input_ids, audio_embeds, audio_lengths) -> torch.Tensor:
        """Token embeddings with the AUDIO_TOKEN_ID slots replaced by projected audio, in order."""
        audio_mask = input_ids == AUDIO_TOKEN_ID
        slots = audio_mask.sum(dim=1)
        if not torch.equal(slots.cpu(), audio_lengths.cpu()):
            raise ValueError(f"prompts have {slots.tolist()} audio slots but the audio gives {audio_lengths.tolist()} embeddings")
        embeds = self.decoder.get_input_embeddings()(input_ids.masked_fill(audio_mask, 0))
        valid = length_mask(audio_lengths, audio_embeds.shape[1])
        return embeds.masked_scatter(audio_mask.unsqueeze(-1), audio_embeds[valid].to(embeds.dtype))

    def audio_embeddings(self, input_features=None, feature_lengths=None, encoder_frames=None, frame_lengths=None):
        """Projector outputs and their counts. Pass raw features, or cached encoder frames."""
        return self.project(*self.encoder_output(input_features, feature_lengths, encoder_frames, frame_lengths))

    def embed(self, input_ids, input_features=None, feature_lengths=None, encoder_frames=None, frame_lengths=None):
        """Prompt embeddings with audio inserted. Pass raw features, or cached encoder frames."""
        audio = self.audio_embeddings(input_features, feature_lengths, encoder_frames, frame_lengths)
        return self.merge_embeddings(input_ids, *audio)


    # --- training ---------------------------------------------------------------------
    def forward(self, input_ids, attention_mask, labels=None, input_features=None, feature_lengths=None,
                encoder_frames=None, frame_lengths=None, ctc_weight: float = 0.0, lm_weight: float = 1.0,
                ctc_vocab_sample: int = 0, ctc_blank_id: int | None = None, **kwargs):
        """Without labels: the decoder's output. With labels: next-token loss on the transcript.

        ``ctc_weight`` > 0 adds an auxiliary CTC loss that reads the projector's outputs as
        words directly, scoring them against the LLM's own (frozen) token embeddings, with
        ``ctc_blank_id`` (default: eos) as blank. It gives the projector a per-position signal of which words it
        carries, so it aligns without waiting for the LLM to learn to look at the audio.
        ``lm_weight=0`` trains on CTC alone and skips the LLM entirely (several times faster).
        """
        frames, frame_lengths = self.encoder_output(input_features, feature_lengths, encoder_frames, frame_lengths)
        audio_embeds, audio_lengths = self.project(frames, frame_lengths)
        if labels is None:
            embeds = self.merge_embeddings(input_ids, audio_embeds, audio_lengths)
            return self.decoder(inputs_embeds=embeds, attention_mask=attention_mask)
        loss, lm_loss, ctc_loss = 0.0, None, None
        if lm_weight > 0:
            embeds = self.merge_embeddings(input_ids, audio_embeds, audio_lengths)
            hidden = self.decoder.get_decoder()(inputs_embeds=embeds, attention_mask=attention_mask).last_hidden_state
            # Next-token loss on transcript positions only; the LM head (vocab-wide) runs only there.
            targets = labels[:, 1:]
            selected = targets != -100
            logits = self.decoder.get_output_embeddings()(hidden[:, :-1][selected])
            lm_loss = nn.functional.cross_entropy(logits.float(), targets[selected])
            loss = lm_weight * lm_loss
        if ctc_weight > 0:
            ctc_embeds, _ = self.ctc_embeddings(frames, frame_lengths, audio_embeds)
            ctc_loss = self.ctc_loss(ctc_embeds, audio_lengths, labels, ctc_vocab_sample, ctc_blank_id)
            loss = loss + ctc_weight * ctc_loss
        if lm_loss is None and ctc_loss is None:
            raise ValueError("lm_weight and ctc_weight are both 0: nothing to train")
        detach = lambda t: None if t is None else t.detach()  # noqa: E731
        return ModelOutput(loss=loss, lm_loss=detach(lm_loss), ctc_loss=detach(ctc_loss))

    @staticmethod
    def ctc_operands(audio_embeds: torch.Tensor, table: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The CTC head's two sides: scaled unit projector outputs and unit token embeddings, so
        that ``queries @ keys.T`` are the logits (the training loss and joint decoding share this).

        Cosine, not a dot product: a dot product rewards ever longer outputs (they sharpen the
        softmax), and the first CTC run ended with outputs 8x longer than any token embedding
        and only 0.28 cosine to their best token, which the LLM could not read as words.
        """
        queries = CTC_SCALE * nn.functional.normalize(audio_embeds.float(), dim=-1)
        return queries, nn.functional.normalize(table.float(), dim=-1)

    def ctc_logits(self, audio_embeds: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Scores of projector outputs (B, T, D) against token embeddings (V, D): scaled cosine."""
        queries, keys = self.ctc_operands(audio_embeds, table)
        return queries @ keys.T

    def ctc_loss(self, audio_embeds, audio_lengths, labels, vocab_sample: int = 0, blank: int | None = None) -> torch.Tensor:
        """CTC of projector outputs scored against the frozen token embeddings, plus a pull of their
        length toward the embeddings' typical length: the projector learns to emit what the LLM
        would see if the words were typed.

        The blank is a real token, so blank frames become that token's embedding for the LLM.
        A space is the best we measured: SmolLM2 reading exact transcript embeddings with two
        blanks after each token scores 1.2 nats/token with space blanks, 3.3 with eos blanks
        (0.56 with no blanks at all); eos blanks read as "end of message" and invite invention.

        ``vocab_sample`` > 0 normalizes over a sampled vocabulary instead of all words: the
        batch's own transcript tokens, the blank, and that many random others (seeded by the
        batch, so a resumed run draws the same). It is ~10x cheaper for a 49k vocabulary and
        still pulls each position toward its word and away from the rest.
        """
        if blank is None:
            blank = self.decoder.config.eos_token_id
            blank = blank[0] if isinstance(blank, (list, tuple)) else blank
        table = self.decoder.get_input_embeddings().weight  # V, D (frozen)
        rows = [row[row != -100][:-1] for row in labels]  # transcript tokens without the final eos
        targets = torch.cat(rows)
        if vocab_sample > 0:
            generator = torch.Generator().manual_seed(int(targets.sum()) % (2**31))
            others = torch.randint(0, table.shape[0], (vocab_sample,), generator=generator).to(targets.device)
            candidates = torch.unique(torch.cat([targets, others, torch.tensor([blank], device=targets.device)]))
            table = table[candidates]
            targets = torch.searchsorted(candidates, targets)  # ids -> positions in the sampled table
            blank = int(torch.searchsorted(candidates, torch.tensor(blank, device=candidates.device)))
        # CTC reads only the transcript tokens and the blank: score those columns (normalized over the
        # whole table, plus one for all other tokens) at the real frames; padding frames stay 0 (ignored)
        columns, positions = torch.unique(torch.cat([targets, targets.new_tensor([blank])]), return_inverse=True)
        queries, keys = self.ctc_operands(audio_embeds, table)
        valid = length_mask(audio_lengths, audio_embeds.shape[1])
        log_probs = queries.new_zeros(*valid.shape, len(columns) + 1)  # B, T, C + 1
        log_probs[valid] = log_probs_at(queries[valid], keys, columns)
        ctc = nn.functional.ctc_loss(  # (log_softmax: an identity on whole rows that ctc_loss's gradient expects)
            log_probs.log_softmax(-1).transpose(0, 1), positions[:-1], audio_lengths.cpu(), torch.tensor([len(r) for r in rows]),
            blank=int(positions[-1]), reduction="mean", zero_infinity=True,
        )
        length = audio_embeds[valid].float().norm(dim=-1) / self.typical_embedding_norm
        return ctc + NORM_WEIGHT * (length - 1).pow(2).mean()

    @functools.cached_property
    def typical_embedding_norm(self) -> float:
        """Mean length of the (frozen) token embeddings: computed once, not every training step."""
        return self.decoder.get_input_embeddings().weight.float().norm(dim=-1).mean().item()

    @torch.no_grad()
    def ctc_greedy(self, audio_embeds, audio_lengths, blank: int) -> list[list[int]]:
        """Best-path CTC decode of projector outputs against the token embeddings (a diagnostic:
        how many words the projector carries before the LLM reads them)."""
        best = self.ctc_logits(audio_embeds, self.decoder.get_input_embeddings().weight).argmax(-1)  # B, T
        return [ctc_collapse(row[:length], blank) for row, length in zip(best.tolist(), audio_lengths.tolist())]

    def word_ctc_head(self, audio_embeds, audio_lengths, weight: float, propose: int = 0,
                      proposable: torch.Tensor | None = None) -> CTCHead:
        """The word head's view of these clips for joint decoding: each LLM token is one label.
        ``propose``: also offer, as candidates beside the LLM's top k, each token the head ranks in its
        top ``propose`` at some frame of the clip (``generation.ctc_propose``), among the ``proposable``
        ones (a mask over the vocabulary; None: all but the blank)."""
        queries, keys = self.ctc_operands(audio_embeds, self.decoder.get_input_embeddings().weight)  # (B, T, D), (V, D)
        # log-normalizer over the whole vocabulary, one clip at a time (T x V stays small); the same
        # scores give the proposals: the tokens this head ranks in its top ``propose`` at some frame (blank aside)
        norm, proposals = [], [] if propose else None
        for q, n in zip(queries, audio_lengths.tolist()):
            logits = q @ keys.T  # T, V
            norm.append(torch.logsumexp(logits, dim=-1))
            if propose:
                top = logits[:n].topk(propose, dim=-1).indices.flatten().unique()
                top = top[top != self.config.ctc_blank_id]
                proposals.append(top if proposable is None else top[proposable[top]])
        norm = torch.stack(norm)  # B, T
        blank = queries @ keys[self.config.ctc_blank_id] - norm

        def label_log_probs(clips, labels):  # (n,), (n, K, 1) -> (n, K, 1, T)
            scores = torch.einsum("ntd,nkd->nkt", queries[clips], keys[labels[..., 0]]) - norm[clips][:, None, :]
            return scores[:, :, None, :]

        return CTCHead(label_log_probs, blank, audio_lengths, weight, proposals=proposals)

    def spelling_ctc_head(self, frames, frame_lengths, weight: float, tokenizer) -> CTCHead:
        """The spelling head's view of these clips: each LLM token is the letters it adds to the transcript."""
        log_probs, lengths = self.spelling_log_probs(frames, frame_lengths)  # B, T, C

        def label_log_probs(clips, labels):  # (n,), (n, K, L) -> (n, K, L, T)
            n, k, width = labels.shape
            per_label = log_probs[clips].transpose(1, 2)  # n, C, T
            index = labels.reshape(n, k * width, 1).expand(-1, -1, per_label.shape[2])
            return per_label.gather(1, index).reshape(n, k, width, -1)

        return CTCHead(label_log_probs, log_probs[..., 0], lengths, weight, spelling_of(self.token_texts(tokenizer)),
                       boundary=LETTERS.index(" ") + 1)

    def token_texts(self, tokenizer) -> list[str]:
        """Each token's text (special tokens: none), decoded once per tokenizer."""
        cached = getattr(self, "_token_texts", None)
        if cached is None or cached[0] is not tokenizer:
            texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))], skip_special_tokens=True)
            self._token_texts = cached = (tokenizer, texts)
        return cached[1]

    # --- inference ---------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, input_ids, attention_mask, input_features=None, feature_lengths=None,
                 encoder_frames=None, frame_lengths=None, tokenizer=None, **generate_kwargs):
        """Transcript token ids (new tokens only). Defaults for beams etc. come from the config.
        ``tokenizer``: the decoder's, which the spelling head needs to spell the LLM's tokens."""
        frames, frame_lengths = self.encoder_output(input_features, feature_lengths, encoder_frames, frame_lengths)
        audio_embeds, audio_lengths = self.project(frames, frame_lengths)
        embeds = self.merge_embeddings(input_ids, audio_embeds, audio_lengths)
        for key, value in self.config.generation.items():
            if generate_kwargs.get(key) is None:
                generate_kwargs[key] = value
        ctc_weight, ctc_top_k = generate_kwargs.pop("ctc_weight"), generate_kwargs.pop("ctc_top_k")
        spelling_weight, propose = generate_kwargs.pop("spelling_weight"), generate_kwargs.pop("ctc_propose")
        per_second = generate_kwargs.pop("max_tokens_per_second")
        if per_second:  # pass max_tokens_per_second=0 to turn the cap off
            # A transcript cannot be much longer than the audio: stops a wandering LLM early,
            # whatever ceiling (max_new_tokens) the caller set.
            # Each clip has its own cap, so a short clip batched with long ones stops early too.
            seconds = (input_ids == AUDIO_TOKEN_ID).sum(dim=1) * self.config.downsample_rate * ENCODER_FRAME_SECONDS
            caps = (seconds * per_second).ceil().long() + 10
            generate_kwargs["max_new_tokens"] = min(generate_kwargs["max_new_tokens"], int(caps.max()))
            criteria = list(generate_kwargs.get("stopping_criteria") or [])
            generate_kwargs["stopping_criteria"] = StoppingCriteriaList(criteria + [PerClipLengthCap(caps)])
        generate_kwargs.setdefault("do_sample", False)
        if generate_kwargs["num_beams"] == 1:
            generate_kwargs.pop("length_penalty")  # only meaningful for beam search
        tokenizer_eos = self.decoder.generation_config.eos_token_id or self.decoder.config.eos_token_id
        generate_kwargs.setdefault("eos_token_id", tokenizer_eos)
        generate_kwargs.setdefault("pad_token_id", self.decoder.generation_config.pad_token_id or tokenizer_eos)
        heads = []
        if ctc_weight and self.config.ctc_blank_id is not None:
            ctc_embeds, _ = self.ctc_embeddings(frames, frame_lengths, audio_embeds)
            proposable = None
            if propose:
                if tokenizer is None:
                    raise ValueError("ctc_propose needs generate(tokenizer=...): only tokens with letters are proposed")
                # Punctuation the head hears at a clip's end, offered mid-word, ends the word early
                # ("You are now m."); the LLM proposes punctuation where it fits.
                proposable = torch.tensor([any(c.isalpha() for c in t) for t in self.token_texts(tokenizer)])
            heads.append(self.word_ctc_head(ctc_embeds, audio_lengths, ctc_weight, propose, proposable))
        if spelling_weight:
            if self.spelling_head is None or tokenizer is None:
                raise ValueError("spelling_weight needs a model with a spelling head, and generate(tokenizer=...)")
            heads.append(self.spelling_ctc_head(frames, frame_lengths, spelling_weight, tokenizer))
        if heads:
            eos = generate_kwargs["eos_token_id"]
            blank = [self.config.ctc_blank_id] if ctc_weight and self.config.ctc_blank_id is not None else []
            scorer = CTCPrefixScorer(heads, eos[0] if isinstance(eos, list) else eos, ctc_top_k, ruled_out=blank)
            processors = list(generate_kwargs.get("logits_processor") or [])
            generate_kwargs["logits_processor"] = LogitsProcessorList(processors + [scorer])
        return self.decoder.generate(inputs_embeds=embeds, attention_mask=attention_mask, **generate_kwargs)

    # --- save / load: the projector only -------------------------------------------------
    def save_pretrained(self, save_directory, weights_dtype: torch.dtype | None = None, **kwargs):
        """Config + projector weights (safetensors) + the code that pipeline(trust_remote_code=True) needs.

        ``weights_dtype`` (e.g. torch.bfloat16) stores the projector in that dtype: a shipped model
        halves its file, and from_pretrained loads it back into the fp32 parameters."""
        kwargs["state_dict"] = {f"{name}.{k}": v.to(weights_dtype or v.dtype).contiguous()
                                for name, module in self.projectors().items() for k, v in module.state_dict().items()}
        super().save_pretrained(save_directory, **kwargs)
        custom_object_save(ASRPipeline, save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, config=None, **kwargs):
        """Frozen towers from their own sources (config), projector from this checkpoint (strict)."""
        hub_kwargs = {k: kwargs.pop(k) for k in HUB_KWARGS if k in kwargs}
        dtype = kwargs.pop("dtype", None) or kwargs.pop("torch_dtype", None)
        if config is None:
            config = ASRConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        if isinstance(dtype, (str, torch.dtype)) and str(dtype) != "auto":
            config.frozen_dtype = str(dtype).replace("torch.", "")
        model = cls(config)
        weights = cached_file(pretrained_model_name_or_path, "model.safetensors", **hub_kwargs)
        model.load_projector(load_file(weights))
        return model

    def projectors(self) -> dict[str, nn.Module]:
        """The trained parts by name: the projector, and the CTC projector where the model has one."""
        named = {"projector": self.projector}
        if self.ctc_projector is not None:
            named["ctc_projector"] = self.ctc_projector
        if self.spelling_head is not None:
            named["spelling_head"] = self.spelling_head
        return named

    def start_ctc_projector(self, checkpoint) -> None:
        """Give the model its own CTC projector, holding the CTC head of the ``checkpoint`` folder: its
        ctc_projector where it has one, else its projector (e.g. a CTC-only run's). The checkpoint must
        read the same encoder frames the same way and score against the same LLM and blank."""
        other = ASRConfig.from_pretrained(checkpoint)
        shared = CTC_HEAD_KEYS + ("projector_hidden_dim", "frame_norm")  # one config serves both projectors
        differ = [key for key in shared if getattr(other, key) != getattr(self.config, key)]
        if differ:
            raise ValueError(f"{checkpoint} differs from this model in {', '.join(differ)}: its CTC head cannot join it")
        state = load_file(cached_file(checkpoint, "model.safetensors"))
        prefix = "ctc_projector." if any(k.startswith("ctc_projector.") for k in state) else "projector."
        self.config.ctc_projector = True
        # The head keeps its own context; a head with less (a plain projector's: none) starts a model
        # whose config asks for more (train.py init_ctc_context) as the same function.
        head_context = other.ctc_context if prefix == "ctc_projector." else 0
        self.config.ctc_context = max(self.config.ctc_context, head_context)
        self.ctc_projector = self.new_projector(self.config.ctc_context).to(self.projector.linear_1.weight.dtype)
        self.ctc_projector.load_narrower({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})

    def load_projector(self, state: dict) -> None:
        """Load every projector of this model from ``state`` (strict: no stray or missing weights)."""
        named = self.projectors()
        stray = [k for k in state if k.split(".", 1)[0] not in named]
        if stray:
            raise ValueError(f"checkpoint holds non-projector weights, or a projector this model lacks: {stray[:5]}")
        for name, module in named.items():
            prefix = name + "."
            module.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)


ASRModel.register_for_auto_class("AutoModelForSpeechSeq2Seq")
