"""Training-only augmentation of the log-mel (SpecAugment) and of the waveform (pitch, stretch, noise)."""
from __future__ import annotations

import torch
from torch import nn


def spec_augment(logmel: torch.Tensor, generator: torch.Generator, max_freq: int = 8, max_time: int = 30,
                 max_shift: int = 20) -> torch.Tensor:
    """Training-only log-mel augmentation: random circular time shift, one frequency and one time mask."""
    out = logmel.clone()
    batch, mels, frames = out.shape
    for i in range(batch):
        shift = int(torch.randint(-max_shift, max_shift + 1, (1,), generator=generator))
        out[i] = torch.roll(out[i], shift, dims=1)
        f = int(torch.randint(0, max_freq + 1, (1,), generator=generator))
        f0 = int(torch.randint(0, mels - f + 1, (1,), generator=generator))
        t = int(torch.randint(0, max_time + 1, (1,), generator=generator))
        t0 = int(torch.randint(0, frames - t + 1, (1,), generator=generator))
        out[i, f0:f0 + f, :] = 0.0
        out[i, :, t0:t0 + t] = 0.0
    return out


def wave_augment(wave: torch.Tensor, generator: torch.Generator, sample_rate: int = 16000) -> torch.Tensor:
    """Training-only waveform augmentation, one random draw per batch: pitch shift (+-2 semitones),
    time stretch (0.85-1.15x, pitch kept, via the phase vocoder) and additive noise at 15-35 dB SNR."""
    import torchaudio.functional as AF

    length, out = wave.shape[1], wave
    rand = lambda: float(torch.rand(1, generator=generator))  # noqa: E731
    if rand() < 0.5:
        out = AF.pitch_shift(out, sample_rate, n_steps=int(torch.randint(-2, 3, (1,), generator=generator)))
    if rand() < 0.5:
        n_fft, hop = 512, 128
        window = torch.hann_window(n_fft, device=out.device)
        spec = torch.stft(out, n_fft, hop, window=window, return_complex=True)
        phase_advance = torch.linspace(0, torch.pi * hop, spec.shape[1], device=out.device)[..., None]
        spec = AF.phase_vocoder(spec, 0.85 + 0.3 * rand(), phase_advance)
        out = torch.istft(spec, n_fft, hop, window=window)
        out = nn.functional.pad(out, (0, max(0, length - out.shape[1])))[:, :length]
    snr_db = 15 + 20 * rand()
    power = out.pow(2).mean(dim=1, keepdim=True)
    noise = torch.randn(out.shape, generator=generator) * (power / 10 ** (snr_db / 10)).sqrt()
    return out + noise


def augment(batch: dict, generator: torch.Generator) -> dict:
    """Applied to training batches only (never in predict_proba, which validation and test use)."""
    ops = {"logmel": spec_augment, "wave": wave_augment}
    return {k: ops[k](v, generator) if k in ops else v for k, v in batch.items()}
