"""crossbench.train.graph: normalised propagation against hand computations, merged graphs, isolated
nodes, and the device and dtype of the embeddings kept."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from crossbench.data.model import CrossDomainData
from crossbench.errors import CrossbenchError
from crossbench.train.graph import bipartite_graph, domain_graph, light_gcn, merged_graph, propagate_layers

R2 = math.sqrt(2.0)


def four_nodes() -> tuple:
    """Users u0, u1; items i0, i1; edges u0-i0, u0-i1, u1-i0 (u0-i0 given twice: counts once).

    Degrees u0 2, u1 1, i0 2, i1 1, so Â[u0,i0] = 1/sqrt(2*2) = 1/2, Â[u0,i1] = 1/sqrt(2*1),
    Â[u1,i0] = 1/sqrt(1*2). Ego embeddings (one dimension) u0 1, u1 2, i0 3, i1 4.
    """
    g = bipartite_graph(np.array([0, 0, 1, 0]), np.array([0, 1, 0, 0]), n_users=2, n_items=2)
    e = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    return g, e


def test_normalised_adjacency_by_hand():
    g, _ = four_nodes()
    assert (g.n_users, g.n_items, g.n_nodes, g.n_edges) == (2, 2, 4, 3)
    expected = torch.tensor([
        [0, 0, 1 / 2, 1 / R2],
        [0, 0, 1 / R2, 0],
        [1 / 2, 1 / R2, 0, 0],
        [1 / R2, 0, 0, 0],
    ])
    torch.testing.assert_close(g.master.to_dense(), expected.double())
    torch.testing.assert_close(g.user_degree, torch.tensor([2.0, 1.0]))
    torch.testing.assert_close(g.item_degree, torch.tensor([2.0, 1.0]))


def test_propagation_equals_the_hand_computation():
    g, e = four_nodes()
    layers = propagate_layers(g, e, layers=2)
    # layer 1: u0 = 3/2 + 4/√2 = 4.328427, u1 = 3/√2 = 2.121320, i0 = 1/2 + 2/√2 = 1.914214, i1 = 1/√2 = 0.707107
    one = [1.5 + 4 / R2, 3 / R2, 0.5 + 2 / R2, 1 / R2]
    torch.testing.assert_close(layers[1].squeeze(1), torch.tensor(one))
    torch.testing.assert_close(layers[1].squeeze(1), torch.tensor([4.328427, 2.121320, 1.914214, 0.707107]))
    # layer 2: u0 = i0/2 + i1/√2 = 1.457107, u1 = i0/√2 = 1.353553, i0 = u0/2 + u1/√2 = 3.664214, i1 = u0/√2 = 3.060660
    two = [one[2] / 2 + one[3] / R2, one[2] / R2, one[0] / 2 + one[1] / R2, one[0] / R2]
    torch.testing.assert_close(layers[2].squeeze(1), torch.tensor([1.457107, 1.353553, 3.664214, 3.060660]))
    torch.testing.assert_close(layers[2].squeeze(1), torch.tensor(two))
    # LightGCN with K = 2: the mean of the three: (1 + 4.328427 + 1.457107) / 3 = 2.261845, ...
    final = light_gcn(g, e, layers=2).squeeze(1)
    torch.testing.assert_close(final, torch.tensor([2.261845, 1.824958, 2.859476, 2.589256]))
    torch.testing.assert_close(light_gcn(g, e, layers=0), e)


def test_gradient_flows_to_the_ego_embeddings():
    g, e = four_nodes()
    e = e.clone().requires_grad_(True)
    light_gcn(g, e, layers=1)[0].sum().backward()
    # d final[u0] / d e = (1/2) * (onehot(u0) + Â[u0, :]) = (1/2) * [1, 0, 1/2, 1/√2]
    torch.testing.assert_close(e.grad.squeeze(1), torch.tensor([0.5, 0.0, 0.25, 0.5 / R2]))


def test_gradient_of_a_layer_matches_autograd_numerically():
    g = bipartite_graph(np.array([0, 0, 1, 2]), np.array([0, 1, 0, 2]), n_users=3, n_items=3)
    e = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: light_gcn(g, x, layers=2), (e,))


def test_isolated_nodes_propagate_to_zero_and_keep_their_ego_share():
    # user 2 and item 2 have no edges
    g = bipartite_graph(np.array([0, 0, 1]), np.array([0, 1, 0]), n_users=3, n_items=3)
    assert g.n_edges == 3 and g.user_degree.tolist() == [2.0, 1.0, 0.0] and g.item_degree.tolist() == [2.0, 1.0, 0.0]
    e = torch.arange(1.0, 7.0).unsqueeze(1)  # u0..u2 = 1, 2, 3; i0..i2 = 4, 5, 6
    layers = propagate_layers(g, e, layers=3)
    for out in layers[1:]:
        assert torch.isfinite(out).all()
        assert out[2].item() == 0.0 and out[5].item() == 0.0
    final = light_gcn(g, e, layers=3)
    assert final[2].item() == pytest.approx(3.0 / 4) and final[5].item() == pytest.approx(6.0 / 4)
    # the connected part is the four-node graph with ego 1, 2, 4, 5: u1 at layer 1 = 4/√2
    assert layers[1][1].item() == pytest.approx(4 / R2)
    empty = bipartite_graph(np.zeros(0, np.int64), np.zeros(0, np.int64), n_users=2, n_items=1)
    assert empty.n_edges == 0 and torch.equal(empty.propagate(torch.ones(3, 2)), torch.zeros(3, 2))


def merged_data() -> CrossDomainData:
    """Users a, b, c; domain 'books' items x, y: a-x, b-y; domain 'films' item z: a-z, c-z."""
    rows = [("books", "a", "x", 1), ("books", "b", "y", 2), ("films", "a", "z", 3), ("films", "c", "z", 4)]
    frame = pd.DataFrame(rows, columns=["domain", "user", "item", "timestamp"])
    return CrossDomainData.from_frames("tiny", frame, domain_order=["books", "films"])


def test_merged_graph_by_hand():
    data = merged_data()
    g = merged_graph(data)
    # nodes: users a, b, c (0-2); books x, y (3, 4); films z (5)
    assert (g.n_users, g.n_items, g.n_edges) == (3, 3, 4)
    assert g.item_slices == {"books": slice(0, 2), "films": slice(2, 3)}
    # degrees: a 2 (x, z), b 1, c 1; x 1, y 1, z 2 (a, c)
    torch.testing.assert_close(g.user_degree, torch.tensor([2.0, 1.0, 1.0]))
    torch.testing.assert_close(g.item_degree, torch.tensor([1.0, 1.0, 2.0]))
    dense = g.master.to_dense().float()
    expected = torch.zeros(6, 6)
    for u, i, w in ((0, 3, 1 / R2), (0, 5, 1 / 2), (1, 4, 1.0), (2, 5, 1 / R2)):
        expected[u, i] = expected[i, u] = w
    torch.testing.assert_close(dense, expected)
    # c reaches books item x only through the shared user a: two hops from z, three from c
    e = torch.zeros(6, 1)
    e[2] = 1.0
    layers = propagate_layers(g, e, layers=3)
    assert layers[2][0].item() == pytest.approx((1 / 2) * (1 / R2))  # a <- z <- c
    assert layers[3][3].item() == pytest.approx((1 / R2) * (1 / 2) * (1 / R2))  # x <- a <- z <- c
    assert layers[3][4].item() == 0.0  # y is not connected to c


def test_domain_graph_spans_all_users():
    data = merged_data()
    films = domain_graph(data, "films")
    assert (films.n_users, films.n_items, films.n_edges) == (3, 1, 2)
    torch.testing.assert_close(films.user_degree, torch.tensor([1.0, 0.0, 1.0]))  # b has no films: isolated
    assert films.master.to_dense()[0, 3].item() == pytest.approx(1 / R2)
    with pytest.raises(CrossbenchError, match="merged graph: give distinct domain names"):
        merged_graph(data, ["films", "films"])


def test_dtype_and_device_follow_the_embeddings():
    g, e = four_nodes()
    out = light_gcn(g, e.double(), layers=2)
    assert out.dtype == torch.float64 and g.adjacency.dtype == torch.float64
    # float64 keeps the exact weights: u0 = (1 + (3/2 + 2√2) + (1/4 + 1/√2 + 1/2)) / 3
    assert out[0, 0].item() == pytest.approx((1 + (1.5 + 2 * R2) + (0.25 + 1 / R2 + 0.5)) / 3, rel=1e-14, abs=0)
    torch.testing.assert_close(out.squeeze(1), torch.tensor([2.261845, 1.824958, 2.859476, 2.589256], dtype=torch.float64), atol=1e-6, rtol=0)
    back = light_gcn(g, e, layers=2)
    assert back.dtype == torch.float32 and back.device == e.device
    if torch.cuda.is_available():
        cuda = light_gcn(g, e.cuda(), layers=2)
        assert cuda.device.type == "cuda"
        torch.testing.assert_close(cuda.cpu(), back)
        moved = g.to("cuda")
        assert moved.master.device.type == "cuda" and moved.user_degree.device.type == "cuda"


def test_bad_input_is_named():
    g, _ = four_nodes()
    with pytest.raises(CrossbenchError, match=r"do not fit a graph of 2 users \+ 2 items"):
        g.propagate(torch.ones(3, 1))
    with pytest.raises(CrossbenchError, match="outside"):
        bipartite_graph(np.array([5]), np.array([0]), n_users=2, n_items=2)
    with pytest.raises(CrossbenchError, match="layers must be >= 0"):
        propagate_layers(g, torch.ones(4, 1), layers=-1)


def test_memory_is_linear_in_edges():
    # 200k users x 100k items would be 9e10 dense entries; the graph stores 2 per edge
    rng = np.random.default_rng(0)
    u, i = rng.integers(0, 200_000, 50_000), rng.integers(0, 100_000, 50_000)
    g = bipartite_graph(u, i, n_users=200_000, n_items=100_000)
    assert g.master._nnz() == 2 * g.n_edges and g.n_edges == len(np.unique(u * 100_000 + i))
    out = g.propagate(torch.ones(g.n_nodes, 4))
    assert out.shape == (300_000, 4)


def test_propagation_keeps_float32_under_autocast():
    g, e = four_nodes()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = g.propagate(e)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.squeeze(1), torch.tensor([4.328427, 2.121320, 1.914214, 0.707107]))


def test_propagated_module_caches_in_eval_mode_only_and_forgets_on_mode_change_and_loading() -> None:
    from crossbench.train.graph import PropagatedModule

    class Counting(PropagatedModule[torch.Tensor]):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2))
            self.calls = 0

        def propagate(self) -> torch.Tensor:
            self.calls += 1
            return self.w * 2

    m = Counting()
    m.final(), m.final()
    assert m.calls == 2  # training: recomputed on every call
    m.eval()
    first = m.final()
    assert m.final() is first and m.calls == 3  # evaluation: computed once
    m.load_state_dict({"w": torch.full((2,), 5.0)})
    assert torch.equal(m.final(), torch.full((2,), 10.0)) and m.calls == 4  # loading clears the cache
    m.train().eval()
    m.final()
    assert m.calls == 5  # a mode change clears it too
