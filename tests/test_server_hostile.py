"""``storysdk serve`` under hostile input: a corpus of bad requests, each answered 4xx on one kept connection.

The corpus (:data:`CORPUS`) grows with every new field or content type: each case is one HTTP
request with the status and the words its answer must have. All of them are sent, in order,
over ONE keep-alive connection: none may answer 500, show a traceback or a server path, or
drop the connection, and none may take a queue place. Then: job errors without server paths
or tracebacks (those go to the log), models and fonts only by the operator's names, slow
clients dropped after the header and body deadlines (on loopback, bounded in count and time),
the limits refused before queueing, and a many-step job cancelled within one step of DELETE.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import requests
from PIL import Image, ImageFont
from starlette.responses import JSONResponse, Response

from storysdk import Limits, hookimpl
from storysdk.server import (
    Job,
    RunningServer,
    ServerConfig,
    WorkerContext,
    job_result,
    job_root,
    read_fields,
    submit_job,
)
from storysdk.server.choices import option_kind
from storysdk.server.cli import _pairs
from storysdk.server.redact import redact
from storysdk.testing import make_registry

SECRET = "/opt/secret-models/sdxl-base"  # a server path that no answer may show


# -- the server under test: the core's endpoints, plus routes that fail on purpose ------------------
async def bug(request: Any) -> Response:
    raise RuntimeError(f"the cache under {SECRET}/unet broke")  # a bug, not a StorySDKError


async def failing_job(request: Any) -> Response:
    fields = await read_fields(request)

    def work(job: Job, ctx: WorkerContext) -> None:
        raise RuntimeError(f"cannot read {job.folder}/frame.png nor {SECRET}/model.safetensors")

    job = Job("failing", work)
    job.folder = job_root(request, "failing") / job.id
    submit_job(request, job)
    await job_result(job)
    return JSONResponse({"fields": fields})


class HostilePlugin:
    @hookimpl
    def register_routes(self, register: Any) -> None:
        register("/v1/bug", bug)
        register("/v1/fail", failing_job)


def font_file(folder: Path) -> Path:
    """A real TrueType font on disk: Pillow's built-in one, written out (no system font needed)."""
    font = ImageFont.load_default(size=12)
    path = folder / "house.ttf"
    path.write_bytes(font.font_bytes)  # type: ignore[union-attr]
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningServer, Path]]:
    tmp = tmp_path_factory.mktemp("hostile")
    models = tmp / "models" / "house-sd"
    models.mkdir(parents=True)
    cfg = ServerConfig(
        port=0, out_dir=tmp / "serve", max_queue=1, max_body_bytes=512 * 1024, max_field_bytes=256 * 1024,
        defaults={"preset": "tiny"}, models={"house-sd": str(models)}, fonts={"house": str(font_file(tmp))},
    )
    with RunningServer(cfg, registry=make_registry(HostilePlugin())) as srv:
        yield srv, tmp


# -- the corpus ------------------------------------------------------------------------------------
@attrs.frozen
class Case:
    """One bad request: ``body`` sent as ``ctype`` to ``path``; the answer's status and words."""

    name: str
    path: str
    ctype: str | None
    body: bytes
    status: int
    words: tuple[str, ...]
    field: str | None = None
    method: str = "POST"


def toml(text: str) -> bytes:
    return text.encode("utf-8")


def story(extra: str = "", *, script: str = "a cat\\na dog", generator: str = 'name = "fake-image"') -> bytes:
    return toml(f"[story]\nseed = 1\nwidth = 16\nheight = 16\nscript = \"{script}\"\n{extra}\n"
                f"[planner]\nname = \"fake-planner\"\n[[generators]]\n{generator}\n")


def tracks(tables: str) -> bytes:
    """A story with ``[tracks.<name>]`` tables instead of ``[[generators]]``."""
    return toml(f"[story]\nseed = 1\nwidth = 16\nheight = 16\nscript = \"a cat\\na dog\"\n"
                f"[planner]\nname = \"fake-planner\"\n{tables}\n")


def js(data: Any) -> bytes:
    return json.dumps(data).encode("utf-8")


def multipart(fields: dict[str, str], *, close: bool = True, boundary: str = "XyZ") -> bytes:
    parts = b"".join(
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n".encode() for k, v in fields.items()
    )
    return parts + (f"--{boundary}--\r\n".encode() if close else b"")


GOOD = story().decode()
TOML, JSON, FORM, URLENC = "application/toml", "application/json", "multipart/form-data; boundary=XyZ", \
    "application/x-www-form-urlencoded"

CORPUS: tuple[Case, ...] = (
    # bodies that cannot be read
    Case("json nested 100k deep", "/v1/stories", JSON, b"[" * 100_000 + b"]" * 100_000, 400, ("nested too deeply",)),
    Case("json object nested 60k deep", "/v1/stories", JSON, b'{"a":' * 60_000 + b"1" + b"}" * 60_000, 400,
         ("nested too deeply",)),
    Case("json 5000-digit number", "/v1/stories", JSON, b'{"seed": 1' + b"0" * 5000 + b"}", 400, ("thousands of digits",)),
    Case("json NaN", "/v1/stories", JSON, b'{"story": "x", "seed": NaN}', 422, ("NaN",)),
    Case("json Infinity", "/v1/stories", JSON, b'{"seed": -Infinity}', 422, ("-Infinity",)),
    Case("json 1e400", "/v1/stories", JSON, b'{"seed": 1e400}', 422, ("too large for a float",)),
    Case("json not utf-8", "/v1/stories", JSON, b'{"story": "\xff\xfe"}', 400, ("not UTF-8",)),
    Case("json syntax", "/v1/stories", JSON, b'{"story": ', 400, ("not valid JSON",)),
    Case("json array", "/v1/stories", JSON, b"[1, 2]", 400, ("must be an object",)),
    Case("json empty body", "/v1/stories", JSON, b"", 400, ("must be an object",)),
    Case("json key twice", "/v1/stories", JSON, b'{"story": "a", "story": "b"}', 422, ("given twice",), "story"),
    Case("json story as a table", "/v1/stories", JSON, js({"story": {"a": 1}}), 422, ("string or a number",), "story"),
    Case("json field over the per-field cap", "/v1/stories", JSON, js({"story": "x" * (300 * 1024)}), 413,
         ("per field",), "story"),
    Case("multipart cut off", "/v1/stories", FORM, multipart({"story": GOOD}, close=False), 400, ("cut off",)),
    Case("multipart cut off mid-field", "/v1/stories", FORM, multipart({"story": GOOD})[:60], 400, ("cut off",)),
    Case("multipart empty", "/v1/stories", FORM, b"", 400, ("cut off",)),
    Case("multipart without boundary", "/v1/stories", "multipart/form-data", multipart({"story": GOOD}), 400,
         ("no boundary",)),
    Case("multipart garbage", "/v1/stories", FORM, b"garbage, not a form", 400, ("malformed",)),
    Case("multipart latin-1 charset", "/v1/stories", FORM + "; charset=latin-1", multipart({"story": GOOD}), 400,
         ("UTF-8",)),
    Case("multipart field not utf-8", "/v1/stories", FORM, multipart({"story": "x"}).replace(b"\r\nx\r\n", b"\r\n\xff\r\n"),
         400, ("not UTF-8",)),
    Case("multipart field over the cap", "/v1/stories", FORM, multipart({"story": "x" * (300 * 1024)}), 413,
         ("per field",), "story"),
    Case("multipart field twice", "/v1/stories", FORM,
         b"--XyZ\r\nContent-Disposition: form-data; name=\"seed\"\r\n\r\n1\r\n" + multipart({"seed": "2"}), 422,
         ("given twice",), "seed"),
    Case("url-encoded not utf-8", "/v1/stories", URLENC, b"story=\xff", 400, ("not UTF-8",)),
    Case("url-encoded percent not utf-8", "/v1/stories", URLENC, b"story=%ff%fe", 400, ("not UTF-8",)),
    Case("url-encoded field over the cap", "/v1/stories", URLENC, b"story=" + b"x" * (300 * 1024), 413,
         ("per field",), "story"),
    Case("body over the limit", "/v1/stories", TOML, b"#" * (600 * 1024), 413, ("limit of 524288 bytes",)),
    Case("xml", "/v1/stories", "application/xml", b"<story/>", 415, ("unsupported content type",)),
    Case("no content type", "/v1/stories", None, b"x=1", 415, ("'(none)'",)),
    Case("toml not utf-8", "/v1/stories", TOML, b"[story]\nscript = '\xff'", 400, ("not UTF-8",)),
    Case("toml syntax", "/v1/stories", TOML, b"[story\nseed = 1", 422, ("not valid TOML",)),
    # fields and values
    Case("seed 10^26 (json)", "/v1/stories", JSON, js({"story": GOOD, "seed": 10**26}), 422, ("2**64",), "seed"),
    Case("seed 10^26 (toml)", "/v1/stories", TOML, story().replace(b"seed = 1", b"seed = 100000000000000000000000000"),
         422, ("seed",)),
    Case("seed -1", "/v1/stories", JSON, js({"story": GOOD, "seed": -1}), 422, ("whole number",), "seed"),
    Case("seed text", "/v1/stories", URLENC, b"story=x&seed=abc", 422, ("whole number",), "seed"),
    Case("unknown field", "/v1/stories", JSON, js({"story": GOOD, "colour": "red"}), 422, ("unknown",), "colour"),
    Case("story missing", "/v1/stories", JSON, js({"seed": 3}), 422, ("missing",), "story"),
    Case("width 1000000", "/v1/stories", TOML, story().replace(b"width = 16", b"width = 1000000"), 422,
         ("over the limit", "--limit side=1000000")),
    Case("width 10^30", "/v1/stories", TOML, story().replace(b"width = 16", b"width = 1000000000000000000000000000000"),
         422, ("width",)),
    Case("steps 1000000", "/v1/stories", TOML,
         story(generator='name = "diffusers-image"\nsteps = 1000000'), 422, ("steps", "over the limit")),
    Case("3000 frames", "/v1/stories", TOML, story(script="\\n".join(f"frame {i}" for i in range(3000))), 422,
         ("scenes", "over the limit")),
    Case("a 30k-word caption", "/v1/stories", TOML, story(script="a cat #" + "word " * 30_000), 422,
         ("over the limit", "--limit")),
    Case("page 100000 x 100000", "/v1/stories", TOML,
         story() + b'[[composers]]\nname = "comic"\nstyle = "Pages"\npage_size = [100000, 100000]\n', 422,
         ("page_size", "over the limit")),
    Case("a story of 10^9 seconds", "/v1/stories", TOML, story("duration = 1e9"), 422,
         ("story_seconds", "over the limit")),
    Case("guidance nan", "/v1/stories", TOML, story(generator='name = "diffusers-image"\nguidance = nan'), 422,
         ("finite",)),
    Case("an unknown component", "/v1/stories", TOML, story(generator='name = "fake-imag"'), 422, ("fake-image",)),
    Case("a malformed frame line", "/v1/stories", TOML,
         toml('[story]\nscript = "[Bob] at home"\n[[generators]]\nname = "fake-image"\n'), 422, ("[Bob]",)),
    # what a story job may name
    Case("model as a path", "/v1/stories", TOML, story(generator=f'name = "diffusers-image"\nmodel = "{SECRET}"'), 422,
         ("names models by name", "house-sd")),
    Case("model as a hub id", "/v1/stories", TOML,
         story(generator='name = "diffusers-image"\nmodel = "stabilityai/stable-diffusion-xl-base-1.0"'), 422,
         ("names models by name",)),
    Case("model unknown name", "/v1/stories", TOML, story(generator='name = "diffusers-image"\nmodel = "sdxl"'), 422,
         ("'sdxl'", "house-sd")),
    Case("clip-text model as a path", "/v1/stories", TOML,
         story() + b'[[tokenizers]]\nname = "clip-text"\nmodel = "../../models"\n', 422, ("names models",)),
    Case("a model in [defaults]", "/v1/stories", TOML,
         story("[defaults]\nmodel = \"/etc\"", generator='name = "diffusers-image"'), 422, ("[defaults]", "model")),
    Case("font_path as a path", "/v1/stories", TOML,
         story() + b'[[composers]]\nname = "comic"\nfont_path = "/etc/passwd"\n', 422, ("names fonts by name", "house")),
    Case("font_path relative", "/v1/stories", TOML,
         story() + b'[[composers]]\nname = "frames"\nfont_path = "../x.ttf"\n', 422, ("fonts",)),
    Case("a device", "/v1/stories", TOML, story(generator='name = "diffusers-image"\ndevice = "cuda:7"'), 422,
         ("--device",)),
    Case("a device in [defaults]", "/v1/stories", TOML, story("[defaults]\ndevice = \"cuda:3\""), 422, ("--device",)),
    Case("another preset", "/v1/stories", TOML, story(generator='name = "diffusers-image"\npreset = "full"'), 422,
         ("preset='tiny'",)),
    Case("free-form pipeline arguments", "/v1/stories", TOML,
         story(generator='name = "diffusers-image"\nextra = {num_inference_steps = 5}'), 422, ("free-form",)),
    Case("start image as a path", "/v1/stories", TOML, story('start_image = "/etc/hostname"'), 422, ("data: URIs",)),
    Case("reference image as a path", "/v1/stories", TOML,
         toml('[story]\nscript = "[Mia] runs"\n[[story.characters]]\nname = "Mia"\ndescription = "a girl"\n'
              'reference_image = "/etc/hostname"\n[[generators]]\nname = "fake-image"\n'), 422, ("data: URIs",)),
    # tracks: every track's generator, planner and tokenizers name models and devices as above
    Case("a track's model as a path", "/v1/stories", TOML,
         tracks(f'[tracks.frames]\ngenerator = {{ name = "diffusers-image", model = "{SECRET}" }}'), 422,
         ("[tracks.frames] generator ('diffusers-image') option 'model'", "names models by name", "house-sd")),
    Case("a track tokenizer's model as a path", "/v1/stories", TOML,
         tracks('[tracks.frames]\ngenerator = "diffusers-image"\n'
                '[[tracks.frames.tokenizers]]\nname = "clip-text"\nmodel = "../../models"'), 422,
         ("[tracks.frames] tokenizers #1 ('clip-text')", "names models")),
    Case("a track's device", "/v1/stories", TOML,
         tracks('[tracks.sound]\ngenerator = { name = "diffusers-audio", device = "cuda:7" }'), 422,
         ("[tracks.sound] generator", "--device")),
    Case("a track's free-form arguments", "/v1/stories", TOML,
         tracks('[tracks.frames.generator]\nname = "diffusers-image"\nextra = {num_inference_steps = 5}'), 422,
         ("[tracks.frames] generator", "free-form")),
    Case("a track's steps over the limit", "/v1/stories", TOML,
         tracks('[tracks.sound]\ngenerator = { name = "diffusers-audio", steps = 1000000 }'), 422,
         ("steps", "over the limit")),
    Case("a story planner as a track's planner", "/v1/stories", TOML,
         tracks('[tracks.fx]\nplanner = "script"\ngenerator = "fake-audio"'), 422,
         ("[tracks.fx] planner 'script' plans whole stories", "fake-events")),
    Case("tracks as an array", "/v1/stories", TOML, tracks('[[tracks]]\ngenerator = "fake-image"'), 422,
         ("[tracks.frames]", "not [[tracks]]")),
    Case("nine tracks", "/v1/stories", TOML,
         tracks("".join(f'[tracks.t{i}]\ngenerator = "fake-image"\n' for i in range(9))), 422,
         ("number of tracks = 9 is over the limit tracks = 8", "--limit tracks=9")),
    Case("a timing track that is not one", "/v1/stories", TOML,
         tracks('[tracks.frames]\ngenerator = "fake-image"\n[timing]\nmode = "track"\ntrack = "voice"'), 422,
         ("timing track 'voice'",)),
    Case("a mix ceiling above full scale", "/v1/stories", TOML,
         tracks('[tracks.frames]\ngenerator = "fake-image"\n[mix]\nceiling = 3.0'), 422, ("ceiling",)),
    # wrong URLs and methods; a bug in an endpoint
    Case("unknown URL", "/v1/nothing", JSON, b"{}", 404, ("no endpoint",)),
    Case("wrong method", "/v1/status", JSON, b"{}", 405, ("not allowed",)),
    Case("a bug in an endpoint", "/v1/bug", JSON, b"{}", 500, ("internal error", "server's log")),
    Case("a job fails", "/v1/fail", JSON, b"{}", 500, ("job ", "failed: RuntimeError", "<out>/failing/", "<server path>")),
)


def send(conn: http.client.HTTPConnection, case: Case) -> tuple[int, dict[str, Any], dict[str, str]]:
    headers = {"content-type": case.ctype} if case.ctype else {}
    conn.request(case.method, case.path, body=case.body, headers=headers)
    response = conn.getresponse()
    raw = response.read()
    return response.status, json.loads(raw), {k.lower(): v for k, v in response.getheaders()}


def test_every_bad_request_is_a_4xx_on_one_kept_connection(served: tuple[RunningServer, Path],
                                                           caplog: pytest.LogCaptureFixture) -> None:
    srv, tmp = served
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    conn.connect()
    sock = conn.sock
    names = [c.name for c in CORPUS]
    assert len(names) == len(set(names)) >= 60
    with caplog.at_level(logging.WARNING, logger="storysdk.server"):
        for case in CORPUS:
            status, body, headers = send(conn, case)
            text = json.dumps(body)
            assert (status, body["status"]) == (case.status, case.status), (case.name, body)
            for word in case.words:
                assert word in body["error"], (case.name, body["error"])
            assert body.get("field") == case.field, (case.name, body)
            assert "Traceback" not in text and str(tmp) not in text and SECRET not in text, (case.name, text)
            assert headers.get("connection") != "close" and conn.sock is sock, f"{case.name}: the connection dropped"
    # the bug and the failed job are in the server's log, with their tracebacks and paths
    logged = "\n".join(r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "") for r in caplog.records)
    assert "internal error" in logged and f"{SECRET}/unet broke" in logged and "job" in logged
    assert any(r.exc_info for r in caplog.records)
    # nothing took a queue place (the failing route's job excepted), and the server still works
    jobs = requests.get(srv.url + "/v1/jobs").json()["jobs"]
    assert [j["kind"] for j in jobs] == ["failing"]
    conn.request("POST", "/v1/stories", body=story(), headers={"content-type": TOML})
    answer = conn.getresponse()
    job = json.loads(answer.read())
    assert answer.status == 202 and conn.sock is sock
    conn.close()
    assert wait_for(srv.url + "/v1/jobs/" + job["id"])["status"] == "done"


def wait_for(url: str, statuses: tuple[str, ...] = ("done", "failed", "cancelled")) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        job = requests.get(url).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {url} did not reach {statuses}")


def test_a_failed_job_shows_its_cause_without_paths_or_traceback(served: tuple[RunningServer, Path]) -> None:
    srv, tmp = served
    r = requests.post(srv.url + "/v1/fail", json={})
    body = r.json()
    assert r.status_code == 500 and body["job"]
    job = requests.get(srv.url + "/v1/jobs/" + body["job"]).json()
    assert job["status"] == "failed"
    assert job["error"] == {
        "type": "RuntimeError",
        "message": f"cannot read <out>/failing/{job['id']}/frame.png nor <server path>",
    }
    assert body["error"] == f"job {job['id']} failed: RuntimeError: " + job["error"]["message"]


def test_models_and_fonts_are_chosen_by_the_operators_names(served: tuple[RunningServer, Path]) -> None:
    srv, tmp = served
    text = story(generator='name = "diffusers-image"\nmodel = "house-sd"\nsteps = 2') + \
        b'[[composers]]\nname = "frames"\nfont_path = "house"\n'
    r = requests.post(srv.url + "/v1/stories", data=text, headers={"content-type": TOML})
    assert r.status_code == 202, r.text
    job = wait_for(r.json()["url"])
    assert job["status"] == "done", job["error"]
    assert job["weights"] == {"generator diffusers-image": "tiny"}  # the server's preset, told to the client
    # the worker's component got the operator's folder and font file in place of the names
    held = srv.app.state.queue._contexts[0].cache._held  # (kind, plugin, name, options as JSON) -> label
    flat = json.dumps(list(held))
    assert str(tmp / "models" / "house-sd") in flat and str(tmp / "house.ttf") in flat
    # run.json, served to the client, shows the model by name only
    record = requests.get(job["files_url"] + "run.json")
    assert record.status_code == 200 and str(tmp) not in record.text
    json.loads(record.text)


def test_the_operators_choices_are_checked_at_start(tmp_path: Path) -> None:
    from storysdk.errors import ConfigError

    with pytest.raises(ConfigError, match="does not exist"):
        ServerConfig(models={"x": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="not a file"):
        ServerConfig(fonts={"x": str(tmp_path)})
    with pytest.raises(ConfigError, match="the name 'a b'"):
        ServerConfig(models={"a b": "org/model"})
    assert ServerConfig(models={"sdxl": "stabilityai/stable-diffusion-xl-base-1.0"}).models["sdxl"].startswith("stab")
    assert _pairs("--model", ["a=/x", "b = org/y"]) == {"a": "/x", "b": "org/y"}
    with pytest.raises(ConfigError, match="NAME=PATH"):
        _pairs("--font", ["house"])
    with pytest.raises(ConfigError, match="given twice"):
        _pairs("--model", ["a=/x", "a=/y"])


def test_every_registered_option_has_a_kind() -> None:
    """A new option that names a file must be classified as one: this list changes with the options."""
    from storysdk import get_registry

    files: set[str] = set()
    for info in get_registry().components():
        for o in info.option_info():
            if option_kind(o.name, o.type, info.declared()) in ("model", "font"):
                files.add(o.name)
            elif "Path" in o.type:
                raise AssertionError(f"{info.name}.{o.name} is a path but not a model or font option")
    assert {"model", "checkpoint", "font_path"} <= files
    assert option_kind("font_size", "int | None") == "plain"
    assert option_kind("filename", "str") == "plain"  # output names are checked by their components
    assert option_kind("bank_device", "str | None") == "device"
    assert option_kind("extra", "dict[str, any] | None") == "free"
    assert option_kind("pipeline", "any") == "free"
    assert option_kind("weights_seed", "int") == "plain"


def test_redact_hides_server_paths_and_keeps_api_paths() -> None:
    text = (f"file /srv/out/stories/ab/x.png; {SECRET}/unet.bin; see GET /v1/jobs/ab at http://127.0.0.1:8/v1/x; "
            "1/2 and/or a / b; ~/.cache/hf; C:\\Users\\me\\m.ckpt")
    got = redact(text, out_dir="/srv/out", named={"model": {"sdxl": SECRET}})
    assert got == ("file <out>/stories/ab/x.png; <model sdxl>/unet.bin; see GET /v1/jobs/ab at http://127.0.0.1:8/v1/x; "
                   "1/2 and/or a / b; <server path>; <server path>")


# -- slow clients (loopback only, bounded: 20 connections, a few seconds) --------------------------------
def test_slow_clients_are_dropped_after_the_header_and_body_deadlines(tmp_path: Path) -> None:
    cfg = ServerConfig(port=0, out_dir=tmp_path, header_timeout=1.0, body_timeout=1.0, keep_alive_timeout=1.0)
    with RunningServer(cfg, registry=make_registry(HostilePlugin())) as srv:
        silent = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(5)]
        drip = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(10)]
        body = [socket.create_connection(("127.0.0.1", srv.port), timeout=10) for _ in range(5)]
        for s in drip:
            s.sendall(b"POST /v1/stories HTTP/1.1\r\nHost: x\r\n")
        for s in body:
            s.sendall(b"POST /v1/stories HTTP/1.1\r\nHost: x\r\ncontent-type: application/toml\r\n"
                      b"content-length: 1000\r\n\r\n[story]\n")
        started = time.monotonic()
        closed: dict[int, bytes] = {}
        everyone = silent + drip + body
        while len(closed) < len(everyone) and time.monotonic() - started < 8:
            for i, s in enumerate(everyone):
                if i in closed:
                    continue
                if s in drip:
                    try:
                        s.sendall(b"X")  # one byte of a header line every 0.1 s: never finishes
                    except OSError:
                        pass
                s.settimeout(0.01)
                try:
                    data = s.recv(65536)
                except (socket.timeout, BlockingIOError):
                    continue
                except OSError:
                    data = b""
                answer = data
                while data:
                    try:
                        data = s.recv(65536)
                    except (socket.timeout, OSError):
                        break
                    answer += data
                closed[i] = answer
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        for s in everyone:
            s.close()
        assert len(closed) == 20, f"{20 - len(closed)} slow connections still open after {elapsed:.1f} s"
        assert elapsed < 6
        assert all(closed[i].startswith(b"HTTP/1.1 408") for i in range(5, 20)), closed
        assert b"--body-timeout" in closed[19]
        # the server still answers, and a normal keep-alive connection is closed once idle
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("GET", "/v1/status")
        assert conn.getresponse().read() and conn.sock is not None
        time.sleep(1.5)
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError, BrokenPipeError)):
            conn.request("GET", "/v1/status")
            conn.getresponse()


# -- limits: per server, refused before queueing ---------------------------------------------------------
def test_the_servers_limits_are_its_own_and_checked_before_queueing(tmp_path: Path) -> None:
    cfg = ServerConfig(port=0, out_dir=tmp_path, max_queue=0, limits=Limits(scenes=2, steps=3))
    with RunningServer(cfg, registry=make_registry()) as srv:
        url = srv.url + "/v1/stories"
        r = requests.post(url, data=story(script="a\\nb\\nc"), headers={"content-type": TOML})
        assert r.status_code == 422 and "scenes = 2" in r.json()["error"] and "--limit scenes=3" in r.json()["error"]
        r = requests.post(url, data=story(generator='name = "diffusers-image"\nsteps = 4'), headers={"content-type": TOML})
        assert r.status_code == 422 and "steps = 3" in r.json()["error"]
        # a good story reaches the queue, which has no place (max_queue=0): the limits came first
        ok = requests.post(url, data=story(), headers={"content-type": TOML})
        assert ok.status_code == 429
        assert requests.get(srv.url + "/v1/jobs").json()["jobs"] == []


def test_storysdk_serve_takes_limits_models_and_fonts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, ServerConfig] = {}
    monkeypatch.setattr("storysdk.server.runner.run_server", lambda cfg, **kw: seen.setdefault("cfg", cfg))
    from storysdk.cli import main

    font = font_file(tmp_path)
    assert main(["serve", "--port", "0", "--out", str(tmp_path), "--limit", "pixels=512x512", "--limit", "steps=none",
                 "--model", f"house={tmp_path}", "--font", f"house={font}", "--max-field-kb", "8",
                 "--header-timeout", "2", "--body-timeout", "3"]) == 0
    cfg = seen["cfg"]
    assert (cfg.limits.pixels, cfg.limits.steps, cfg.limits.body) == (512 * 512, None, 16 * 1024 * 1024)
    assert cfg.models == {"house": str(tmp_path)} and cfg.fonts == {"house": str(font)}
    assert (cfg.max_field_bytes, cfg.header_timeout, cfg.body_timeout) == (8192, 2.0, 3.0)
    assert main(["serve", "--limit", "body=1MiB", "--max-body-mb", "2"]) == 2  # one setting, said once
    assert main(["serve", "--limit", "stepz=3"]) == 2


# -- cancellation within one step, through DELETE ---------------------------------------------------------
def test_a_many_step_job_is_cancelled_within_one_step_of_delete(tmp_path: Path) -> None:
    cfg = ServerConfig(port=0, out_dir=tmp_path, defaults={"preset": "tiny"})
    with RunningServer(cfg, registry=make_registry()) as srv:
        text = story(generator='name = "diffusers-image"\nsteps = 200').replace(b"width = 16", b"width = 64") \
            .replace(b"height = 16", b"height = 64")
        job = requests.post(srv.url + "/v1/stories", data=text, headers={"content-type": TOML}).json()
        deadline = time.monotonic() + 120
        while (now := requests.get(job["url"]).json())["progress"] is None or now["progress"]["stage"] != "step" \
                or now["progress"]["done"] < 3:
            assert now["status"] in ("queued", "running") and time.monotonic() < deadline, now
            time.sleep(0.01)
        asked = time.time()
        cancel = requests.delete(job["url"])
        assert cancel.status_code == 202
        at_cancel = cancel.json()
        final = wait_for(job["url"])
        assert final["status"] == "cancelled" and final["error"]["type"] == "JobCancelled"
        # at most the step that was running when DELETE came: no step was reported after it
        assert final["events"] - at_cancel["events"] <= 1
        assert final["progress"]["stage"] == "step" and final["progress"]["done"] <= at_cancel["progress"]["done"] + 1
        assert final["progress"]["done"] < 200 and final["progress"]["total"] == 200
        assert final["finished"] - asked < 10


def test_images_embedded_as_data_uris_are_still_taken(served: tuple[RunningServer, Path]) -> None:
    srv, _ = served
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buf, format="PNG")
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    r = requests.post(srv.url + "/v1/stories", data=story(f'start_image = "{uri}"'), headers={"content-type": TOML})
    assert r.status_code == 202, r.text
    assert wait_for(r.json()["url"])["status"] == "done"


def test_the_story_of_docs_serving_md_runs_with_the_operators_names(tmp_path: Path) -> None:
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "serving.md").read_text(encoding="utf-8")
    section = doc.split("### What a story job may name", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```toml\n(.*?)^```", section, flags=re.S | re.M)
    assert len(blocks) == 1 and 'model = "house-sd"' in blocks[0]
    folder = tmp_path / "sdxl-base"
    folder.mkdir()
    text = blocks[0].replace('name = "frames"', 'name = "frames"\nfont_path = "house"')
    cfg = ServerConfig(port=0, out_dir=tmp_path / "serve", defaults={"preset": "tiny"},  # the doc: auto, real weights
                       models={"house-sd": str(folder)}, fonts={"house": str(font_file(tmp_path))})
    with RunningServer(cfg, registry=make_registry()) as srv:
        status = requests.get(srv.url + "/v1/status").json()
        assert (status["models"], status["fonts"], status["limits"]["steps"]) == (["house-sd"], ["house"], 200)
        assert str(tmp_path) not in json.dumps(status)
        r = requests.post(srv.url + "/v1/stories", data=text.encode(), headers={"content-type": TOML})
        assert r.status_code == 202, r.text
        assert json.loads(r.headers["x-storysdk-weights"]) == {"generator diffusers-image": "tiny"}
        job = wait_for(r.json()["url"])
        assert job["status"] == "done" and job["scenes"] == 2, job["error"]
        assert job["outputs"]["frames"] == ["frames/scene-000.png", "frames/scene-001.png"]  # captioned in the font
        # the same story naming the folder itself is refused, naming the server's names
        r = requests.post(srv.url + "/v1/stories", data=text.replace('"house-sd"', f'"{folder}"').encode(),
                          headers={"content-type": TOML})
        assert r.status_code == 422 and "this server's models: house-sd" in r.json()["error"]
        assert str(folder) not in r.text


def test_run_json_is_served_without_the_operators_paths(tmp_path: Path) -> None:
    from storysdk.server.api import job_file

    folder = tmp_path / "models" / "sdxl"
    folder.mkdir(parents=True)
    cfg = ServerConfig(out_dir=tmp_path / "serve", models={"house-sd": str(folder)})
    job = Job("story", lambda job, ctx: None)
    job.folder = tmp_path / "serve" / "stories" / job.id
    job.folder.mkdir(parents=True)
    record = {"weights": {"generator diffusers-image": str(folder)}, "seed": 1}
    (job.folder / "run.json").write_text(json.dumps(record))
    (job.folder / "plan.json").write_text(json.dumps({"note": str(folder)}))
    served = job_file(job, "run.json", listing="here", config=cfg)
    assert json.loads(served.body) == {"weights": {"generator diffusers-image": "<model house-sd>"}, "seed": 1}
    assert job_file(job, "run.json", listing="here").__class__.__name__ == "FileResponse"  # no config: as written
