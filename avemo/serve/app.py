"""The web app: a static page (no asset from elsewhere) and a small JSON API around the job queue.

    GET  /                      the page (static/index.html, app.js, style.css)
    GET  /api/model             the loaded model
    POST /api/jobs              multipart: file, enrol (0+ other clips of the person), annotate -> {id}
    GET  /api/jobs/{id}[?wait=S] state, answers made ready to show, error (wait: until answered, S s at most)
    GET  /api/jobs/{id}/{name}  input, result.json/.csv, adapted.json/.csv, annotated.mp4

FastAPI's own documentation pages load their scripts from a CDN, so they are off."""
from __future__ import annotations

import re
import unicodedata
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ..predict.enrol import MEDIA_SUFFIXES
from ..predict.predictor import Predictor
from .jobs import Busy, Job, JobQueue
from .view import accuracy_text, job_view
from .work import analyse, draw_video, write_results

STATIC = Path(__file__).parent / "static"
DOWNLOADS = {"result.json": "application/json", "result.csv": "text/csv", "adapted.json": "application/json",
             "adapted.csv": "text/csv", "annotated.mp4": "video/mp4"}
PLAYABLE = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
            ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".wav": "audio/wav", ".mp3": "audio/mpeg",
            ".flac": "audio/flac", ".m4a": "audio/mp4"}
MAX_ENROL = 16  # enrolment clips per upload (RAVDESS has 60 speech clips per actor; a few are enough)
CHUNK = 1 << 20


@dataclass
class Settings:
    predictor: Predictor
    models_dir: Path | None
    max_upload_mb: float = 200.0
    queue_bound: int = 4
    temp_root: Path | None = None

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * (1 << 20))


def display_name(name: str | None) -> str:
    """The client's file name for display only: its last component, printable characters, 80 at most."""
    base = re.split(r"[\\/]", name or "")[-1]
    clean = "".join(c for c in base if unicodedata.category(c)[0] not in "CZ" or c == " ").strip()
    return clean[:80] or "upload"


def media_suffix(name: str) -> str:
    suffix = Path(display_name(name)).suffix.lower()
    if suffix not in MEDIA_SUFFIXES:
        raise HTTPException(415, f"{display_name(name)}: not a video or audio file avemo reads "
                                 f"({', '.join(sorted(MEDIA_SUFFIXES))})")
    return suffix


async def save_upload(upload: UploadFile, target: Path, budget: list[int]) -> None:
    """Copy an upload into the job's folder, counting against the request's byte budget."""
    with target.open("wb") as out:
        while chunk := await upload.read(CHUNK):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise HTTPException(413, "upload too large")
            out.write(chunk)


def create_app(settings: Settings) -> FastAPI:
    state = {}

    def work(job: Job) -> None:
        def progress(window) -> None:
            job.progress = round(window.end_s, 2)

        outcome = analyse(job.input, settings.predictor, settings.models_dir, job.enrol, progress)
        job.answers, job.seconds = job.shown_data(outcome.answers), round(outcome.seconds, 3)
        job.pending = outcome.pending_video
        write_results(job.folder, outcome.answers, job.shown_data)

    def draw(job: Job) -> None:
        draw_video(job.input, job.pending, job.folder / "annotated.mp4")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["jobs"] = JobQueue(work, draw, settings.queue_bound, settings.temp_root)
        yield
        state["jobs"].close()

    app = FastAPI(title="avemo serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.middleware("http")
    async def limit_uploads(request: Request, call_next):
        if request.method == "POST":
            length = request.headers.get("content-length")
            if length is None or not length.isdigit():
                return JSONResponse({"detail": "uploads need a Content-Length"}, status_code=411)
            if int(length) > settings.max_bytes:
                return JSONResponse({"detail": f"upload too large: {int(length) / (1 << 20):.1f} MB, the limit "
                                               f"is {settings.max_upload_mb:g} MB (avemo serve --max-upload-mb)"},
                                    status_code=413)
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    def page():
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/model")
    def model():
        p = settings.predictor
        info = getattr(p, "model_info", None) or getattr(p, "info", None)
        return {"name": p.name, "inputs": p.kind, "classes": p.classes, "max_upload_mb": settings.max_upload_mb,
                "model_info": info, "accuracy": accuracy_text(info if isinstance(info, dict) else None)}

    @app.post("/api/jobs", status_code=202)
    async def submit(file: UploadFile = File(...), enrol: list[UploadFile] = File(default=[]),
                     annotate: bool = Form(True)):
        jobs: JobQueue = state["jobs"]
        enrol = [e for e in enrol if e.filename]
        if len(enrol) > MAX_ENROL:
            raise HTTPException(400, f"{len(enrol)} enrolment clips: at most {MAX_ENROL}")
        suffixes = [media_suffix(file.filename)] + [media_suffix(e.filename) for e in enrol]
        job_id, folder = jobs.new_folder()
        job = Job(job_id, folder, display_name(file.filename), folder / f"input{suffixes[0]}",
                  [folder / f"enrol-{i + 1}{s}" for i, s in enumerate(suffixes[1:])], annotate,
                  [display_name(e.filename) for e in enrol])
        budget = [settings.max_bytes]
        try:
            for upload, target in zip([file, *enrol], [job.input, *job.enrol]):
                await save_upload(upload, target, budget)
            jobs.submit(job)
        except Busy as err:
            raise HTTPException(503, str(err)) from None
        except BaseException:
            jobs.forget(job_id)
            raise
        return {"id": job.id, "position": jobs.position(job)}

    def find(job_id: str) -> Job:
        job = state["jobs"].get(job_id)
        if job is None:
            raise HTTPException(404, "no such job (finished jobs are kept for a while, then removed)")
        return job

    @app.get("/api/jobs/{job_id}")
    def status(job_id: str, wait: float = 0.0):
        """`?wait=S`: answer when the job is answered or failed, or after S seconds (30 at most)."""
        job = find(job_id)
        if wait > 0:
            job.finished.wait(min(wait, 30.0))
        return {**job_view(job.status()), "position": state["jobs"].position(job)}

    @app.get("/api/jobs/{job_id}/{name}")
    def download(job_id: str, name: str):
        job = find(job_id)
        if name == "input":
            return FileResponse(job.input, media_type=PLAYABLE.get(job.input.suffix, "application/octet-stream"))
        path = job.folder / name
        if name not in DOWNLOADS or not path.is_file():
            raise HTTPException(404, f"{name}: not available for this job")
        stem = Path(job.name).stem
        return FileResponse(path, media_type=DOWNLOADS[name], filename=f"{stem}.{name}")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
