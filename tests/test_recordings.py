"""Recordings (issue 14, part 3) against real gunicorn + gevent: serving with Range, peaks, what is never served, uploads.

The recordings are real speech, made here with Debian's ``espeak-ng`` and ``sox``
the way Patter writes them (stereo, 16 kHz, PCM16): the caller speaks on the left
channel from 0 to 1.5 s, the agent on the right from 2 to 3.5 s, silence elsewhere.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from patter_dash.client import DashboardClient
from patter_dash.run.client import RecordingUploadError
from tests.conftest import post, wait_for

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")),
    reason="espeak-ng and sox make the test recordings: apt-get install espeak-ng sox (make system-deps)",
)

CALLER_WORDS = "Hello, I would like to book a table for two tonight, please."
AGENT_WORDS = "Certainly. At what time would you like to come in this evening?"


def make_recording(folder: Path, name: str = "stereo.wav", *, caller_at: float = 0.0, agent_at: float = 2.0,
                   speech: float = 1.5, length: float = 4.0) -> Path:
    """A stereo 16 kHz PCM16 WAV: the caller's words on the left at ``caller_at``, the agent's on the right at ``agent_at``."""
    folder.mkdir(parents=True, exist_ok=True)
    work = folder / f".{name}.parts"
    work.mkdir(exist_ok=True)
    channels = []
    for side, words, voice, at in (("left", CALLER_WORDS, "en", caller_at), ("right", AGENT_WORDS, "en+f3", agent_at)):
        raw = work / f"{side}-voice.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), words], check=True)
        mono = work / f"{side}.wav"
        subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(mono),
                        "trim", "0", str(speech), "pad", str(at), str(length - at - speech)], check=True)
        channels.append(str(mono))
    out = folder / name
    subprocess.run(["sox", "-M", *channels, "-b", "16", "-e", "signed-integer", str(out)], check=True)
    shutil.rmtree(work)
    return out


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_recording(tmp_path_factory.mktemp("audio"))


def finished(target: Any, call_id: str, started: float, **end: Any) -> None:
    post(target, "call_start", {"call_id": call_id, "caller": "+15550100", "callee": "+15550199", "started_at": started})
    post(target, "call_end", {"call_id": call_id, "ended_at": started + 4.0, **end})


def energy(values: list[float], first: int, last: int) -> float:
    return max(abs(v) for v in values[first:last])


def test_peaks_show_each_channel_speaking_when_it_did(live_server: Any, tmp_path: Path, recording: Path) -> None:
    root = tmp_path / "recordings"
    root.mkdir()
    shutil.copy(recording, root / "call-1.wav")
    server = live_server(PATTER_DASH_RECORDINGS_DIRS=str(root))
    finished(server, "call-1", time.time() - 10, recording_path="call-1.wav")  # relative: to a root, as Patter's can be
    answer = server.get("/api/v1/calls/call-1/recording/peaks")
    assert answer.status_code == 200, answer.text
    data = answer.json()["data"]
    assert data["sample_rate"] == 16000 and abs(data["duration"] - 4.0) < 0.01 and data["buckets"] == 1000
    caller, agent = data["channels"]
    assert (caller["name"], agent["name"]) == ("caller", "agent")
    second = 1000 / 4.0  # buckets per second
    at = lambda s: int(s * second)  # noqa: E731
    # The caller speaks 0-1.5 s and is silent after; the agent is silent before 2 s and speaks 2-3.5 s.
    assert energy(caller["max"], at(0.1), at(1.4)) > 0.2 and energy(caller["min"], at(0.1), at(1.4)) > 0.2
    assert energy(caller["max"], at(1.55), at(4.0)) < 0.01
    assert energy(agent["max"], at(0.0), at(1.95)) < 0.01
    assert energy(agent["max"], at(2.1), at(3.4)) > 0.2
    assert energy(agent["max"], at(3.55), at(4.0)) < 0.01
    # Talk time per channel, from the peaks: about 1.5 s each (espeak's own pauses between words are short).
    for channel, (start, end) in ((caller, (0.0, 1.5)), (agent, (2.0, 3.5))):
        loud = [i for i, v in enumerate(channel["max"]) if v > 0.02]
        assert start - 0.05 <= loud[0] / second <= start + 0.3 and end - 0.3 <= loud[-1] / second <= end + 0.05
    # The query form answers the same; asked again, the same figures (cached).
    assert server.get("/api/v1/call/recording/peaks", params={"id": "call-1"}).json()["data"] == answer.json()["data"]


def test_range_requests(live_server: Any, tmp_path: Path, recording: Path) -> None:
    root = tmp_path / "recordings"
    root.mkdir()
    shutil.copy(recording, root / "r.wav")
    whole = recording.read_bytes()
    size = len(whole)
    server = live_server(PATTER_DASH_RECORDINGS_DIRS=str(root))
    finished(server, "ranged", time.time() - 10, recording_path=str(root / "r.wav"))
    path = "/api/v1/calls/ranged/recording"

    full = server.get(path)
    assert full.status_code == 200 and full.content == whole
    assert full.headers["Content-Type"] == "audio/wav" and full.headers["Accept-Ranges"] == "bytes"
    assert int(full.headers["Content-Length"]) == size

    def ranged(spec: str, **headers: str) -> requests.Response:
        return server.get(path, headers={"Range": spec, **headers})

    first = ranged("bytes=0-11")
    assert first.status_code == 206 and first.content == b"RIFF" + whole[4:8] + b"WAVE"
    assert first.headers["Content-Range"] == f"bytes 0-11/{size}" and first.headers["Content-Length"] == "12"
    suffix = ranged("bytes=-1000")
    assert suffix.status_code == 206 and suffix.content == whole[-1000:]
    assert suffix.headers["Content-Range"] == f"bytes {size - 1000}-{size - 1}/{size}"
    assert ranged(f"bytes=-{size * 2}").content == whole  # a suffix longer than the file is the file
    opened = ranged("bytes=100000-")
    assert opened.status_code == 206 and opened.content == whole[100000:]
    past_end = ranged(f"bytes=100-{size * 3}")
    assert past_end.status_code == 206 and past_end.content == whole[100:]
    several = ranged("bytes=0-1,10-20")
    assert several.status_code == 200 and several.content == whole
    for bad in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=20-10", "bytes=-0", "bytes=abc", "lines=0-1"):
        refused = ranged(bad)
        assert refused.status_code == 416, (bad, refused.status_code)
        assert refused.headers["Content-Range"] == f"bytes */{size}" and "error" in refused.json()
    # If-Range with another version's tag: the whole (new) file.
    assert ranged("bytes=0-3", **{"If-Range": '"stale"'}).status_code == 200
    assert ranged("bytes=0-3", **{"If-Range": full.headers["ETag"]}).status_code == 206
    head = requests.head(server.url + path, timeout=10)
    assert head.status_code == 200 and head.headers["Content-Length"] == str(size)
    # The query form, which carries any id.
    query = server.get("/api/v1/call/recording", params={"id": "ranged"}, headers={"Range": "bytes=4-7"})
    assert query.status_code == 206 and query.content == whole[4:8]


def test_a_path_outside_the_roots_is_never_served(live_server: Any, tmp_path: Path, recording: Path) -> None:
    root = tmp_path / "recordings"
    elsewhere = tmp_path / "elsewhere"
    root.mkdir()
    elsewhere.mkdir()
    shutil.copy(recording, elsewhere / "secret.wav")
    shutil.copy(recording, root / "fine.wav")
    (root / "link.wav").symlink_to(elsewhere / "secret.wav")  # a file link out of the root
    (root / "dir").symlink_to(elsewhere)  # a directory link out of the root
    (root / "sub").mkdir()
    (root / "sub" / "up.wav").symlink_to("../../elsewhere/secret.wav")
    (tmp_path / "recordingsX").mkdir()  # a sibling whose name starts like the root
    shutil.copy(recording, tmp_path / "recordingsX" / "prefix.wav")
    server = live_server(PATTER_DASH_RECORDINGS_DIRS=str(root))
    started = time.time() - 10
    attempts = {
        "dotdot": "../elsewhere/secret.wav",
        "dotdot-deep": "sub/../../elsewhere/secret.wav",
        "absolute": str(elsewhere / "secret.wav"),
        "absolute-dotdot": f"{root}/../elsewhere/secret.wav",
        "file-link": "link.wav",
        "dir-link": "dir/secret.wav",
        "relative-link": "sub/up.wav",
        "prefix-sibling": str(tmp_path / "recordingsX" / "prefix.wav"),
        "system": "/etc/passwd",
        "proc": "/proc/self/environ",
        "nul": "fine.wav\x00.txt",
        "a-directory": str(root),
    }
    for call_id, path in attempts.items():
        finished(server, call_id, started, recording_path=path)
    for call_id in attempts:
        for route in ("/recording", "/recording/peaks"):
            answer = server.get(f"/api/v1/calls/{call_id}{route}")
            assert answer.status_code == 404, (call_id, route, answer.status_code)
            assert answer.json() == {"error": "recording not available", "recorded": True}, call_id
            assert b"RIFF" not in answer.content
    # The same file, named inside the root, is served: the refusals above were about where, not what.
    finished(server, "inside", started, recording_path=str(root / "fine.wav"))
    assert server.get("/api/v1/calls/inside/recording").content == recording.read_bytes()
    # The request never chooses the path: a path-like id is only an id.
    assert server.get("/api/v1/call/recording", params={"id": "../elsewhere/secret.wav"}).json() == {"error": "Call not found"}
    assert server.get("/api/v1/call/recording", params={"id": str(elsewhere / "secret.wav")}).status_code == 404
    assert "Traceback" not in server.logs()


def test_a_log_folder_recording_and_the_ones_not_available(live_server: Any, tmp_path: Path, recording: Path) -> None:
    """Patter's ``calls/YYYY/MM/DD/<id>/recording.wav`` is found without a recording_path; a missing one is said plainly."""
    root = tmp_path / "logs"
    started = time.time() - 10
    day = time.strftime("%Y/%m/%d", time.gmtime(started))
    folder = root / "calls" / day / "CA_1_2"  # Patter's safe_path_segment of "CA/1:2"
    folder.mkdir(parents=True)
    shutil.copy(recording, folder / "recording.wav")
    server = live_server(PATTER_DASH_RECORDINGS_DIRS=f"{tmp_path / 'nothing-here'}{os.pathsep}{root}")
    finished(server, "CA/1:2", started)
    assert server.get("/api/v1/call/recording", params={"id": "CA/1:2"}).content == recording.read_bytes()
    finished(server, "gone", started, recording_path="calls/2020/01/01/gone/recording.wav")
    assert server.get("/api/v1/calls/gone/recording").json() == {"error": "recording not available", "recorded": True}
    finished(server, "never-recorded", started)
    assert server.get("/api/v1/calls/never-recorded/recording").json() == {"error": "recording not available", "recorded": False}
    # The detail asks every call for its waveform: for a call with none that is an answer, not a 404.
    none = server.get("/api/v1/calls/never-recorded/recording/peaks")
    assert none.status_code == 200 and none.json() == {"data": None, "recorded": False}
    # A call id may hold slashes: other methods on these paths are refused, never taken for the call "gone/recording".
    for method in ("PATCH", "DELETE", "POST"):
        refused = requests.request(method, f"{server.url}/api/v1/calls/gone/recording", json={}, timeout=10)
        assert refused.status_code == 405 and refused.headers["Allow"] == "GET, HEAD, OPTIONS, PUT", method
    assert server.get("/api/v1/calls/gone").status_code == 200
    assert server.get("/api/v1/calls/no-such-call/recording").json() == {"error": "Call not found"}
    # Unreadable (Patter writes some files 0600 as the agent's user): not available, never a 500.
    if os.getuid() != 0:
        locked = folder.parent / "locked"
        locked.mkdir()
        shutil.copy(recording, locked / "recording.wav")
        os.chmod(locked / "recording.wav", 0)
        finished(server, "locked", started)
        assert server.get("/api/v1/calls/locked/recording").json() == {"error": "recording not available", "recorded": True}
    # Not a WAV this dashboard plays (an 8-bit recording): not available, not an error page.
    eight = folder.parent / "eight"
    eight.mkdir()
    subprocess.run(["sox", str(recording), "-b", "8", "-e", "unsigned-integer", str(eight / "recording.wav")], check=True)
    finished(server, "eight", started)
    assert server.get("/api/v1/calls/eight/recording/peaks").json() == {"error": "recording not available", "recorded": True}
    assert "the recording of call 'gone' is not available" in server.logs()
    assert "Traceback" not in server.logs()  # refusals are answers, never crashes


def test_no_root_configured_serves_nothing(live_server: Any, tmp_path: Path, recording: Path) -> None:
    server = live_server()
    finished(server, "anywhere", time.time() - 10, recording_path=str(recording))
    assert server.get("/api/v1/calls/anywhere/recording").json() == {"error": "recording not available", "recorded": True}


def test_a_client_that_leaves_releases_the_file(live_server: Any, tmp_path: Path) -> None:
    """20 clients start the same long recording and leave after the first bytes: no file stays open in the worker."""
    root = tmp_path / "recordings"
    big = make_recording(root, "long.wav", length=600.0)  # 38 MB: more than the socket buffers take at once
    server = live_server(PATTER_DASH_RECORDINGS_DIRS=str(root))
    finished(server, "long", time.time() - 700, recording_path="long.wav")
    pid = server.worker_pid()

    def held() -> int:
        count = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                count += os.readlink(f"/proc/{pid}/fd/{fd}") == str(big)
            except OSError:
                pass
        return count

    # The call's ending has its (stereo) recording measured on a native thread: let that finish with the file.
    wait_for(lambda: server.get("/api/v1/calls/long").json()["data"]["quality"]["source"] == "recording", timeout=30)
    wait_for(lambda: held() == 0)
    sockets = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", server.port))
        s.sendall(f"GET /api/v1/calls/long/recording HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
        s.settimeout(5)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        sockets.append(s)
    assert held() == 20  # all being served: none fits in the socket buffers
    for s in sockets:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # a reset, as a closed tab
        s.close()
    deadline = time.monotonic() + 10
    while held() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held() == 0
    assert server.get("/api/v1/health").status_code == 200


def wav_with(tmp_path: Path, recording: Path, name: str, *args: str) -> bytes:
    out = tmp_path / name
    subprocess.run(["sox", str(recording), *args, str(out)], check=True)
    return out.read_bytes()


def test_upload(live_server: Any, tmp_path: Path, recording: Path) -> None:
    token = "upload-token-123456"
    limit = 400_000
    server = live_server(PATTER_DASH_TOKEN=token, PATTER_DASH_RECORDING_MAX_BYTES=str(limit))
    started = time.time() - 10
    finished(server, "up-1", started)
    url = f"{server.url}/api/v1/calls/up-1/recording"
    whole = recording.read_bytes()
    auth = {"Authorization": f"Bearer {token}"}

    assert requests.put(url, data=whole, timeout=10).status_code == 401
    assert requests.put(url, data=whole, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    assert requests.put(f"{url}?token={token}", data=whole, timeout=10).status_code == 401  # never ?token= for writes
    assert requests.put(url, data=whole, headers={**auth, "Origin": "https://evil.example"}, timeout=10).status_code == 403
    bad = {
        "text": b"hello, this is not audio at all" * 10,
        "riff-not-wave": b"RIFF\x00\x00\x00\x00AVI LIST" + b"\x00" * 100,
        "8-bit": wav_with(tmp_path, recording, "8.wav", "-b", "8", "-e", "unsigned-integer"),
        "float": wav_with(tmp_path, recording, "f.wav", "-c", "1", "-b", "32", "-e", "floating-point"),
        "3 channels": wav_with(tmp_path, recording, "3.wav", "-c", "3"),
        "header only": whole[:44],
        "empty": b"",
    }
    for what, body in bad.items():
        answer = requests.put(url, data=body, headers=auth, timeout=10)
        assert answer.status_code == 400, (what, answer.status_code, answer.text)
        assert answer.json()["error"].startswith("not a recording this dashboard plays"), what
    too_big = whole + b"\x00" * (limit - len(whole) + 2)
    assert requests.put(url, data=too_big, headers=auth, timeout=10).status_code == 413
    chunked = requests.put(url, data=iter([too_big[i:i + 65536] for i in range(0, len(too_big), 65536)]), headers=auth, timeout=10)
    assert chunked.status_code == 413
    assert requests.put(f"{server.url}/api/v1/calls/nobody/recording", data=whole, headers=auth, timeout=10).status_code == 404
    assert server.get("/api/v1/calls/up-1/recording").json()["recorded"] is False  # nothing kept from the refusals
    uploads = Path(server.config["PATTER_DASH_DATA_DIR"]) / "recordings"
    assert [p.name for p in uploads.iterdir()] == []  # no temporary file left behind

    mono = wav_with(tmp_path, recording, "mono.wav", "-c", "1")
    stored = requests.put(url, data=mono, headers=auth, timeout=10)
    assert stored.status_code == 201, stored.text
    assert stored.json()["data"] == {"call_id": "up-1", "bytes": len(mono), "channels": 1, "sample_rate": 16000, "duration": 4.0}
    replaced = requests.put(url, data=whole, headers=auth, timeout=10)
    assert replaced.status_code == 200 and replaced.json()["data"]["channels"] == 2
    assert server.get("/api/v1/calls/up-1/recording").content == whole
    assert len(server.get("/api/v1/calls/up-1/recording/peaks").json()["data"]["channels"]) == 2

    # From the agent's host: DashboardClient delivers the call's events, then the file.
    with DashboardClient(server.url, token=token) as client:
        client.feed("call_start", {"call_id": "CA/remote 1", "caller": "+1555", "callee": "+1666", "started_at": started})
        client.feed("call_end", {"call_id": "CA/remote 1", "ended_at": started + 4})
        assert client.upload_recording("CA/remote 1", str(recording))["bytes"] == len(whole)
        with pytest.raises(RecordingUploadError) as refused:
            client.upload_recording("CA/remote 1", str(tmp_path / "8.wav"), wait_for_call=0.5)
        assert refused.value.status == 400
    assert server.get("/api/v1/call/recording", params={"id": "CA/remote 1"}).content == whole
    with DashboardClient(server.url) as tokenless, pytest.raises(RecordingUploadError) as refused:
        tokenless.upload_recording("CA/remote 1", str(recording), wait_for_call=0.5)
    assert refused.value.status == 401

    # Deleting the call deletes what was said in it, however it is deleted: by id, then by date (retention's way).
    assert len(list(uploads.iterdir())) == 2
    assert requests.delete(f"{server.url}/api/v1/calls/up-1", headers=auth, timeout=10).status_code == 200
    wait_for(lambda: len(list(uploads.iterdir())) == 1)  # removed beside the deletion, off the serving loop
    purged = requests.delete(f"{server.url}/api/v1/calls", params={"before": time.time() + 60}, headers=auth, timeout=10)
    assert purged.status_code == 200 and purged.json()["count"] == 1
    wait_for(lambda: list(uploads.iterdir()) == [])
    assert "Traceback" not in server.logs()


def test_client_uploads_the_recording_patter_names_at_call_end(live_server: Any, tmp_path: Path, recording: Path) -> None:
    """``patter_callbacks(upload_recordings=True)``: Patter's on_call_end hands the path; the client sends the file."""
    import asyncio

    server = live_server(PATTER_DASH_TOKEN="callback-token-123456")
    with DashboardClient(server.url, token="callback-token-123456") as client:
        callbacks = client.patter_callbacks(upload_recordings=True)
        started = time.time() - 5
        asyncio.run(callbacks["on_call_start"]({"call_id": "cb-1", "caller": "+1", "callee": "+2", "started_at": started}))
        asyncio.run(callbacks["on_call_end"]({"call_id": "cb-1", "ended_at": started + 4, "recording_path": str(recording)}))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and server.get("/api/v1/calls/cb-1/recording").status_code != 200:
            time.sleep(0.1)
    assert server.get("/api/v1/calls/cb-1/recording").content == recording.read_bytes()
