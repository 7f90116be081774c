"""Building blocks of the GNN: attention-weighted equivariant message passing.

Each atom carries scalar features ``h`` (``N x F``) and vector features ``v``
(``N x 3 x V``). Messages are built only from invariants (distances, scalar
features, dot products) multiplying vectors (unit bond vectors, neighbours'
vector features), so scalar outputs are invariant and vector outputs rotate
with the structure by construction: no augmentation needed.
"""

from typing import Tuple

import torch


class EdgeGeometry:
    """Per-pair quantities shared by every layer."""

    def __init__(
        self,
        centers: torch.Tensor,
        neighbors: torch.Tensor,
        unit: torch.Tensor,
        radial: torch.Tensor,
        envelope: torch.Tensor,
        normalization: torch.Tensor,
    ):
        self.centers = centers
        self.neighbors = neighbors
        self.unit = unit  # (E, 3)
        self.radial = radial  # (E, R)
        self.envelope = envelope  # (E,)
        self.normalization = normalization  # (N, 1): 1 / sqrt(1 + smooth count)


class Interaction(torch.nn.Module):
    """Messages from neighbours: multi-head attention on scalars, gated vectors.

    The attention weight of a pair is ``silu(q_i . (k_j * w(r_ij)))`` per head
    times the envelope, so it fades to zero at the cutoff without a softmax
    (whose normalisation would make the weights jump when a neighbour enters).
    Per-pair tensors dominate the cost, so queries and keys are narrow
    (``key_width`` per head) and every projection is applied per atom before
    the gather, never per pair.
    """

    def __init__(
        self, width: int, vectors: int, n_radial: int, heads: int, key_width: int
    ):
        super().__init__()
        self.width, self.vectors, self.heads = width, vectors, heads
        attention = heads * key_width
        self.norm = torch.nn.LayerNorm(width)
        self.query = torch.nn.Linear(width, attention)
        self.key = torch.nn.Linear(width, attention)
        self.value = torch.nn.Linear(width, width)
        self.gates = torch.nn.Linear(width, 2 * vectors)
        self.key_filter = torch.nn.Linear(n_radial, attention)
        self.value_filter = torch.nn.Linear(n_radial, width)
        self.gate_filter = torch.nn.Linear(n_radial, 2 * vectors)
        self.output = torch.nn.Linear(width, width)
        # sums over, and copies to, the channels of each head as matrix
        # products: much faster on CPUs than reshapes with broadcasting
        head_of_key = torch.arange(attention) // key_width
        head_of_value = torch.arange(width) // (width // heads)
        heads_range = torch.arange(heads)
        self.register_buffer(
            "key_to_head",
            (head_of_key.unsqueeze(1) == heads_range).to(torch.float32),
            persistent=False,
        )
        self.register_buffer(
            "head_to_value",
            (heads_range.unsqueeze(1) == head_of_value).to(torch.float32),
            persistent=False,
        )

    def forward(
        self, h: torch.Tensor, v: torch.Tensor, edges: EdgeGeometry
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        V = self.vectors
        i, j, radial = edges.centers, edges.neighbors, edges.radial
        x = self.norm(h)
        envelope = edges.envelope.unsqueeze(1)
        key = self.key(x)[j] * self.key_filter(radial)
        score = (self.query(x)[i] * key) @ self.key_to_head
        attention = torch.nn.functional.silu(score) * envelope
        value = self.value(x)[j] * self.value_filter(radial)
        scalar = value * (attention @ self.head_to_value)
        gates = self.gates(x)[j] * self.gate_filter(radial) * envelope
        along_neighbor, along_bond = gates.split([V, V], dim=1)
        vector = along_neighbor.unsqueeze(1) * v[j]
        vector = vector + edges.unit.unsqueeze(2) * along_bond.unsqueeze(1)
        dh = torch.zeros_like(h).index_add(0, i, scalar)
        dv = torch.zeros_like(v).index_add(0, i, vector)
        scale = edges.normalization
        return h + self.output(dh * scale), v + dv * scale.unsqueeze(2)


class Update(torch.nn.Module):
    """Per-atom mixing of scalars and vectors through their invariants
    (norms and dot products of two linear maps of the vectors)."""

    def __init__(self, width: int, vectors: int):
        super().__init__()
        self.width, self.vectors = width, vectors
        self.mix = torch.nn.Linear(vectors, 2 * vectors, bias=False)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(width + 2 * vectors, width),
            torch.nn.SiLU(),
            torch.nn.Linear(width, width + vectors),
        )

    def forward(
        self, h: torch.Tensor, v: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        u, w = self.mix(v).split([self.vectors, self.vectors], dim=2)
        norm = torch.sqrt((w * w).sum(1) + 1e-8)
        dot = (u * w).sum(1)
        dh, gate = self.mlp(torch.cat([h, norm, dot], dim=1)).split(
            [self.width, self.vectors], dim=1
        )
        return h + dh, v + gate.unsqueeze(1) * u
