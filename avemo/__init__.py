"""Shared logic of the RAVDESS audio-visual emotion recognition pipeline."""
from . import cpu  # noqa: F401  first: caps the numeric libraries' instruction set before any of them loads
