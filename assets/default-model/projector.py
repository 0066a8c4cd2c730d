"""AudioProjector: the only trained part. Stacks k encoder frames and maps them into the LLM's embedding space."""

import torch
from torch import nn


class AudioProjector(nn.Module):
    """Frame stacking (k frames -> 1 token) then Linear -> ReLU -> Linear.

    With k=5, Whisper's and HuBERT's 50 Hz frames become 10 Hz LLM embeddings.
    Parameters: (encoder_dim*k + 1)*hidden + (hidden + 1)*llm_dim.
    """

    def __init__(self, encoder_dim: int, llm_dim: int, downsample_rate: int = 5, hidden_dim: int = 2048):
        super().__init__()
        self.k = downsample_rate
        self.linear_1 = nn.Linear(encoder_dim * downsample_rate, hidden_dim)
        self.act = nn.ReLU()
        self.linear_2 = nn.Linear(hidden_dim, llm_dim)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        batch, time, channels = frames.shape  # B, T, C
        pad = (-time) % self.k  # pad the tail with zeros: never drop audio
        if pad:
            frames = nn.functional.pad(frames, (0, 0, 0, pad))  # B, T + pad, C
        stacked = frames.reshape(batch, (time + pad) // self.k, channels * self.k)  # B, T/k, C*k
        return self.linear_2(self.act(self.linear_1(stacked)))  # B, T/k, D

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


def projector_param_count(encoder_dim: int, llm_dim: int, downsample_rate: int = 5, hidden_dim: int = 2048) -> int:
    return (encoder_dim * downsample_rate + 1) * hidden_dim + (hidden_dim + 1) * llm_dim
