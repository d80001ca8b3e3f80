#!/usr/bin/python3
"""mkimage.py: write OCI image layouts from layer specs, without frun.

Library and CLI. Uses only Python's tarfile/hashlib/gzip/json (plus the `zstd`
command for zstd layers). Everything it writes is reproducible: same spec, same
digests.

A spec (JSON, or a Python dict) describes one image:

    {
      "os": "linux", "architecture": "amd64", "variant": "v8",    # variant optional
      "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},        # OCI "config" object
      "layers": [
        {"compression": "gzip" | "zstd" | "none",                 # default gzip
         "gzip_level": 6,
         "diff_id": "sha256:...",          # optional: override (i.e. falsify) the config diff_id
         "comment": "shown in config history",
         "entries": [ENTRY, ...]}
      ]
    }

or an image index: {"index": [IMAGE_SPEC, ...]} (each IMAGE_SPEC needs os/architecture).

ENTRY (tar member; "path" is written verbatim, nothing is normalised, so hostile names
like "../x", "/x", "." or "sub/.wh..." are possible):

    {"path": "data/a", "type": "file" | "dir" | "symlink" | "hardlink" | "fifo" | "char" | "block",
     "content": "text" | "content_b64": "..." | "random": {"size": N, "seed": "s"} | "zeros": N,
     "mode": 0o644 or "0644", "uid": 0, "gid": 0, "uname": "", "gname": "", "mtime": 1700000000,
     "target": "linkname (symlink/hardlink)", "major": 1, "minor": 3,
     "xattrs": {"user.frun": "hello"},           # written as SCHILY.xattr.* PAX records
     "pax": {"path": "..."}}                      # raw PAX records (they win over the ustar fields)

CLI:
    mkimage.py build LAYOUT SPEC.json [--ref REF ...]   build a spec file ("-" = stdin)
    mkimage.py builtin NAME LAYOUT [NAME LAYOUT ...] [--ref REF ...]
                                                        build built-in specs (see `list`)
    mkimage.py list                                     names of the built-in specs
    mkimage.py hostile-json                             description of the hostile/* specs
    mkimage.py verify LAYOUT... [--allow-bad-diff-id]   check every blob's digest and size,
                                                        decompress every layer, check diff_ids
A layout may hold several refs; building into an existing layout adds/replaces the ref.
"""

import argparse
import base64
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
MT_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MT_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
REF_ANNOTATION = "org.opencontainers.image.ref.name"

DEFAULT_MTIME = 1700000000
CREATED = "2020-01-01T00:00:00Z"
CHUNK = 1 << 20


# ----------------------------------------------------------------------------- streams

class HashWriter:
    """File-like sink that hashes and counts what goes through it."""

    def __init__(self, raw=None):
        self.raw = raw
        self.h = hashlib.sha256()
        self.n = 0

    def write(self, b):
        self.h.update(b)
        self.n += len(b)
        if self.raw is not None:
            self.raw.write(b)
        return len(b)

    def tell(self):
        return self.n

    def flush(self):
        if self.raw is not None:
            self.raw.flush()

    def digest(self):
        return "sha256:" + self.h.hexdigest()


class GenReader:
    """Readable stream of `size` bytes: zeros, or seeded pseudo-random bytes."""

    def __init__(self, size, seed=None):
        self.left = size
        self.rng = random.Random(seed) if seed is not None else None

    def read(self, n=-1):
        if n is None or n < 0 or n > self.left:
            n = self.left
        n = min(n, CHUNK * 4)
        self.left -= n
        if self.rng is None:
            return bytes(n)
        return self.rng.randbytes(n)


# ----------------------------------------------------------------------------- tar entries

TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "fifo": tarfile.FIFOTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
}


def _mode(v, default):
    if v is None:
        return default
    if isinstance(v, str):
        return int(v, 8)
    return int(v)


def _content(e):
    """Returns (size, fileobj or None)."""
    if "content" in e:
        data = e["content"].encode() if isinstance(e["content"], str) else bytes(e["content"])
        return len(data), io.BytesIO(data)
    if "content_b64" in e:
        data = base64.b64decode(e["content_b64"])
        return len(data), io.BytesIO(data)
    if "random" in e:
        r = e["random"]
        return int(r["size"]), GenReader(int(r["size"]), str(r.get("seed", "frun")))
    if "zeros" in e:
        return int(e["zeros"]), GenReader(int(e["zeros"]))
    return 0, None


def add_entry(tf, e):
    kind = e.get("type", "file")
    ti = tarfile.TarInfo(e["path"])
    ti.type = TYPES[kind]
    default_mode = {"dir": 0o755, "symlink": 0o777, "char": 0o666, "block": 0o660}.get(kind, 0o644)
    ti.mode = _mode(e.get("mode"), default_mode)
    ti.uid = int(e.get("uid", 0))
    ti.gid = int(e.get("gid", 0))
    ti.uname = e.get("uname", "")
    ti.gname = e.get("gname", "")
    ti.mtime = int(e.get("mtime", DEFAULT_MTIME))
    if kind in ("symlink", "hardlink"):
        ti.linkname = e["target"]
    if kind in ("char", "block"):
        ti.devmajor = int(e.get("major", 0))
        ti.devminor = int(e.get("minor", 0))
    pax = {}
    for k, v in (e.get("xattrs") or {}).items():
        pax["SCHILY.xattr." + k] = v
    pax.update(e.get("pax") or {})
    if pax:
        ti.pax_headers = pax
    fobj = None
    if kind == "file":
        ti.size, fobj = _content(e)
    tf.addfile(ti, fobj)


def write_tar(sink, entries):
    tf = tarfile.open(fileobj=sink, mode="w", format=tarfile.PAX_FORMAT)
    for e in entries:
        add_entry(tf, e)
    tf.close()


# ----------------------------------------------------------------------------- layout

class Layout:
    def __init__(self, path):
        self.path = path
        self.blobs = os.path.join(path, "blobs", "sha256")
        os.makedirs(self.blobs, exist_ok=True)
        with open(os.path.join(path, "oci-layout"), "w") as f:
            json.dump({"imageLayoutVersion": "1.0.0"}, f)
        idx = os.path.join(path, "index.json")
        if os.path.exists(idx):
            with open(idx) as f:
                self.index = json.load(f)
        else:
            self.index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": []}

    def blob_path(self, digest):
        return os.path.join(self.blobs, digest.split(":", 1)[1])

    def _tmp(self):
        fd, p = tempfile.mkstemp(dir=self.blobs, prefix=".tmp-")
        return os.fdopen(fd, "wb"), p

    def _commit(self, tmp_path, digest):
        final = self.blob_path(digest)
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, final)

    def put_bytes(self, data, media_type, extra=None):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        f, p = self._tmp()
        with f:
            f.write(data)
        self._commit(p, digest)
        d = {"mediaType": media_type, "digest": digest, "size": len(data)}
        if extra:
            d.update(extra)
        return d

    def put_json(self, obj, media_type, extra=None):
        data = json.dumps(obj, indent=2, sort_keys=False).encode() + b"\n"
        return self.put_bytes(data, media_type, extra)

    def put_layer(self, spec):
        """Returns (descriptor, diff_id)."""
        comp = spec.get("compression", "gzip")
        entries = spec.get("entries", [])
        f, p = self._tmp()
        try:
            if comp == "none":
                with f:
                    out = HashWriter(f)
                    write_tar(out, entries)
                    diff_id = digest = out.digest()
                    size = out.n
                mt = MT_LAYER_TAR
            elif comp == "gzip":
                with f:
                    out = HashWriter(f)
                    gz = gzip.GzipFile(filename="", fileobj=out, mode="wb",
                                       compresslevel=int(spec.get("gzip_level", 6)), mtime=0)
                    raw = HashWriter(gz)
                    write_tar(raw, entries)
                    gz.close()
                    diff_id, digest, size = raw.digest(), out.digest(), out.n
                mt = MT_LAYER_GZIP
            elif comp == "zstd":
                f.close()
                with tempfile.NamedTemporaryFile(dir=self.blobs, prefix=".tmp-tar-") as t:
                    raw = HashWriter(t)
                    write_tar(raw, entries)
                    t.flush()
                    diff_id = raw.digest()
                    subprocess.run(["zstd", "-q", "-f", "--no-progress", "-3", t.name, "-o", p],
                                   check=True)
                h = hashlib.sha256()
                size = 0
                with open(p, "rb") as r:
                    for b in iter(lambda: r.read(CHUNK), b""):
                        h.update(b)
                        size += len(b)
                digest = "sha256:" + h.hexdigest()
                mt = MT_LAYER_ZSTD
            else:
                raise ValueError("unknown compression %r" % comp)
            self._commit(p, digest)
        except BaseException:
            if os.path.exists(p):
                os.unlink(p)
            raise
        return {"mediaType": mt, "digest": digest, "size": size}, diff_id

    def add_ref(self, desc, ref):
        d = dict(desc)
        ann = dict(d.get("annotations") or {})
        ann[REF_ANNOTATION] = ref
        d["annotations"] = ann
        self.index["manifests"] = [
            m for m in self.index["manifests"]
            if (m.get("annotations") or {}).get(REF_ANNOTATION) != ref]
        self.index["manifests"].append(d)
        with open(os.path.join(self.path, "index.json"), "w") as f:
            json.dump(self.index, f, indent=2)
            f.write("\n")


def platform_of(spec):
    p = {"architecture": spec.get("architecture", "amd64"), "os": spec.get("os", "linux")}
    if spec.get("variant"):
        p["variant"] = spec["variant"]
    return p


def build_image(layout, spec):
    """Writes config, layers and manifest blobs; returns the manifest descriptor."""
    layer_descs, diff_ids, history = [], [], []
    for i, ls in enumerate(spec.get("layers", [])):
        desc, diff_id = layout.put_layer(ls)
        layer_descs.append(desc)
        diff_ids.append(ls.get("diff_id", diff_id))
        history.append({"created": CREATED,
                        "created_by": "mkimage.py layer %d: %s" % (i + 1, ls.get("comment", ""))})
    config = {"created": CREATED, "author": "frun scripts/test-images/mkimage.py"}
    config.update(platform_of(spec))
    config["config"] = spec.get("config", {})
    config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    config["history"] = history
    cdesc = layout.put_json(config, MT_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cdesc, "layers": layer_descs}
    if spec.get("annotations"):
        manifest["annotations"] = spec["annotations"]
    return layout.put_json(manifest, MT_MANIFEST)


def build(layout_dir, spec, refs=("latest",)):
    layout = Layout(layout_dir)
    if "index" in spec:
        manifests = []
        for sub in spec["index"]:
            d = build_image(layout, sub)
            d["platform"] = platform_of(sub)
            manifests.append(d)
        desc = layout.put_json({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests},
                               MT_INDEX)
    else:
        desc = build_image(layout, spec)
    for r in refs:
        layout.add_ref(desc, r)
    return desc


# ----------------------------------------------------------------------------- verify

def _hash_file(path):
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(CHUNK), b""):
            h.update(b)
            n += len(b)
    return "sha256:" + h.hexdigest(), n


def _layer_stream(path, media_type):
    if media_type.endswith("+gzip") or media_type.endswith(".tar.gzip"):
        return gzip.open(path, "rb"), None
    if media_type.endswith("+zstd") or media_type.endswith(".tar.zstd"):
        p = subprocess.Popen(["zstd", "-d", "-q", "-c", path], stdout=subprocess.PIPE)
        return p.stdout, p
    return open(path, "rb"), None


def verify(layout_dir, allow_bad_diff_id=False, quiet=False):
    """Raises on the first problem. Returns number of manifests checked."""
    blobs = os.path.join(layout_dir, "blobs", "sha256")
    with open(os.path.join(layout_dir, "index.json")) as f:
        index = json.load(f)
    checked = {}

    def check_blob(desc):
        dg = desc["digest"]
        if dg in checked:
            return checked[dg]
        p = os.path.join(blobs, dg.split(":", 1)[1])
        got, n = _hash_file(p)
        if got != dg:
            raise SystemExit("%s: blob %s has digest %s" % (layout_dir, dg, got))
        if n != desc["size"]:
            raise SystemExit("%s: blob %s has size %d, descriptor says %d" % (layout_dir, dg, n, desc["size"]))
        checked[dg] = p
        return p

    count = 0

    def walk(desc):
        nonlocal count
        p = check_blob(desc)
        with open(p) as f:
            doc = json.load(f)
        mt = desc.get("mediaType") or doc.get("mediaType")
        if mt in (MT_INDEX, DOCKER_LIST):
            for m in doc["manifests"]:
                walk(m)
            return
        count += 1
        cp = check_blob(doc["config"])
        with open(cp) as f:
            config = json.load(f)
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(doc["layers"]):
            raise SystemExit("%s: %d layers but %d diff_ids" % (layout_dir, len(doc["layers"]), len(diff_ids)))
        for layer, want in zip(doc["layers"], diff_ids):
            lp = check_blob(layer)
            stream, proc = _layer_stream(lp, layer["mediaType"])
            h = HashWriter()
            tee = _TeeReader(stream, h)
            members = 0
            with tarfile.open(fileobj=tee, mode="r|") as tf:
                for _ in tf:
                    members += 1
            while tee.read(CHUNK):
                pass
            stream.close()
            if proc is not None and proc.wait() != 0:
                raise SystemExit("%s: zstd failed on %s" % (layout_dir, layer["digest"]))
            if h.digest() != want:
                if not allow_bad_diff_id:
                    raise SystemExit("%s: layer %s: diff_id %s, config says %s"
                                     % (layout_dir, layer["digest"], h.digest(), want))
            if not quiet:
                print("  ok layer %s %s (%d entries)" % (layer["digest"][:19], layer["mediaType"].rsplit(".", 1)[-1], members))

    for m in index["manifests"]:
        walk(m)
    return count


class _TeeReader:
    def __init__(self, raw, sink):
        self.raw, self.sink = raw, sink

    def read(self, n=-1):
        b = self.raw.read(n)
        self.sink.write(b)
        return b


# ----------------------------------------------------------------------------- built-in specs

def F(path, content="", **kw):
    return dict(path=path, type="file", content=content, **kw)


def D(path, mode=0o755, **kw):
    return dict(path=path, type="dir", mode=mode, **kw)


def L(path, target, **kw):
    return dict(path=path, type="symlink", target=target, **kw)


def H(path, target, **kw):
    return dict(path=path, type="hardlink", target=target, **kw)


PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BASE_CONFIG = {"Env": [PATH_ENV]}


def _simple(entries, compression="gzip", **kw):
    spec = {"os": "linux", "architecture": "amd64", "config": dict(BASE_CONFIG),
            "layers": [{"compression": compression, "entries": entries}]}
    spec.update(kw)
    return spec


def spec_layers():
    l1 = [
        D("data"),
        F("data/a", "alpha\n", mode=0o640, uid=1000, gid=1000, mtime=1577836800,
          xattrs={"user.frun": "hello"}),
        F("data/b", "bravo\n"),
        D("data/sub"),
        F("data/sub/x", "x\n"),
        H("data/hard", "data/a"),
        L("data/link", "a"),
        dict(path="data/fifo", type="fifo", mode=0o644),
        dict(path="data/null", type="char", major=1, minor=3, mode=0o666),
        F("data/suid", "s\n", mode=0o4755),
        D("data/empty", mode=0o700),
    ]
    l2 = [
        D("data"),
        F("data/.wh.b"),
        D("data/sub"),
        F("data/sub/.wh..wh..opq"),
        F("data/sub/y", "y\n"),
    ]
    return {
        "os": "linux", "architecture": "amd64",
        "config": {"Env": [PATH_ENV], "Labels": {"org.frun.test": "layers"}},
        "layers": [
            {"compression": "gzip", "entries": l1, "comment": "files of every type"},
            {"compression": "gzip", "entries": l2, "comment": "whiteout and opaque dir"},
            {"compression": "zstd", "entries": [F("zstd.txt", "zstd\n")], "comment": "zstd"},
            {"compression": "none", "entries": [F("plain.txt", "plain\n")], "comment": "uncompressed"},
        ],
    }


def spec_multi():
    subs = []
    for arch, variant in (("amd64", None), ("arm64", "v8"), ("arm", "v7")):
        plat = "linux/" + arch + ("/" + variant if variant else "")
        s = {"os": "linux", "architecture": arch, "config": dict(BASE_CONFIG),
             "layers": [{"entries": [F("platform", plat + "\n")], "comment": plat}]}
        if variant:
            s["variant"] = variant
        subs.append(s)
    return {"index": subs}


def spec_big():
    s = _simple([F("small.txt", "small\n"),
                 dict(path="big.bin", type="file", random={"size": 48 << 20, "seed": "big"})])
    s["layers"][0]["gzip_level"] = 1
    return s


def spec_bomb():
    s = _simple([dict(path="bomb.bin", type="file", zeros=256 << 20)])
    s["layers"][0]["gzip_level"] = 9
    return s


def spec_badiff():
    s = _simple([F("badiff.txt", "the config's diff_id for this layer is wrong\n")])
    s["layers"][0]["diff_id"] = "sha256:" + hashlib.sha256(b"not the diff_id").hexdigest()
    return s


def spec_corrupt():
    # A layer no other image shares: registry.sh overwrites bytes in the middle of its blob.
    return _simple([F("corrupt.txt", "this layer gets corrupted in the registry\n"),
                    dict(path="corrupt.bin", type="file", random={"size": 256 << 10, "seed": "corrupt"})])


OK = F("ok.txt", "ok\n")
HOSTILE_TARGET = "/tmp/frun-hostile-target"

def _h(desc, entries, must_not_exist=(), must_survive=(), not_same_inode=None, setup=()):
    return {"description": desc, "entries": entries, "must_not_exist": list(must_not_exist),
            "must_survive": list(must_survive), "not_same_inode": not_same_inode or {},
            "setup": list(setup)}


# Hostile layers. Each image has ok.txt first, then the hostile entries. A correct unpacker
# either refuses the layer with a clear error, or unpacks it with nothing outside the root
# touched. Paths in the check lists: absolute = host path; relative = relative to the
# directory the layer is unpacked into (the rootfs).
#   must_not_exist  must not exist afterwards
#   must_survive    must still exist afterwards (create the absolute ones first: `setup`)
#   not_same_inode  {path in rootfs: host path}: if it exists, it must not be that inode
#   setup           host files the test creates beforehand (any content)
HOSTILE = {
    "dotdot": _h("regular file ../../escape-dotdot",
                 [F("../../escape-dotdot", "escaped\n")],
                 must_not_exist=["../../escape-dotdot"]),
    "absolute": _h("regular file with an absolute name /escape-absolute (fine if it lands inside "
                   "the root as escape-absolute)",
                   [F("/escape-absolute", "absolute\n")],
                   must_not_exist=["/escape-absolute"]),
    "symlink-abs": _h("symlink evil -> /, then file evil/escape-symlink-abs",
                      [L("evil", "/"), F("evil/escape-symlink-abs", "escaped\n")],
                      must_not_exist=["/escape-symlink-abs"]),
    "symlink-rel": _h("symlink evil -> ../../../../.., then file evil/escape-symlink-rel",
                      [L("evil", "../../../../.."), F("evil/escape-symlink-rel", "escaped\n")],
                      must_not_exist=["../../../../../escape-symlink-rel", "/escape-symlink-rel"]),
    "symlink-chain": _h("symlink a -> .., symlink a/b -> .., then file a/b/escape-chain",
                        [L("a", ".."), L("a/b", ".."), F("a/b/escape-chain", "escaped\n")],
                        must_not_exist=["../b", "../escape-chain", "../../escape-chain"]),
    "symlink-chain2": _h("dir d, symlink d/l -> .. (the root), symlink d/l/x -> .. (lexically d, but "
                         "really the root's parent), then file d/l/x/escape-chain2: each link looks "
                         "harmless to a lexical check",
                         [D("d"), L("d/l", ".."), L("d/l/x", ".."), F("d/l/x/escape-chain2", "escaped\n")],
                         must_not_exist=["../x", "../escape-chain2"]),
    "symlink-dot": _h("symlink entry named . pointing to /, then file escape-dot",
                      [L(".", "/"), F("escape-dot", "escaped\n")],
                      must_not_exist=["/escape-dot"], must_survive=["ok.txt"]),
    "symlink-slash": _h("symlink entry named / pointing to /tmp, then file escape-slash",
                        [L("/", "/tmp"), F("escape-slash", "escaped\n")],
                        must_not_exist=["/tmp/escape-slash"], must_survive=["ok.txt"]),
    "hardlink-out": _h("hard link evil -> ../../../../../../../../../../etc/passwd (no write)",
                       [H("evil", "../../../../../../../../../../etc/passwd")],
                       not_same_inode={"evil": "/etc/passwd"}),
    "hardlink-abs": _h("hard link evil with the absolute linkname /etc/passwd (must resolve inside "
                       "the root, where there is no etc/passwd, or be refused)",
                       [H("evil", "/etc/passwd")],
                       not_same_inode={"evil": "/etc/passwd"}),
    "hardlink-write": _h("hard link evil -> ../../../../../../../../../.." + HOSTILE_TARGET + ", then a "
                         "regular file evil with content pwned (writing through the link would "
                         "change the host file, whose content must stay as the test wrote it)",
                         [H("evil", "../../../../../../../../../.." + HOSTILE_TARGET), F("evil", "pwned\n")],
                         must_survive=[HOSTILE_TARGET],
                         not_same_inode={"evil": HOSTILE_TARGET}, setup=[HOSTILE_TARGET]),
    "whiteout-symlink": _h("symlink dir -> /tmp, then whiteout dir/.wh.victim (would delete "
                           "/tmp/victim if followed)",
                           [L("dir", "/tmp"), F("dir/.wh.victim")],
                           must_survive=["/tmp/victim"], setup=["/tmp/victim"]),
    "whiteout-root": _h("whiteouts .wh.., .wh..wh..opq and ./.wh.. at top level (whiteout of the "
                        "root itself / opaque root)",
                        [F(".wh.."), F(".wh..wh..opq"), F("./.wh..")],
                        must_survive=["ok.txt"]),
    "whiteout-parent": _h("dir sub, then whiteout sub/.wh... (whiteout named '..')",
                          [D("sub"), F("sub/.wh...")],
                          must_survive=["ok.txt", "sub"]),
    "pax-path": _h("ustar name harmless.txt but PAX path ../../escape-pax (the PAX record wins)",
                   [dict(path="harmless.txt", type="file", content="escaped\n",
                         pax={"path": "../../escape-pax"})],
                   must_not_exist=["../../escape-pax"]),
}


def spec_hostile(name):
    h = HOSTILE[name]
    s = _simple([OK] + h["entries"])
    s["layers"][0]["comment"] = "hostile: " + h["description"]
    return s


def builtins():
    b = {
        "layers": spec_layers,
        "multi": spec_multi,
        "big": spec_big,
        "bomb": spec_bomb,
        "badiff": spec_badiff,
        "corrupt": spec_corrupt,
    }
    for n in HOSTILE:
        b["hostile/" + n] = (lambda n=n: spec_hostile(n))
    return b


def hostile_json():
    out = []
    for n, h in HOSTILE.items():
        d = {"name": n, "image": "hostile/%s:latest" % n}
        d.update({k: v for k, v in h.items() if k != "entries"})
        d["entries"] = [{k: v for k, v in e.items() if k in ("path", "type", "target", "pax")}
                        for e in [OK] + h["entries"]]
        out.append(d)
    return out


# ----------------------------------------------------------------------------- CLI

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("build")
    p.add_argument("layout")
    p.add_argument("spec")
    p.add_argument("--ref", action="append")
    p = sub.add_parser("builtin")
    p.add_argument("pairs", nargs="+", metavar="NAME LAYOUT")
    p.add_argument("--ref", action="append")
    sub.add_parser("list")
    sub.add_parser("hostile-json")
    p = sub.add_parser("verify")
    p.add_argument("layouts", nargs="+", metavar="LAYOUT")
    p.add_argument("--allow-bad-diff-id", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)

    if a.cmd == "build":
        if a.spec == "-":
            spec = json.load(sys.stdin)
        else:
            with open(a.spec) as f:
                spec = json.load(f)
        d = build(a.layout, spec, a.ref or ["latest"])
        print(d["digest"])
    elif a.cmd == "builtin":
        b = builtins()
        if len(a.pairs) % 2:
            ap.error("builtin takes NAME LAYOUT pairs")
        for name, layout in zip(a.pairs[::2], a.pairs[1::2]):
            if name not in b:
                ap.error("unknown built-in %r; try `list`" % name)
            d = build(layout, b[name](), a.ref or ["latest"])
            print(d["digest"], layout)
    elif a.cmd == "list":
        print("\n".join(builtins()))
    elif a.cmd == "hostile-json":
        json.dump(hostile_json(), sys.stdout, indent=2)
        print()
    elif a.cmd == "verify":
        for layout in a.layouts:
            n = verify(layout, a.allow_bad_diff_id, a.quiet)
            if not a.quiet:
                print("%s: %d manifest(s) ok" % (layout, n))


if __name__ == "__main__":
    main()
