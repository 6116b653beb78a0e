"""Selection exports, byte for byte what `updpctl selection get --format F` writes
(client/client_lib.cc): csv, json, paths, and for labeling tools labelstudio (tasks
JSON), cvat (a file list) and fiftyone (a CSVDataset labels file)."""

import json
import math

FORMATS = ("csv", "json", "paths", "labelstudio", "cvat", "fiftyone")

_URL_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.~/")


class ExportError(Exception):
    """A selection that cannot be exported as asked; `code` is a grpc.StatusCode name."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def media_reference(item_id, path, prefix="", relative_to=""):
    """prefix + the path (made relative to `relative_to` first when set); a prefix that is
    a URL (it has "://" or "?") gets the path percent-encoded (but '/')."""
    if not path:
        raise ExportError(
            "FAILED_PRECONDITION",
            "item '%s' has no image path (an embeddings dataset); export csv, json or paths "
            "instead" % item_id)
    rel = path
    if relative_to:
        root = relative_to
        while len(root) > 1 and root.endswith("/"):
            root = root[:-1]
        if not path.startswith(root + "/"):
            raise ExportError(
                "INVALID_ARGUMENT",
                "relative_to: the path of item '%s' (%s) is not under %s" % (item_id, path, root))
        rel = path[len(root) + 1:]
    if "://" in prefix or "?" in prefix:
        rel = "".join(chr(b) if b in _URL_SAFE else "%%%02X" % b for b in rel.encode("utf-8"))
    return prefix + rel


def _csv_field(s):
    if not any(c in s for c in ',"\n\r'):
        return s
    return '"' + s.replace('"', '""') + '"'


def _g(x):
    return "%.6g" % x


def _json_number(x):
    # nlohmann::json writes non-finite numbers as null.
    return x if math.isfinite(x) else None


def _dump(obj):
    # As nlohmann::json's dump(2): keys sorted (std::map), 2-space indent, UTF-8 as is.
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render(fmt, rows, job_id, dataset, strategy, prefix="", relative_to="", data_key="image"):
    """The export's text. `rows` are SelectedRow (rank, item_id, path, cluster, score)."""
    if fmt not in FORMATS:
        raise ExportError("INVALID_ARGUMENT",
                          "format: %r is not one of %s" % (fmt, ", ".join(FORMATS)))
    refs = []
    if fmt in ("labelstudio", "cvat", "fiftyone"):
        # Every reference is made before anything is written.
        refs = [media_reference(r.item_id, r.path, prefix, relative_to) for r in rows]
    if fmt == "labelstudio":
        tasks = []
        for r, ref in zip(rows, refs):
            data = {"item_id": r.item_id}
            data[data_key] = ref  # the reference wins a clash, as in updpctl
            tasks.append({
                "data": data,
                "meta": {"rank": r.rank, "cluster": r.cluster, "score": _json_number(r.score),
                         "dataset": dataset, "strategy": strategy, "selection_job": job_id},
            })
        return _dump(tasks)
    if fmt == "cvat":
        return "".join(ref + "\n" for ref in refs)
    if fmt == "fiftyone":
        lines = ["filepath,item_id,rank,cluster,score,tags\n"]
        for r, ref in zip(rows, refs):
            lines.append("%s,%s,%d,%d,%s,%s\n" % (_csv_field(ref), _csv_field(r.item_id), r.rank,
                                                 r.cluster, _g(r.score),
                                                 _csv_field("updp," + strategy)))
        return "".join(lines)
    if fmt == "json":
        return _dump({
            "job_id": job_id, "dataset": dataset, "strategy": strategy,
            "items": [{"rank": r.rank, "item_id": r.item_id, "path": r.path,
                       "cluster": r.cluster, "score": _json_number(r.score)} for r in rows],
        })
    if fmt == "paths":  # embeddings datasets have no paths: their ids stand in
        return "".join((r.path or r.item_id) + "\n" for r in rows)
    lines = ["rank,item_id,path,cluster,score\n"]  # csv
    for r in rows:
        lines.append("%d,%s,%s,%d,%s\n" % (r.rank, _csv_field(r.item_id), _csv_field(r.path),
                                           r.cluster, _g(r.score)))
    return "".join(lines)
