"""MegaLoc's descriptor head: SALAD-style optimal-transport aggregation of patch tokens into
clusters, concatenated with a projected class token, then a linear projection.

Parameter names are those of the published checkpoint (``aggregator.agg.*``,
``aggregator.linear.*``), so it loads strictly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SINKHORN_ITERATIONS = 3
"""Sinkhorn iterations of the published model."""


def _pointwise_mlp(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """1x1 conv, ReLU, 1x1 conv. Index 1 is the original's dropout slot (identity at inference),
    kept so that the second conv is ``.3`` as in the checkpoint."""
    return nn.Sequential(nn.Conv2d(in_dim, hidden_dim, 1), nn.Identity(), nn.ReLU(), nn.Conv2d(hidden_dim, out_dim, 1))


def optimal_transport_assignment(scores: Tensor, dust_bin: Tensor, iterations: int = SINKHORN_ITERATIONS) -> Tensor:
    """Soft assignment [B, M, N] of N tokens to M clusters by log-domain Sinkhorn.

    ``scores`` [B, M, N] gets an extra "dust bin" row of constant score that absorbs tokens
    belonging to no cluster. Row marginals are 1/(N+M) per cluster and (N-M)/(N+M) for the
    dust bin, column marginals 1/(N+M) per token; the plan is rescaled by N+M (so a token's
    column sums to 1) and the dust-bin row dropped. Computed in float32.
    """
    batch, clusters, tokens = scores.shape
    if tokens <= clusters:
        raise ValueError(
            f"MegaLoc's aggregation needs more patch tokens than clusters: got {tokens} tokens for {clusters} "
            "clusters. Use larger images (more patches of 14 px)."
        )
    log_total = math.log(tokens + clusters)
    dust_row = dust_bin.float().expand(batch, 1, tokens)
    log_scores = torch.cat((scores.float(), dust_row), dim=1)
    log_rows = torch.full((clusters + 1,), -log_total, device=scores.device)
    log_rows[-1] += math.log(tokens - clusters)
    log_columns = torch.full((tokens,), -log_total, device=scores.device)
    row_potential = torch.zeros(batch, clusters + 1, device=scores.device)
    column_potential = torch.zeros(batch, tokens, device=scores.device)
    for _ in range(iterations):
        row_potential = log_rows - torch.logsumexp(log_scores + column_potential[:, None, :], dim=2)
        column_potential = log_columns - torch.logsumexp(log_scores + row_potential[:, :, None], dim=1)
    log_plan = log_scores + row_potential[:, :, None] + column_potential[:, None, :] + log_total
    return log_plan[:, :clusters].exp()


class OptimalTransportAggregator(nn.Module):
    """Patch tokens -> per-cluster sums of projected tokens weighted by their optimal-transport
    assignment, each cluster L2-normalised; prepended by the projected, normalised class token;
    the whole L2-normalised: [B, num_clusters * cluster_dim + token_dim]."""

    def __init__(self, embed_dim: int, num_clusters: int, cluster_dim: int, token_dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.token_features = nn.Sequential(nn.Linear(embed_dim, mlp_dim), nn.ReLU(), nn.Linear(mlp_dim, token_dim))
        self.cluster_features = _pointwise_mlp(embed_dim, mlp_dim, cluster_dim)
        self.score = _pointwise_mlp(embed_dim, mlp_dim, num_clusters)
        self.dust_bin = nn.Parameter(torch.tensor(1.0))

    def forward(self, patch_tokens: Tensor, class_token: Tensor) -> Tensor:
        """patch_tokens [B, N, C] (row-major over the patch grid), class_token [B, C]."""
        as_map = patch_tokens.transpose(1, 2).unsqueeze(-1)  # [B, C, N, 1]: the 1x1 convs act per token
        local = self.cluster_features(as_map).flatten(2)  # [B, cluster_dim, N]
        scores = self.score(as_map).flatten(2)  # [B, num_clusters, N]
        scene = self.token_features(class_token)
        # Transport, pooling and normalisations stay in float32 even under autocast.
        with torch.autocast(patch_tokens.device.type, enabled=False):
            assignment = optimal_transport_assignment(scores, self.dust_bin)
            per_cluster = torch.einsum("bdn,bmn->bdm", local.float(), assignment)
            per_cluster = F.normalize(per_cluster, dim=1).flatten(1)  # cluster_dim-major, as the checkpoint's linear
            scene = F.normalize(scene.float(), dim=-1)
            return F.normalize(torch.cat((scene, per_cluster), dim=-1), dim=-1)


class DescriptorAggregator(nn.Module):
    """The optimal-transport aggregator followed by a linear projection to the descriptor size."""

    def __init__(
        self, embed_dim: int, num_clusters: int, cluster_dim: int, token_dim: int, mlp_dim: int, feat_dim: int
    ) -> None:
        super().__init__()
        self.agg = OptimalTransportAggregator(embed_dim, num_clusters, cluster_dim, token_dim, mlp_dim)
        self.linear = nn.Linear(num_clusters * cluster_dim + token_dim, feat_dim)

    def forward(self, patch_tokens: Tensor, class_token: Tensor) -> Tensor:
        return self.linear(self.agg(patch_tokens, class_token))
