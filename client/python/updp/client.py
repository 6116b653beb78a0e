"""updp.Client: the updp.v1.Updp service from Python."""

import dataclasses
import os
import sys

import grpc

try:
    from updp.v1 import updp_pb2, updp_pb2_grpc
except ImportError as e:  # pragma: no cover - a setup problem, not a code path
    raise ImportError(
        "updp: the modules generated from proto/updp/v1/updp.proto are missing (%s); build "
        "them with CMake (they land in BUILD/python) or client/python/generate.sh" % e) from e

from updp import exports
from updp import progress as _progress

pb = updp_pb2

# Selections and item lists are fetched in pages of this many.
_PAGE = 1000
# Embeddings are uploaded in chunks of about this many bytes (the server takes messages
# up to 256 MiB; a few MB keep memory flat on both sides).
_CHUNK_BYTES = 4 << 20
_CODES = {c.value[0]: c for c in grpc.StatusCode}
_DTYPES = {"float16": pb.EMBEDDING_DTYPE_FLOAT16, "float32": pb.EMBEDDING_DTYPE_FLOAT32,
           "float64": pb.EMBEDDING_DTYPE_FLOAT64}
_LEARN_PARAMS = ("num_context", "num_clusters", "intended_budget", "epochs", "batch_size",
                 "learning_rate", "views", "seed", "init_phrase", "max_train_items")


class Error(Exception):
    """A call the server refused, or a job that did not succeed.

    code: a grpc.StatusCode (for a FAILED job, the code of its error); message: the
    server's message; job: the final Job for a job that did not succeed, else None.
    """

    def __init__(self, code, message, job=None):
        super().__init__("%s: %s" % (code.name, message))
        self.code = code
        self.message = message
        self.job = job


@dataclasses.dataclass(frozen=True)
class SelectedRow:
    """One pick of a selection, in rank order."""
    rank: int
    item_id: str
    path: str  # empty for embeddings datasets
    cluster: int
    score: float


def _job_id(job):
    return job if isinstance(job, str) else job.job_id


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _credentials(tls):
    if tls is True:
        return grpc.ssl_channel_credentials()  # the system's roots
    get = tls.get if isinstance(tls, dict) else (lambda k: getattr(tls, k, None))
    unknown = set(tls) - {"ca", "cert", "key"} if isinstance(tls, dict) else set()
    if unknown:
        raise ValueError("tls: unknown keys %s (expected ca, cert, key)" % sorted(unknown))
    ca, cert, key = get("ca"), get("cert"), get("key")
    if bool(cert) != bool(key):
        raise ValueError("tls: cert and key go together (a client certificate and its key)")
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca) if ca else None,
        private_key=_read(key) if key else None,
        certificate_chain=_read(cert) if cert else None)


class Client:
    """A connection to an updp server.

    addr: "host:port". token: sent as "authorization: Bearer <token>" metadata on every
    call. tls: None for plaintext, True for TLS with the system's root certificates, or
    a dict (or object) with file paths "ca" (roots), "cert" and "key" (a client
    certificate). timeout: seconds for the short calls (default 60); calls that wait for
    work (registrations, wait()) have none.

    Calls the server refuses raise updp.Error with its status code and message.
    """

    def __init__(self, addr, token=None, tls=None, timeout=60.0):
        options = [("grpc.max_receive_message_length", 256 << 20),
                   ("grpc.max_send_message_length", 256 << 20)]
        if tls is None or tls is False:
            self._channel = grpc.insecure_channel(addr, options=options)
        else:
            self._channel = grpc.secure_channel(addr, _credentials(tls), options=options)
        self._stub = updp_pb2_grpc.UpdpStub(self._channel)
        self._metadata = (("authorization", "Bearer " + token),) if token else ()
        self._timeout = timeout

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _call(self, method, request, timeout="default"):
        try:
            return getattr(self._stub, method)(
                request, metadata=self._metadata,
                timeout=self._timeout if timeout == "default" else timeout)
        except grpc.RpcError as e:
            raise Error(e.code(), e.details()) from None

    # -- datasets ---------------------------------------------------------------------

    def register_images(self, name, path):
        """Registers a server-side image directory; returns the READY Dataset."""
        return self._register(pb.RegisterDatasetRequest(
            name=name, images=pb.ImageDirectorySource(path=path)))

    def register_manifest(self, name, path):
        """Registers a server-side manifest (paths, or `id,path` lines)."""
        return self._register(pb.RegisterDatasetRequest(
            name=name, manifest=pb.ManifestSource(path=path)))

    def register_embeddings_path(self, name, server_path, ids_path=None):
        """Registers a .npy that is already on the server (inside --allowed_roots), with an
        optional server-side ids file (one id per line)."""
        return self._register(pb.RegisterDatasetRequest(
            name=name, embeddings=pb.EmbeddingsSource(path=server_path, ids_path=ids_path or "")))

    def _register(self, request):
        return self._call("RegisterDataset", request, timeout=None)

    def register_embeddings(self, name, data, ids=None, chunk_bytes=_CHUNK_BYTES):
        """Uploads embeddings through UploadEmbeddings and registers them.

        data: a numpy array [N, D] of float16, float32 or float64 (stored as float32), or
        the path of a local .npy file (memory-mapped, so it may exceed memory). ids:
        optional, N strings. Sent in chunks of about `chunk_bytes`; the server checks
        everything (shape, finite values, one id per row, unique ids) and stores nothing
        unless all of it checks out. Returns the READY Dataset.
        """
        import numpy as np  # only embeddings need numpy

        if isinstance(data, (str, os.PathLike)):
            data = np.load(data, mmap_mode="r", allow_pickle=False)
        a = np.asarray(data)
        if a.ndim != 2:
            raise Error(grpc.StatusCode.INVALID_ARGUMENT,
                        "data: expected a 2-D array [N, D], got shape %s" % (a.shape,))
        if a.dtype.name not in _DTYPES:
            raise Error(grpc.StatusCode.INVALID_ARGUMENT,
                        "data: dtype %s is not float16, float32 or float64" % a.dtype)
        if ids is not None:
            ids = list(ids)
            bad = next((i for i, x in enumerate(ids) if not isinstance(x, str)), None)
            if bad is not None:
                raise TypeError("ids[%d] is %r, not a str" % (bad, ids[bad]))
        rows, dim = a.shape
        wire = a.dtype.newbyteorder("<")  # little-endian on the wire
        step = max(1, chunk_bytes // max(1, dim * a.dtype.itemsize))

        failed = []  # an exception while making the messages: grpcio would hide it

        def messages():
            try:
                yield from make_messages()
            except Exception as e:
                failed.append(e)
                raise

        def make_messages():
            yield pb.UploadEmbeddingsRequest(header=pb.UploadEmbeddingsHeader(
                name=name, rows=rows, dim=dim, dtype=_DTYPES[a.dtype.name],
                has_ids=ids is not None))
            for begin in range(0, rows, step):
                block = np.ascontiguousarray(a[begin:begin + step], dtype=wire)
                chunk = pb.EmbeddingsChunk(data=block.tobytes())
                if ids is not None:
                    chunk.ids.extend(ids[begin:begin + step])
                yield pb.UploadEmbeddingsRequest(chunk=chunk)
            if ids is not None and len(ids) > rows:
                # The ids left over go too, so that the server names the mismatch.
                yield pb.UploadEmbeddingsRequest(chunk=pb.EmbeddingsChunk(ids=ids[rows:]))

        try:
            return self._stub.UploadEmbeddings(messages(), metadata=self._metadata)
        except grpc.RpcError as e:
            if failed:  # the call was cancelled: nothing was registered
                raise failed[0]
            raise Error(e.code(), e.details()) from None

    def dataset(self, name):
        return self._call("GetDataset", pb.GetDatasetRequest(name=name))

    def datasets(self):
        """Every READY dataset."""
        return list(self._call("ListDatasets", pb.ListDatasetsRequest()).datasets)

    def delete_dataset(self, name):
        self._call("DeleteDataset", pb.DeleteDatasetRequest(name=name))

    def refresh(self, name, wait=False, progress=True):
        """Starts a REFRESH job: rescans an images/manifest dataset's source (new files
        become new items, gone ones are marked missing). Returns the Job (finished with
        wait=True); embed() then embeds only the new items."""
        job = self._call("RefreshDataset", pb.RefreshDatasetRequest(name=name))
        return self.wait(job, progress) if wait else job

    def items(self, dataset):
        """The dataset's items (index, item_id, path) in index order, all pages."""
        out, token = [], ""
        while True:
            page = self._call("ListItems", pb.ListItemsRequest(
                dataset=dataset, page_size=_PAGE, page_token=token))
            out.extend(page.items)
            token = page.next_page_token
            if not token:
                return out

    # -- jobs -------------------------------------------------------------------------

    def embed(self, dataset, batch_size=0, wait=False, progress=True):
        """Starts an EMBED job (BLIP-2 image features); returns the Job, or with wait=True
        the finished Job (see wait())."""
        job = self._call("StartEmbedding",
                         pb.StartEmbeddingRequest(dataset=dataset, batch_size=batch_size))
        return self.wait(job, progress) if wait else job

    def learn_prompt(self, dataset, prompt_name, wait=False, progress=True, **params):
        """Starts a LEARN_PROMPT job. params: num_context, num_clusters, intended_budget,
        epochs, batch_size, learning_rate, views, seed, init_phrase, max_train_items."""
        unknown = sorted(set(params) - set(_LEARN_PARAMS))
        if unknown:
            raise TypeError("learn_prompt: unknown parameters %s (known: %s)" %
                            (", ".join(unknown), ", ".join(_LEARN_PARAMS)))
        job = self._call("LearnPrompt", pb.LearnPromptRequest(
            dataset=dataset, prompt_name=prompt_name, **params))
        return self.wait(job, progress) if wait else job

    def select(self, dataset, strategy, budget, seed=0, features=None, prompt=None,
               labeled=None, rule=None, dedup=0.0, strict_labeled=False, only_new=False,
               wait=False, progress=True):
        """Starts a SELECT job picking `budget` items with `strategy` ("random", "kmeans",
        "kcenter", "typiclust", "usl", "activeft", "probcover", "updp"). labeled: item
        ids already labeled, never picked. only_new: pick only among the items the newest
        refresh() added. Returns the Job (finished with wait=True)."""
        if isinstance(labeled, str):
            raise TypeError("labeled: a list of item ids, not one string")
        job = self._call("Select", pb.SelectRequest(
            dataset=dataset, strategy=strategy, budget=budget, seed=seed,
            features=features or "", prompt=prompt or "", labeled_ids=list(labeled or ()),
            rule=rule or "", dedup=dedup, strict_labeled=strict_labeled, only_new=only_new))
        return self.wait(job, progress) if wait else job

    def job(self, job_id):
        return self._call("GetJob", pb.GetJobRequest(job_id=_job_id(job_id)))

    def jobs(self, dataset="", state=None, limit=0):
        """Recent jobs, optionally of one dataset and in one state (e.g. "SUCCEEDED")."""
        st = pb.JobState.Value(state) if isinstance(state, str) else (state or 0)
        return list(self._call("ListJobs", pb.ListJobsRequest(
            dataset=dataset, state=st, limit=limit)).jobs)

    def cancel(self, job):
        return self._call("CancelJob", pb.CancelJobRequest(job_id=_job_id(job)))

    def wait(self, job, progress=True, out=None):
        """Follows the job (WatchJob) until it ends and returns the final Job; with
        progress, draws a progress bar on `out` (default stderr). Raises updp.Error when
        the job FAILED (with its error's code), was CANCELLED or INTERRUPTED."""
        job_id = _job_id(job)
        bar = _progress.Bar(out or sys.stderr, pb.JobState.Name) if progress else None
        last = None
        try:
            for event in self._stub.WatchJob(pb.WatchJobRequest(job_id=job_id),
                                             metadata=self._metadata):
                last = event.job
                if bar:
                    bar.update(last)
                if event.final:
                    break
        except grpc.RpcError as e:
            raise Error(e.code(), e.details(), last) from None
        finally:
            if bar:
                bar.close()
        if last is None or last.state not in (pb.SUCCEEDED, pb.FAILED, pb.CANCELLED,
                                              pb.INTERRUPTED):
            raise Error(grpc.StatusCode.UNAVAILABLE,
                        "job %s: the watch ended before the job did" % job_id, last)
        if last.state == pb.FAILED:
            raise Error(_CODES.get(last.error_code, grpc.StatusCode.UNKNOWN),
                        "job %s failed: %s" % (job_id, last.error), last)
        if last.state == pb.CANCELLED:
            raise Error(grpc.StatusCode.CANCELLED, "job %s was cancelled" % job_id, last)
        if last.state == pb.INTERRUPTED:
            raise Error(grpc.StatusCode.UNAVAILABLE,
                        "job %s was interrupted (the server stopped); resume it" % job_id, last)
        return last

    # -- selections -------------------------------------------------------------------

    def _selection_pages(self, job):
        rows, token, last = [], "", None
        while True:
            last = self._call("GetSelection", pb.GetSelectionRequest(
                job_id=_job_id(job), page_size=_PAGE, page_token=token))
            rows.extend(SelectedRow(i.rank, i.item_id, i.path, i.cluster, i.score)
                        for i in last.items)
            token = last.next_page_token
            if not token:
                return rows, last

    def selection(self, job):
        """Every pick of a finished SELECT job, as SelectedRow in rank order."""
        return self._selection_pages(job)[0]

    def selection_frame(self, job):
        """The picks as a pandas DataFrame (rank, item_id, path, cluster, score)."""
        try:
            import pandas
        except ImportError as e:
            raise ImportError("selection_frame needs pandas (Debian: apt-get install "
                              "python3-pandas); selection() returns the same rows as a list") \
                from e
        rows = self.selection(job)
        fields = [f.name for f in dataclasses.fields(SelectedRow)]
        return pandas.DataFrame([dataclasses.astuple(r) for r in rows], columns=fields)

    def export(self, job, fmt, out, prefix=None, relative_to=None, data_key="image"):
        """Writes the selection to `out` (a path, or "-" for stdout) exactly as
        `updpctl selection get JOB --format fmt --prefix P --relative-to DIR --data-key K`
        does: csv, json, paths, labelstudio, cvat or fiftyone. Nothing is written when
        the export is refused (a path outside relative_to, an embeddings dataset in an
        image format). Returns the number of picks."""
        job_id = _job_id(job)
        rows, meta = self._selection_pages(job_id)
        try:
            text = exports.render(fmt, rows, job_id, meta.dataset, meta.strategy,
                                  prefix or "", relative_to or "", data_key)
        except exports.ExportError as e:
            raise Error(grpc.StatusCode[e.code], e.message) from None
        if out == "-":
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            with open(out, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        return len(rows)
