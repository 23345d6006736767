"""``POST /v1/storydiffusion``: the plugin's endpoint on a real ``storysdk serve`` (tiny preset), real HTTP clients.

The requests are the hosted API's own example (docs/storydiffusion-api.md and its documentation's
Python client: ``requests.post(url, data=data, files=files, headers={'x-api-key': ...})``); only
the frame size and step count are the smallest the fields allow, for a CPU test.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from storysdk.server import Job, RunningServer, ServerConfig
from storysdk.testing import make_registry
from storysdk_storydiffusion import plugin
from storysdk_storydiffusion.hosted import DEFAULT_COMIC, DEFAULT_NEGATIVE, parse_fields, render, request_key

KEY = "test-key-123"
ROOT = Path(__file__).resolve().parents[3]
#: three frames: one id frame, two read frames
THREE = {"image_width": 256, "image_height": 256, "num_steps": 20, "num_ids": 1, "seed": 11,
         "comic_description": "reading at home #Home\nwalking to the forest\n[NC] a dark forest #Night"}


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
    data["negative_prompt"] = DEFAULT_NEGATIVE
    data["character_description"] = "a man, wearing black suit"
    data["comic_description"] = DEFAULT_COMIC
    data["style_strength_ratio"] = 20
    data["style_name"] = "Disney Charactor"
    data["comic_style"] = "Classic Comic Style"
    return data


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServer]:
    cfg = ServerConfig(port=0, out_dir=tmp_path / "serve", defaults={"preset": "tiny"}, max_body_bytes=64 * 1024)
    with RunningServer(cfg, registry=make_registry(plugin, fakes=False)) as srv:
        yield srv


def as_fields(data: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in data.items()}


def test_hosted_example_request_gets_the_comic_image_and_json_gets_the_same(tmp_path: Path) -> None:
    cfg = ServerConfig(port=0, api_key=KEY, out_dir=tmp_path / "serve", defaults={"preset": "tiny"})
    with RunningServer(cfg, registry=make_registry(plugin, fakes=False)) as srv:
        # the documentation's client, pointed at the local server
        api_key = KEY
        url = srv.url + "/v1/storydiffusion"
        data = example_data()
        files: dict[str, Any] = {}
        headers = {"x-api-key": api_key}
        response = requests.post(url, data=data, files=files, headers=headers)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/webp" and response.headers["x-storysdk-seed"] == "42"
        page = Image.open(io.BytesIO(response.content))
        assert page.format == "WEBP"
        panel = 256 + 2 * 10  # docs/storydiffusion.md §4: 10 px border; 8 frames -> 2 rows of [1, 1, 2]
        assert page.size == (2 * panel + panel // 2, 2 * panel)
        # what a script gets from the same fields (no server, no cache, its own pipeline)
        assert response.content == render(as_fields(data), preset="tiny")[0]

        # the job: its folder is named after the request, its files are served
        job = requests.get(srv.url + "/v1/jobs/" + response.headers["x-storysdk-job"], headers=headers).json()
        assert (job["kind"], job["status"], job["seed"]) == ("storydiffusion", "done", 42)
        assert job["result"] == {"file": "response.webp", "content_type": "image/webp", "seed": 42,
                                 "weights": {"generator storydiffusion": "tiny"}}
        assert json.loads(response.headers["x-storysdk-weights"]) == {"generator storydiffusion": "tiny"}
        assert {"plan.json", "comic/page-001.png", "tracks/storydiffusion/scene-0007.png", "response.webp"} <= set(job["files"])
        assert requests.get(job["files_url"] + "response.webp", headers=headers).content == response.content
        key = request_key(parse_fields(as_fields(data)), cfg.defaults)
        assert (tmp_path / "serve" / "storydiffusion" / key / "response.webp").read_bytes() == response.content
        assert job["progress"]["stage"] == "compose" and job["events"] > 8

        # the JSON form of the documentation, numbers as JSON numbers: the same request, the same bytes
        as_json = requests.post(url, headers={"x-api-key": api_key, "Content-Type": "application/json"}, json=data)
        assert as_json.status_code == 200 and as_json.content == response.content

        # examples/hosted_client.py (the documentation's client as a script) gets the same image
        out = tmp_path / "comic.webp"
        script = ROOT / "examples" / "hosted_client.py"
        proc = subprocess.run([sys.executable, str(script), "--url", url, "--api-key", api_key, "--small",
                               "--out", str(out)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert out.read_bytes() == response.content and "image/webp" in proc.stdout

        png = requests.post(url, data={**THREE, "output_format": "png"}, headers=headers)
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(png.content)).format == "PNG"

        # one base model, loaded once, serves requests with other frames, seeds and settings
        status = requests.get(srv.url + "/v1/status", headers=headers).json()
        assert status["cached_components"]["0"].count("generator storydiffusion") == 1
        assert "POST /v1/storydiffusion" in status["endpoints"]


def test_a_cancelled_request_sent_again_resumes_in_its_folder(server: RunningServer) -> None:
    url = server.url + "/v1/storydiffusion"
    queue = server.app.state.queue
    first = requests.post(url, data=THREE, headers={"Prefer": "respond-async"})
    assert first.status_code == 202, first.text
    job = first.json()
    assert job["kind"] == "storydiffusion" and first.headers["location"] == job["url"]
    deadline = time.monotonic() + 120
    while "tracks/storydiffusion/scene-0000.png" not in (job := requests.get(first.json()["url"]).json())["files"]:
        assert job["status"] in ("queued", "running") and time.monotonic() < deadline
        time.sleep(0.01)
    assert requests.delete(job["url"]).status_code == 202  # stops at its next progress report
    while job["status"] not in ("cancelled", "done", "failed"):
        job = requests.get(job["url"]).json()
        time.sleep(0.02)
    assert job["status"] == "cancelled" and job["error"]["type"] == "JobCancelled"
    folder = queue.get(job["id"]).folder
    kept = {p.name: p.stat().st_mtime_ns for p in (folder / "tracks" / "storydiffusion").glob("*.png")}
    assert "scene-0000.png" in kept and len(kept) < 3

    again = requests.post(url, data=THREE)
    assert again.status_code == 200, again.text
    second = queue.get(again.headers["x-storysdk-job"])
    assert second.folder == folder  # the same request, the same folder
    assert {n: (folder / "tracks" / "storydiffusion" / n).stat().st_mtime_ns for n in kept} == kept  # kept, not drawn again
    assert len(list((folder / "tracks" / "storydiffusion").glob("*.png"))) == 3
    assert again.content == render(as_fields(THREE), preset="tiny")[0]  # as if never interrupted


def test_a_queued_request_is_cancelled_at_once_and_a_full_queue_answers_429(tmp_path: Path) -> None:
    cfg = ServerConfig(port=0, out_dir=tmp_path, defaults={"preset": "tiny"}, max_queue=1)
    with RunningServer(cfg, registry=make_registry(plugin, fakes=False)) as srv:
        gate = threading.Event()
        blocker = srv.app.state.queue.submit(Job("block", lambda job, ctx: gate.wait(30)))
        url = srv.url + "/v1/storydiffusion"
        queued = requests.post(url, data=THREE, headers={"Prefer": "respond-async"}).json()
        assert queued["status"] == "queued" and queued["queue_position"] == 0
        full = requests.post(url, data={**THREE, "seed": 12})
        assert full.status_code == 429 and full.headers["retry-after"] == "5"
        r = requests.delete(queued["url"])
        assert r.status_code == 202 and r.json()["status"] == "cancelled"
        gate.set()
        blocker.future.result(30)


def test_wrong_method_unknown_url_and_bad_fields(server: RunningServer) -> None:
    url = server.url + "/v1/storydiffusion"
    r = requests.get(url)
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"].startswith("GET is not allowed on /v1/storydiffusion")
    r = requests.post(server.url + "/v1/storydiffusion/extra", data={"seed": 1})
    assert r.status_code == 404 and "POST /v1/storydiffusion" in r.json()["error"]

    cases = [
        ({"num_steps": "10"}, "num_steps", "must be in the range 20 - 50"),
        ({"image_width": "300"}, "image_width", "multiples of 32"),
        ({"output_format": "gif"}, "output_format", "webp, jpeg or png"),
        ({"num_ids": "9"}, "num_ids", "must not exceed the number of frame lines"),
        ({"style_name": "Vaporwave"}, "style_name", "unknown style 'Vaporwave'"),
        ({"comic_style": "Manga"}, "comic_style", "unknown comic style 'Manga'"),
        ({"colour": "red"}, None, "unknown field"),
        # refused by the planner before the request is queued: the line is named
        ({"comic_description": "[Bob] at home\nin the forest", "num_ids": "1"}, "comic_description", "script line 1: unknown tag [Bob]"),
    ]
    for data, field, text in cases:
        r = requests.post(url, data=data)
        body = r.json()
        assert r.status_code == 422 and text in body["error"] and body.get("field") == field, body
    # a reference photo as a file: refused by name (not supported yet), not a server error
    r = requests.post(url, data={"seed": 1}, files={"ref_image": ("me.png", b"\x89PNG....", "image/png")})
    assert r.status_code == 422 and r.json()["field"] == "ref_image"
    r = requests.post(url, json={"seed": {"a": 1}})
    assert r.status_code == 422 and r.json()["field"] == "seed"
    r = requests.post(url, data={"comic_description": "x" * (65 * 1024)})
    assert r.status_code == 413 and "limit of 65536 bytes" in r.json()["error"]
    assert requests.get(server.url + "/v1/jobs").json()["jobs"] == []  # nothing was queued


def test_hostile_fields_are_refused_before_queueing_on_one_kept_connection(tmp_path: Path) -> None:
    import http.client

    from storysdk import Limits

    cfg = ServerConfig(port=0, out_dir=tmp_path, defaults={"preset": "tiny"}, limits=Limits(caption=100),
                       max_field_bytes=32 * 1024)
    with RunningServer(cfg, registry=make_registry(plugin, fakes=False)) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
        conn.connect()
        sock = conn.sock
        form = {"content-type": "application/x-www-form-urlencoded"}
        jsonct = {"content-type": "application/json"}
        cases: list[tuple[bytes, dict[str, str], int, str | None, str]] = [
            (b"seed=" + str(10**26).encode(), form, 422, "seed", "in the range 0 - 18446744073709551615"),
            (b"seed=" + b"9" * 5000, form, 422, "seed", "(5000 characters)"),
            (b"num_steps=" + str(10**30).encode(), form, 422, "num_steps", "range 20 - 50"),
            (b"image_width=1e400", form, 422, "image_width", "whole number"),
            (b"guidance_scale=nan", form, 422, "guidance_scale", "finite"),
            (b'{"guidance_scale": Infinity}', jsonct, 422, None, "Infinity"),
            (b"sa32_setting=inf", form, 422, "sa32_setting", "finite"),
            (b"sa64_setting=-1e999", form, 422, "sa64_setting", "finite"),
            (b"output_quality=" + b"1" * 30, form, 422, "output_quality", "range 0 - 100"),
            (b"seed=1&seed=2", form, 422, "seed", "given twice"),
            (b"num_ids=1&comic_description=a%20%23" + b"w" * 200, form, 422, "comic_description", "--limit caption=200"),
            (b"character_description=" + b"a" * 20000, form, 422, "character_description", "over the limit prompt"),
            (b"negative_prompt=" + b"a" * 20000, form, 422, "negative_prompt", "over the limit prompt"),
            (b"comic_description=" + b"x" * 40000, form, 413, "comic_description", "per field"),
            (b"[" * 50000 + b"]" * 50000, jsonct, 400, None, "nested too deeply"),
            (b'{"seed": 1' + b"0" * 5000 + b"}", jsonct, 400, None, "thousands of digits"),
            (b"--B\r\nContent-Disposition: form-data; name=\"seed\"\r\n\r\n7\r\n",
             {"content-type": "multipart/form-data; boundary=B"}, 400, None, "cut off"),
            (b"seed=%ff", form, 400, None, "not UTF-8"),
            (b"<xml/>", {"content-type": "text/xml"}, 415, None, "unsupported content type"),
        ]
        for body, headers, status, field, words in cases:
            conn.request("POST", "/v1/storydiffusion", body=body, headers=headers)
            response = conn.getresponse()
            answer = json.loads(response.read())
            assert (response.status, answer.get("field")) == (status, field), (body[:40], answer)
            assert words in answer["error"] and len(answer["error"]) < 600, (body[:40], answer)
            assert str(tmp_path) not in answer["error"] and conn.sock is sock
        assert requests.get(srv.url + "/v1/jobs").json()["jobs"] == []  # nothing was queued
        conn.request("POST", "/v1/storydiffusion", body=json.dumps({**THREE, "num_steps": 20}),
                     headers={**jsonct, "Prefer": "respond-async"})
        response = conn.getresponse()
        assert response.status == 202 and conn.sock is sock
        job = json.loads(response.read())
        queue = srv.app.state.queue
        queue.get(job["id"]).future.result(300)


def test_delete_stops_a_hosted_render_within_one_denoising_step(server: RunningServer) -> None:
    url = server.url + "/v1/storydiffusion"
    job = requests.post(url, data={**THREE, "num_steps": 50}, headers={"Prefer": "respond-async"}).json()
    deadline = time.monotonic() + 180
    while (now := requests.get(job["url"]).json())["progress"] is None or now["progress"]["stage"] != "step" \
            or now["progress"]["done"] < 2:
        assert now["status"] in ("queued", "running") and time.monotonic() < deadline, now
        time.sleep(0.01)
    at_cancel = requests.delete(job["url"]).json()
    while (final := requests.get(job["url"]).json())["status"] not in ("cancelled", "done", "failed"):
        time.sleep(0.02)
    assert final["status"] == "cancelled", final["error"]
    assert final["events"] - at_cancel["events"] <= 1  # the step in flight at most
    assert final["progress"]["stage"] == "step" and final["progress"]["total"] == 50
    assert final["progress"]["done"] <= at_cancel["progress"]["done"] + 1 < 50
