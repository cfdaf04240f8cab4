"""``python -m remaster submit``: queue an API workflow on a running ComfyUI and follow it.

One prompt id per video, however long (the stream is chunked inside the nodes, never by
re-queueing). Progress comes from ComfyUI's ``/ws``; an ``execution_error`` is reported with the
node that failed; the saved files come from the websocket's ``executed`` messages and the
``/history`` entry (waited for: it can be written after ``execution_success``).
"""
from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path


class ServerError(Exception):
    """The server could not be reached or the run failed there (one line, for the CLI)."""


def submit_prompt(prompt: dict, server: str, timeout: float, quiet: bool = False) -> list[str]:
    """Queue ``prompt`` on the ComfyUI at ``server``, follow it, return the saved files as
    ``subfolder/filename`` (what ``/view`` serves). Raises :class:`~.runner.WorkflowError` when
    the server refuses the graph, :class:`ServerError` when it cannot be reached or the run fails."""
    import aiohttp

    try:
        return asyncio.run(_submit(prompt, server.rstrip("/"), timeout, quiet))
    except aiohttp.ClientConnectorError:
        from .cli import UsageError

        raise UsageError(f"cannot reach a ComfyUI server at {server}: start it, or pass --server URL") from None
    except aiohttp.ClientError as exc:
        raise ServerError(f"the connection to {server} failed: {exc.__class__.__name__}: {exc}") from None


def fetch_view(server: str, name: str, dest: str | Path) -> Path:
    """Download an output file (``subfolder/filename``) through ComfyUI's ``/view`` to ``dest``
    (written under a temp name, then renamed)."""
    import os
    import urllib.parse
    import urllib.request

    sub, _, filename = str(name).rpartition("/")
    q = urllib.parse.urlencode({"filename": filename, "subfolder": sub, "type": "output"})
    dest = Path(dest)
    tmp = dest.with_name(f".part-{uuid.uuid4().hex[:8]}-{dest.name}")
    try:
        with urllib.request.urlopen(f"{server.rstrip('/')}/view?{q}", timeout=600) as r, open(tmp, "wb") as f:
            while True:
                b = r.read(1 << 20)
                if not b:
                    break
                f.write(b)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def submit(args) -> int:
    from . import runner

    prompt = runner.load_workflow(args.workflow)
    prompt = runner.apply_overrides(prompt, args.set, args.input, args.output)
    for p in submit_prompt(prompt, args.server, args.timeout):
        print(p)
    return 0


def _ws_url(server: str, client_id: str) -> str:
    if server.startswith("https://"):
        return "wss://" + server[len("https://"):] + f"/ws?clientId={client_id}"
    return "ws://" + server.split("://", 1)[-1] + f"/ws?clientId={client_id}"


def _files(outputs: dict) -> list[str]:
    names = []
    for out in (outputs or {}).values():
        for v in (out.get("videos") or []) + (out.get("gifs") or []):
            sub = v.get("subfolder", "")
            name = str(Path(sub) / v["filename"]) if sub else v["filename"]
            if name not in names:
                names.append(name)
    return names


async def _submit(prompt: dict, server: str, timeout: float, quiet: bool = False) -> list[str]:
    import aiohttp
    from .runner import WorkflowError

    client_id = uuid.uuid4().hex
    executed: dict = {}
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(_ws_url(server, client_id), heartbeat=30) as ws:
            async with session.post(f"{server}/prompt", json={"prompt": prompt, "client_id": client_id}) as r:
                body = await r.json(content_type=None)
                if r.status != 200 or "prompt_id" not in body:
                    raise WorkflowError(f"the server refused the workflow: {_describe_refusal(body)}")
            prompt_id = body["prompt_id"]
            if not quiet:
                print(f"prompt_id {prompt_id}", file=sys.stderr)
            await _follow(ws, prompt_id, prompt, timeout, executed, quiet)
        # ComfyUI 0.3.64 can send execution_success before /history holds the outputs: the
        # websocket's `executed` messages are the first source, the history entry is waited for
        files = _files(executed)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (2.0 if files else 30.0)
        while True:
            async with session.get(f"{server}/history/{prompt_id}") as r:
                hist = (await r.json(content_type=None) or {}).get(prompt_id) or {}
            for f in _files(hist.get("outputs") or {}):
                if f not in files:
                    files.append(f)
            if hist.get("outputs") or loop.time() > deadline:
                break
            await asyncio.sleep(0.2)
    if not files:
        raise ServerError(f"prompt {prompt_id} finished but reported no saved video (is there a Save Video node?)")
    return files


def _describe_refusal(body) -> str:
    if not isinstance(body, dict):
        return str(body)
    parts = []
    err = body.get("error")
    if isinstance(err, dict):
        parts.append(err.get("message", "") + (": " + err.get("details", "") if err.get("details") else ""))
    for nid, ne in (body.get("node_errors") or {}).items():
        for e in ne.get("errors", []):
            parts.append(f"node {nid} ({ne.get('class_type', '')}): {e.get('message', '')} {e.get('details', '')}".strip())
    return "; ".join(p for p in parts if p) or json.dumps(body)


async def _follow(ws, prompt_id: str, prompt: dict, timeout: float, executed: dict, quiet: bool = False) -> None:
    import aiohttp

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    current = None
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise ServerError(f"no result after {timeout:.0f}s (prompt {prompt_id} may still be running)")
        try:
            msg = await asyncio.wait_for(ws.receive(), timeout=left)
        except asyncio.TimeoutError:
            continue
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            raise ServerError("the websocket to the server closed before the run ended (did the server stop?)")
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue  # binary previews
        data = json.loads(msg.data)
        kind, d = data.get("type"), data.get("data", {})
        if d.get("prompt_id") not in (None, prompt_id):
            continue
        if kind == "executing":
            node = d.get("node")
            if node is None:
                return
            current = node
        elif kind == "executed" and d.get("node") is not None:
            executed[str(d["node"])] = d.get("output") or {}
        elif kind == "progress" and not quiet:
            title = ((prompt.get(current) or {}).get("_meta") or {}).get("title") or current
            print(f"\r{title}: {d.get('value')}/{d.get('max')}   ", file=sys.stderr, end="")
        elif kind == "execution_error":
            raise ServerError(
                f"node {d.get('node_id')} ({d.get('node_type')}) failed on the server: "
                f"{d.get('exception_type', '')}: {str(d.get('exception_message', '')).strip()}".replace("\n", " "))
        elif kind == "execution_interrupted":
            raise ServerError("the run was interrupted on the server")
        elif kind == "execution_success":
            if not quiet:
                print("", file=sys.stderr)
            return
