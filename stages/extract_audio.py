"""Stage 2: 16 kHz mono wav per clip with ffmpeg; clips without or with silent audio are reported.

The work is avemo.extract_audio.run (params.yaml `audio`). With --cache, each clip's result is looked up in a
content-addressed cache first (avemo/cache.py), so a rerun after new clips were added only decodes the new
ones."""
from avemo.extract_audio import run
from avemo.entry import per_clip_main


def main() -> None:
    per_clip_main(__doc__, "audio", run)


if __name__ == "__main__":
    main()
