"""Gaunt coefficients and the equivariance of ACE-MP's inner features."""

import math

import pytest
import torch

from atomtrain.architectures.ace_mp.model import AceMp
from atomtrain.architectures.hypers import defaults_of
from atomtrain.architectures.registry import import_documentation
from atomtrain.data.info import DatasetInfo, TargetInfo
from atomtrain.nn.gaunt import SphereGridProduct, degree_of_components, gaunt_tensor
from atomtrain.nn.spherical import SphericalHarmonics


F64 = torch.float64


def test_products_of_harmonics_expand_exactly():
    """``Y_a Y_b = sum_k G[k, a, b] Y_k / sqrt(4 pi)`` at random directions:
    the coefficients are exact, not fitted."""
    gaunt = gaunt_tensor(2, 2, 4)
    points = torch.randn(50, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    y = SphericalHarmonics(4)(points)
    products = y[:, :9].unsqueeze(2) * y[:, :9].unsqueeze(1)
    expansion = torch.einsum("kab,pk->pab", gaunt, y) / math.sqrt(4 * math.pi)
    torch.testing.assert_close(expansion, products, rtol=0, atol=1e-12)


def test_selection_rules():
    """Only ``|l_a - l_b| <= l <= l_a + l_b`` with ``l_a + l_b + l`` even couple
    (natural parity: no pseudo-tensors appear)."""
    gaunt = gaunt_tensor(3, 3, 3)
    degree = degree_of_components(3)
    k, a, b = torch.nonzero(gaunt, as_tuple=True)
    l, la, lb = degree[k], degree[a], degree[b]
    assert bool(((l + la + lb) % 2 == 0).all())
    assert bool(((l >= (la - lb).abs()) & (l <= la + lb)).all())
    # and every allowed (l_a, l_b, l) triple does couple
    allowed = {
        (x, y, z)
        for x in range(4)
        for y in range(4)
        for z in range(abs(x - y), min(x + y, 3) + 1)
        if (x + y + z) % 2 == 0
    }
    assert set(zip(la.tolist(), lb.tolist(), l.tolist())) == allowed


@pytest.mark.parametrize("l_max", [1, 2, 3, 4])
def test_sphere_grid_product_is_the_gaunt_contraction(l_max):
    """ACE-MP's products on the quadrature grid equal the explicit
    contraction with the Gaunt tensor, for every output truncation and for
    left factors with fewer components."""
    k = (l_max + 1) ** 2
    generator = torch.Generator().manual_seed(l_max)
    x = torch.randn(7, k, dtype=F64, generator=generator)
    y = torch.randn(7, k, dtype=F64, generator=generator)
    gaunt = gaunt_tensor(l_max, l_max, l_max)
    product = SphereGridProduct(l_max)
    y_on_grid = product.on_grid(y)
    for k_x in (1, k):
        for k_out in (1, 4, k):
            expected = torch.einsum("kab,ra,rb->rk", gaunt[:k_out, :k_x], x[:, :k_x], y)
            actual = product(x[:, :k_x], y_on_grid, min(k_out, k))
            torch.testing.assert_close(actual, expected[:, : min(k_out, k)])


def _random_orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=generator))
    q = q * torch.sign(torch.diagonal(r))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return -q if reflect else q


@pytest.mark.parametrize("reflect", [False, True])
def test_vector_features_rotate_with_the_structure(reflect):
    """The ``l = 1`` features that the first layer passes on rotate (and
    reflect) like vectors, and its scalars do not change."""
    hypers = defaults_of(import_documentation("ace_mp").ModelHypers)
    hypers.update(channels=6, radial_hidden=8, num_radial=4)
    torch.manual_seed(0)
    targets = {"energy": TargetInfo("energy", gradients=["positions"])}
    model = AceMp(hypers, DatasetInfo([1, 6, 8], targets)).to(F64)
    with torch.no_grad():
        for key, value in model.named_parameters():
            if ".products." in key:
                value.add_(0.3 * torch.randn_like(value))
    captured = []
    model.updates[0].register_forward_hook(lambda m, i, out: captured.append(out))
    generator = torch.Generator().manual_seed(1)
    positions = 1.6 * torch.randn(7, 3, dtype=F64, generator=generator)
    types = torch.tensor([0, 1, 1, 2, 0, 0, 2])
    centers, neighbors = torch.nonzero(~torch.eye(7, dtype=torch.bool), as_tuple=True)
    rotation = _random_orthogonal(3, reflect)
    for pos in (positions, positions @ rotation.T):
        model.scalar_features(types, centers, neighbors, pos[neighbors] - pos[centers])
    before, after = captured
    assert before.shape[2] == 4
    torch.testing.assert_close(after[:, :, 0], before[:, :, 0])
    xyz = [3, 1, 2]  # real harmonics of l = 1 are (y, z, x)
    expected = before[:, :, xyz] @ rotation.T
    torch.testing.assert_close(after[:, :, xyz], expected)
    assert float(before[:, :, 1:].detach().abs().max()) > 1e-3  # not trivially zero
