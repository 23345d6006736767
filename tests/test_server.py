"""``storysdk serve``: the real server on a loopback port, spoken to with real HTTP clients.

The core's endpoints (story jobs, ``/v1/jobs``, status) and the endpoints plugins add
through ``register_routes``, here a small test plugin. No StoryDiffusion plugin is loaded:
``/v1/storydiffusion`` is that plugin's (its tests are in plugins/storysdk-storydiffusion/tests).
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from PIL import Image
from starlette.responses import JSONResponse, Response

from storysdk import (
    ConfigError,
    Generator,
    ImageAsset,
    Pipeline,
    ProgressEvent,
    RenderContext,
    Scene,
    hookimpl,
    load_story_file,
)
from storysdk.server import (
    Job,
    RunningServer,
    ServerConfig,
    WorkerContext,
    job_accepted,
    job_result,
    job_root,
    read_fields,
    server_registry,
    submit_job,
    wants_async,
)
from storysdk.testing import make_registry

KEY = "test-key-123"
ROOT = Path(__file__).resolve().parents[1]


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


# -- a route plugin: POST /v1/echo answers the fields it got, through a job ------------------------
async def echo(request: Any) -> Response:
    fields = await read_fields(request, files=("upload",))
    if "fail" in fields:
        raise ConfigError(f"field 'fail' is {fields['fail']!r}; leave it out")
    assert server_registry(request) is request.app.state.registry
    gate = fields.get("gate")

    def work(job: Job, ctx: WorkerContext) -> dict[str, Any]:
        if gate:
            job.report(ProgressEvent("echo", "echo", 0, 1, message="waiting"))
            if not GATES[str(gate)].wait(30):
                raise TimeoutError("the test never opened the gate")
            job.report(ProgressEvent("echo", "echo", 1, 1))  # raises once the job is cancelled
        assert job.folder is not None
        job.folder.mkdir(parents=True)
        (job.folder / "fields.txt").write_text(repr(sorted(fields)))
        shown = {k: v if isinstance(v, str) else f"{len(v)} bytes" for k, v in fields.items() if v is not None}
        return {"fields": shown, "worker": ctx.index, "cached": len(ctx.cache)}

    job = Job("echo", work, key=fields.get("key"), info={"note": "echo"})
    job.folder = job_root(request, "echo") / job.id
    job = submit_job(request, job)
    if wants_async(request):
        return job_accepted(request, job)
    return JSONResponse({"job": job.id, **await job_result(job)})


class EchoPlugin:
    @hookimpl
    def register_routes(self, register: Any) -> None:
        register("/v1/echo", echo, methods=("POST",))


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    cfg = ServerConfig(port=0, out_dir=tmp_path / "serve", max_queue=1, max_body_bytes=64 * 1024)
    with RunningServer(cfg, registry=make_registry(GatePlugin(), EchoPlugin())) as srv:
        yield srv


def wait_for(url: str, statuses: tuple[str, ...] = ("done", "failed", "cancelled"), **kw: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        job = requests.get(url, **kw).json()
        if job["status"] in statuses:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {url} did not reach {statuses}")


# -- endpoints from plugins ------------------------------------------------------------------------
def test_a_plugin_route_is_served_with_the_server_api(server: RunningServer) -> None:
    url = server.url + "/v1/echo"
    r = requests.post(url, data={"colour": "red"}, files={"upload": ("a.bin", b"12345")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fields"] == {"colour": "red", "upload": "5 bytes"} and body["worker"] == 0
    assert requests.post(url, json={"n": 3, "ok": True}).json()["fields"] == {"n": "3", "ok": "true"}
    # the job is one of the server's: GET /v1/jobs shows it, with its folder's files and result
    job = requests.get(server.url + "/v1/jobs/" + body["job"]).json()
    assert (job["kind"], job["status"], job["note"], job["files"]) == ("echo", "done", "echo", ["fields.txt"])
    assert job["result"]["fields"] == body["fields"]
    assert requests.get(job["files_url"] + "fields.txt").text == "['colour', 'upload']"
    assert [j["kind"] for j in requests.get(server.url + "/v1/jobs", params={"kind": "echo"}).json()["jobs"]] == [
        "echo", "echo"]
    assert requests.get(server.url + "/v1/stories/" + body["job"]).status_code == 404  # not a story job
    status = requests.get(server.url + "/v1/status").json()
    assert "POST /v1/echo" in status["endpoints"] and status["route_errors"] == {}


def test_plugin_route_errors_map_to_http_answers(server: RunningServer) -> None:
    url = server.url + "/v1/echo"
    r = requests.get(url)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"].startswith("GET is not allowed on /v1/echo")
    r = requests.post(url, data={"fail": "yes"})
    assert r.status_code == 422 and r.json()["field"] == "fail" and "leave it out" in r.json()["error"]
    r = requests.post(url, data={"x": "1"}, files={"photo": ("me.png", b"\x89PNG....", "image/png")})
    assert r.status_code == 422 and r.json()["field"] == "photo" and "file upload" in r.json()["error"]
    r = requests.post(url, data=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    assert requests.post(url, json=[1, 2]).status_code == 400
    r = requests.post(url, json={"seed": {"a": 1}})
    assert r.status_code == 422 and r.json()["field"] == "seed"
    assert requests.post(url, data=b"seed=1", headers={"content-type": "text/csv"}).status_code == 415


def test_without_the_storydiffusion_plugin_its_endpoint_is_404_and_stories_work(server: RunningServer) -> None:
    r = requests.post(server.url + "/v1/storydiffusion", data={"seed": 1})
    assert r.status_code == 404
    message = r.json()["error"]
    assert message.startswith("no endpoint /v1/storydiffusion; this server has POST/GET /v1/stories, ")
    # the endpoints that exist, from the core and the registered routes
    for endpoint in ("GET/DELETE /v1/jobs/{job_id}", "GET /v1/jobs/{job_id}/files/{path}", "GET /v1/status",
                     "POST /v1/echo"):
        assert endpoint in message
    assert "storydiffusion" not in message.split(";", 1)[1]
    job = requests.post(server.url + "/v1/stories", json={"story": FAKE_STORY}).json()
    assert wait_for(job["url"])["status"] == "done"


def test_identical_keyed_requests_share_one_job_and_async_jobs_cancel(server: RunningServer) -> None:
    GATES["k"] = threading.Event()
    url = server.url + "/v1/echo"
    first = requests.post(url, data={"gate": "k", "key": "same"}, headers={"Prefer": "respond-async"})
    assert first.status_code == 202 and first.headers["location"] == first.json()["url"]
    job = first.json()
    assert job["url"].endswith("/v1/jobs/" + job["id"]) and job["kind"] == "echo"
    running = wait_for(job["url"], ("running",))
    assert running["progress"]["message"] == "waiting"
    again = requests.post(url, data={"gate": "k", "key": "same"}, headers={"Prefer": "respond-async"})
    assert again.json()["id"] == job["id"]  # the same work, not queued twice
    other = requests.post(url, data={"gate": "k", "key": "other"}, headers={"Prefer": "respond-async"}).json()
    assert other["id"] != job["id"] and other["queue_position"] == 0
    r = requests.delete(job["url"])
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    after = requests.post(url, data={"gate": "k", "key": "same"}, headers={"Prefer": "respond-async"})
    assert after.status_code == 429  # a job being cancelled is not joined; the queue (1 place) is full
    GATES["k"].set()
    cancelled = wait_for(job["url"])
    assert cancelled["status"] == "cancelled" and cancelled["error"]["type"] == "JobCancelled"
    assert requests.delete(job["url"]).status_code == 409
    assert wait_for(other["url"])["status"] == "done"


def test_two_jobs_of_one_key_never_run_at_once(tmp_path: Path) -> None:
    GATES["two"] = threading.Event()
    cfg = ServerConfig(port=0, out_dir=tmp_path, workers=2)
    with RunningServer(cfg, registry=make_registry(EchoPlugin())) as srv:
        url, prefer = srv.url + "/v1/echo", {"Prefer": "respond-async"}
        first = requests.post(url, data={"gate": "two", "key": "k"}, headers=prefer).json()
        busy = wait_for(first["url"], ("running",))["worker"]  # either idle worker may take it
        requests.delete(first["url"])  # being cancelled: a new request with its key is not joined to it ...
        second = requests.post(url, data={"gate": "two", "key": "k"}, headers=prefer).json()
        assert second["id"] != first["id"]
        time.sleep(0.3)  # ... and waits, though the second worker is idle
        assert requests.get(second["url"]).json()["status"] == "queued"
        free = requests.post(url, data={"key": "other"}).json()  # another key runs on the idle worker
        assert free["worker"] == 1 - busy
        GATES["two"].set()
        a, b = wait_for(first["url"]), wait_for(second["url"])
        assert (a["status"], b["status"]) == ("cancelled", "done") and a["finished"] <= b["started"]


def test_malformed_or_taken_routes_are_refused_and_the_others_served(tmp_path: Path) -> None:
    def sync_endpoint(request: Any) -> Response:
        return Response("x")

    class Outside:
        @hookimpl
        def register_routes(self, register: Any) -> None:
            register("/admin", echo)

    class Sync:
        @hookimpl
        def register_routes(self, register: Any) -> None:
            register("/v1/sync", sync_endpoint)

    class Taken:
        @hookimpl
        def register_routes(self, register: Any) -> None:
            register("/v1/fine", echo)  # refused with the rest of its plugin's routes
            register("/v1/stories", echo, methods=("POST",))

    class Twice:
        @hookimpl
        def register_routes(self, register: Any) -> None:
            register("/v1/echo", echo, methods=["post"])

    class Raises:
        @hookimpl
        def register_routes(self, register: Any) -> None:
            raise ImportError("no module named 'starlette_extra'")

    async def where(request: Any) -> Response:
        return JSONResponse({"url": str(request.url_for("where", item=request.path_params["item"]))})

    class Named:
        @hookimpl
        def register_routes(self, register: Any) -> None:
            register(path="/v1/where/{item}", endpoint=where, methods="get", name="where")

    reg = make_registry(EchoPlugin(), Outside(), Sync(), Taken(), Twice(), Raises(), Named())
    with pytest.warns(UserWarning) as caught:
        srv = RunningServer(ServerConfig(port=0, out_dir=tmp_path), registry=reg)
    errors = srv.app.state.route_errors
    assert len(caught) == len(errors) == 5
    messages = " | ".join(errors.values())
    assert "path '/admin' is not under /v1/" in messages
    assert "is not an async function" in messages
    assert "registered POST /v1/stories, which 'storysdk' already serves" in messages
    assert "POST /v1/echo, which" in messages and "already serves" in messages
    assert "register_routes: ImportError: no module named 'starlette_extra'" in messages
    with srv:
        assert requests.post(srv.url + "/v1/echo", data={"a": "b"}).json()["fields"] == {"a": "b"}
        assert requests.post(srv.url + "/v1/fine", data={}).status_code == 404
        assert requests.get(srv.url + "/v1/where/x1").json() == {"url": srv.url + "/v1/where/x1"}
        assert requests.get(srv.url + "/v1/status").json()["route_errors"] == errors


def test_api_key_is_required_when_configured(tmp_path: Path) -> None:
    reg = make_registry(EchoPlugin(), GatePlugin())
    with RunningServer(ServerConfig(port=0, api_key=KEY, out_dir=tmp_path), registry=reg) as srv:
        for headers in ({}, {"x-api-key": "wrong"}, {"x-api-key": KEY + "x"}):
            r = requests.post(srv.url + "/v1/echo", data={"seed": 1}, headers=headers)
            assert r.status_code == 401 and "x-api-key" in r.json()["error"]
            r = requests.post(srv.url + "/v1/stories", data=FAKE_STORY, headers=headers)
            assert r.status_code == 401
            assert requests.get(srv.url + "/v1/jobs", headers=headers).status_code == 401
        assert requests.get(srv.url + "/v1/status").status_code == 401
        ok = requests.get(srv.url + "/v1/status", headers={"x-api-key": KEY})
        assert ok.status_code == 200 and ok.json()["workers"] == 1
        assert requests.post(srv.url + "/v1/echo", data={"a": "1"}, headers={"x-api-key": KEY}).status_code == 200


def test_oversized_bodies_get_413(server: RunningServer) -> None:
    big = "x" * (65 * 1024)
    r = requests.post(server.url + "/v1/echo", data={"text": big})
    assert r.status_code == 413 and "limit of 65536 bytes" in r.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is applied while it streams
        for _ in range(80):
            yield b"y" * 1024

    r2 = httpx.post(server.url + "/v1/stories", content=chunks(), headers={"content-type": "application/toml"})
    assert r2.status_code == 413 and r2.json()["status"] == 413
    r3 = httpx.post(server.url + "/v1/echo", content=chunks(), headers={"content-type": "application/json"})
    assert r3.status_code == 413
    # the server still works
    assert requests.get(server.url + "/v1/status").status_code == 200


def test_the_plugin_endpoint_example_of_docs_serving_md_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (ROOT / "docs" / "serving.md").read_text(encoding="utf-8")
    section = text.split("## Endpoints from plugins", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STORYSDK_LOAD_PLUGINS", "")  # the example's Registry(): built-ins only, offline
    namespace: dict[str, Any] = {"__name__": "doc_serving"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(blocks[0], "docs/serving.md:endpoints-from-plugins", "exec"), namespace)  # noqa: S102
    assert namespace["answer"].json()["frames"] == 2
    assert namespace["job"]["status"] == "done"
    assert sorted(f for f in namespace["job"]["files"] if f.endswith(".png")) == [
        "tracks/frames/scene-0000.png", "tracks/frames/scene-0001.png"]
    assert (tmp_path / "out" / "serve" / "frames").is_dir()


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
    assert {"plan.json", "story.json", "timeline.json", "tracks/fake-image/scene-0000.png",
            "tracks/fake-audio/scene-0002.wav"} <= set(done["files"])
    assert done["tracks"] == {"fake-image": "image", "fake-audio": "audio"}  # the shorthand: tracks named after them

    local = tmp_path / "local.toml"
    local.write_text(FAKE_STORY)
    sf = load_story_file(local)
    Pipeline(sf.planner, sf.tokenizers, sf.generators, sf.composers, registry=make_registry()).run(
        sf.request, out_dir=tmp_path / "local")
    for name in ("tracks/fake-image/scene-0001.png", "tracks/fake-audio/scene-0002.wav", "plan.json", "story.json",
                 "timeline.json"):
        got = requests.get(done["files_url"] + name)
        assert got.status_code == 200 and got.content == (tmp_path / "local" / name).read_bytes(), name
    assert requests.get(done["files_url"] + "tracks/fake-image/scene-0001.png").headers["content-type"] == "image/png"

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
    status = requests.get(server.url + "/v1/status").json()
    assert sorted(status["cached_components"]["0"]) == [
        "composer fake-composer", "generator fake-audio", "generator fake-image", "planner fake-planner"]
    # /v1/jobs shows story jobs too
    assert requests.get(server.url + "/v1/jobs/" + job["id"]).json()["result"] == done["outputs"]
    assert requests.get(server.url + "/v1/jobs/" + job["id"] + "/files/plan.json").content == (
        tmp_path / "local" / "plan.json").read_bytes()


TRACKS_STORY = """
[story]
seed = 4
width = 16
height = 16
script = '''
a cat
a dog
'''
[planner]
name = "fake-planner"

[tracks.frames]
generator = "fake-image"

[tracks.voice]
generator = { name = "fake-audio", per_character = 0.02 }
text = "{caption}"
duck = 9

[tracks.fx]
planner = { name = "fake-events", per_scene = 3 }
generator = { name = "fake-audio", sample_rate = 4000 }
gain = -6

[timing]
mode = "track"
track = "voice"
padding = 0.25

[mix]
loudness = -20.0

[[composers]]
name = "fake-composer"

[[composers]]
name = "fake-composer"
dir = "again"
"""


def test_a_story_with_tracks_timing_and_mix_runs_as_a_job_like_a_local_run(server: RunningServer, tmp_path: Path) -> None:
    r = requests.post(server.url + "/v1/stories", data=TRACKS_STORY.encode(), headers={"content-type": "application/toml"})
    assert r.status_code == 202, r.text
    assert r.json()["tracks"] == {"frames": "image", "voice": "audio", "fx": "audio"} and r.json()["scenes"] == 2
    done = wait_for(r.json()["url"])
    assert done["status"] == "done", done["error"]
    # every composer's files, the second one's in its own folder
    assert done["outputs"] == {"fake-composer": ["story.json"], "again/fake-composer": ["again/story.json"]}
    files = set(done["files"])
    assert {"timeline.json", "tracks/fx/cues.json", "files.json", "again/story.json"} <= files
    assert {f for f in files if f.startswith("tracks/frames/") and f.endswith(".png")} == {
        "tracks/frames/scene-0000.png", "tracks/frames/scene-0001.png"}
    assert {f for f in files if f.startswith("tracks/fx/") and f.endswith(".wav")} == {
        f"tracks/fx/cue-{i:04d}.wav" for i in range(6)}  # 3 events for each of the 2 scenes

    local = tmp_path / "local.toml"
    local.write_text(TRACKS_STORY)
    sf = load_story_file(local)
    sf.pipeline(registry=make_registry()).run(sf.request, out_dir=tmp_path / "local")
    timeline = requests.get(done["files_url"] + "timeline.json")
    assert timeline.content == (tmp_path / "local" / "timeline.json").read_bytes()
    data = timeline.json()
    # the voice clips (0.02 s a character of each caption) plus 0.25 s padding set each scene's length
    captions = [s.caption for s in sf.pipeline(registry=make_registry()).plan(sf.request).scenes]
    assert [s["duration"] for s in data["scenes"]] == pytest.approx([0.02 * len(c) + 0.25 for c in captions])
    for name in ("tracks/fx/cue-0005.wav", "tracks/voice/scene-0001.wav", "tracks/frames/scene-0000.png",
                 "files.json", "again/story.json"):
        assert requests.get(done["files_url"] + name).content == (tmp_path / "local" / name).read_bytes(), name


def test_bad_tracks_are_refused_with_422_naming_the_track(server: RunningServer) -> None:
    url = server.url + "/v1/stories"
    toml = {"content-type": "application/toml"}
    cases = [
        (TRACKS_STORY.replace('generator = "fake-image"', 'generator = "fake-imag"'), "Did you mean 'fake-image'"),
        (TRACKS_STORY.replace('name = "fake-events"', 'name = "fake-planner"'),
         "[tracks.fx] planner 'fake-planner' plans whole stories, not a track's cues; this server's track planners: "
         "fake-events"),
        (TRACKS_STORY.replace('track = "voice"', 'track = "voices"'), "timing track 'voices' is not one of the "
         "pipeline's tracks (frames, voice, fx). Did you mean 'voice'?"),
        (TRACKS_STORY.replace("gain = -6", "gain = -600"), "track 'fx': option gain=-600"),
        (TRACKS_STORY.replace("[tracks.fx]", "[tracks.fx]\nvolume = 3"), "track 'fx': unknown key 'volume'"),
        (TRACKS_STORY.replace("[tracks.fx]", '[tracks."f x"]'), "track name 'f x' is not usable as a folder name"),
        (TRACKS_STORY.replace("loudness = -20.0", "loudness = 5.0"), "loudness"),
        (TRACKS_STORY.replace("[tracks.frames]", "[[generators]]\nname = \"fake-image\"\n[tracks.frames]"),
         "give [tracks.<name>] tables or [[generators]], not both"),
        (TRACKS_STORY.replace('generator = "fake-image"', 'generator = { name = "fake-image", device = "cuda:1" }'),
         "[tracks.frames] generator ('fake-image') option 'device': the server chooses the devices"),
        (TRACKS_STORY.split("[tracks.frames]")[0] + "".join(f'\n[tracks.t{i}]\ngenerator = "fake-image"' for i in range(9)),
         "number of tracks = 9 is over the limit tracks = 8"),
    ]
    for text, words in cases:
        r = requests.post(url, data=text.encode(), headers=toml)
        assert r.status_code == 422 and words in r.json()["error"], (words, r.text)
    assert requests.get(url).json()["jobs"] == []  # none took a queue place


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
    plugin = requests.post(server.url + "/v1/echo", data={"seed": 1})
    assert plugin.status_code == 429  # the same queue: the GPU is busy
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
    assert "tracks/gate-image/scene-0000.png" in job["files"] and "tracks/gate-image/scene-0002.png" not in job["files"]
    assert requests.delete(running["url"]).status_code == 409

    GATES["f"] = threading.Event()
    GATES["f"].set()
    failing = requests.post(url, json={"story": gate_story("f", fail=True)}).json()
    job = wait_for(failing["url"])
    assert job["status"] == "failed" and job["error"]["type"] == "RuntimeError"
    # the cause, without a traceback (the server log has it)
    assert job["error"] == {"type": "RuntimeError", "message": "scene 0 could not be drawn"}
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
