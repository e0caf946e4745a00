"""Graph propagation over sparse user-item bipartite graphs (LightGCN-style), a reusable part.

A bipartite graph has ``n_users + n_items`` nodes: users first (``0 .. n_users-1``), then
items (node ``n_users + item``). Its adjacency ``A`` holds a 1 for each distinct
(user, item) training pair, in both directions; repeated interactions count once. The
propagation matrix is the symmetric normalisation of He et al. (LightGCN, SIGIR 2020):

    Â = D^-1/2 A D^-1/2,   Â[u, i] = 1 / sqrt(|N_u| |N_i|)

with ``D`` the diagonal of node degrees. A node without edges (an isolated user or item) has
an empty row and column: its propagated embedding is zero at every layer >= 1 (its degree is
never inverted). One layer is ``E <- Â E``; :func:`light_gcn` combines the ego embeddings and
``layers`` propagated ones by their mean (LightGCN's ``alpha_k = 1 / (K + 1)``).

Memory is linear in the number of edges: ``Â`` is a coalesced sparse COO tensor with two
entries per distinct pair (int64 indices and one value each), never a dense
``n_nodes x n_nodes`` matrix. The graph is built in float64 on the CPU (or on ``device``) and
follows the embeddings it propagates: :meth:`BipartiteGraph.propagate` converts ``Â`` to CSR on
the embeddings' device and in their dtype once and keeps that copy beside the float64 one, so the same graph serves CPU and CUDA
models and float32 or float64 embeddings. The backward pass of a layer uses the symmetry of
``Â`` (the gradient of ``ÂE`` is ``Â`` times the incoming gradient), which on the CPU is about
six times faster than autograd through a sparse product.

Graphs from crossbench data:

- :func:`domain_graph`: one domain's training interactions over all the dataset's users (users
  without interactions in the domain are isolated nodes), so user ``u`` is node ``u`` in every
  domain's graph and per-domain embeddings of the same user line up;
- :func:`merged_graph`: the merged graph of several domains. Users are shared across domains by
  index (:class:`crossbench.data.model.CrossDomainData` numbers them globally), so a user's edges
  in every domain meet at one node; domain ``d``'s items follow the users and the items of the
  domains before it (:attr:`BipartiteGraph.item_slices` names each domain's range of item rows).
  A user with no target-domain edges is still reached through their edges elsewhere.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import numpy as np
import torch

from crossbench.errors import CrossbenchError

if TYPE_CHECKING:
    from crossbench.data.model import CrossDomainData

__all__ = ["BipartiteGraph", "PropagatedModule", "bipartite_graph", "domain_graph", "light_gcn", "merged_graph", "propagate_layers"]


PropagatedT = TypeVar("PropagatedT")


class BipartiteGraph:
    """The normalised adjacency ``D^-1/2 A D^-1/2`` of a user-item graph, with its degrees.

    Build it with :func:`bipartite_graph`, :func:`domain_graph` or :func:`merged_graph`. It holds
    no embeddings: models keep their own parameters and call :meth:`propagate` or
    :func:`light_gcn` with them.
    """

    def __init__(
        self, *, n_users: int, n_items: int, adjacency: torch.Tensor, user_degree: torch.Tensor,
        item_degree: torch.Tensor, item_slices: Mapping[str, slice] | None = None,
    ) -> None:
        self.n_users = n_users
        self.n_items = n_items
        #: coalesced sparse COO ``[n_nodes, n_nodes]`` in float64 (exact weights; converted for use)
        self.master = adjacency
        #: ``master`` as CSR on the device and in the dtype last propagated with (``None`` before)
        self.adjacency: torch.Tensor | None = None
        #: distinct items per user and distinct users per item (float, on the graph's build device)
        self.user_degree = user_degree
        self.item_degree = item_degree
        #: for a merged graph, each domain's rows among the item nodes (``{}`` for one domain)
        self.item_slices: dict[str, slice] = dict(item_slices or {})

    @property
    def n_nodes(self) -> int:
        return self.n_users + self.n_items

    @property
    def n_edges(self) -> int:
        """Distinct (user, item) pairs (each stored twice in :attr:`adjacency`, once per direction)."""
        return int(self.master._nnz()) // 2

    def adjacency_like(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``Â`` as CSR on the device and in the dtype of ``embeddings`` (converted once, then kept)."""
        adj = self.adjacency
        if adj is None or adj.device != embeddings.device or adj.dtype != embeddings.dtype:
            with warnings.catch_warnings():  # torch calls its CSR support beta; products and autograd here are tested
                warnings.simplefilter("ignore", UserWarning)
                adj = self.master.to(device=embeddings.device, dtype=embeddings.dtype).to_sparse_csr()
            self.adjacency = adj
        return adj

    def propagate(self, embeddings: torch.Tensor) -> torch.Tensor:
        """One layer: ``Â @ embeddings`` for ``embeddings`` ``[n_nodes, dim]`` (users, then items).

        Differentiable with respect to ``embeddings``; the result has their device and dtype.
        """
        if embeddings.dim() != 2 or embeddings.shape[0] != self.n_nodes:
            raise CrossbenchError(
                f"graph propagation: embeddings of shape {tuple(embeddings.shape)} do not fit a graph of "
                f"{self.n_users} users + {self.n_items} items; pass [{self.n_nodes}, dim] (users first, then items)"
            )
        # the sparse product runs in the embeddings' dtype, also under (bf16) autocast
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            return _SymmetricProduct.apply(self.adjacency_like(embeddings), embeddings)

    def split(self, nodes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Node rows ``[n_nodes, ...]`` -> (user rows, item rows)."""
        return nodes[: self.n_users], nodes[self.n_users :]

    def to(self, device: torch.device | str) -> BipartiteGraph:
        """The same graph with its adjacency and degrees on ``device``."""
        dev = torch.device(device)
        return BipartiteGraph(
            n_users=self.n_users, n_items=self.n_items, adjacency=self.master.to(dev),
            user_degree=self.user_degree.to(dev), item_degree=self.item_degree.to(dev), item_slices=self.item_slices,
        )


class _SymmetricProduct(torch.autograd.Function):
    """``Â @ E`` for a symmetric sparse ``Â``; the gradient with respect to ``E`` is ``Â @ grad``."""

    @staticmethod
    def forward(ctx: Any, adjacency: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency @ embeddings

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adjacency @ grad.contiguous()


def bipartite_graph(
    users: np.ndarray | torch.Tensor, items: np.ndarray | torch.Tensor, *, n_users: int, n_items: int,
    device: torch.device | str = "cpu", item_slices: Mapping[str, slice] | None = None,
) -> BipartiteGraph:
    """The normalised graph of the interactions ``(users[k], items[k])``; duplicates count once.

    ``users`` in ``[0, n_users)``, ``items`` in ``[0, n_items)``. Nodes without edges are kept
    (isolated). Memory: O(edges + nodes).
    """
    u = np.asarray(users.cpu() if isinstance(users, torch.Tensor) else users, dtype=np.int64).ravel()
    i = np.asarray(items.cpu() if isinstance(items, torch.Tensor) else items, dtype=np.int64).ravel()
    if len(u) != len(i):
        raise CrossbenchError(f"graph: {len(u)} users but {len(i)} items given; pass one user and one item per interaction")
    if len(u) and (u.min() < 0 or u.max() >= n_users or i.min() < 0 or i.max() >= n_items):
        raise CrossbenchError(
            f"graph: a user index is outside [0, {n_users}) or an item index outside [0, {n_items}); "
            "pass the dataset's user and item numbers"
        )
    pairs = np.unique(u * n_items + i)  # distinct pairs, sorted by (user, item)
    u, i = pairs // max(n_items, 1), pairs % max(n_items, 1)
    user_deg = np.bincount(u, minlength=n_users).astype(np.float64)
    item_deg = np.bincount(i, minlength=n_items).astype(np.float64)
    # 1 / sqrt(|N_u| |N_i|) per edge; both degrees are >= 1 on an edge
    weight = 1.0 / np.sqrt(user_deg[u] * item_deg[i])
    rows = np.concatenate([u, i + n_users])
    cols = np.concatenate([i + n_users, u])
    n = n_users + n_items
    order = np.argsort(rows * n + cols, kind="stable")  # row-major order: already coalesced
    index = torch.as_tensor(np.stack([rows[order], cols[order]]))
    values = torch.as_tensor(np.concatenate([weight, weight])[order], dtype=torch.float64)
    adjacency = torch.sparse_coo_tensor(index, values, (n, n), is_coalesced=True, check_invariants=True).to(device)
    return BipartiteGraph(
        n_users=n_users, n_items=n_items, adjacency=adjacency,
        user_degree=torch.as_tensor(user_deg, dtype=torch.float32, device=device),
        item_degree=torch.as_tensor(item_deg, dtype=torch.float32, device=device), item_slices=item_slices,
    )


def domain_graph(data: CrossDomainData, domain: str, *, device: torch.device | str = "cpu") -> BipartiteGraph:
    """The graph of ``domain``'s interactions in ``data`` over all ``data.n_users`` users."""
    d = data.domain(domain)
    frame = d.interactions
    return bipartite_graph(frame["user"].to_numpy(), frame["item"].to_numpy(), n_users=data.n_users, n_items=d.n_items, device=device)


def merged_graph(data: CrossDomainData, domains: Sequence[str] | None = None, *, device: torch.device | str = "cpu") -> BipartiteGraph:
    """One graph over the interactions of ``domains`` (all of ``data``'s by default), users shared by index.

    Item nodes are the domains' items one domain after another, in the order of ``domains``;
    :attr:`BipartiteGraph.item_slices` maps each domain to its rows among the item nodes.
    """
    names = list(domains) if domains is not None else data.domain_names
    if not names or len(set(names)) != len(names):
        raise CrossbenchError(f"merged graph: give distinct domain names, got {names}")
    users, items, slices, offset = [], [], {}, 0
    for name in names:
        d = data.domain(name)
        users.append(d.interactions["user"].to_numpy())
        items.append(d.interactions["item"].to_numpy() + offset)
        slices[name] = slice(offset, offset + d.n_items)
        offset += d.n_items
    return bipartite_graph(
        np.concatenate(users), np.concatenate(items), n_users=data.n_users, n_items=offset, device=device, item_slices=slices,
    )


def propagate_layers(graph: BipartiteGraph, embeddings: torch.Tensor, *, layers: int) -> list[torch.Tensor]:
    """``[E, ÂE, Â²E, ..., Â^layers E]``: the ego embeddings and each layer's output."""
    if layers < 0:
        raise CrossbenchError(f"graph propagation: layers must be >= 0, got {layers}")
    out = [embeddings]
    for _ in range(layers):
        out.append(graph.propagate(out[-1]))
    return out


def light_gcn(graph: BipartiteGraph, embeddings: torch.Tensor, *, layers: int) -> torch.Tensor:
    """LightGCN's final embeddings: the mean of the ego embeddings and ``layers`` propagated ones.

    ``embeddings`` ``[n_nodes, dim]`` (users first, then items) -> ``[n_nodes, dim]``, same device
    and dtype. ``layers=0`` returns the ego embeddings (matrix factorisation).
    """
    outs = propagate_layers(graph, embeddings, layers=layers)
    return torch.stack(outs, dim=0).mean(dim=0)


class PropagatedModule(torch.nn.Module, Generic[PropagatedT]):
    """A graph model whose propagated embeddings are computed once between training steps.

    Subclasses define :meth:`propagate`; :meth:`final` returns its result, recomputed on every
    call while training and cached in evaluation mode. Switching mode (``train()``/``eval()``) or
    loading weights clears the cache, so scoring never reads embeddings of older weights.
    """

    def __init__(self) -> None:
        super().__init__()
        self._final: PropagatedT | None = None

    def propagate(self) -> PropagatedT:
        raise NotImplementedError

    def final(self) -> PropagatedT:
        """:meth:`propagate`, computed once between training steps."""
        if self._final is None or self.training:
            self._final = self.propagate()
        return self._final

    def train(self, mode: bool = True) -> Self:
        self._final = None
        return super().train(mode)

    def load_state_dict(self, *args: Any, **kwargs: Any) -> Any:
        self._final = None
        return super().load_state_dict(*args, **kwargs)
