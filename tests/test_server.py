"""``storysdk serve``: the real server on a loopback port, spoken to with real HTTP clients.

The StoryDiffusion tests send the hosted API's own example request (plugins/storysdk-storydiffusion/docs/storydiffusion-api.md and
its documentation's Python client: ``requests.post(url, data=data, files=files,
headers={'x-api-key': ...})``) to a server running the tiny preset.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from PIL import Image

from storysdk import Generator, ImageAsset, Pipeline, RenderContext, Scene, hookimpl, load_story_file
from storysdk.server import RunningServer, ServerConfig
from storysdk.testing import make_registry

KEY = "test-key-123"

#: the hosted API documentation's example request, field for field (plugins/storysdk-storydiffusion/docs/storydiffusion-api.md);
#: only the frame size and step count are the smallest the fields allow, for a CPU test.
NEGATIVE = (
    "bad anatomy, bad hands, missing fingers, extra fingers, three hands, three legs, bad arms, missing legs, "
    "missing arms, poorly drawn face, bad face, fused face, cloned face, three crus, fused feet, fused thigh, "
    "extra crus, ugly fingers, horn, cartoon, cg, 3d, unreal, animate, amputation, disconnected limbs"
)
COMIC = (
    "at home, read new paper #at home, The newspaper says there is a treasure house in the forest.\n"
    "on the road, near the forest\n"
    "[NC] The car on the road, near the forest #He drives to the forest in search of treasure.\n"
    "[NC]A tiger appeared in the forest, at night \n"
    "very frightened, open mouth, in the forest, at night\n"
    "running very fast, in the forest, at night\n"
    "[NC] A house in the forest, at night #Suddenly, he discovers the treasure house!\n"
    "in the house filled with treasure, laughing, at night #He is overjoyed inside the house."
)


def example_data() -> dict[str, Any]:
    data: dict[str, Any] = {}
    data["seed"] = 42
    data["num_ids"] = 3
    data["sd_model"] = "Unstable"
    data["num_steps"] = 20  # documented example: 25
    data["image_width"] = 256  # documented example: 768
    data["image_height"] = 256  # documented example: 768
    data["sa32_setting"] = 0.5
    data["sa64_setting"] = 0.5
    data["output_format"] = "webp"
    data["guidance_scale"] = 5
    data["output_quality"] = 80
    data["negative_prompt"] = NEGATIVE
    data["character_description"] = "a man, wearing black suit"
    data["comic_description"] = COMIC
    data["style_strength_ratio"] = 20
    data["style_name"] = "Disney Charactor"
    data["comic_style"] = "Classic Comic Style"
    return data


# -- a generator that waits for the test, to fill the queue -------------------------------------
GATES: dict[str, threading.Event] = {}


class GateImage(Generator):
    """Waits on ``GATES[gate]`` before each scene (at most 30 s), then yields a grey image."""

    name = "gate-image"
    modality = "image"

    def __init__(self, *, gate: str = "g", fail: bool = False) -> None:
        self.gate = gate
        self.fail = fail

    def generate(self, scenes: Sequence[Scene], ctx: RenderContext) -> Iterator[ImageAsset]:
        for scene in scenes:
            if not GATES[self.gate].wait(30):
                raise TimeoutError("the test never opened the gate")
            if self.fail:
                raise RuntimeError(f"scene {scene.index} could not be drawn")
            yield ImageAsset(scene.index, Image.new("RGB", (8, 8), (scene.index * 40, 0, 0)), made_by=self.name)


class GatePlugin:
    @hookimpl
    def register_generators(self, register: Any) -> None:
        register(GateImage)


def gate_story(gate: str, *, scenes: int = 2, fail: bool = False) -> str:
    lines = "\n".join(f"scene {i}" for i in range(scenes))
    return (
        f"[story]\nseed = 5\nscript = '''\n{lines}\n'''\n[planner]\nname = \"fake-planner\"\n"
        f"[[generators]]\nname = \"gate-image\"\ngate = \"{gate}\"\nfail = {str(fail).lower()}\n"
    )


FAKE_STORY = """
[story]
seed = 3
width = 16
height = 16
script = '''
a cat
a dog
a bird
'''
[planner]
name = "fake-planner"
[[generators]]
name = "fake-image"
[[generators]]
name = "fake-audio"
[[composers]]
name = "fake-composer"
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    cfg = ServerConfig(port=0, out_dir=tmp_path / "serve", max_queue=1, max_body_bytes=64 * 1024)
    with RunningServer(cfg, registry=make_registry(GatePlugin())) as srv:
        yield srv


def wait_for(url: str, statuses: tuple[str, ...] = ("done", "failed", "cancelled"), **kw: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = requests.get(url, **kw).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {url} did not reach {statuses}")


# -- the hosted StoryDiffusion endpoint -----------------------------------------------------------
def test_hosted_example_request_gets_the_comic_image_and_json_gets_the_same(tmp_path: Path) -> None:
    cfg = ServerConfig(port=0, api_key=KEY, out_dir=tmp_path, defaults={"preset": "tiny"})
    with RunningServer(cfg) as srv:
        # the documentation's client, pointed at the local server
        api_key = KEY
        url = srv.url + "/v1/storydiffusion"
        data = example_data()
        files: dict[str, Any] = {}
        headers = {"x-api-key": api_key}
        response = requests.post(url, data=data, files=files, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/webp"
        page = Image.open(io.BytesIO(response.content))
        assert page.format == "WEBP"
        panel = 256 + 2 * 10  # plugins/storysdk-storydiffusion/docs/storydiffusion.md §4: 10 px border; 8 frames -> 2 rows of [1, 1, 2]
        assert page.size == (2 * panel + panel // 2, 2 * panel)

        # the JSON form of the documentation, numbers as JSON numbers: the same request, the same bytes
        as_json = requests.post(url, headers={"x-api-key": api_key, "Content-Type": "application/json"}, json=data)
        assert as_json.status_code == 200 and as_json.content == response.content

        # the model stayed loaded: one load for both requests
        status = requests.get(srv.url + "/v1/status", headers=headers).json()
        assert status["loaded_models"] == {"0": ["tiny"]}
        worker = srv.app.state.queue._contexts[0]
        assert worker.hosted.loads == 1

        # examples/hosted_client.py (the documentation's client as a script) gets the same image
        import subprocess
        import sys

        out = tmp_path / "comic.webp"
        script = Path(__file__).resolve().parents[1] / "examples" / "hosted_client.py"
        proc = subprocess.run([sys.executable, str(script), "--url", url, "--api-key", api_key, "--small",
                               "--out", str(out)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == response.content and "image/webp" in proc.stdout

        png = requests.post(url, data={**data, "output_format": "png", "num_ids": 8}, headers=headers)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).format == "PNG"


def test_api_key_is_required_when_configured(tmp_path: Path) -> None:
    with RunningServer(ServerConfig(port=0, api_key=KEY, out_dir=tmp_path), registry=make_registry()) as srv:
        for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": KEY + "x"}):
            r = requests.post(srv.url + "/v1/storydiffusion", data={"seed": 1}, headers=headers)
            assert r.status_code == 401 and "x-api-key" in r.json()["error"]
            r = requests.post(srv.url + "/v1/stories", data=FAKE_STORY, headers=headers)
            assert r.status_code == 401
        assert requests.get(srv.url + "/v1/status").status_code == 401
        ok = requests.get(srv.url + "/v1/status", headers={"x-api-key": KEY})
        assert ok.status_code == 200 and ok.json()["workers"] == 1


def test_wrong_method_unknown_url_and_bad_fields(server: RunningServer) -> None:
    url = server.url + "/v1/storydiffusion"
    r = requests.get(url)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"].startswith("GET is not allowed on /v1/storydiffusion")
    r = requests.post(server.url + "/v1/storydiffusion/extra", data={})
    assert r.status_code == 404 and "/v1/storydiffusion" in r.json()["error"]

    cases = [
        ({"num_steps": "10"}, "num_steps", "must be in the range 20 - 50"),
        ({"image_width": "300"}, "image_width", "multiples of 32"),
        ({"output_format": "gif"}, "output_format", "webp, jpeg or png"),
        ({"num_ids": "9"}, "num_ids", "must not exceed the number of frame lines"),
        ({"colour": "red"}, None, "unknown field"),
    ]
    for data, field, text in cases:
        r = requests.post(url, data=data)
        body = r.json()
        assert r.status_code == 422 and text in body["error"] and body.get("field") == field, body
    # a reference photo as a file: refused by name (not supported yet), not a server error
    r = requests.post(url, data={"seed": 1}, files={"ref_image": ("me.png", b"\x89PNG....", "image/png")})
    assert r.status_code == 422 and r.json()["field"] == "ref_image"
    r = requests.post(url, data=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = requests.post(url, json=[1, 2])
    assert r.status_code == 400
    r = requests.post(url, json={"seed": {"a": 1}})
    assert r.status_code == 422 and r.json()["field"] == "seed"
    r = requests.post(url, data=b"seed=1", headers={"content-type": "text/csv"})
    assert r.status_code == 415


def test_oversized_bodies_get_413(server: RunningServer) -> None:
    big = "x" * (65 * 1024)
    r = requests.post(server.url + "/v1/storydiffusion", data={"comic_description": big})
    assert r.status_code == 413 and "limit of 65536 bytes" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is applied while it streams
        for _ in range(80):
            yield b"y" * 1024

    r2 = httpx.post(server.url + "/v1/stories", content=chunks(), headers={"content-type": "application/toml"})
    assert r2.status_code == 413 and r2.json()["status"] == 413
    # the server still works
    assert requests.get(server.url + "/v1/status").status_code == 200


# -- story jobs -----------------------------------------------------------------------------------
def test_story_job_runs_and_its_files_equal_a_local_run(server: RunningServer, tmp_path: Path) -> None:
    r = requests.post(server.url + "/v1/stories", data=FAKE_STORY.encode(), headers={"content-type": "application/toml"})
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == job["url"] and job["status"] in ("queued", "running", "done")
    done = wait_for(job["url"])
    assert done["status"] == "done" and done["error"] is None
    assert done["progress"]["stage"] == "compose" and done["events"] > 0
    assert done["outputs"] == {"fake-composer": ["story.json"]}
    assert {"plan.json", "story.json", "images/scene-0000.png", "audio/scene-0002.wav"} <= set(done["files"])

    local = tmp_path / "local.toml"
    local.write_text(FAKE_STORY)
    sf = load_story_file(local)
    Pipeline(sf.planner, sf.tokenizers, sf.generators, sf.composers, registry=make_registry()).run(
        sf.request, out_dir=tmp_path / "local")
    for name in ("images/scene-0001.png", "audio/scene-0002.wav", "plan.json", "story.json"):
        got = requests.get(done["files_url"] + name)
        assert got.status_code == 200 and got.content == (tmp_path / "local" / name).read_bytes(), name
    assert requests.get(done["files_url"] + "images/scene-0001.png").headers["content-type"] == "image/png"

    # no way out of the job's folder
    for bad in ("..%2F..%2Fserve", "../run.json", "%2e%2e/%2e%2e/x", "nope.png"):
        assert httpx.get(done["files_url"] + bad).status_code == 404

    # JSON with a seed override and a form with the story as a file: same server, other jobs
    j = requests.post(server.url + "/v1/stories", json={"story": FAKE_STORY, "seed": 9})
    assert j.status_code == 202 and j.json()["seed"] == 9
    assert wait_for(j.json()["url"])["status"] == "done"
    f = requests.post(server.url + "/v1/stories", files={"story": ("tale.toml", FAKE_STORY.encode())})
    assert f.status_code == 202 and wait_for(f.json()["url"])["status"] == "done"
    listed = requests.get(server.url + "/v1/stories").json()["jobs"]
    assert {x["id"] for x in listed} == {job["id"], j.json()["id"], f.json()["id"]}
    # the components (and so any loaded models) were built once and reused by the later jobs
    worker = server.app.state.queue._contexts[0]
    assert len(worker.cache) == 4 and worker.cache.hits == 8


def test_bad_story_files_are_refused_with_422(server: RunningServer) -> None:
    url = server.url + "/v1/stories"
    toml = {"content-type": "application/toml"}
    r = requests.post(url, data=b"[story\nseed = 1", headers=toml)
    assert r.status_code == 422 and "not valid TOML" in r.json()["error"]
    r = requests.post(url, data=FAKE_STORY.replace('"fake-image"', '"fake-imag"').encode(), headers=toml)
    assert r.status_code == 422 and "Did you mean 'fake-image'" in r.json()["error"]
    r = requests.post(url, data=FAKE_STORY.replace("seed = 3", 'seed = 3\nstart_image = "/etc/hostname"').encode(), headers=toml)
    assert r.status_code == 422 and "data: URIs" in r.json()["error"]
    r = requests.post(url, json={"story": FAKE_STORY, "colour": "red"})
    assert r.status_code == 422 and r.json()["field"] == "colour"
    r = requests.post(url, json={"seed": 3})
    assert r.status_code == 422 and r.json()["field"] == "story"
    assert requests.get(url + "/0123456789abcdef").status_code == 404
    assert requests.get(server.url + "/v1/stories").json()["jobs"] == []


def test_full_queue_answers_429_and_jobs_run_one_at_a_time(server: RunningServer) -> None:
    GATES["q"] = threading.Event()
    url = server.url + "/v1/stories"
    first = requests.post(url, json={"story": gate_story("q")}).json()
    wait_for(first["url"], ("running",))
    second = requests.post(url, json={"story": gate_story("q")}).json()
    assert second["status"] == "queued" and second["queue_position"] == 0
    third = requests.post(url, json={"story": gate_story("q")})
    assert third.status_code == 429 and third.headers["retry-after"] == "5"
    assert "queue is full (1 waiting)" in third.json()["error"]
    hosted = requests.post(server.url + "/v1/storydiffusion", data={"seed": 1})
    assert hosted.status_code == 429  # the same queue: the GPU is busy
    status = requests.get(server.url + "/v1/status").json()
    assert (status["running"], status["queued"]) == (1, 1)
    GATES["q"].set()
    for job in (first, second):
        assert wait_for(job["url"])["status"] == "done"
    a, b = (requests.get(j["url"]).json() for j in (first, second))
    assert a["finished"] <= b["started"]  # one worker: never at the same time


def test_cancel_failed_jobs_and_kept_files(server: RunningServer) -> None:
    GATES["c"] = threading.Event()
    url = server.url + "/v1/stories"
    running = requests.post(url, json={"story": gate_story("c", scenes=3)}).json()
    wait_for(running["url"], ("running",))
    queued = requests.post(url, json={"story": gate_story("c")}).json()
    r = requests.delete(queued["url"])
    assert r.status_code == 202 and r.json()["status"] == "cancelled"
    r = requests.delete(running["url"])
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    GATES["c"].set()  # scene 0 is drawn and saved, then the next progress report stops the job
    job = wait_for(running["url"])
    assert job["status"] == "cancelled" and job["error"]["type"] == "JobCancelled"
    assert "images/scene-0000.png" in job["files"] and "images/scene-0002.png" not in job["files"]
    assert requests.delete(running["url"]).status_code == 409

    GATES["f"] = threading.Event()
    GATES["f"].set()
    failing = requests.post(url, json={"story": gate_story("f", fail=True)}).json()
    job = wait_for(failing["url"])
    assert job["status"] == "failed" and job["error"]["type"] == "RuntimeError"
    assert "scene 0 could not be drawn" in job["error"]["message"] and "traceback" in job["error"]
    # the worker goes on after a failure
    ok = requests.post(url, json={"story": FAKE_STORY}).json()
    assert wait_for(ok["url"])["status"] == "done"


def test_storysdk_serve_command_serves_until_interrupted(tmp_path: Path) -> None:
    import os
    import signal
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "STORYSDK_LOAD_PLUGINS": "", "STORYSDK_PLUGINS": "storysdk.testing:FakesPlugin",
           "STORYSDK_API_KEY": KEY}
    cmd = [sys.executable, "-m", "storysdk.cli", "serve", "--port", str(port), "--out", str(tmp_path / "srv"),
           "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "API key on" in (proc.stdout.readline() if proc.stdout else "")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/v1/status", headers={"x-api-key": KEY}, timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "server did not come up"
            time.sleep(0.1)
        headers = {"x-api-key": KEY}
        job = requests.post(base + "/v1/stories", json={"story": FAKE_STORY}, headers=headers).json()
        done = wait_for(job["url"], headers=headers)
        assert done["status"] == "done"
        assert (tmp_path / "srv" / "stories" / job["id"] / "story.json").is_file()
        assert requests.post(base + "/v1/stories", json={"story": FAKE_STORY}).status_code == 401
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0


def test_missing_storydiffusion_plugin_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from storysdk import ConfigError
    from storysdk.server._deps import storydiffusion_hosted

    monkeypatch.setitem(sys.modules, "storysdk_storydiffusion", None)  # as if not installed
    with pytest.raises(ConfigError, match="pip install -e plugins/storysdk-storydiffusion"):
        storydiffusion_hosted()
