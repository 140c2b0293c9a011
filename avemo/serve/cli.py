"""`avemo serve`: a local web page that shows what the model hears and sees (docs/serve.md).

    avemo serve [--host 127.0.0.1] [--port 8000] [--model NAME|PATH] [--max-upload-mb 200] [--queue 4]

The model is loaded once, as `avemo predict` loads it, and every upload goes through avemo predict's own
functions. It binds 127.0.0.1 unless --host says otherwise."""
from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

LOOPBACK = "127.0.0.1"


def parse_args(argv=None) -> argparse.Namespace:
    from ..predict.cli import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="avemo serve", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default=LOOPBACK,
                        help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"name in --models-dir or a model path (default "
                                                               f"{DEFAULT_MODEL}, as avemo predict)")
    parser.add_argument("--models-dir", type=Path, help="where --model NAME is looked up (as avemo predict)")
    parser.add_argument("--max-upload-mb", type=float, default=200.0,
                        help="largest upload, all files of one request together (default 200 MB: a few minutes "
                             "of 720p video)")
    parser.add_argument("--queue", type=int, default=4,
                        help="uploads that may wait while one is analysed (default 4); more get 'busy, try again'")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as avemo predict)")
    return parser.parse_args(argv)


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def main(argv=None) -> None:
    args = parse_args(argv)
    from ..entry import run_stage

    run_stage(lambda: serve(args))


def serve(args: argparse.Namespace) -> None:
    import torch
    import uvicorn

    from ..predict.loading import default_models_dir, load_predictor
    from .app import Settings, create_app

    torch.set_num_threads(max(1, args.threads))
    models_dir = args.models_dir or default_models_dir()
    predictor = load_predictor(args.model, models_dir)
    for modality in ("audio", "video"):
        predictor.encoders(modality)  # loaded now, not on the first upload
    if not is_loopback(args.host):
        print(f"avemo serve: warning: binding {args.host}: anyone who can reach this machine can upload files",
              file=sys.stderr)
    app = create_app(Settings(predictor, models_dir, args.max_upload_mb, max(1, args.queue)))
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"avemo serve: http://{host}:{args.port}/ ({predictor.name}, {predictor.kind}); Ctrl-C stops",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", server_header=False)


if __name__ == "__main__":
    main()
