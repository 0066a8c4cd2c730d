"""AudioProjector: the only trained part. Stacks k encoder frames and maps them into the LLM's embedding space."""

import torch
from torch import nn


class AudioProjector(nn.Module):
    """Frame stacking (k frames -> 1 token) then Linear -> ReLU -> Linear.

    With k=5, Whisper's and HuBERT's 50 Hz frames become 10 Hz LLM embeddings.
    Parameters: (encoder_dim*k*(2*context + 1) + 1)*hidden + (hidden + 1)*llm_dim.
    ``context`` > 0 (only ever the CTC projector's) also feeds each position the stacked frames of
    its ``context`` neighbours on each side (zeros past the clip's ends), so one output can see
    a whole word rather than 100 ms of it.
    """

    def __init__(self, encoder_dim: int, llm_dim: int, downsample_rate: int = 5, hidden_dim: int = 2048,
                 context: int = 0):
        super().__init__()
        self.k = downsample_rate
        self.context = context
        self.linear_1 = nn.Linear(encoder_dim * downsample_rate * (2 * context + 1), hidden_dim)
        self.act = nn.ReLU()
        self.linear_2 = nn.Linear(hidden_dim, llm_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch, time, channels = frames.shape  # B, T, C
        pad = (-time) % self.k  # pad the tail with zeros: never drop audio
        if pad:
            frames = nn.functional.pad(frames, (0, 0, 0, pad))  # B, T + pad, C
        stacked = frames.reshape(batch, (time + pad) // self.k, channels * self.k)  # B, T/k, C*k
        if self.context:
            # Padded frames are zero, so a clip's neighbours past its end read the same alone or in a batch.
            c, n = self.context, stacked.shape[1]
            padded = nn.functional.pad(stacked, (0, 0, c, c))  # B, T/k + 2c, C*k
            stacked = torch.cat([padded[:, i : i + n] for i in range(2 * c + 1)], dim=-1)  # B, T/k, C*k*(2c+1)
        return self.linear_2(self.act(self.linear_1(stacked)))  # B, T/k, D

    @torch.no_grad()
    def load_narrower(self, state: dict) -> None:
        """Load a projector with less context (e.g. none) as the same function: its first layer's
        weights go to the centre block, the new neighbours' weights start at zero."""
        weight = state["linear_1.weight"]
        width = self.linear_1.in_features // (2 * self.context + 1)  # C*k: one stacked group
        blocks = weight.shape[1] // width
        if weight.shape[1] % width or blocks % 2 == 0 or blocks > 2 * self.context + 1:
            raise ValueError(f"a first layer {weight.shape[1]} wide is not a narrower context of {self.linear_1.in_features}")
        start = (2 * self.context + 1 - blocks) // 2 * width
        wide = torch.zeros_like(self.linear_1.weight)
        wide[:, start : start + weight.shape[1]] = weight
        self.load_state_dict({**state, "linear_1.weight": wide}, strict=True)

    @torch.no_grad()
    def match_output_scale(self, target_rms: float, sample: torch.Tensor) -> float:
        """Rescale linear_2 so the projector's outputs on ``sample`` have RMS ``target_rms``.

        A freshly initialised projector emits vectors far smaller than the LLM's token
        embeddings, so the LLM at first barely "sees" the audio; matching the scale at the
        start of training removes that handicap. Returns the factor applied.
        """
        rms = self(sample).float().pow(2).mean().sqrt().item()
        factor = target_rms / max(rms, 1e-8)
        self.linear_2.weight.mul_(factor)
        self.linear_2.bias.mul_(factor)
        return factor


def projector_param_count(encoder_dim: int, llm_dim: int, downsample_rate: int = 5, hidden_dim: int = 2048,
                          context: int = 0) -> int:
    return (encoder_dim * downsample_rate * (2 * context + 1) + 1) * hidden_dim + (hidden_dim + 1) * llm_dim
