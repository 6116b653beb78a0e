"""Python client for the updp server (UP-DP data selection on BLIP-2).

    import updp
    with updp.Client("localhost:50051") as c:
        c.register_images("pool", "/data/pool")
        c.embed("pool", wait=True)
        job = c.select("pool", "kmeans", 100, wait=True)
        c.export(job, "labelstudio", "tasks.json")

Needs Debian's python3-grpcio and python3-protobuf; numpy only for embeddings arrays,
pandas only for selection_frame(). The modules generated from the proto (updp.v1) are
built by CMake or client/python/generate.sh.
"""

from updp.client import Client, Error, SelectedRow

__all__ = ["Client", "Error", "SelectedRow"]
