"""Upload-to-answer time of `avemo serve` against `avemo predict` with the model kept loaded, on the same files, in
one run; then two uploads at once, with the time each took.

    .venv/bin/python benchmarks/serve_latency.py [--model NAME|PATH] [--models-dir DIR] [--repeats 3]
                                                 [--files F ...]

Default files: one ravdess-lite clip (actor 19, unzipped to a temporary folder) and one 720p original
(ravdess-720p/Actor_01), both audio+video. `avemo predict` side: avemo.predict.predict_clip in this process
after a warm-up (model and encoders loaded once). `avemo serve` side: the server started as a user starts it
(`avemo serve`, one torch thread like predict), one warm-up upload, then each file posted and its status asked
with `?wait=` (the reply comes as soon as it is answered; annotated video off: the answer is what is timed). The two sides alternate, and
the median of --repeats runs is reported. Prints a markdown table and the ratios (target: at most 1.5).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("AVEMO_SHARED", ROOT.parent / "shared"))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # as the tests and the encode stages: one OpenMP thread

import torch  # noqa: E402

from avemo.predict import DEFAULT_MODEL, load_predictor, predict_clip  # noqa: E402
from avemo.predict.loading import default_models_dir  # noqa: E402


def default_files(where: Path) -> list[Path]:
    with zipfile.ZipFile(SHARED / "ravdess-lite" / "Video_Speech_Actor_19.zip") as archive:
        name = sorted(n for n in archive.namelist() if Path(n).name.startswith("01-") and n.endswith(".mp4"))[0]
        lite = where / Path(name).name
        lite.write_bytes(archive.read(name))
    hd = sorted((SHARED / "ravdess-720p" / "Actor_01").glob("01-*.mp4"))[0]
    return [lite, hd]


def post(url: str, path: Path, annotate: bool = False) -> str:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + \
        (f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"annotate\"\r\n\r\n"
         f"{'true' if annotate else 'false'}\r\n--{boundary}--\r\n").encode()
    request = urllib.request.Request(f"{url}/api/jobs", body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as reply:
        return json.loads(reply.read())["id"]


def wait(url: str, job: str) -> dict:
    """The job's status once answered (`?wait=`: the server replies as soon as it is)."""
    while True:
        with urllib.request.urlopen(f"{url}/api/jobs/{job}?wait=30", timeout=60) as reply:
            status = json.loads(reply.read())
        if status["state"] in ("done", "failed"):
            if status["state"] == "failed":
                raise RuntimeError(status["error"])
            return status


def served(url: str, path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    status = wait(url, post(url, path))
    return time.perf_counter() - start, status["answers"]["single_clip"]["label"]


def predicted(predictor, path: Path) -> tuple[float, str]:
    start = time.perf_counter()
    label = predict_clip(path, predictor).label
    return time.perf_counter() - start, label


def start_server(model: str, models_dir: Path, tmp: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "avemo.cli", "serve", "--port", str(port), "--model", model,
                                "--models-dir", str(models_dir)], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            urllib.request.urlopen(f"{url}/api/model", timeout=5).close()
            return process, url
        except OSError:
            if process.poll() is not None:
                raise SystemExit("avemo serve exited before answering")
            time.sleep(0.5)
    raise SystemExit("avemo serve did not answer in 300 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--files", nargs="+", type=Path)
    args = parser.parse_args()
    models_dir = args.models_dir or default_models_dir()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="avemo-serve-bench-") as tmp:
        files = args.files or default_files(Path(tmp))
        predictor = load_predictor(args.model, models_dir)
        predicted(predictor, files[0])  # warm-up: encoders loaded, first-call allocations
        process, url = start_server(args.model, models_dir, Path(tmp))
        try:
            served(url, files[0])  # warm-up
            rows = []
            for path in files:
                cli, web, labels = [], [], set()
                for _ in range(args.repeats):
                    seconds, label = predicted(predictor, path)
                    cli.append(seconds)
                    labels.add(label)
                    seconds, label = served(url, path)
                    web.append(seconds)
                    labels.add(label)
                rows.append({"file": path.name, "size_mb": path.stat().st_size / 1e6,
                             "predict_s": statistics.median(cli), "serve_s": statistics.median(web),
                             "same_label": len(labels) == 1})
            both = concurrent(url, files)
        finally:
            process.terminate()
            process.wait(60)
    report(rows, both, args)


def concurrent(url: str, files: list[Path]) -> list[dict]:
    """Two uploads posted at the same moment (the two files): each one's time from upload to answer."""
    results = [None, None]

    def one(i: int) -> None:
        start = time.perf_counter()
        status = wait(url, post(url, files[i % len(files)]))
        results[i] = {"file": files[i % len(files)].name, "seconds": time.perf_counter() - start,
                      "label": status["answers"]["single_clip"]["label"]}

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def report(rows: list[dict], both: list[dict], args) -> None:
    print(f"model: {args.model}; median of {args.repeats}; one torch thread; {os.cpu_count()} CPUs\n")
    print("| file | size | `avemo predict`, model loaded | `avemo serve`, upload to answer | ratio |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['file']} | {r['size_mb']:.2f} MB | {r['predict_s']:.2f} s | {r['serve_s']:.2f} s | "
              f"{r['serve_s'] / r['predict_s']:.2f} |" + ("" if r["same_label"] else " (labels differ!)"))
    print("\nTwo uploads at once:")
    for r in both:
        print(f"- {r['file']}: answered ({r['label']}) in {r['seconds']:.2f} s")
    worst = max(r["serve_s"] / r["predict_s"] for r in rows)
    print(f"\nworst ratio {worst:.2f} (target <= 1.5): {'ok' if worst <= 1.5 else 'OVER'}")


if __name__ == "__main__":
    main()
