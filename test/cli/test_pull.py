#!/usr/bin/env python3
"""`r1 pull` against a fake Hugging Face hub, a fake "CDN" on another port and a
fake Ollama registry, all http.server instances on 127.0.0.1 in this process
(no network).  The repository served is the demo model (bin/r1 demo-model) and
its Q8_0 GGUF, so a pulled model must also generate.  TAP output for prove."""
import hashlib
import json
import os
import pty
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, unquote

R1 = os.environ.get("R1", "bin/r1")
FIX = os.environ.get("R1_FIXTURES", "test/fixtures")
TOK = f"{FIX}/tokenizer"
TOKEN = "hf_test_token"
n = 0
failed = 0


def ok(cond, name, info=""):
    global n, failed
    n += 1
    if not cond:
        failed += 1
    print(f"{'' if cond else 'not '}ok {n} - {name}")
    if not cond and info:
        for line in str(info).splitlines()[:20]:
            print(f"#   {line}")
    sys.stdout.flush()
    return cond


tmp = tempfile.mkdtemp(prefix="r1-pull-")

# ---------- the fixture repository ----------
demo = os.path.join(tmp, "demo")
subprocess.run([R1, "demo-model", "--out", demo, "--tokenizer", TOK], check=True, capture_output=True)
gguf = os.path.join(tmp, "demo-q8_0.gguf")
subprocess.run([R1, "convert", "--model", demo, "--out", gguf, "--type", "q8_0"], check=True, capture_output=True)


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def git_sha1(b):
    return hashlib.sha1(b"blob %d\0" % len(b) + b).hexdigest()


def read(p):
    with open(p, "rb") as f:
        return f.read()


COMMIT = hashlib.sha1(b"r1-tiny commit").hexdigest()
LFS = {"model.safetensors", "r1-tiny-q8_0.gguf", "original/consolidated.safetensors"}
REPO_FILES = {
    ".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
    "README.md": b"# R1-Tiny\nA test repository.\n",
    "config.json": read(f"{demo}/config.json"),
    "tokenizer.json": read(f"{demo}/tokenizer.json"),
    "tokenizer_config.json": read(f"{demo}/tokenizer_config.json"),
    "model.safetensors": read(f"{demo}/model.safetensors"),
    "r1-tiny-q8_0.gguf": read(gguf),
    "original/consolidated.safetensors": b"not needed by r1" * 10,
}


def shard(st, parts=2):
    """a safetensors file split as transformers splits large checkpoints: shards and an index"""
    hlen = int.from_bytes(st[:8], "little")
    hdr = json.loads(st[8:8 + hlen])
    hdr.pop("__metadata__", None)
    names = sorted(hdr, key=lambda k: hdr[k]["data_offsets"][0])
    files, index = {}, {"metadata": {"total_size": len(st) - 8 - hlen}, "weight_map": {}}
    for i in range(parts):
        fname = f"model-{i + 1:05d}-of-{parts:05d}.safetensors"
        h, data = {}, b""
        for k in names[i * len(names) // parts:(i + 1) * len(names) // parts]:
            b, e = hdr[k]["data_offsets"]
            h[k] = dict(hdr[k], data_offsets=[len(data), len(data) + e - b])
            data += st[8 + hlen + b:8 + hlen + e]
            index["weight_map"][k] = fname
        hj = json.dumps(h).encode()
        hj += b" " * (-len(hj) % 8)
        files[fname] = len(hj).to_bytes(8, "little") + hj + data
    files["model.safetensors.index.json"] = json.dumps(index).encode()
    return files


SHARDED_FILES = {k: v for k, v in REPO_FILES.items() if k != "model.safetensors"}
SHARDED_FILES.update(shard(REPO_FILES["model.safetensors"]))
LFS |= {k for k in SHARDED_FILES if k.endswith(".safetensors")}
REPOS = {"deepseek-ai/R1-Tiny": REPO_FILES, "deepseek-ai/R1-Gated": REPO_FILES, "deepseek-ai/R1-Sharded": SHARDED_FILES}
BLOBS = {sha256(b): b for files in REPOS.values() for b in files.values()}   # the CDN's store, by sha256

# Ollama: the GGUF as the model layer, and the small layers Ollama keeps beside it
OLLAMA_LAYERS = [
    ("application/vnd.ollama.image.model", REPO_FILES["r1-tiny-q8_0.gguf"]),
    ("application/vnd.ollama.image.template", b"{{ .System }}<\xef\xbd\x9cUser\xef\xbd\x9c>{{ .Prompt }}"),
    ("application/vnd.ollama.image.license", b"MIT License"),
    ("application/vnd.ollama.image.params", b'{"stop":["<\xef\xbd\x9cend\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>"]}'),
]
OLLAMA_CONFIG = json.dumps({"model_format": "gguf", "model_family": "qwen2"}).encode()
for _, b in OLLAMA_LAYERS:
    BLOBS[sha256(b)] = b
BLOBS[sha256(OLLAMA_CONFIG)] = OLLAMA_CONFIG
MANIFEST = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
    "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
               "digest": "sha256:" + sha256(OLLAMA_CONFIG), "size": len(OLLAMA_CONFIG)},
    "layers": [{"mediaType": m, "digest": "sha256:" + sha256(b), "size": len(b)} for m, b in OLLAMA_LAYERS],
}).encode()


def sibling(name, b):
    s = {"rfilename": name, "size": len(b), "blobId": git_sha1(b)}
    if name in LFS:
        s["lfs"] = {"sha256": sha256(b), "size": len(b), "pointerSize": 134}
    return s


# ---------- the servers ----------
log = []            # (server, method, path, headers)
faults = {}         # sha256 -> "cut" | "short" | "corrupt" | "stall"; "ignore_range" -> True
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server_name = "?"

    def log_message(self, *a):
        pass

    def record(self):
        with lock:
            log.append((self.server_name, self.command, self.path, dict(self.headers)))

    def reply(self, code, body=b"", ctype="application/json", headers=None):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def error(self, code, msg, code_name=None):
        self.reply(code, json.dumps({"error": msg}).encode(), headers={"X-Error-Code": code_name} if code_name else None)

    def send_blob(self, data, fault=None):
        """data with Range support and the injected faults"""
        start = 0
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes=") and not faults.get("ignore_range"):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                return self.reply(416, b"")
        body = data[start:]
        if fault == "corrupt":
            body = bytearray(body)
            body[len(body) // 2] ^= 0x01
            body = bytes(body)
        if fault == "short":
            body = body[:1000]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if fault == "cut":
            self.wfile.write(body[:200000])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if fault == "stall":
            self.wfile.write(body[:5000])
            self.wfile.flush()
            time.sleep(6)
            self.close_connection = True
            return
        self.wfile.write(body)


class Cdn(Handler):
    server_name = "cdn"

    def do_GET(self):
        self.record()
        path = urlsplit(self.path).path
        if path.startswith("/lfs/") and path[5:] in BLOBS:
            return self.send_blob(BLOBS[path[5:]], faults.get(path[5:]))
        self.error(404, "no such blob")


class Hub(Handler):
    server_name = "hub"
    cdn_port = 0

    def authorised(self, repo):
        if repo != "deepseek-ai/R1-Gated":
            return True
        return self.headers.get("Authorization") == f"Bearer {TOKEN}"

    def do_GET(self):
        self.record()
        u = urlsplit(self.path)
        parts = [unquote(p) for p in u.path.split("/")[1:]]
        # /api/models/{org}/{name}/revision/{rev}
        if len(parts) == 6 and parts[:2] == ["api", "models"] and parts[4] == "revision":
            repo, rev = f"{parts[2]}/{parts[3]}", parts[5]
            if repo not in REPOS:
                return self.error(401 if "Authorization" not in self.headers else 404,
                                  "Repository not found", "RepoNotFound")
            if not self.authorised(repo):
                return self.error(401 if "Authorization" not in self.headers else 403,
                                  f"Access to model {repo} is restricted.", "GatedRepo")
            if rev not in ("main", COMMIT):
                return self.error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            sib = [sibling(k, v) for k, v in REPOS[repo].items()]
            if "blobs=true" not in (u.query or ""):
                sib = [{"rfilename": s["rfilename"]} for s in sib]
            return self.reply(200, json.dumps({"id": repo, "sha": COMMIT, "siblings": sib}).encode())
        # /{org}/{name}/resolve/{rev}/{file...}
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, rev, name = f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:])
            if repo not in REPOS or rev not in ("main", COMMIT):
                return self.error(404, "not found", "RepoNotFound")
            if not self.authorised(repo):
                return self.error(401, "restricted", "GatedRepo")
            if name not in REPOS[repo]:
                return self.error(404, "Entry not found", "EntryNotFound")
            data = REPOS[repo][name]
            if name in LFS:
                # weights to the CDN on another port; the GGUF by a relative Location
                loc = f"/lfs-local/{sha256(data)}" if name.endswith(".gguf") else \
                    f"http://127.0.0.1:{Hub.cdn_port}/lfs/{sha256(data)}"
                return self.reply(302, b"", headers={"Location": loc, "X-Linked-Size": str(len(data))})
            return self.send_blob(data, faults.get(sha256(data)))
        if len(parts) == 2 and parts[0] == "lfs-local" and parts[1] in BLOBS:
            return self.send_blob(BLOBS[parts[1]], faults.get(parts[1]))
        self.error(404, "not found")


class Registry(Handler):
    server_name = "registry"

    def do_GET(self):
        self.record()
        parts = urlsplit(self.path).path.split("/")[1:]
        # /v2/{ns}/{name}/manifests/{tag}, /v2/{ns}/{name}/blobs/{digest}
        if len(parts) == 5 and parts[0] == "v2" and f"{parts[1]}/{parts[2]}" in ("library/r1-tiny", "someuser/r1-tiny"):
            if parts[3] == "manifests" and parts[4] in ("latest", "q8_0"):
                return self.reply(200, MANIFEST, "application/vnd.docker.distribution.manifest.v2+json")
            if parts[3] == "blobs" and parts[4].startswith("sha256:") and parts[4][7:] in BLOBS:
                return self.reply(307, b"", headers={"Location": f"http://127.0.0.1:{Hub.cdn_port}/lfs/{parts[4][7:]}"})
        self.reply(404, json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}).encode())


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass            # a client that hangs up on purpose (a refused blob) is no error here


def serve(cls):
    s = Server(("127.0.0.1", 0), cls)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


cdn, hub, registry = serve(Cdn), serve(Hub), serve(Registry)
Hub.cdn_port = cdn.server_address[1]
HUB = f"http://127.0.0.1:{hub.server_address[1]}"

ENV = {k: v for k, v in os.environ.items()
       if not k.startswith(("HF_", "HUGGING", "OLLAMA", "R1_OLLAMA")) and "proxy" not in k.lower()}
ENV.update(HF_ENDPOINT=HUB, HF_HOME=os.path.join(tmp, "hf"), R1_PULL_STALL_S="2",
           R1_OLLAMA_REGISTRY=f"http://127.0.0.1:{registry.server_address[1]}",
           OLLAMA_MODELS=os.path.join(tmp, "ollama"))


def pull(*args, env=None):
    """rc, stdout, stderr lines, the JSON lines of stderr, the requests the servers saw"""
    with lock:
        log.clear()
    e = dict(ENV)
    e.update(env or {})
    p = subprocess.run([R1, "pull", *args], capture_output=True, env=e, timeout=120)
    err = p.stderr.decode("utf-8", "replace").strip().splitlines()
    js = []
    for line in err:
        try:
            js.append(json.loads(line))
        except ValueError:
            pass
    with lock:
        seen = list(log)
    return p.returncode, p.stdout.decode().strip(), err, js, seen


def generate(model):
    p = subprocess.run([R1, "generate", "--model", model, "--prompt", "What is 6*7?", "--device", "cpu"],
                       capture_output=True, timeout=300)
    try:
        return json.loads(p.stdout)
    except ValueError:
        return {"stderr": p.stderr.decode()}


def file_requests(seen):
    return [s for s in seen if "/resolve/" in s[2] or s[0] == "cdn" or "/blobs/" in s[2] or "/lfs" in s[2]]


REPODIR = os.path.join(tmp, "hf", "hub", "models--deepseek-ai--R1-Tiny")
SNAP = os.path.join(REPODIR, "snapshots", COMMIT)
MODEL_SHA = sha256(REPO_FILES["model.safetensors"])

# ---------- Hugging Face: a first pull ----------
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny")
ok(rc == 0 and out.splitlines()[-1] == SNAP, "pull prints the snapshot directory", (rc, out, err[-3:]))
ok(sorted(os.listdir(SNAP)) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"],
   "only what r1 needs: config, tokenizer files, top-level safetensors", os.listdir(SNAP) if os.path.isdir(SNAP) else None)
ok(all(os.path.islink(os.path.join(SNAP, f)) for f in os.listdir(SNAP)) and
   os.readlink(os.path.join(SNAP, "model.safetensors")) == f"../../blobs/{MODEL_SHA}" and
   os.readlink(os.path.join(SNAP, "config.json")) == f"../../blobs/{git_sha1(REPO_FILES['config.json'])}",
   "huggingface_hub's layout: snapshot links to blobs named by sha256 / git blob id")
ok(read(os.path.join(REPODIR, "refs", "main")).decode() == COMMIT, "refs/main holds the commit")
ok(all(read(os.path.join(SNAP, f)) == REPO_FILES[f] for f in os.listdir(SNAP)), "every file has the served content")
ok(sorted((j["file"], j["status"], j["sha256"], j["bytes"]) for j in js) ==
   sorted((f, "downloaded", sha256(REPO_FILES[f]), len(REPO_FILES[f])) for f in os.listdir(SNAP)),
   "one JSON line per file on stderr (file, bytes, sha256, status)", err)
ok(any(s[0] == "cdn" and s[2] == f"/lfs/{MODEL_SHA}" for s in seen), "the weights came through the redirect to the CDN")
ok(any("revision/main" in s[2] and "blobs=true" in s[2] for s in seen), "the model-info API asked with ?blobs=true")
ok(not [f for f in os.listdir(os.path.join(REPODIR, "blobs")) if f.endswith(".incomplete")], "no .incomplete left")
g = generate(out.splitlines()[-1] if out else SNAP)
ok(g.get("boxed") == "42" and g.get("finish_reason") == "stop", "r1 generate runs the pulled directory", g)

# a second pull: the API only, no file transferred
t0 = time.time()
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny")
ok(rc == 0 and out == SNAP and not file_requests(seen) and len(seen) == 1, "a second pull downloads nothing",
   (rc, out, seen))
ok(js and all(j["status"] == "cached" for j in js) and len(js) == 4, "... and says cached for every file", err)
ok(time.time() - t0 < 5, f"... at once ({time.time() - t0:.2f} s)")
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", env={"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"})
ok(rc == 0 and out == SNAP and not seen, "HF_HUB_OFFLINE=1: the cached snapshot, no request", (rc, out, err))
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", env={"HF_ENDPOINT": "http://127.0.0.1:9"})
ok(rc == 0 and out == SNAP and any("cached snapshot" in e for e in err), "hub unreachable: the cached snapshot, said so",
   (rc, out, err))
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", "--revision", COMMIT)
ok(rc == 0 and out == SNAP and not file_requests(seen), "--revision COMMIT: the same snapshot, nothing downloaded",
   (rc, out, err))

# a sharded checkpoint: every shard and the index; offline, the index must find every shard
rc, out, err, js, seen = pull("deepseek-ai/R1-Sharded")
ok(rc == 0 and sorted(os.listdir(out)) == sorted(["config.json", "tokenizer.json", "tokenizer_config.json",
                                                 "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                                                 "model-00002-of-00002.safetensors"]),
   "a sharded checkpoint: the shards and their index", (rc, err[-2:], os.listdir(out) if rc == 0 else None))
g = generate(out)
ok(g.get("boxed") == "42", "r1 generate runs the pulled shards", g)
os.unlink(os.path.join(out, "model-00002-of-00002.safetensors"))
rc, out2, err, js, seen = pull("deepseek-ai/R1-Sharded", env={"HF_HUB_OFFLINE": "1"})
ok(rc != 0 and "HF_HUB_OFFLINE" in err[-1] and "model-00002-of-00002.safetensors is missing" in err[-1],
   "offline, a snapshot missing a shard is refused", err)
rc, out2, err, js, seen = pull("deepseek-ai/R1-Sharded")
ok(rc == 0 and out2 == out and len(file_requests(seen)) == 0 and
   os.path.isfile(os.path.join(out, "model-00002-of-00002.safetensors")),
   "online, the missing link is made again from the cached blob", (rc, err[-2:], seen))
rc, out2, err, js, seen = pull("deepseek-ai/R1-Tiny", "--dir", os.path.join(tmp, "empty"), env={"HF_HUB_OFFLINE": "1"})
ok(rc != 0 and "not in the cache" in err[-1] and not seen, "offline, nothing cached: said so", err)

# --include: one GGUF file (its redirect is a relative Location)
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", "--include", "*.gguf")
ok(rc == 0 and out == os.path.join(SNAP, "r1-tiny-q8_0.gguf"), "--include '*.gguf' prints the GGUF file", (rc, out, err))
ok(any(s[2].startswith("/lfs-local/") for s in seen) and [j["file"] for j in js] == ["r1-tiny-q8_0.gguf"],
   "a relative redirect is followed; only the matching file is pulled", (seen, js))
g = generate(out)
ok(g.get("boxed") == "42", "r1 generate runs the pulled GGUF", g)
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", "--include", "*.bin")
ok(rc != 0 and "no file matches" in err[-1] and out == "", "--include that matches nothing", err)


def cache(name):
    d = os.path.join(tmp, name)
    blobs = os.path.join(d, "models--deepseek-ai--R1-Tiny", "blobs")
    return d, blobs, os.path.join(blobs, MODEL_SHA), os.path.join(d, "models--deepseek-ai--R1-Tiny", "snapshots", COMMIT)


# ---------- an interrupted transfer, resumed with a Range request ----------
d, blobs, blob, snap = cache("c-resume")
faults[MODEL_SHA] = "cut"
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", "--dir", d)
ok(rc != 0 and "interrupted" in err[-1] and "resume" in err[-1] and out == "", "a cut connection is a clear error",
   err[-1:])
ok(os.path.getsize(blob + ".incomplete") == 200000 and not os.path.exists(blob) and
   not os.path.exists(os.path.join(snap, "model.safetensors")), "... the bytes so far stay in .incomplete, no final file")
ok(not os.path.exists(os.path.join(d, "models--deepseek-ai--R1-Tiny", "refs", "main")), "... and no ref")
del faults[MODEL_SHA]
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", "--dir", d)
ranges = [s[3].get("Range") for s in seen if s[0] == "cdn"]
ok(rc == 0 and out == snap and ranges == ["bytes=200000-"], "the next pull resumes with Range: bytes=200000-",
   (rc, err[-1:], ranges))
ok(read(blob) == REPO_FILES["model.safetensors"] and not os.path.exists(blob + ".incomplete") and
   [j["status"] for j in js if j["file"] == "model.safetensors"] == ["resumed"], "... verified, renamed, status resumed")

# a truncated response (a clean close, fewer bytes than the size); a server that ignores Range
d, blobs, blob, snap = cache("c-short")
faults[MODEL_SHA] = "short"
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", "--dir", d)
ok(rc != 0 and "truncated" in err[-1] and os.path.getsize(blob + ".incomplete") == 1000 and not os.path.exists(blob),
   "a truncated response is an error; .incomplete kept for a resume", err[-1:])
del faults[MODEL_SHA]
faults["ignore_range"] = True
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", "--dir", d)
del faults["ignore_range"]
ok(rc == 0 and read(blob) == REPO_FILES["model.safetensors"] and
   [j["status"] for j in js if j["file"] == "model.safetensors"] == ["downloaded"],
   "a 200 to a Range request starts the file again from zero", (rc, err[-2:]))

# a stalled server
d, blobs, blob, snap = cache("c-stall")
faults[MODEL_SHA] = "stall"
t0 = time.time()
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", "--dir", d)
del faults[MODEL_SHA]
ok(rc != 0 and time.time() - t0 < 30 and "resume" in err[-1] and not os.path.exists(blob),
   f"a stalled transfer is dropped (R1_PULL_STALL_S=2, {time.time() - t0:.1f} s)", err[-1:])

# ---------- corrupted content ----------
d, blobs, blob, snap = cache("c-corrupt")
faults[MODEL_SHA] = "corrupt"
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", "--dir", d)
del faults[MODEL_SHA]
ok(rc != 0 and "checksum mismatch" in err[-1] and MODEL_SHA in err[-1], "a corrupted blob is refused", err[-1:])
ok(not os.path.exists(blob) and not os.path.exists(blob + ".incomplete") and
   not os.path.lexists(os.path.join(snap, "model.safetensors")), "... nothing kept under any name")
d, blobs, blob, snap = cache("c-corrupt-small")
faults[sha256(REPO_FILES["tokenizer_config.json"])] = "corrupt"
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", "--dir", d)
faults.clear()
ok(rc != 0 and "git blob sha1" in err[-1] and "tokenizer_config.json" in err[-1],
   "a small (non-LFS) file is checked against its git blob id", err[-1:])

# ---------- a full disk ----------
if os.path.exists("/dev/full"):
    d, blobs, blob, snap = cache("c-full")
    os.makedirs(blobs)
    os.symlink("/dev/full", blob + ".incomplete")
    rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", "--dir", d)
    ok(rc != 0 and "disk full" in err[-1] and not os.path.exists(blob), "a full disk (ENOSPC) is said so", err[-1:])
else:
    ok(True, "no /dev/full: full-disk test skipped")

# ---------- gated repositories, missing ones ----------
rc, out, err, js, seen = pull("deepseek-ai/R1-Gated")
ok(rc != 0 and "401" in err[-1] and "set HF_TOKEN" in err[-1] and len(err) == 1, "gated without a token: 401, set HF_TOKEN",
   err)
rc, out, err, js, seen = pull("deepseek-ai/R1-Gated", env={"HF_TOKEN": "hf_wrong"})
ok(rc != 0 and "403" in err[-1] and "no access" in err[-1], "a token without access: 403", err)
rc, out, err, js, seen = pull("deepseek-ai/R1-Gated", env={"HF_TOKEN": TOKEN})
ok(rc == 0 and out.endswith(COMMIT) and os.path.isfile(os.path.join(out, "model.safetensors")),
   "HF_TOKEN opens the gated repository", (rc, err[-2:]))
ok(all(s[3].get("Authorization") == f"Bearer {TOKEN}" for s in seen if s[0] == "hub") and
   all("Authorization" not in s[3] for s in seen if s[0] == "cdn") and any(s[0] == "cdn" for s in seen),
   "the token goes to the hub, never to the CDN it redirects to")
os.makedirs(os.path.join(tmp, "hf"), exist_ok=True)
with open(os.path.join(tmp, "hf", "token"), "w") as f:
    f.write(TOKEN + "\n")
rc, out, err, js, seen = pull("deepseek-ai/R1-Gated", "--dir", os.path.join(tmp, "c-tokenfile"))
ok(rc == 0, "the token file of huggingface-cli login ($HF_HOME/token) is read too", err[-2:])
os.unlink(os.path.join(tmp, "hf", "token"))
rc, out, err, js, seen = pull("deepseek-ai/No-Such-Model", env={"HF_TOKEN": TOKEN})
ok(rc != 0 and "not found" in err[-1] and "404" in err[-1] and len(err) == 1, "404: repository not found", err)
rc, out, err, js, seen = pull("deepseek-ai/R1-Tiny", "--revision", "v9")
ok(rc != 0 and "revision \"v9\" not found" in err[-1], "404: revision not found", err)
rc, out, err, js, seen = pull("not a repo")
ok(rc != 0 and "repository name" in err[-1], "a bad name", err)
p = subprocess.run([R1, "pull"], capture_output=True, env=ENV)
ok(p.returncode == 2 and b"ORG/NAME" in p.stderr, "pull without a model: usage error", p.stderr)

# ---------- Ollama ----------
OLL = os.path.join(tmp, "ollama")
model_hex = sha256(OLLAMA_LAYERS[0][1])
rc, out, err, js, seen = pull("ollama:r1-tiny")
ok(rc == 0 and out == os.path.join(OLL, "blobs", f"sha256-{model_hex}"), "ollama: prints the model blob", (rc, out, err))
man = os.path.join(OLL, "manifests", f"127.0.0.1:{registry.server_address[1]}", "library", "r1-tiny", "latest")
ok(os.path.isfile(man) and read(man) == MANIFEST, "... the manifest in Ollama's layout")
ok(sorted(os.listdir(os.path.join(OLL, "blobs"))) ==
   sorted(f"sha256-{sha256(b)}" for b in [b for _, b in OLLAMA_LAYERS] + [OLLAMA_CONFIG]),
   "... every layer and the config as sha256-<hex> blobs", os.listdir(os.path.join(OLL, "blobs")))
ok(any(s[0] == "registry" and s[3].get("Accept") == "application/vnd.docker.distribution.manifest.v2+json" for s in seen)
   and any(s[0] == "cdn" and s[2] == f"/lfs/{model_hex}" for s in seen), "... manifest with the v2 Accept, blob by redirect")
ok({j.get("layer") for j in js} == {"model", "template", "license", "params", "config"}, "... one JSON line per blob", js)
g = generate(out)
ok(g.get("boxed") == "42" and g.get("finish_reason") == "stop", "r1 generate runs the pulled Ollama blob", g)
rc, out2, err, js, seen = pull("ollama:r1-tiny:latest")
ok(rc == 0 and out2 == out and not file_requests(seen), "ollama: a second pull downloads nothing", seen)
rc, out, err, js, seen = pull("ollama:someuser/r1-tiny:q8_0", "--dir", os.path.join(tmp, "ollama2"))
ok(rc == 0 and out.endswith(f"sha256-{model_hex}") and any("/v2/someuser/r1-tiny/manifests/q8_0" in s[2] for s in seen),
   "ollama: a namespaced name and a tag", (rc, err[-2:]))
rc, out, err, js, seen = pull("ollama:no-such-model:7b")
ok(rc != 0 and "no such model or tag" in err[-1] and "404" in err[-1], "ollama: 404", err)
faults[model_hex] = "corrupt"
rc, out, err, js, seen = pull("ollama:r1-tiny", "--dir", os.path.join(tmp, "ollama3"))
faults.clear()
ok(rc != 0 and "checksum mismatch" in err[-1] and
   not os.path.exists(os.path.join(tmp, "ollama3", "blobs", f"sha256-{model_hex}")) and
   not os.path.exists(os.path.join(tmp, "ollama3", "manifests")), "ollama: a corrupted blob is refused, no manifest", err[-1:])

# ---------- a progress bar on a terminal ----------
master, slave = pty.openpty()
p = subprocess.Popen([R1, "pull", "deepseek-ai/R1-Tiny", "--dir", os.path.join(tmp, "c-tty")], stdout=subprocess.PIPE,
                     stderr=slave, env=ENV)
os.close(slave)
tty = b""
while True:
    r, _, _ = select.select([master], [], [], 60)
    if not r:
        break
    try:
        chunk = os.read(master, 65536)
    except OSError:
        break
    if not chunk:
        break
    tty += chunk
p.wait(timeout=60)
os.close(master)
tty = tty.decode("utf-8", "replace")
ok(p.returncode == 0 and "model.safetensors" in tty and "/s" in tty and "done in" in tty and '"status"' not in tty,
   "on a terminal: a progress line (bytes, rate, ETA) instead of JSON", tty[-400:])

for s in (cdn, hub, registry):
    s.shutdown()
shutil.rmtree(tmp)
print(f"1..{n}")
sys.exit(1 if failed else 0)
