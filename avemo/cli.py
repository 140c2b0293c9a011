"""The `avemo` command: `avemo predict VIDEO ...`, `avemo serve`, `avemo report ...`, `avemo profile NAME`.

Each subcommand hands its own arguments to the module that owns it, so `avemo predict --help` is the
predict command's help."""
from __future__ import annotations

import sys

COMMANDS = {
    "predict": ("avemo.predict", "emotions of a video, audio file, camera or stream"),
    "serve": ("avemo.serve.cli", "a local web page: upload a video, see its emotions (binds 127.0.0.1)"),
    "report": ("avemo.report", "the model tables of the metrics files (single clip first), summary.json"),
    "profile": ("avemo.pipeline", "what `dvc repro` runs: write run.yaml from a profile of params.yaml (default, full)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: avemo COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines + ["", "`avemo COMMAND --help` for the arguments of each."])


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"avemo: unknown command '{name}'; choose one of: {', '.join(COMMANDS)}", file=sys.stderr)
        sys.exit(2)
    import importlib

    module = importlib.import_module(COMMANDS[name][0])
    module.main(rest)


if __name__ == "__main__":
    main()
