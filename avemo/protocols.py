"""The two evaluation protocols, by the names that metrics files, checkpoints, predictions and commands use
(docs/protocols.md): one clip of a person never seen (the headline, what `predict` does), or standardised
with that person's other, unlabeled clips."""
SINGLE_CLIP = "single_clip"
SPEAKER_ADAPTED = "speaker_adapted"
PROTOCOLS = (SINGLE_CLIP, SPEAKER_ADAPTED)
