"""Kaldi's log-mel filterbank in torch, as HiCMAE calls it, for the HiCMAE-lineage audio encoders.

HiCMAE (``sunlicai/HiCMAE``, after AudioMAE) computes its audio input with
``torchaudio.compliance.kaldi.fbank(waveform, htk_compat=True, sample_frequency=16000,
use_energy=False, window_type='hanning', num_mel_bins=128, dither=0.0, frame_shift=10)``.
torchaudio's wheels lag the torch this project runs on, so the same steps are written here:
25 ms frames every 10 ms without edge padding (Kaldi's ``snip_edges``), DC offset removed per
frame, pre-emphasis 0.97, symmetric Hann window, zero-padded 512-point power spectrum, Kaldi's
triangular mel filters (20 Hz .. Nyquist), log floored at float32 epsilon. It agrees with
torchaudio to float32 rounding (``tests/test_vaemo.py`` holds torchaudio's values).
"""

from __future__ import annotations

import numpy as np
import torch

SAMPLE_RATE = 16_000  # Hz
MEL_BINS = 128
FRAME_LENGTH = 400  # samples (25 ms)
FRAME_SHIFT = 160  # samples (10 ms)


def log_mel_fbank(audio: np.ndarray | torch.Tensor) -> torch.Tensor:
    """16 kHz mono waveform -> (frames, 128) log mel energies; no frames if under 25 ms."""
    wave = torch.as_tensor(audio, dtype=torch.float32).reshape(-1)
    if len(wave) < FRAME_LENGTH:
        return torch.zeros(0, MEL_BINS)
    frames = wave.unfold(0, FRAME_LENGTH, FRAME_SHIFT)
    frames = frames - frames.mean(1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], 1)
    frames = (frames - 0.97 * previous) * torch.hann_window(FRAME_LENGTH, periodic=False)
    fft_size = 1 << (FRAME_LENGTH - 1).bit_length()
    power = torch.fft.rfft(frames, n=fft_size).abs().pow(2)
    energies = power @ _mel_banks(fft_size).T
    return torch.clamp(energies, min=torch.finfo(torch.float32).eps).log()


def _mel_banks(fft_size: int) -> torch.Tensor:
    """Kaldi's triangular mel filters over the rfft bins (20 Hz .. Nyquist): (128, fft/2 + 1)."""

    def mel(hz):
        return 1127.0 * torch.log1p(torch.as_tensor(hz, dtype=torch.float64) / 700.0)

    low, high = mel(20.0), mel(SAMPLE_RATE / 2)
    step = (high - low) / (MEL_BINS + 1)
    left = low + step * torch.arange(MEL_BINS, dtype=torch.float64)[:, None]
    centre, right = left + step, left + 2 * step
    bins = mel(torch.arange(fft_size // 2, dtype=torch.float64) * SAMPLE_RATE / fft_size)[None]
    rise, fall = (bins - left) / (centre - left), (right - bins) / (right - centre)
    banks = torch.clamp(torch.minimum(rise, fall), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1)).float()  # Kaldi gives the Nyquist bin no weight
