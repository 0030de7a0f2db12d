"""`efhq models list|verify|fetch`: through a subprocess and in-process on a fresh argparse parser.

Downloads go to a local http.server on 127.0.0.1 (a thread of this test process) and into a tmp
EFHQ_MODEL_DIR; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import http.server
import json
import os
import subprocess
import sys
import threading

import pytest

from efhq_assets.cli_models import add_models_command
from efhq_assets.core.models import registry
from efhq_assets_tests.conftest import REPO

# Models whose weights are user-supplied ("published" upstream, never shipped in a package).
PUBLISHED = [name for name, spec in registry.MANIFEST.items() if not spec.offline]
OFFLINE = [name for name, spec in registry.MANIFEST.items() if spec.offline]


def _efhq_has_models() -> bool:
    from efhq_assets import cli

    parser = cli.make_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return "models" in sub.choices


def efhq_models(*args: str, model_dir, check: bool = True) -> subprocess.CompletedProcess:
    """`efhq models ...` in a subprocess (`python -m efhq_assets.cli_models` until cli.py wires it in)."""
    base = [sys.executable, "-m", "efhq_assets.cli", "models"] if _efhq_has_models() \
        else [sys.executable, "-m", "efhq_assets.cli_models"]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(EFHQ_MODEL_DIR=str(model_dir), NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    proc = subprocess.run(base + list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def run_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    """Build a fresh parser with add_models_command, run the handler, capture its output."""
    parser = argparse.ArgumentParser(prog="efhq")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--data-root")
    sub = parser.add_subparsers(dest="command", required=True)
    add_models_command(sub, common)
    args = parser.parse_args(["models", *argv])
    rc = args.func(args)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture()
def http_server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_list_shows_offline_present_and_published_missing_with_the_fetch_hint(tmp_path):
    model_dir = tmp_path / "models"
    out = efhq_models("list", model_dir=model_dir).stdout
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "KIND", "BACKEND"]
    rows = {line.split()[0]: line for line in lines[2:] if line and not line.startswith(" ") and "  " in line}
    for name in OFFLINE:
        assert "present" in rows[name] and "offline" in rows[name], rows[name]
    for name in PUBLISHED:
        assert "missing" in rows[name] and "user-supplied" in rows[name], rows[name]
        assert str(model_dir / registry.get_spec(name).file) in rows[name]  # where it is looked for
        assert f"  {name}: efhq models fetch {name}" in out  # the hint, in the footer
    assert "efhq models fetch 6drepnet   licence" in out  # direct URL: no --url needed
    assert "efhq models fetch scrfd_10g_bnkps --url <direct link>" in out  # archive: --url and where from
    assert "antelopev2.zip" in out
    assert not model_dir.exists()  # listing creates and downloads nothing

    rows_json = json.loads(efhq_models("list", "--format", "json", model_dir=model_dir).stdout)
    by_name = {r["name"]: r for r in rows_json}
    assert by_name["mtcnn"]["present"] and by_name["mtcnn"]["configured"]
    assert not by_name["6drepnet"]["present"]

    (model_dir).mkdir()
    (model_dir / registry.get_spec("6drepnet").file).write_bytes(b"weights")
    out = efhq_models("list", model_dir=model_dir).stdout
    assert "efhq models fetch 6drepnet   licence" not in out
    assert any(line.startswith("6drepnet ") and "present" in line for line in out.splitlines())


def test_fetch_from_local_http_into_the_model_dir(http_server, tmp_path):
    www, base = http_server
    payload = os.urandom(200_000)
    (www / "6drepnet.pth").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    model_dir = tmp_path / "models"
    proc = efhq_models("fetch", "6drepnet", "--url", f"{base}/6drepnet.pth", "--sha256", digest, model_dir=model_dir)
    result = json.loads(proc.stdout.splitlines()[-1])
    target = model_dir / registry.get_spec("6drepnet").file
    assert result == {"name": "6drepnet", "path": str(target), "sha256": digest, "verified": True, "downloaded": True}
    assert target.read_bytes() == payload
    assert sorted(p.name for p in model_dir.iterdir()) == [target.name]  # no .part left
    assert "downloading 6drepnet" in proc.stderr

    # Asked again: the verified file stays, nothing is downloaded.
    again = efhq_models("fetch", "6drepnet", "--url", f"{base}/6drepnet.pth", "--sha256", digest, model_dir=model_dir)
    assert json.loads(again.stdout.splitlines()[-1])["downloaded"] is False
    # verify now sees it (no checksum pinned in the manifest: presence + its digest)
    out = efhq_models("verify", "6drepnet", model_dir=model_dir).stdout
    assert "6drepnet" in out and digest in out


def test_fetch_with_a_wrong_checksum_fails_and_leaves_no_file(http_server, tmp_path):
    www, base = http_server
    (www / "w.pth").write_bytes(b"not the weights you are looking for")
    model_dir = tmp_path / "models"
    proc = efhq_models("fetch", "6drepnet", "--url", f"{base}/w.pth", "--sha256", "0" * 64, model_dir=model_dir,
                       check=False)
    assert proc.returncode == 1
    assert "checksum mismatch" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert list(model_dir.iterdir()) == []  # neither the file nor a partial download
    # An HTTP error is a clear failure too, and leaves nothing.
    proc = efhq_models("fetch", "6drepnet", "--url", f"{base}/absent.pth", model_dir=model_dir, check=False)
    assert proc.returncode == 1 and "failed" in proc.stderr and "Traceback" not in proc.stderr
    assert list(model_dir.iterdir()) == []


def test_fetch_refusals(tmp_path):
    model_dir = tmp_path / "models"
    proc = efhq_models("fetch", "scrfd_10g_bnkps", model_dir=model_dir, check=False)
    assert proc.returncode == 1 and "--url" in proc.stderr and "by hand" in proc.stderr
    proc = efhq_models("fetch", "mtcnn", model_dir=model_dir, check=False)
    assert proc.returncode == 1 and "ships in the Python package" in proc.stderr
    proc = efhq_models("fetch", "no_such_model", model_dir=model_dir, check=False)
    assert proc.returncode == 2 and "unknown model" in proc.stderr
    assert not model_dir.exists() or list(model_dir.iterdir()) == []


def test_verify_offline_ok_and_missing_named_model_fails(tmp_path):
    model_dir = tmp_path / "models"
    proc = efhq_models("verify", model_dir=model_dir)
    for name in OFFLINE:
        assert f"OK       {name}:" in proc.stdout
    assert "not installed (optional" in proc.stderr
    proc = efhq_models("verify", "6drepnet", model_dir=model_dir, check=False)
    assert proc.returncode == 1
    assert "MISSING  6drepnet" in proc.stdout
    assert "efhq models fetch 6drepnet" in proc.stderr and str(model_dir) in proc.stderr


def test_verify_of_a_corrupted_file_fails(tmp_path, monkeypatch, capsys):
    """A model whose manifest pins a sha256 (here a copy of 6drepnet's spec with one) and a corrupt file."""
    good = os.urandom(50_000)
    spec = registry.get_spec("6drepnet")
    pinned = dataclasses.replace(spec, files=(registry.WeightFile(spec.file, hashlib.sha256(good).hexdigest()),))
    monkeypatch.setitem(registry.MANIFEST, "6drepnet", pinned)
    monkeypatch.setenv("EFHQ_MODEL_DIR", str(tmp_path))
    (tmp_path / spec.file).write_bytes(good[:-1] + b"\0")  # corrupted (same length, last byte changed)
    rc, out, err = run_in_process(["verify", "6drepnet"], capsys)
    assert rc == 1
    assert "FAIL     6drepnet: wrong checksum" in out
    assert "checksum mismatch for model '6drepnet'" in err and "fetch it again" in err
    # `verify` with no names checks every present model, so the corrupt one fails it too.
    rc, out, err = run_in_process(["verify"], capsys)
    assert rc == 1 and "FAIL     6drepnet" in out and "OK       mtcnn" in out
    (tmp_path / spec.file).write_bytes(good)
    rc, out, err = run_in_process(["verify", "6drepnet"], capsys)
    assert rc == 0 and f"OK       6drepnet: {spec.file} sha256 {hashlib.sha256(good).hexdigest()}" in out


def test_in_process_fetch_with_a_pinned_checksum(http_server, tmp_path, monkeypatch, capsys):
    """The manifest's own sha256 and direct URL are used when no --url / --sha256 is given."""
    www, base = http_server
    payload = os.urandom(100_000)
    (www / "w.pth").write_bytes(payload)
    spec = registry.get_spec("6drepnet")
    pinned = dataclasses.replace(spec, url=f"{base}/w.pth",
                                 files=(registry.WeightFile(spec.file, hashlib.sha256(payload).hexdigest()),))
    monkeypatch.setitem(registry.MANIFEST, "6drepnet", pinned)
    monkeypatch.setenv("EFHQ_MODEL_DIR", str(tmp_path / "models"))
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    rc, out, err = run_in_process(["fetch", "6drepnet"], capsys)
    assert rc == 0 and json.loads(out)["verified"] is True
    assert (tmp_path / "models" / spec.file).read_bytes() == payload
    rc, out, err = run_in_process(["verify", "6drepnet"], capsys)
    assert rc == 0 and "OK       6drepnet" in out
    # The server now serves other bytes: --force re-downloads, fails the pinned check and keeps the good file.
    (www / "w.pth").write_bytes(b"tampered")
    rc, out, err = run_in_process(["fetch", "6drepnet", "--force"], capsys)
    assert rc == 1 and "checksum mismatch" in err
    assert (tmp_path / "models" / spec.file).read_bytes() == payload
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [spec.file]


@pytest.mark.parametrize("name", PUBLISHED)
def test_configuring_a_missing_published_backend_fails_with_the_fetch_hint(name, tmp_path, monkeypatch):
    """Before any video is processed: building the backend (or, where no backend is registered yet,
    looking up its weights, which every backend's constructor does first) raises MissingWeightsError
    naming the file, the folder and `efhq models fetch NAME`."""
    monkeypatch.setenv("EFHQ_MODEL_DIR", str(tmp_path / "empty"))
    spec = registry.get_spec(name)
    backend = spec.backend or name
    with pytest.raises(registry.MissingWeightsError) as e:
        if backend in registry.available(spec.kind):
            registry.create(spec.kind, backend)
        else:
            registry.find_weights(name)
    msg = str(e.value)
    assert f"efhq models fetch {name}" in msg
    assert str(tmp_path / "empty") in msg and spec.file.split("/")[-1] in msg
    assert not (tmp_path / "empty").exists()  # nothing created, nothing downloaded
