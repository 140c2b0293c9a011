"""Frozen pretrained encoders that turn a clip's face crops or audio window into feature tensors."""
