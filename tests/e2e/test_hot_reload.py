"""Hot reload under load. The plugins that every request passes through and that can fail it —
auth, routing, billing, the OpenAI and Anthropic transforms — are replaced on disk again and again
by atomic renames while four threads send requests (streaming and not, both providers). Not one
request may fail, and the gateway must really have switched versions, as /admin/plugins shows.

The registry ignores a file whose content hash is already active, so each plugin alternates
between its built file and the same bytes with a wasm custom section appended: a different hash,
the same behaviour (a custom section is valid at the end of a component and means nothing to it).
"""

import hashlib
import os
import threading
import time

from helpers import EXPECTED, MESSAGES, client

SWAPPED = ["auth-apikey", "route-policy", "billing-credits", "provider-openai", "provider-anthropic"]
SWAPS = 20
SWAP_EVERY_S = 0.3
# (model, stream) per load thread: every swapped plugin is on the path of every request, and
# each transform is exercised whole-response and event by event.
LOAD = [("gpt-mock", False), ("gpt-mock", True), ("claude-mock", False), ("claude-mock", True)]


def leb128(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def with_custom_section(wasm: bytes, name: str, payload: bytes) -> bytes:
    """`wasm` plus a custom section (id 0, size, name length, name, payload) at its end."""
    assert wasm[:4] == b"\0asm", "not a wasm binary"
    content = leb128(len(name.encode())) + name.encode() + payload
    return wasm + b"\x00" + leb128(len(content)) + content


def test_custom_section_encoding():
    assert leb128(0) == b"\x00" and leb128(127) == b"\x7f" and leb128(128) == b"\x80\x01"
    assert leb128(624485) == b"\xe5\x8e\x26"
    out = with_custom_section(b"\0asm\x0d\x00\x01\x00", "ab", b"xyz")
    assert out[8:] == b"\x00\x06\x02abxyz"


def active_versions(gw):
    """name -> (active sha256, last load error) from the admin API."""
    return {p["name"]: ((p["active"] or {}).get("sha256"), p.get("last_error")) for p in gw.admin("/admin/plugins")}


def request_once(c, model, stream):
    if not stream:
        r = c.chat.completions.create(model=model, messages=MESSAGES, max_tokens=64)
        return r.choices[0].message.content
    text = ""
    for chunk in c.chat.completions.create(model=model, messages=MESSAGES, max_tokens=64, stream=True):
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    return text


def test_request_path_plugins_swapped_on_disk_while_requests_flow(gw):
    variants = {}
    for name in SWAPPED:
        original = (gw.plugin_dir / f"{name}.wasm").read_bytes()
        rewritten = with_custom_section(original, "tollgate-e2e-swap", name.encode())
        variants[name] = [original, rewritten]
    sha = {name: [hashlib.sha256(v).hexdigest() for v in vs] for name, vs in variants.items()}
    before = active_versions(gw)
    for name in SWAPPED:
        assert before[name][0] == sha[name][0], f"{name}: the gateway does not run the file on disk"

    done = threading.Event()
    failures, served = [], [0] * len(LOAD)

    def load(i, model, stream):
        c = client(gw)
        while not done.is_set():
            try:
                text = request_once(c, model, stream)
                assert text == EXPECTED, f"{model} stream={stream}: {text!r}"
                served[i] += 1
            except Exception as e:  # noqa: BLE001 - every failure counts
                failures.append(f"{model} stream={stream}: {e!r}")

    # Every version the admin API reports, in order, per plugin; and any load error.
    seen = {name: [before[name][0]] for name in SWAPPED}
    load_errors = []

    def watch():
        while not done.is_set():
            for name, (digest, error) in active_versions(gw).items():
                if name in seen and digest != seen[name][-1]:
                    seen[name].append(digest)
                if name in seen and error:
                    load_errors.append((name, error))
            time.sleep(0.01)

    threads = [threading.Thread(target=load, args=(i, m, s)) for i, (m, s) in enumerate(LOAD)]
    threads.append(threading.Thread(target=watch))
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        for i in range(SWAPS):
            which = (i + 1) % 2  # 1, 0, 1, 0, ...: never the version already active
            for name in SWAPPED:
                tmp = gw.plugin_dir / f".swap-{name}.tmp"
                tmp.write_bytes(variants[name][which])
                os.replace(tmp, gw.plugin_dir / f"{name}.wasm")
            time.sleep(SWAP_EVERY_S)
        # The last rename wins: wait until every plugin runs the file now on disk.
        final = SWAPS % 2
        deadline = time.time() + 30
        while time.time() < deadline:
            if all(seen[name][-1] == sha[name][final] for name in SWAPPED):
                break
            time.sleep(0.05)
        time.sleep(0.5)  # requests keep flowing on the final versions
    finally:
        done.set()
        for t in threads:
            t.join()

    print(f"requests served per thread {served}; version changes seen",
          {name: len(v) - 1 for name, v in seen.items()})
    assert failures == [], f"{len(failures)} failed requests, e.g. {failures[:3]}\n" + log_tail(gw)
    assert all(n > 5 for n in served), f"too few requests served per thread: {served}"
    assert load_errors == [], load_errors[:3]
    for name in SWAPPED:
        changes = len(seen[name]) - 1
        assert changes > 1, f"{name}: {changes} version change(s) observed: {seen[name]}"
        assert set(seen[name]) == set(sha[name]), f"{name}: unexpected versions {seen[name]}"
        assert seen[name][-1] == sha[name][SWAPS % 2], f"{name}: the last file on disk is not active"


def log_tail(gw, lines=30):
    return "gateway log (tail):\n" + "\n".join(gw.log_text().splitlines()[-lines:])
