"""Audio and face windows for the HiCMAE-lineage encoders, and their outputs back as timed rows.

The inputs are HiCMAE's (``sunlicai/HiCMAE``: ``kinetics_av.py``, ``run_class_finetuning_av.py``,
``scripts/voxceleb2/audio_visual/hicmae_pretrain_base/pretrain_base.sh``), which VAEmo is
reported to keep:

- audio: the clip's waveform with its mean removed, Kaldi log-mel (``log_mel``) over the whole
  clip, cut into windows of 256 frames (2.56 s), the last one zero-padded before normalising (as
  the repository pads), normalised with AudioMAE's AudioSet statistics: (x - mean) / (2 std);
- faces: crops resized to 160 x 160 (bilinear, antialiased), scaled to [0, 1] and normalised with
  the ImageNet mean and std; runs of 16 consecutive crops make one window, the last one filled up
  by repeating its last crop (as the repository repeats its last frame). The repository takes
  every 4th video frame (``--sampling_rate 4``); which crops come is the caller's choice.

A system's encoder turns each window into tokens; they come back as one row per time step: per 16
fbank frames (160 ms), averaged over the 8 mel patches, or per 2-crop tubelet, averaged over its
10 x 10 patches. Column 0 is the step's centre in seconds from the start of the clip (for faces,
the mean time of its crops); steps that hold no real frame or crop are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from featurebaseline.log_mel import FRAME_LENGTH, FRAME_SHIFT, MEL_BINS, SAMPLE_RATE, log_mel_fbank
from featurebaseline.vit_blocks import PATCH, TUBELET

NUM_FRAMES = 16  # face crops per video window
IMAGE_SIZE = 160  # pixels
AUDIO_FRAMES = 256  # fbank frames per audio window (2.56 s)
VIDEO_TOKENS = (NUM_FRAMES // TUBELET) * (IMAGE_SIZE // PATCH) ** 2  # 8 x 10 x 10
AUDIO_TOKENS = (AUDIO_FRAMES // PATCH) * (MEL_BINS // PATCH)  # 16 x 8
FBANK_MEAN, FBANK_STD = -4.2677393, 4.5689974  # AudioSet, from AudioMAE
IMAGE_MEAN, IMAGE_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet
WINDOWS_PER_BATCH = 4

#: A batch of windows -> (windows, tokens, width), tokens in the patch embedding's order.
Encode = Callable[[torch.Tensor], torch.Tensor]


def audio_table(encode: Encode, audio: np.ndarray, width: int) -> np.ndarray:
    """16 kHz mono float32 -> (steps, 1 + width): ``encode`` on 2.56-s windows, a row per 160 ms."""
    audio = np.asarray(audio, np.float32)
    fbank = log_mel_fbank(audio - audio.mean()) if len(audio) else torch.zeros(0, MEL_BINS)
    count = len(fbank)
    if not count:
        return np.zeros((0, 1 + width), np.float32)
    windows = -(-count // AUDIO_FRAMES)
    padded = torch.zeros(windows * AUDIO_FRAMES, MEL_BINS)
    padded[:count] = fbank
    inputs = ((padded - FBANK_MEAN) / (2 * FBANK_STD)).view(windows, 1, AUDIO_FRAMES, MEL_BINS)
    hidden = _in_batches(encode, inputs)
    steps = AUDIO_FRAMES // PATCH
    per_step = hidden.view(windows, steps, MEL_BINS // PATCH, width).mean(2).reshape(-1, width)
    first = np.arange(windows * steps) * PATCH  # first fbank frame of each step
    keep = first < count
    centre = (first * FRAME_SHIFT + ((PATCH - 1) * FRAME_SHIFT + FRAME_LENGTH) / 2) / SAMPLE_RATE
    return np.column_stack([centre[keep], per_step[keep].numpy()]).astype(np.float32)


def face_table(
    encode: Encode, crops: Sequence[np.ndarray], times: Sequence[float], width: int
) -> np.ndarray:
    """H x W x 3 uint8 RGB crops at ``times`` -> (steps, 1 + width): ``encode`` on runs of 16
    crops, a row per 2 crops."""
    if len(crops) != len(times):
        raise ValueError(f"{len(crops)} face crops but {len(times)} times; give one time per crop")
    if not len(crops):
        return np.zeros((0, 1 + width), np.float32)
    images = torch.stack(
        [
            torch.nn.functional.interpolate(
                torch.from_numpy(np.ascontiguousarray(c)).permute(2, 0, 1)[None].float(),
                size=(IMAGE_SIZE, IMAGE_SIZE),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )[0]
            for c in crops
        ]
    )
    mean = torch.tensor(IMAGE_MEAN)[:, None, None]
    std = torch.tensor(IMAGE_STD)[:, None, None]
    images = (images.clamp(0, 255) / 255.0 - mean) / std
    windows = -(-len(crops) // NUM_FRAMES)
    order = torch.arange(windows * NUM_FRAMES).clamp(max=len(crops) - 1)
    clips = images[order].view(windows, NUM_FRAMES, 3, IMAGE_SIZE, IMAGE_SIZE).transpose(1, 2)
    hidden = _in_batches(encode, clips)
    steps = NUM_FRAMES // TUBELET
    per_step = hidden.view(windows, steps, -1, width).mean(2).reshape(-1, width)
    times = np.asarray(times, np.float64)
    centres = [times[i : i + TUBELET].mean() for i in range(0, len(times), TUBELET)]
    return np.column_stack([centres, per_step[: len(centres)].numpy()]).astype(np.float32)


def _in_batches(encode: Encode, windows: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [
                encode(windows[b : b + WINDOWS_PER_BATCH])
                for b in range(0, len(windows), WINDOWS_PER_BATCH)
            ]
        )
