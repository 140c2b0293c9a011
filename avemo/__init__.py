"""Shared logic of the RAVDESS audio-visual emotion recognition pipeline."""
