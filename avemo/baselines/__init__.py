"""Classical baselines on pooled features (eGeMAPS, ImageNet, FER2013, Whisper): feature sets, fitting, stage."""
