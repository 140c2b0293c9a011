"""Stage 3: sample frames at equal intervals, crop the largest face, store strips, boxes and landmarks.

The work is avemo.faces.crop_clips.run (params.yaml `faces`). With --cache, each clip's result is looked up
in a content-addressed cache first (avemo/cache.py), so a rerun after new clips were added only
decodes the new ones."""
from avemo.faces.crop_clips import run
from avemo.entry import per_clip_main


def main() -> None:
    per_clip_main(__doc__, "faces", run)


if __name__ == "__main__":
    main()
