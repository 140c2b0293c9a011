"""`avemo serve` in a real browser: the server started on 127.0.0.1 as a user starts it (`avemo serve`), headless
Debian Chromium driven by Selenium, ravdess-lite clips, a 20 s file made by ffmpeg, a text file named .mp4.
Set AVEMO_SCREENSHOTS=docs/images to save the page of each as the documentation's screenshots."""
import csv
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest

from avemo.errors import StageError
from avemo.ids import EMOTIONS
from avemo.predict.batch import columns
from avemo.serve.app import display_name
from avemo.serve.cli import parse_args
from avemo.serve.jobs import Busy, Job, JobQueue
from avemo.serve.view import accuracy_text, answer_view

from conftest import ROOT, venv_env

MODEL = "release"  # avemo predict's default: the model shipped inside the package (audio+video, video, audio)
LITE_ACTOR = "19"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


# ------------------------------------------------------------------ without a browser or a model

def test_it_binds_127_0_0_1_unless_told_otherwise():
    assert parse_args([]).host == "127.0.0.1"
    assert parse_args(["--host", "0.0.0.0"]).host == "0.0.0.0"


def test_the_client_file_name_is_only_shown_never_a_path():
    assert display_name("../../etc/passwd.mp4") == "passwd.mp4"
    assert display_name("C:\\Users\\me\\talk.mp4") == "talk.mp4"
    assert display_name("a\x00b\nc.mp4") == "abc.mp4"
    assert display_name("") == "upload" and display_name("..") == ".."


def test_the_page_reads_the_model_card_when_there_is_one_and_works_without():
    answer = {"label": "sad", "confidence": 0.5, "probabilities": {"sad": 0.5, "calm": 0.5}, "inputs": "audio",
              "notes": ["n"], "model": "m", "mode": "clip"}
    bare = answer_view(answer)
    assert bare["branch"] == "audio" and bare["model"]["accuracy"] == "" and bare["timeline"] is None
    info = {"name": "release", "accuracy": {"single_clip": 0.829, "speaker_adapted": None, "folds": 5}}
    carded = answer_view({**answer, "branch": "video", "model_info": info})
    assert carded["branch"] == "video" and carded["model"]["name"] == "release"
    assert accuracy_text(info) == "single clip 82.9 % (5-fold cross-validation)"


def test_the_queue_is_bounded_runs_one_job_at_a_time_and_removes_its_folder(tmp_path):
    release, running = threading.Event(), []

    def work(job):
        running.append(job.id)
        release.wait(10)
        if job.name == "bad":
            raise StageError(f"{job.input}: not a video")

    jobs = JobQueue(work, lambda job: None, bound=1, root=tmp_path)
    made = []
    for name in ("first", "bad", "third"):
        job_id, folder = jobs.new_folder()
        made.append(Job(job_id, folder, name, folder / "input.mp4", [], annotate=False))
    jobs.submit(made[0])
    deadline = time.time() + 5
    while not running and time.time() < deadline:
        time.sleep(0.01)
    jobs.submit(made[1])  # waits: the one place in the queue
    with pytest.raises(Busy, match="1 uploads are already waiting"):
        jobs.submit(made[2])
    assert not made[2].folder.exists() and running == [made[0].id]
    release.set()
    while made[1].state not in ("done", "failed") and time.time() < deadline + 5:
        time.sleep(0.01)
    assert made[0].state == "done" and made[1].state == "failed"
    assert made[1].status()["error"] == "bad: not a video"  # the machine's path replaced by the client's name
    assert jobs.get("../" + made[0].id) is None and jobs.get(made[0].id) is made[0]
    jobs.close()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ a real server

def non_loopback_address() -> str | None:
    """This machine's address on its default route (no packet is sent), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.254.254.254", 1))
            address = s.getsockname()[0]
        except OSError:
            return None
    return None if address.startswith("127.") else address


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, models_dir: Path, tmp: Path, *extra: str):
        self.port, self.tmp = free_port(), tmp
        self.url = f"http://127.0.0.1:{self.port}"
        tmp.mkdir(parents=True, exist_ok=True)
        self.log = (tmp / "server.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "avemo.cli", "serve", "--port", str(self.port), "--model", MODEL,
             "--models-dir", str(models_dir), *extra], cwd=tmp, stdout=self.log, stderr=subprocess.STDOUT,
            env=venv_env(TMPDIR=tmp, PYTHONPATH=ROOT))
        deadline = time.time() + 180
        while time.time() < deadline:
            assert self.process.poll() is None, (tmp / "server.log").read_text()
            try:
                self.get("/api/model")
                return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"avemo serve did not answer in 180 s:\n{(tmp / 'server.log').read_text()}")

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as reply:
            data = reply.read()
        return json.loads(data) if path.startswith("/api/") and not path.endswith((".csv", ".mp4")) else data

    def post(self, files: list[tuple[str, str, bytes]]) -> tuple[int, dict]:
        """multipart/form-data of (field, file name, bytes)."""
        boundary = "avemo-test-boundary"
        body = b""
        for field, name, data in files:
            body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
                     f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
        body += f"--{boundary}--\r\n".encode()
        request = urllib.request.Request(self.url + "/api/jobs", body, method="POST",
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def wait(self, job_id: str, timeout: float = 300) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.get(f"/api/jobs/{job_id}?wait=5")
            if status["state"] in ("done", "failed"):
                return status
        raise AssertionError(f"job {job_id} unanswered after {timeout} s")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.log.close()


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """An empty models directory: the release is found without one."""
    return tmp_path_factory.mktemp("serve-models")


@pytest.fixture(scope="module")
def server(models_dir, tmp_path_factory):
    server = Server(models_dir, tmp_path_factory.mktemp("serve"))
    yield server
    server.stop()
    assert not list(server.tmp.glob("avemo-serve-*")), "the server left its temporary folder behind"


@pytest.fixture(scope="module")
def clips(lite_dir, tmp_path_factory) -> list[Path]:
    """Six audio+video clips of one ravdess-lite actor."""
    target = tmp_path_factory.mktemp("lite-clips")
    with zipfile.ZipFile(lite_dir / f"Video_Speech_Actor_{LITE_ACTOR}.zip") as archive:
        names = sorted(n for n in archive.namelist() if Path(n).name.startswith("01-") and n.endswith(".mp4"))
        for name in names[::9][:6]:
            (target / Path(name).name).write_bytes(archive.read(name))
    return sorted(target.iterdir())


@pytest.fixture(scope="module")
def long_file(clips, ffmpeg, tmp_path_factory) -> Path:
    """About 20 s: five clips one after the other, re-encoded (H.264 + AAC) by ffmpeg."""
    where = tmp_path_factory.mktemp("long")
    listing = where / "list.txt"
    listing.write_text("".join(f"file '{c}'\n" for c in clips[:5]))
    out = where / "session.mp4"
    ffmpeg("-f", "concat", "-safe", "0", "-i", listing, "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt",
           "yuv420p", "-c:a", "aac", out)
    return out


@pytest.fixture(scope="module")
def browser():
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("Chromium and chromedriver are not installed (Debian: apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,1500",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio",
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"):  # a test-pattern webcam
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def screenshot(driver, name: str) -> None:
    folder = os.environ.get("AVEMO_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / name))


def upload(driver, server: Server, path: Path, wait_for: str, timeout: float = 300):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(server.url + "/")
    WebDriverWait(driver, 30).until(lambda d: "model:" in d.find_element(By.ID, "model-line").text)
    driver.find_element(By.ID, "file").send_keys(str(path))
    driver.find_element(By.ID, "go").click()
    WebDriverWait(driver, timeout).until(
        seen.any_of(seen.visibility_of_element_located((By.CSS_SELECTOR, wait_for)),
                    seen.visibility_of_element_located((By.ID, "error"))))
    return driver


def wait_for_video(driver, timeout: float = 300) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.execute_script(
        "const v = document.getElementById('video'); return v.dataset.annotated === '1' && v.readyState >= 2;"))


def job_id(driver) -> str:
    return driver.execute_script("return job").removeprefix("shown:")


@pytest.fixture(scope="module")
def predictor(models_dir):
    from avemo.predict import load_predictor

    return load_predictor(MODEL, models_dir)


@pytest.mark.slow
def test_a_ravdess_lite_clip_shows_the_label_of_avemo_predict(browser, server, clips, predictor, models_dir,
                                                             one_torch_thread):
    from selenium.webdriver.common.by import By

    from avemo.predict import predict_clip

    upload(browser, server, clips[0], "#label")
    assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text
    expected = predict_clip(clips[0], predictor, models_dir=models_dir).as_dict()
    assert browser.find_element(By.ID, "label").text.lower() == expected["label"]
    shown = {b.get_attribute("data-class"): float(b.find_element(By.CLASS_NAME, "value").text)
             for b in browser.find_elements(By.CSS_SELECTOR, "#answer-single_clip .bar")}
    assert shown == pytest.approx(expected["probabilities"], abs=6e-4)
    assert set(shown) == set(EMOTIONS)
    answered = server.get(f"/api/jobs/{job_id(browser)}/result.json")
    assert answered["probabilities"] == expected["probabilities"] and answered["input"] == clips[0].name
    rows = list(csv.DictReader(io.StringIO(server.get(f"/api/jobs/{job_id(browser)}/result.csv").decode())))
    assert list(rows[0]) == columns(list(expected["probabilities"]))  # the columns of `avemo predict --output`
    assert len(rows) == 1 and rows[0]["input"] == clips[0].name and rows[0]["label"] == expected["label"]
    figures = re.findall(r"\d+\.\d %", browser.find_element(By.ID, "model-line").text)
    assert figures and all(f in browser.find_element(By.ID, "answer-single_clip").text for f in figures)
    wait_for_video(browser)
    screenshot(browser, "serve-clip.png")


@pytest.mark.slow
def test_adapt_to_this_person_shows_both_answers_side_by_side(browser, server, clips, predictor, models_dir,
                                                              one_torch_thread):
    from selenium.webdriver.common.by import By

    from avemo.predict import build_enrolment, predict_clip

    driver = browser
    driver.get(server.url + "/")
    driver.find_element(By.ID, "adapt").click()
    driver.find_element(By.ID, "enrol").send_keys("\n".join(str(c) for c in clips[1:5]))
    driver.find_element(By.ID, "file").send_keys(str(clips[0]))
    driver.find_element(By.ID, "go").click()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 300).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#answer-speaker_adapted .label")
                                     or d.find_element(By.ID, "error").is_displayed())
    assert not driver.find_element(By.ID, "error").is_displayed(), driver.find_element(By.ID, "error").text
    enrolment = build_enrolment(clips[1:5], predictor, clips[0])
    expected = predict_clip(clips[0], predictor, models_dir=models_dir, enrolment=enrolment).as_dict()
    single = predict_clip(clips[0], predictor, models_dir=models_dir).as_dict()
    cards = driver.find_elements(By.CSS_SELECTOR, "#answers.side-by-side .answer")
    assert [c.get_attribute("id") for c in cards] == ["answer-single_clip", "answer-speaker_adapted"]
    assert [c.find_element(By.CLASS_NAME, "label").text.lower() for c in cards] == [single["label"],
                                                                                  expected["label"]]
    adapted = server.get(f"/api/jobs/{job_id(driver)}/adapted.json")
    assert adapted["probabilities"] == expected["probabilities"] != single["probabilities"]
    assert adapted["enrolment"]["files"] == [c.name for c in clips[1:5]]
    wait_for_video(driver)
    screenshot(driver, "serve-enrol.png")


@pytest.mark.slow
def test_a_20_second_file_gets_a_timeline_chart_that_seeks_the_video(browser, server, long_file):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    upload(browser, server, long_file, "#timeline")
    assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text
    wait_for_video(browser)  # the chart is drawn again when the annotated video's metadata arrives
    series = browser.execute_script(  # read in one call: a redraw between two reads would leave stale elements
        "return [...document.querySelectorAll('#chart polyline.series')]"
        ".map(l => [l.dataset.class, l.getAttribute('points').split(' ').filter(Boolean).length])")
    assert sorted(name for name, _ in series) == sorted(EMOTIONS)
    assert all(points > 20 for _, points in series)  # a window every 0.375 s
    rows = server.get(f"/api/jobs/{job_id(browser)}/result.csv").decode().splitlines()
    assert rows[0].startswith("window,start_s,end_s,time_s,label") and len(rows) - 1 == series[0][1]
    chart = browser.find_element(By.ID, "chart")
    # Selenium's offsets are from the element's centre: a click at a quarter of the chart's width, which is
    # 22 % of the plot's time axis (the axis starts 36 of 900 units from the left)
    ActionChains(browser).move_to_element_with_offset(chart, -chart.size["width"] // 4, 0).click().perform()
    time.sleep(0.5)
    seconds = browser.execute_script("return document.getElementById('video').currentTime")
    duration = browser.execute_script("return document.getElementById('video').duration")
    assert 17 < duration < 23 and 0.17 * duration < seconds < 0.27 * duration
    browser.execute_script("window.scrollTo(0, document.getElementById('media').offsetTop)")
    screenshot(browser, "serve-timeline.png")


@pytest.mark.slow
def test_a_text_file_named_mp4_gets_the_command_line_message_and_the_server_keeps_serving(
        browser, server, clips, predictor, models_dir, tmp_path):
    from selenium.webdriver.common.by import By

    fake = tmp_path / "notes.mp4"
    fake.write_text("meeting notes, not a video\n" * 50)
    upload(browser, server, fake, "#label")
    error = browser.find_element(By.ID, "error")
    assert error.is_displayed()
    from avemo.predict import predict_clip

    with pytest.raises(StageError) as cli_error:
        predict_clip(fake, predictor, models_dir=models_dir)
    assert error.text == str(cli_error.value).replace(str(fake), "notes.mp4")
    assert str(tmp_path) not in error.text
    screenshot(browser, "serve-error.png")
    status, reply = server.post([("file", clips[1].name, clips[1].read_bytes())])
    assert status == 202 and server.wait(reply["id"])["state"] == "done"


@pytest.mark.slow
def test_a_webcam_recording_is_uploaded_and_answered_as_a_file_would_be(browser, server):
    """Chromium's fake camera films a test pattern (no face) with a beep: the 4 s recording reaches the model
    as webcam.webm, and the release answers from its audio branch, saying that no face was found."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "/")
    browser.find_element(By.ID, "webcam").click()
    WebDriverWait(browser, 30).until(lambda d: "recorded 4 s" in d.find_element(By.ID, "status").text)
    browser.find_element(By.ID, "go").click()
    WebDriverWait(browser, 120).until(lambda d: d.find_element(By.ID, "error").is_displayed()
                                      or d.find_elements(By.CSS_SELECTOR, "#label"))
    assert not browser.find_element(By.ID, "error").is_displayed(), browser.find_element(By.ID, "error").text
    status = server.get(f"/api/jobs/{job_id(browser)}")
    answer = status["answers"]["single_clip"]
    assert status["name"] == "webcam.webm" and answer["branch"] == "audio" and answer["label"] in EMOTIONS
    assert any("no face" in note for note in answer["notes"]), answer["notes"]


@pytest.mark.slow
def test_two_uploads_at_once_are_both_answered(server, clips):
    replies = [None, None]

    def send(i):
        status, reply = server.post([("file", clips[2 + i].name, clips[2 + i].read_bytes())])
        replies[i] = (status, reply)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r[0] for r in replies] == [202, 202]
    answers = [server.wait(r[1]["id"]) for r in replies]
    assert [a["state"] for a in answers] == ["done", "done"]
    assert [a["name"] for a in answers] == [clips[2].name, clips[3].name]


@pytest.mark.slow
def test_uploads_are_limited_named_by_the_server_and_removed(models_dir, clips, tmp_path):
    server = Server(models_dir, tmp_path / "small", "--max-upload-mb", "0.05")
    try:
        assert f"http://127.0.0.1:{server.port}/" in (tmp_path / "small" / "server.log").read_text()
        if (other := non_loopback_address()) is not None:  # bound to 127.0.0.1 only: not reachable on it
            with pytest.raises(OSError):
                socket.create_connection((other, server.port), timeout=3).close()
        status, reply = server.post([("file", clips[0].name, clips[0].read_bytes() * 2)])
        assert status == 413 and "upload too large" in reply["detail"] and "0.05 MB" in reply["detail"]
        status, reply = server.post([("file", "../../escape.txt", b"hello")])
        assert status == 415 and reply["detail"].startswith("escape.txt: not a video or audio file")
        status, reply = server.post([("file", "../../../escape.mp4", b"not a video")])
        assert status == 202
        failed = server.wait(reply["id"])
        assert failed["state"] == "failed" and failed["error"].startswith("escape.mp4: ")
        roots = list((tmp_path / "small").glob("avemo-serve-*"))
        assert len(roots) == 1
        stored = sorted(p.name for p in roots[0].rglob("*") if p.is_file())
        assert stored == ["input.mp4"] and not list(tmp_path.rglob("escape*"))
        with pytest.raises(urllib.error.HTTPError, match="404"):
            server.get("/api/jobs/..%2F..%2Fserver.log")
    finally:
        server.stop()
    assert not list((tmp_path / "small").glob("avemo-serve-*"))
