"""Running workflows without the ComfyUI front end: the in-process runner, ``python -m remaster``,
the ComfyUI API client, graph validation, batch runs and scale-out executors.

Nothing here imports torch at module import time (``--help`` must be instant); heavy modules are
imported inside the functions that run a graph.
"""
