"""One global layer's dense attention at the 200-frame 518x518 shape, by kernel: how fast, and how exact.

    python -m benchmarks.dense_attention_kernels --frames 200 --size 518x518

Kernels: cuDNN and flash SDPA in bf16, our warp-specialised Gluon kernel (layers/kernels/
dense_attention.py, the dense path on Hopper), our frame-list kernels (Triton, and the same Gluon kernel
walking the frames' lists) with every frame listed, and
cuDNN's FP8 SDPA through cudnn-frontend (``pip install nvidia-cudnn-frontend``; skipped without it):
q, k, v scaled per tensor into e4m3, softmax probabilities and output in e4m3 too (cuDNN takes a
bf16 output with FP8 inputs on Blackwell only). Random bf16 q, k, v of 16 heads of 64; TFLOP/s
count 4 x 64 x 16 x tokens^2. The error is the relative L2 distance to an fp64 reference on
8 frames' tokens, with logits of unit spread and of three times that (peakier attention).
Rows go to docs/benchmarks/dense_attention_kernels.json.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks.common import RESULTS_DIR, merge_rows
from benchmarks.frame_list_attention import cuda_seconds
from vggt_sparse_ns.layers.kernels.dense_attention import dense_attention
from vggt_sparse_ns.layers.kernels.frame_list_attention import FrameLists, frame_list_attention

HEADS, HEAD_DIM, SPECIAL = 16, 64, 5
E4M3_MAX = 448.0
ERROR_FRAMES = 8
Attention = Callable[[Tensor, Tensor, Tensor], Tensor]
"""q, k, v [1, heads, tokens, head_dim] -> output of the same shape."""


def sdpa(backend: SDPBackend) -> Attention:
    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        with sdpa_kernel(backend):
            return F.scaled_dot_product_attention(q, k, v)

    return attend


def frame_list_dense(tokens_per_frame: int, implementation: str) -> Attention:
    """A frame-list kernel with every frame listed for every frame: dense attention over whole frames."""

    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        frames = q.shape[2] // tokens_per_frame
        every_frame = FrameLists.from_csr(
            torch.arange(frames + 1, device=q.device) * frames, torch.arange(frames, device=q.device).repeat(frames)
        )
        return frame_list_attention(
            q[0], k[0], v[0], every_frame, tokens_per_frame, SPECIAL, False, implementation=implementation
        )[None]

    return attend


def cudnn_fp8() -> Attention | None:
    """cuDNN FP8 SDPA through cudnn-frontend, graphs built per shape; None when the package is missing."""
    try:
        import cudnn
    except ImportError:
        return None
    handle = cudnn.create_handle()
    graphs: dict[tuple[int, ...], tuple] = {}
    fp8, fp32 = cudnn.data_type.FP8_E4M3, cudnn.data_type.FLOAT
    scalar_names = ("descale_q", "descale_k", "descale_v", "descale_s", "scale_s", "scale_o")

    def build(shape: tuple[int, ...]) -> tuple:
        graph = cudnn.pygraph(io_data_type=fp8, intermediate_data_type=fp32, compute_data_type=fp32, handle=handle)
        _, heads, tokens, head_dim = shape
        strides = [heads * tokens * head_dim, tokens * head_dim, head_dim, 1]
        q, k, v = (graph.tensor(name=n, dim=list(shape), stride=strides, data_type=fp8) for n in "qkv")
        scalars = {n: graph.tensor(name=n, dim=[1] * 4, stride=[1] * 4, data_type=fp32) for n in scalar_names}
        out, _, amax_s, amax_o = graph.sdpa_fp8(
            q=q, k=k, v=v, **scalars, is_inference=True, attn_scale=1 / math.sqrt(head_dim)
        )
        out.set_output(True).set_dim(list(shape)).set_stride(strides).set_data_type(fp8)
        for amax in (amax_s, amax_o):
            amax.set_output(True).set_dim([1] * 4).set_stride([1] * 4).set_data_type(fp32)
        graph.validate()
        graph.build_operation_graph()
        graph.create_execution_plans([cudnn.heur_mode.A, cudnn.heur_mode.FALLBACK])
        graph.check_support()
        graph.build_plans()
        workspace = torch.empty(max(graph.get_workspace_size(), 1), dtype=torch.uint8, device="cuda")
        return graph, (q, k, v, out, amax_s, amax_o), scalars, workspace

    def to_e4m3(x: Tensor) -> tuple[Tensor, Tensor]:
        """x scaled so its largest magnitude is e4m3's largest, and the factor that undoes the scaling."""
        descale = x.abs().amax().float().clamp_min(1e-12).reshape(1, 1, 1, 1) / E4M3_MAX
        return (x.float() / descale).to(torch.float8_e4m3fn), descale

    def attend(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if q.shape not in graphs:
            graphs[q.shape] = build(tuple(q.shape))
        graph, (q_t, k_t, v_t, out_t, amax_s_t, amax_o_t), scalars, workspace = graphs[q.shape]
        (q8, q_descale), (k8, k_descale), (v8, v_descale) = to_e4m3(q), to_e4m3(k), to_e4m3(v)
        one = torch.ones(1, 1, 1, 1, device=q.device)
        out = torch.empty(q.shape, device=q.device, dtype=torch.float8_e4m3fn)
        buffers = {
            q_t: q8, k_t: k8, v_t: v8, out_t: out,
            amax_s_t: torch.empty_like(one), amax_o_t: torch.empty_like(one),
            scalars["descale_q"]: q_descale, scalars["descale_k"]: k_descale, scalars["descale_v"]: v_descale,
            scalars["descale_s"]: one / E4M3_MAX, scalars["scale_s"]: one * E4M3_MAX, scalars["scale_o"]: 1 / v_descale,
        }  # fmt: skip
        graph.execute(buffers, workspace, handle=handle)
        return (out.float() * v_descale).to(q.dtype)

    return attend


def relative_error(attend: Attention, tokens: int, spread: float, generator: torch.Generator) -> float:
    q, k, v = (torch.randn(1, HEADS, tokens, HEAD_DIM, device="cuda", generator=generator) for _ in range(3))
    q = q * spread
    reference = F.scaled_dot_product_attention(q.double(), k.double(), v.double())
    out = attend(q.bfloat16(), k.bfloat16(), v.bfloat16()).double()
    return float((out - reference).norm() / reference.norm())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", default="518x518", help="WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    tokens_per_frame = SPECIAL + (height // 14) * (width // 14)
    tokens = args.frames * tokens_per_frame
    kernels: dict[str, Attention | None] = {
        "cudnn-bf16": sdpa(SDPBackend.CUDNN_ATTENTION),
        "flash-bf16": sdpa(SDPBackend.FLASH_ATTENTION),
        "gluon-bf16": dense_attention,
        "frame-list-triton-bf16": frame_list_dense(tokens_per_frame, "triton"),
        "frame-list-gluon-bf16": frame_list_dense(tokens_per_frame, "gluon"),
        "cudnn-fp8": cudnn_fp8(),
    }
    generator = torch.Generator(device="cuda").manual_seed(0)
    q, k, v = (
        torch.randn(1, HEADS, tokens, HEAD_DIM, device="cuda", dtype=torch.bfloat16, generator=generator)
        for _ in range(3)
    )
    flops = 4 * HEAD_DIM * HEADS * tokens**2
    rows = []
    for name, attend in kernels.items():
        if attend is None:
            print(f"{name}: skipped (nvidia-cudnn-frontend is not installed)")
            continue
        seconds = cuda_seconds(lambda a=attend: a(q, k, v), repeats=3)
        errors = {
            f"spread_{spread:g}": round(relative_error(attend, ERROR_FRAMES * tokens_per_frame, spread, generator), 5)
            for spread in (1.0, 3.0)
        }
        row = {
            "kernel": name, "frames": args.frames, "height": height, "width": width, "tokens": tokens,
            "seconds": round(seconds, 4), "tflops": round(flops / seconds / 1e12, 1),
            "relative_error": errors,
            "gpu": torch.cuda.get_device_name(),
        }  # fmt: skip
        print(row, flush=True)
        rows.append(row)
    merge_rows(RESULTS_DIR / "dense_attention_kernels.json", rows, key=("kernel", "frames", "height", "width"))


if __name__ == "__main__":
    main()
