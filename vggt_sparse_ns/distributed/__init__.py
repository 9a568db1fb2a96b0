"""One scene's reconstruction spread over processes (one per GPU) with torch.distributed.

``shard``: which frames (and attention heads) each process holds, and the frame gathers; ``attention``: the
global-attention wrapper that exchanges q, k, v between processes (all-to-all) around any strategy's plan;
``reconstruct``: the pipeline's leader and followers; ``launch``: ``--gpus N`` and ``torchrun``. Nothing here is
imported when one process runs.
"""
