"""The updp Python client against a real updp-server (started by tests/python/run.sh,
which sets UPDP_ADDR, UPDP_WORK, UPDP_CTL and UPDP_EXAMPLE), stdlib unittest only.

The server's data_dir is UPDP_WORK/data, its allowed root UPDP_WORK, its images
UPDP_WORK/root/images (41 Fashion-MNIST PNGs, one with a space and '&' in its name).
"""

import concurrent.futures
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import grpc
import numpy as np

import updp
from updp.v1 import updp_pb2 as pb
from updp.v1 import updp_pb2_grpc

ADDR = os.environ["UPDP_ADDR"]
WORK = os.environ["UPDP_WORK"]
CTL = os.environ["UPDP_CTL"]
IMAGES = os.path.join(WORK, "root", "images")
UPLOADS = os.path.join(WORK, "data", "uploads")


def ctl(*args):
    return subprocess.run([CTL, "--addr", ADDR, *args], check=True, capture_output=True,
                          timeout=120).stdout


def blobs(n_per, dim, seed):
    """3 well-separated clusters of n_per rows each (rows 0..n_per-1 the first)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 10
    return np.repeat(centres, n_per, axis=0) + 0.01 * rng.normal(size=(3 * n_per, dim))


class ImagesLoop(unittest.TestCase):
    """Register, embed, select kmeans, wait with a progress bar, rows, exports."""

    @classmethod
    def setUpClass(cls):
        cls.c = updp.Client(ADDR)
        cls.dataset = cls.c.register_images("imgs", IMAGES)
        cls.bar = io.StringIO()
        cls.embedded = cls.c.wait(cls.c.embed("imgs"), progress=True, out=cls.bar)
        cls.kmeans = cls.c.select("imgs", "kmeans", 8, seed=3, wait=True, progress=False)
        # Every item, so that the odd file name is among the exported picks.
        cls.everything = cls.c.select("imgs", "random", 41, wait=True, progress=False)
        cls.out = tempfile.mkdtemp(dir=WORK)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def test_registered_embedded_with_a_progress_bar(self):
        self.assertEqual(self.dataset.name, "imgs")
        self.assertEqual(self.dataset.state, pb.DATASET_STATE_READY)
        self.assertEqual(self.dataset.num_items, 41)
        self.assertEqual(self.embedded.state, pb.SUCCEEDED)
        self.assertIn("image", self.c.dataset("imgs").feature_sources)
        text = self.bar.getvalue()
        self.assertIn(self.embedded.job_id + " SUCCEEDED [", text)
        self.assertIn("100%", text.splitlines()[-1])
        self.assertIn("imgs", [d.name for d in self.c.datasets()])
        self.assertEqual(self.c.job(self.embedded.job_id).state, pb.SUCCEEDED)

    def test_selection_rows(self):
        rows = self.c.selection(self.kmeans)
        self.assertEqual([r.rank for r in rows], list(range(1, 9)))
        self.assertIsInstance(rows[0], updp.SelectedRow)
        items = {i.item_id: i.path for i in self.c.items("imgs")}
        for r in rows:
            self.assertEqual(items[r.item_id], r.path)
            self.assertTrue(r.path.startswith(self.dataset.source_path + "/"))
        self.assertEqual(len({r.item_id for r in rows}), 8)
        self.assertEqual(len(self.c.selection(self.everything.job_id)), 41)  # a job id works too

    def test_exports_are_byte_equal_to_updpctl(self):
        root = os.path.join(WORK, "root")
        cases = [
            ("csv", {}, []),
            ("json", {}, []),
            ("paths", {}, []),
            ("labelstudio", {"prefix": "/data/local-files/?d=", "relative_to": WORK},
             ["--prefix", "/data/local-files/?d=", "--relative-to", WORK]),
            ("labelstudio", {"prefix": "http://files.internal/pool/", "relative_to": root,
                             "data_key": "img"},
             ["--prefix", "http://files.internal/pool/", "--relative-to", root,
              "--data-key", "img"]),
            ("cvat", {"prefix": "/share/", "relative_to": root},
             ["--prefix", "/share/", "--relative-to", root]),
            ("fiftyone", {}, []),
        ]
        for job in (self.kmeans, self.everything):
            for i, (fmt, kwargs, flags) in enumerate(cases):
                with self.subTest(job=job.job_id, fmt=fmt, case=i):
                    mine = os.path.join(self.out, "py-%s-%d" % (job.job_id, i))
                    theirs = os.path.join(self.out, "ctl-%s-%d" % (job.job_id, i))
                    n = self.c.export(job, fmt, mine, **kwargs)
                    self.assertEqual(n, len(self.c.selection(job)))
                    ctl("selection", "get", job.job_id, "--format", fmt, "--out", theirs, *flags)
                    with open(mine, "rb") as a, open(theirs, "rb") as b:
                        self.assertEqual(a.read(), b.read())
        with open(os.path.join(self.out, "py-%s-3" % self.everything.job_id)) as f:
            self.assertIn("with%20space%20%26%20more.png", f.read())  # the odd name, encoded

    def test_refused_export_writes_nothing(self):
        out = os.path.join(self.out, "refused.txt")
        with self.assertRaises(updp.Error) as e:
            self.c.export(self.kmeans, "cvat", out, relative_to="/elsewhere")
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("is not under /elsewhere", e.exception.message)
        self.assertFalse(os.path.exists(out))

    def test_selection_frame(self):
        try:
            import pandas  # noqa: F401
        except ImportError:
            self.skipTest("pandas is not installed (python3-pandas)")
        df = self.c.selection_frame(self.kmeans)
        self.assertEqual(list(df.columns), ["rank", "item_id", "path", "cluster", "score"])
        self.assertEqual(df["item_id"].tolist(), [r.item_id for r in self.c.selection(self.kmeans)])

    def test_labeled_items_are_not_picked_again(self):
        labeled = [r.item_id for r in self.c.selection(self.kmeans)]
        again = self.c.select("imgs", "random", 100, labeled=labeled, wait=True, progress=False)
        picks = {r.item_id for r in self.c.selection(again)}
        self.assertEqual(len(picks), 41 - 8)
        self.assertFalse(picks & set(labeled))

    def test_manifest(self):
        paths = sorted(os.path.join(IMAGES, f) for f in os.listdir(IMAGES))[:3]
        manifest = os.path.join(self.out, "manifest.csv")
        with open(manifest, "w") as f:
            f.write("id,path\n" + "".join("m%d,%s\n" % (i, p) for i, p in enumerate(paths)))
        d = self.c.register_manifest("from-manifest", manifest)
        self.assertEqual(d.num_items, 3)
        self.assertEqual([(i.item_id, i.path) for i in self.c.items("from-manifest")],
                         [("m%d" % i, p) for i, p in enumerate(paths)])

    def test_refresh_then_embed_and_select_only_new(self):
        paths = sorted(os.path.join(IMAGES, f) for f in os.listdir(IMAGES))[:5]
        manifest = os.path.join(self.out, "growing.txt")
        with open(manifest, "w") as f:
            f.write("".join(p + "\n" for p in paths[:3]))
        self.c.register_manifest("growing", manifest)
        self.c.embed("growing", wait=True, progress=False)
        with open(manifest, "a") as f:
            f.write("".join(p + "\n" for p in paths[3:]))
        job = self.c.refresh("growing", wait=True, progress=False)
        self.assertEqual(json.loads(job.result_json)["added"], 2)
        d = self.c.dataset("growing")
        self.assertEqual((d.num_items, d.generation, d.num_missing), (5, 1, 0))
        self.assertEqual([i.generation for i in self.c.items("growing")], [0, 0, 0, 1, 1])
        embed = self.c.embed("growing", wait=True, progress=False)
        self.assertEqual(json.loads(embed.result_json)["embedded_this_run"], 2)
        job = self.c.select("growing", "random", 5, only_new=True, wait=True, progress=False)
        self.assertEqual(sorted(r.item_id for r in self.c.selection(job)),
                         sorted(paths[3:]))

    def test_learn_prompt_then_select_updp(self):
        job = self.c.learn_prompt("imgs", "imgs-p", epochs=1, num_clusters=4, batch_size=16,
                                  seed=1, wait=True, progress=False)
        self.assertEqual(job.kind, pb.LEARN_PROMPT)
        self.assertEqual(job.state, pb.SUCCEEDED)
        picks = self.c.select("imgs", "updp", 4, prompt="imgs-p", wait=True, progress=False)
        self.assertEqual(len(self.c.selection(picks)), 4)

    def test_errors_carry_the_servers_code_and_message(self):
        with self.assertRaises(updp.Error) as e:
            self.c.dataset("missing")
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertIn("'missing' not found", e.exception.message)
        with self.assertRaises(updp.Error) as e:
            self.c.register_images("outside", "/etc")
        self.assertEqual(e.exception.code, grpc.StatusCode.PERMISSION_DENIED)
        with self.assertRaises(updp.Error) as e:
            self.c.select("imgs", "no-such-strategy", 3)
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(TypeError):
            self.c.learn_prompt("imgs", "p", epoch=3)  # a misspelt parameter

    def test_strict_labeled_refusal(self):
        with self.assertRaises(updp.Error) as e:
            self.c.select("imgs", "random", 3, labeled=["no-such-item"], strict_labeled=True,
                          wait=True, progress=False)
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("no-such-item", e.exception.message)


class Uploads(unittest.TestCase):
    """register_embeddings through UploadEmbeddings, and server-side .npy files."""

    @classmethod
    def setUpClass(cls):
        cls.c = updp.Client(ADDR)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()

    def assert_one_pick_per_blob(self, name, n_per, ids=None):
        job = self.c.select(name, "typiclust", 3, wait=True, progress=False)
        index = {i: k for k, i in enumerate(ids)} if ids else None
        picked = [index[r.item_id] if index else int(r.item_id) for r in self.c.selection(job)]
        self.assertEqual(sorted(p // n_per for p in picked), [0, 1, 2])

    def assert_nothing_left(self, name):
        with self.assertRaises(updp.Error) as e:
            self.c.dataset(name)
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertEqual(os.listdir(UPLOADS), [])

    def test_each_dtype_with_and_without_ids(self):
        x = blobs(10, 6, seed=1)
        for dtype in (np.float16, np.float32, np.float64):
            for with_ids in (False, True):
                name = "up-%s-%s" % (np.dtype(dtype).name, "ids" if with_ids else "plain")
                with self.subTest(name=name):
                    ids = ["%s/%02d.jpg" % (name, i) for i in range(30)] if with_ids else None
                    # 100-byte chunks: many messages, some rows split across none.
                    d = self.c.register_embeddings(name, x.astype(dtype), ids=ids,
                                                   chunk_bytes=100)
                    self.assertEqual(d.name, name)
                    self.assertEqual(d.num_items, 30)
                    self.assertEqual(d.source_path, "(uploaded)")
                    self.assertEqual(list(d.feature_sources), ["embeddings"])
                    want = ids or [str(i) for i in range(30)]
                    self.assertEqual([i.item_id for i in self.c.items(name)], want)
                    self.assert_one_pick_per_blob(name, 10, ids)
                    self.assertEqual(os.listdir(UPLOADS), [])

    def test_big_endian_and_strided_arrays_are_sent_as_little_endian_rows(self):
        x = blobs(10, 4, seed=2)
        wide = np.zeros((30, 8), dtype=">f8")
        wide[:, ::2] = x  # a non-contiguous, big-endian view
        d = self.c.register_embeddings("strided", wide[:, ::2])
        self.assertEqual(d.num_items, 30)
        self.assert_one_pick_per_blob("strided", 10)

    def test_local_npy_path_is_uploaded(self):
        path = os.path.join(tempfile.mkdtemp(), "local.npy")  # not in the allowed root
        np.save(path, blobs(10, 5, seed=3))  # float64, numpy's default
        d = self.c.register_embeddings("from-local-npy", path)
        self.assertEqual(d.num_items, 30)
        self.assert_one_pick_per_blob("from-local-npy", 10)

    def test_server_side_float64_npy(self):
        folder = tempfile.mkdtemp(dir=WORK)
        npy = os.path.join(folder, "emb64.npy")
        np.save(npy, blobs(10, 5, seed=4))
        self.assertEqual(np.load(npy).dtype, np.float64)
        ids = ["s%d" % i for i in range(30)]
        with open(os.path.join(folder, "ids.txt"), "w") as f:
            f.write("\n".join(ids) + "\n")
        d = self.c.register_embeddings_path("server64", npy, os.path.join(folder, "ids.txt"))
        self.assertEqual(d.num_items, 30)
        self.assertEqual(d.source_path, npy)
        self.assert_one_pick_per_blob("server64", 10, ids)
        bad = blobs(10, 5, seed=4)
        bad[7, 1] = 1e300  # beyond float32
        np.save(npy, bad)
        with self.assertRaises(updp.Error) as e:
            self.c.register_embeddings_path("server64-bad", npy)
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn(npy + ": row 7 has a value outside the float32 range", e.exception.message)

    def test_upload_errors_register_nothing(self):
        good = blobs(3, 4, seed=5).astype(np.float32)
        nan = good.copy()
        nan[5, 2] = np.nan
        ids = ["a%d" % i for i in range(9)]
        cases = [
            ("NaN", dict(data=nan), grpc.StatusCode.INVALID_ARGUMENT,
             "chunk.data: row 5 contains NaN or Inf"),
            ("Inf float16", dict(data=np.full((2, 3), np.inf, dtype=np.float16)),
             grpc.StatusCode.INVALID_ARGUMENT, "chunk.data: row 0 contains NaN or Inf"),
            ("too few ids", dict(data=good, ids=ids[:7]), grpc.StatusCode.INVALID_ARGUMENT,
             "chunk.ids: 1 ids for 3 rows"),
            ("too many ids", dict(data=good, ids=ids + ["x"]), grpc.StatusCode.INVALID_ARGUMENT,
             "chunk.ids: 1 ids for 0 rows"),
            ("duplicate ids", dict(data=good, ids=["same"] * 9), grpc.StatusCode.ALREADY_EXISTS,
             "chunk.ids: duplicate item id 'same'"),
            ("no rows", dict(data=np.zeros((0, 4), np.float32)),
             grpc.StatusCode.INVALID_ARGUMENT, "header.rows: must be positive"),
            ("1-D", dict(data=np.zeros(8, np.float32)), grpc.StatusCode.INVALID_ARGUMENT,
             "data: expected a 2-D array [N, D]"),
            ("3-D", dict(data=np.zeros((2, 2, 2), np.float32)),
             grpc.StatusCode.INVALID_ARGUMENT, "data: expected a 2-D array [N, D]"),
            ("int", dict(data=np.zeros((2, 2), np.int64)), grpc.StatusCode.INVALID_ARGUMENT,
             "data: dtype int64 is not float16, float32 or float64"),
            ("bad name", dict(data=good, name="no/slash"), grpc.StatusCode.INVALID_ARGUMENT,
             "header.name"),
        ]
        for what, kwargs, code, message in cases:
            with self.subTest(what=what):
                name = kwargs.pop("name", "bad-upload")
                with self.assertRaises(updp.Error) as e:
                    # 3 rows a chunk, so that the rows are numbered across chunks.
                    self.c.register_embeddings(name, chunk_bytes=3 * 4 * 4, **kwargs)
                self.assertEqual(e.exception.code, code, e.exception.message)
                self.assertIn(message, e.exception.message)
                self.assert_nothing_left("bad-upload")

    def test_taken_name(self):
        self.c.register_embeddings("taken", np.ones((2, 2), np.float32))
        with self.assertRaises(updp.Error) as e:
            self.c.register_embeddings("taken", np.ones((3, 2), np.float32))
        self.assertEqual(e.exception.code, grpc.StatusCode.ALREADY_EXISTS)
        self.assertEqual(self.c.dataset("taken").num_items, 2)

    def test_broken_stream_registers_nothing(self):
        def messages():
            yield pb.UploadEmbeddingsRequest(header=pb.UploadEmbeddingsHeader(
                name="broken", rows=4, dim=2, dtype=pb.EMBEDDING_DTYPE_FLOAT32))
            yield pb.UploadEmbeddingsRequest(chunk=pb.EmbeddingsChunk(
                data=np.ones((2, 2), "<f4").tobytes()))
            raise RuntimeError("the client died half way")
        with grpc.insecure_channel(ADDR) as ch:
            with self.assertRaises(grpc.RpcError) as e:
                updp_pb2_grpc.UpdpStub(ch).UploadEmbeddings(messages())
        # grpcio cancels the call and reports UNKNOWN ("Exception iterating requests!").
        self.assertIn(e.exception.code(), (grpc.StatusCode.UNKNOWN, grpc.StatusCode.CANCELLED))
        # The call never completed its stream, so nothing can have been registered (the
        # files' removal is checked in tests/service/upload_test.cc).
        with self.assertRaises(updp.Error):
            self.c.dataset("broken")


class _Recorder:
    """A stand-in updp server (real gRPC, in process) that records call metadata."""

    def __init__(self, credentials=None):
        self.metadata = []
        handlers = {
            "ListDatasets": grpc.unary_unary_rpc_method_handler(
                self._list, request_deserializer=pb.ListDatasetsRequest.FromString,
                response_serializer=pb.ListDatasetsResponse.SerializeToString),
            "WatchJob": grpc.unary_stream_rpc_method_handler(
                self._watch, request_deserializer=pb.WatchJobRequest.FromString,
                response_serializer=pb.JobEvent.SerializeToString),
            "UploadEmbeddings": grpc.stream_unary_rpc_method_handler(
                self._upload, request_deserializer=pb.UploadEmbeddingsRequest.FromString,
                response_serializer=pb.Dataset.SerializeToString),
        }
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("updp.v1.Updp", handlers),))
        if credentials:
            self.port = self.server.add_secure_port("localhost:0", credentials)
        else:
            self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _list(self, request, context):
        self.metadata.append(dict(context.invocation_metadata()))
        return pb.ListDatasetsResponse(datasets=[pb.Dataset(name="recorded")])

    def _watch(self, request, context):
        # Jobs "fail-N" end FAILED with gRPC code N, "cancel" CANCELLED, others SUCCEEDED.
        j = request.job_id
        yield pb.JobEvent(job=pb.Job(job_id=j, state=pb.RUNNING,
                                     progress=pb.Progress(stage="embed", done=1, total=4)))
        if j.startswith("fail-"):
            end = pb.Job(job_id=j, state=pb.FAILED, error="boom", error_code=int(j[5:]))
        elif j == "cancel":
            end = pb.Job(job_id=j, state=pb.CANCELLED)
        else:
            end = pb.Job(job_id=j, state=pb.SUCCEEDED,
                         progress=pb.Progress(stage="embed", done=4, total=4))
        yield pb.JobEvent(job=end, final=True)

    def _upload(self, requests, context):
        self.metadata.append(dict(context.invocation_metadata()))
        header = next(requests).header
        rows = sum(len(r.chunk.data) for r in requests) // (4 * header.dim)
        return pb.Dataset(name=header.name, num_items=rows)

    def stop(self):
        self.server.stop(None)


class StandIn(unittest.TestCase):
    """updp-server does not check tokens or speak TLS yet, and a job that fails when it
    runs is hard to make on demand: a recording stand-in server shows what the client
    sends and how it takes a job's end."""

    def test_wait_maps_a_jobs_end(self):
        r = _Recorder()
        try:
            with updp.Client("127.0.0.1:%d" % r.port) as c:
                out = io.StringIO()
                self.assertEqual(c.wait("ok", out=out).state, pb.SUCCEEDED)
                self.assertEqual(out.getvalue().splitlines(), [
                    "ok RUNNING [########----------------------]  25%  1/4  embed",
                    "ok SUCCEEDED [##############################] 100%  4/4  embed"])
                with self.assertRaises(updp.Error) as e:
                    c.wait("fail-9", progress=False)
                self.assertEqual(e.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
                self.assertEqual(e.exception.message, "job fail-9 failed: boom")
                self.assertEqual(e.exception.job.state, pb.FAILED)
                with self.assertRaises(updp.Error) as e:
                    c.wait("cancel", progress=False)
                self.assertEqual(e.exception.code, grpc.StatusCode.CANCELLED)
        finally:
            r.stop()

    def test_token_is_sent_on_every_call(self):
        r = _Recorder()
        try:
            with updp.Client("127.0.0.1:%d" % r.port, token="s3cret") as c:
                self.assertEqual(c.datasets()[0].name, "recorded")
                self.assertEqual(c.register_embeddings("t", np.ones((3, 2), np.float32)).num_items,
                                 3)
            with updp.Client("127.0.0.1:%d" % r.port) as c:
                c.datasets()
        finally:
            r.stop()
        self.assertEqual([m.get("authorization") for m in r.metadata],
                         ["Bearer s3cret", "Bearer s3cret", None])

    def test_tls_with_a_ca_and_a_client_certificate(self):
        if shutil.which("openssl") is None:
            self.skipTest("openssl is not installed")
        d = tempfile.mkdtemp(dir=WORK)
        key, cert = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        key, "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost"], check=True, capture_output=True)
        pem = {}
        for path in (key, cert):
            with open(path, "rb") as f:
                pem[path] = f.read()
        # The self-signed certificate is the server's, the CA and the client's at once.
        creds = grpc.ssl_server_credentials([(pem[key], pem[cert])], root_certificates=pem[cert],
                                            require_client_auth=True)
        r = _Recorder(creds)
        try:
            with updp.Client("localhost:%d" % r.port, tls={"ca": cert, "cert": cert,
                                                            "key": key}) as c:
                self.assertEqual(c.datasets()[0].name, "recorded")
            with updp.Client("localhost:%d" % r.port, timeout=5) as c:  # plaintext: refused
                with self.assertRaises(updp.Error) as e:
                    c.datasets()
                self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)
        finally:
            r.stop()
        with self.assertRaises(ValueError):
            updp.Client("localhost:1", tls={"ca": cert, "cert": cert})  # a cert without its key


class Example(unittest.TestCase):
    def test_labeling_loop_runs(self):
        out = tempfile.mkdtemp(dir=WORK)
        p = subprocess.run([sys.executable, os.environ["UPDP_EXAMPLE"], "--addr", ADDR,
                            "--images", IMAGES, "--name", "example", "--budget", "5", "--out",
                            out], capture_output=True, text=True, timeout=300)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("registered 41 images", p.stdout)
        with open(os.path.join(out, "tasks.json")) as f:
            tasks = json.load(f)
        self.assertEqual(len(tasks), 5)
        first = {t["data"]["item_id"] for t in tasks}
        # "rank item_id cluster" lines; an id may hold spaces.
        second = [ln.split(" ", 1)[1].rsplit(" ", 1)[0] for ln in p.stdout.splitlines()[-5:]]
        self.assertEqual(len(second), 5)
        self.assertFalse(first & set(second), "a labeled image was picked again")
        for t in tasks:  # Label Studio local files under the pool's folder
            self.assertTrue(t["data"]["image"].startswith("/data/local-files/?d="))


if __name__ == "__main__":
    unittest.main()
