"""The Gradio app on 127.0.0.1: every named endpoint via gradio_client, bad input, a small load test, a real browser.

Most tests serve a tiny random checkpoint (it writes gibberish), so transcripts are checked against the
pipeline's own output for the same file. Screenshots and load-test figures go to test-artifacts/.
"""

import base64
import csv
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from transformers import pipeline

from conftest import tone
from tiny_audio import ASRModel, SAMPLE_RATE, load_audio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # app.py and eval/ live at the repo root
import app  # noqa: E402
from eval.metrics import wer  # noqa: E402

ARTIFACTS = ROOT / "test-artifacts"
SAMPLES = app.read_samples()  # {name: (path, reference)}
FOX, FOX_TEXT = SAMPLES["fox.flac"]
TEST_MAX_SECONDS = 40  # the test server's per-clip limit: a 35 s clip is split and accepted, 45 s refused
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(url: str, downloads: Path) -> Client:
    return Client(url, verbose=False, analytics_enabled=False, download_files=str(downloads))


@pytest.fixture(scope="module")
def checkpoint(tiny_config, tmp_path_factory):
    path = tmp_path_factory.mktemp("app-ckpt")
    ASRModel(tiny_config("whisper", "llama", generation={"max_new_tokens": 8, "num_beams": 1})).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def pipe(checkpoint):
    """The same checkpoint through the pipeline directly: what the app must reproduce."""
    return pipeline("automatic-speech-recognition", model=str(checkpoint), trust_remote_code=True, device="cpu")


@pytest.fixture(scope="module")
def server(checkpoint):
    demo = app.build_demo(str(checkpoint), device="cpu", max_seconds=TEST_MAX_SECONDS)
    _, url, _ = app.serve(demo, "127.0.0.1", free_port(), prevent_thread_lock=True, quiet=True)
    yield url
    demo.close()


@pytest.fixture(scope="module")
def client(server, tmp_path_factory):
    return connect(server, tmp_path_factory.mktemp("client-downloads"))


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """35 s of speech: the bundled samples, repeated with pauses (longer than Whisper's 30 s window)."""
    pause = np.zeros(SAMPLE_RATE // 2, np.float32)
    clips = [load_audio(path) for path, _ in SAMPLES.values()]
    audio = np.concatenate([piece for clip in clips * 3 for piece in (clip, pause)])[: 35 * SAMPLE_RATE]
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, audio, SAMPLE_RATE)
    return path


# --- every named endpoint --------------------------------------------------------------
def test_api_lists_the_named_endpoints(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/transcribe", "/transcribe_batch", "/evaluate", "/benchmark", "/load_sample"} <= names


def test_transcribe_equals_the_pipeline(client, pipe):
    for name in ("fox.flac", "callback.flac"):
        path = SAMPLES[name][0]
        text, timing = client.predict(handle_file(path), api_name="/transcribe")  # settings left at their defaults
        assert text == pipe(path)["text"]
        assert "s of audio in" in timing and "real time" in timing
    text, _ = client.predict(handle_file(FOX), 2, 3, 0.5, api_name="/transcribe")
    assert text == pipe(FOX, num_beams=2, max_new_tokens=3, length_penalty=0.5)["text"]


def test_long_audio_is_split_not_truncated(client, pipe, long_clip):
    text, timing = client.predict(handle_file(str(long_clip)), api_name="/transcribe")
    assert text == pipe(str(long_clip))["text"]
    assert "transcribed in 2 pieces" in timing


def test_transcribe_batch_table_and_downloads(client, pipe):
    paths = [path for path, _ in SAMPLES.values()]
    table, downloads = client.predict([handle_file(p) for p in paths], api_name="/transcribe_batch")
    assert table["headers"] == ["file", "duration (s)", "text", "seconds"]
    assert [row[0] for row in table["data"]] == list(SAMPLES)
    assert [row[2] for row in table["data"]] == [pipe(p)["text"] for p in paths]
    for row, path in zip(table["data"], paths):
        assert row[1] == pytest.approx(sf.info(path).duration, abs=0.01)
    by_name = {Path(d).name: Path(d) for d in downloads}
    assert set(by_name) == {"results.txt", "results.csv", "results.json"}
    with open(by_name["results.csv"], newline="") as f:
        assert [r["text"] for r in csv.DictReader(f)] == [row[2] for row in table["data"]]
    assert [r["file"] for r in json.loads(by_name["results.json"].read_text())] == list(SAMPLES)
    assert len(by_name["results.txt"].read_text().splitlines()) == len(paths)


def test_evaluate_scores_the_transcript(client, pipe):
    hypothesis, summary, alignment, scores = client.predict(handle_file(FOX), FOX_TEXT, api_name="/evaluate")
    assert hypothesis == pipe(FOX)["text"]
    expected = wer(FOX_TEXT, hypothesis)
    assert scores["wer"] == pytest.approx(expected["wer"]) and scores["cer"] == pytest.approx(expected["cer"])
    assert f"WER {100 * expected['wer']:.1f} %" in summary
    labels = [span["class_or_confidence"] for span in alignment if span["token"] != " "]
    assert labels.count("substitution") == expected["substitutions"]
    assert labels.count("deletion") == expected["deletions"] and labels.count("insertion") == expected["insertions"]


def test_alignment_spans_mark_each_error():
    spans = [s for s in app.alignment_spans("the quick brown fox", "the quack brown fox jumps") if s[0] != " "]
    assert spans == [
        ("the", None), ("quick → quack", "substitution"), ("brown", None), ("fox", None), ("jumps", "insertion")
    ]


def test_benchmark_and_sample_loader(client, pipe):
    summary, table, plot = client.predict(api_name="/benchmark")
    assert summary.startswith(f"**{len(SAMPLES)} samples: WER")
    hypotheses = [pipe(path)["text"] for path, _ in SAMPLES.values()]
    assert [row[2] for row in table["data"]] == hypotheses
    total = wer([ref for _, ref in SAMPLES.values()], hypotheses)
    assert f"WER {100 * total['wer']:.1f} %" in summary
    assert [row[0] for row in plot["data"]] == list(SAMPLES)
    audio, reference = client.predict("callback.flac", api_name="/load_sample")
    assert reference == SAMPLES["callback.flac"][1]
    assert np.array_equal(load_audio(audio), load_audio(SAMPLES["callback.flac"][0]))


def test_readme_client_snippet_runs(server, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- client-snippet")[1].split("```python\n")[1].split("```")[0]
    address = 'Client("http://127.0.0.1:7860/")'
    assert address in block
    monkeypatch.chdir(ROOT)  # the snippet names files relative to the repo root
    code = block.replace(address, f'Client("{server}", verbose=False, analytics_enabled=False)')
    exec(compile(code, "README.md", "exec"), {})


# --- bad input: a clear error, and the server keeps serving ---------------------------------
def write_bad(kind: str, folder: Path) -> str:
    path = folder / {"non-audio": "notes.wav", "text-file": "notes.txt"}.get(kind, f"{kind}.wav")
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "silent":
        sf.write(path, np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    elif kind == "nan":
        sf.write(path, np.full(SAMPLE_RATE, np.nan, np.float32), SAMPLE_RATE, subtype="FLOAT")
    elif kind == "corrupt":
        sf.write(path, tone(1.0), SAMPLE_RATE)
        path.write_bytes(path.read_bytes()[:30])  # header cut short
    elif kind in ("non-audio", "text-file"):
        path.write_text("this is not audio at all\n" * 50)
    elif kind == "too-long":
        sf.write(path, tone(TEST_MAX_SECONDS + 5), SAMPLE_RATE)
    return str(path)


@pytest.mark.parametrize(
    "endpoint,kind,message",
    [
        ("/transcribe", None, "No audio: record a clip or choose a file first"),
        ("/transcribe", "empty", "empty.wav: audio is empty"),
        ("/transcribe", "silent", "silent.wav: audio is silent"),
        ("/transcribe", "nan", "nan.wav: audio contains NaN"),
        ("/transcribe", "corrupt", "corrupt.wav: could not decode the audio"),
        ("/transcribe", "non-audio", "notes.wav: could not decode the audio"),
        ("/transcribe", "too-long", f"too-long.wav: audio is {TEST_MAX_SECONDS + 5} s long, above this app's "
                                    f"{TEST_MAX_SECONDS} s limit"),
        ("/transcribe_batch", None, "No files"),
        ("/transcribe_batch", "silent", "1 of 2 files can't be transcribed: silent.wav: audio is silent"),
        ("/transcribe_batch", "text-file", "Invalid file type"),
        ("/evaluate", "no-reference", "No reference"),
    ],
)
def test_bad_input_is_a_clear_error_and_the_next_request_works(client, pipe, tmp_path, endpoint, kind, message):
    bad = None if kind in (None, "no-reference") else handle_file(write_bad(kind, tmp_path))
    if endpoint == "/transcribe":
        args = (bad,)
    elif endpoint == "/transcribe_batch":
        args = ([] if bad is None else [handle_file(FOX), bad],)
    else:
        args = (handle_file(FOX), "  ")
    with pytest.raises(AppError, match=message) as raised:
        client.predict(*args, api_name=endpoint)
    assert "Traceback" not in str(raised.value)
    text, _ = client.predict(handle_file(FOX), api_name="/transcribe")
    assert text == pipe(FOX)["text"]


def test_file_size_limit(monkeypatch):
    monkeypatch.setattr(app, "MAX_FILE_MB", 0.01)  # 10 KB: every bundled sample is larger
    with pytest.raises(app.gr.Error, match=r"fox.flac: file is 0.05\d* MB, above this app's 0.01 MB limit"):
        app.read_clip(FOX)


# --- a small load test ---------------------------------------------------------------------
def test_concurrent_clients(server, pipe, tmp_path, capsys):
    """6 clients x 3 requests on loopback, at most 120 s in all; every answer right; latency percentiles reported."""
    clients, rounds = 6, 3
    names = list(SAMPLES)
    expected = {name: pipe(SAMPLES[name][0])["text"] for name in names}

    def session(i: int) -> list[tuple[float, bool]]:
        c = connect(server, tmp_path / f"client{i}")
        out = []
        for r in range(rounds):
            name = names[(i + r) % len(names)]
            start = time.perf_counter()
            text, _ = c.predict(handle_file(SAMPLES[name][0]), api_name="/transcribe")
            out.append((time.perf_counter() - start, text == expected[name]))
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        futures = [pool.submit(session, i) for i in range(clients)]
        results = [item for f in futures for item in f.result(timeout=120)]
    wall = time.perf_counter() - start
    latencies = np.array([seconds for seconds, _ in results])
    assert len(results) == clients * rounds and all(ok for _, ok in results)
    p50, p90, p99 = (float(p) for p in np.percentile(latencies, [50, 90, 99]))
    figures = {"clients": clients, "requests": len(results), "concurrency_limit": app.CONCURRENCY_LIMIT,
               "wall_s": round(wall, 2), "throughput_rps": round(len(results) / wall, 2), "p50_s": round(p50, 3),
               "p90_s": round(p90, 3), "p99_s": round(p99, 3), "max_s": round(float(latencies.max()), 3)}
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "load-test.json").write_text(json.dumps(figures, indent=2))
    with capsys.disabled():
        print(f"\nload test (tiny model, /transcribe): {figures}")


# --- the real default model, through `python app.py` -----------------------------------------
def test_cli_serves_the_default_model(tmp_path):
    """`python app.py --host --port` on tiny_audio.DEFAULT_MODEL: the page loads and /transcribe returns a string."""
    port = free_port()
    log = open(tmp_path / "app.log", "w")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--host", "127.0.0.1", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 180  # the model loads in ~5-20 s on a busy CPU; the first run also fetches weights
        while True:
            assert proc.poll() is None, (tmp_path / "app.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(url, timeout=5) as page:
                    assert "Tiny Audio" in page.read().decode()
                break
            except OSError:
                assert time.time() < deadline, "app did not come up in 180 s"
                time.sleep(1)
        # Greedy and 4 tokens: this proves the default path works; quality is the evaluation's job.
        text, timing = connect(url, tmp_path).predict(handle_file(FOX), 1, 4, 1.0, api_name="/transcribe")
        assert isinstance(text, str) and "s of audio in" in timing
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


# --- a real browser ----------------------------------------------------------------------------
def launch_chromium(playwright, extra_args=()):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not installed (Debian package `chromium`; `make system` installs it)")
    try:
        return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS + list(extra_args))
    except Exception as err:  # a broken install: report why, don't fail the suite on the machine's browser
        pytest.skip(f"chromium could not start: {err}")


@pytest.fixture(scope="module")
def playwright():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (requirements-dev.txt)")
    with sync_api.sync_playwright() as p:
        yield p


def shown(text: str) -> str:
    """Text as a page shows it: whitespace runs collapsed, control characters dropped."""
    return " ".join("".join(ch for ch in text if ch.isprintable() or ch.isspace()).split())


def test_browser_upload_and_evaluation(server, pipe, playwright):
    ARTIFACTS.mkdir(exist_ok=True)
    browser = launch_chromium(playwright)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(server)
        page.get_by_text("A small speech recognizer").wait_for(timeout=30_000)

        # Upload: one file in, its transcript in the results table.
        page.get_by_role("tab", name="Upload").click()
        page.locator("#audio-files input[type=file]").set_input_files(SAMPLES["umbrella.flac"][0])
        page.get_by_role("button", name="Transcribe all").click()
        row = page.locator("#results").get_by_role("row").filter(has_text="umbrella.flac")
        row.wait_for(timeout=60_000)
        assert shown(pipe(SAMPLES["umbrella.flac"][0])["text"]) in shown(row.inner_text())
        page.screenshot(path=ARTIFACTS / "app-upload.png", full_page=True)

        # Evaluation: pick a bundled sample, score it, then run the benchmark.
        page.get_by_role("tab", name="Evaluation").click()
        page.locator("#evaluation").get_by_label("Bundled sample").click()
        page.get_by_role("option", name="fox.flac").click()
        reference = page.locator("#reference textarea")
        page.wait_for_function("(el) => el.value.length > 0", arg=reference.element_handle(), timeout=30_000)
        assert reference.input_value() == FOX_TEXT
        page.get_by_role("button", name="Transcribe and score").click()
        page.locator("#score").get_by_text("WER").wait_for(timeout=60_000)
        assert page.locator("#hypothesis textarea").input_value() == pipe(FOX)["text"]
        page.get_by_role("button", name="Run benchmark").click()
        page.locator("#benchmark-summary").get_by_text(f"{len(SAMPLES)} samples: WER").wait_for(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "app-evaluation.png", full_page=True)
    finally:
        browser.close()


def test_browser_microphone(server, pipe, playwright, tmp_path):
    """Chromium's fake capture device plays a sample into the Record widget; the recording's transcript comes back."""
    ARTIFACTS.mkdir(exist_ok=True)
    clip = tmp_path / "clip.wav"
    sf.write(clip, load_audio(FOX), SAMPLE_RATE)  # the fake device reads WAV
    browser = launch_chromium(playwright, ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                                           f"--use-file-for-fake-audio-capture={clip}"])
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(server)
        mic = page.locator("#microphone")
        mic.get_by_role("button", name="Record", exact=True).click()
        page.wait_for_timeout(2500)
        mic.get_by_role("button", name="Stop", exact=True).click()
        wav = read_recording(page)  # what the browser recorded and uploads
        mic.get_by_role("button", name="Transcribe", exact=True).click()
        timing = page.locator("#timing").get_by_text("s of audio in")
        timing.wait_for(timeout=60_000)
        assert 1.5 < float(timing.inner_text().split(" s of audio")[0]) < 4.0, timing.inner_text()  # ~2.5 s recorded
        assert page.locator("#transcript textarea").input_value() == pipe(wav)["text"]
        page.get_by_text("Settings (all tabs)").click()  # show the shared settings in the screenshot
        page.get_by_text("Length penalty").wait_for()
        page.screenshot(path=ARTIFACTS / "app-microphone.png", full_page=True)
    finally:
        browser.close()


def read_recording(page, timeout: float = 30.0) -> bytes:
    """The recorded WAV: the blob <audio> in the Record widget (inside the waveform's shadow DOM) that still reads."""
    from playwright.sync_api import Error

    deadline = time.time() + timeout
    while time.time() < deadline:
        sources = page.locator("#recorder audio[src^='blob:']").evaluate_all("(els) => els.map((el) => el.src)")
        for src in sources:
            try:  # the live input's blob is revoked once recording stops
                data = base64.b64decode(page.evaluate(READ_BLOB, src))
            except Error:
                continue
            try:
                load_audio(data)
                return data
            except ValueError:  # a blob that is not (yet) a whole recording: look again
                continue
        page.wait_for_timeout(200)
    raise AssertionError(f"no readable recording in the page after {timeout:.0f} s")


READ_BLOB = """async (url) => {
    const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    return btoa(text);
}"""
