"""Lucid's image parameterisation: a scaled Fourier spectrum and decorrelated colour.

Olah, Mordvintsev, Schubert, "Feature Visualization" (Distill 2017), section "The Enemy of
Feature Visualization" / "Preconditioning and Parameterization": optimising the coefficients of a
spectrum whose frequencies are scaled by 1/f (so all frequencies have about equal energy) and
colours expressed in a decorrelated basis (the square root of the colour covariance) gives far
less high-frequency noise than optimising pixels. A sigmoid maps the result to [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["FourierImage", "spectrum_scale"]


def spectrum_scale(h: int, w: int, decay_power: float) -> torch.Tensor:
    """(h, w // 2 + 1) scale 1 / max(f, 1 / max(h, w)) ** decay_power of the real FFT's
    frequencies."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    freqs = np.sqrt(fx * fx + fy * fy)
    return torch.from_numpy(1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power).float()


class FourierImage:
    """A batch of images as spectra (B, 3, h, w // 2 + 1, 2), each started from its own
    generator (N(0, sd^2) coefficients); ``rgb()`` gives [0, 1] images (B, 3, h, w)."""

    def __init__(self, generators, size: tuple[int, int], *, sd: float, decay_power: float,
                 magic: float, decorrelate: bool, color_correlation, device=None,
                 dtype=torch.float32):
        h, w = size
        self.size, self.magic, self.decorrelate = (h, w), magic, decorrelate
        shape = (3, h, w // 2 + 1, 2)
        coeffs = torch.stack([torch.randn(shape, generator=g) * sd for g in generators])
        self.spectrum = coeffs.to(device, dtype).requires_grad_(True)
        self.scale = spectrum_scale(h, w, decay_power).to(device, dtype)[None, None, :, :, None]
        matrix = np.asarray(color_correlation, dtype=np.float32)
        matrix = matrix / np.max(np.linalg.norm(matrix, axis=0))
        self.color = torch.from_numpy(matrix).to(device, dtype)

    @property
    def parameters(self) -> list[torch.Tensor]:
        return [self.spectrum]

    def rgb(self) -> torch.Tensor:
        spectrum = torch.view_as_complex((self.scale * self.spectrum).contiguous())
        image = torch.fft.irfftn(spectrum, s=self.size, norm="ortho") / self.magic
        if self.decorrelate:
            image = torch.einsum("bchw,dc->bdhw", image, self.color)
        return torch.sigmoid(image)
