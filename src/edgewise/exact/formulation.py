"""The mixed-integer program of Tjeng, Xiao & Tedrake (ICLR 2019) for one sample, and its pre-activation bounds.

Variables: the perturbed input x' (columns 0..D-1, inside [0, 1] ∩ the ball's bounding box), the norm's auxiliary
variables, and per layer the pre-activations z, the post-activations a and binary indicators:

- ReLU with bounds l < 0 < u (eq. 5 of the paper): a ≥ z, a ≥ 0, a ≤ u·s, a ≤ z − l·(1 − s), s ∈ {0, 1};
  a ReLU with l ≥ 0 is the identity and one with u ≤ 0 the constant 0: no binary (they are "fixed").
- max-pooling y = max_i x_i (eq. 6): y ≥ x_i, y ≤ x_i + (u_max − l_i)(1 − q_i), Σ q_i = 1, over the inputs whose
  upper bound reaches the largest lower bound (one such input: y is that input).
- the adversarial region: some class j ≠ label has z_j − z_label ≥ −τ (one binary per class that can reach it,
  big-M with the margin's lower bound); targeted: z_target − z_j ≥ −τ for every j. τ (``tolerance``) absorbs
  float rounding of the real model, so the certified lower bound covers every input the model misclassifies.
- objective: ℓ∞ t with −t ≤ x' − x ≤ t; ℓ1 Σ e with −e ≤ x' − x ≤ e; ℓ2 Σ (x' − x)² (a quadratic objective).

Bounds (section 3.2 of the paper) are computed by interval arithmetic from the input box, with the exact extremes
of each first-layer row over box ∩ ball for ℓ2 balls (a clipped ray, bisected) and ℓ1 balls (a fractional
knapsack), and tightened from the second layer on with the relaxation of the program so far (the binaries
relaxed to [0, 1]; for ℓ2 with its ball) where ``lp`` is set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse

from edgewise.exact.network import Affine, MaxPool, Network, ReLU

INF = np.inf
LP_SLACK = 1e-6


@dataclass
class Program:
    """min cost·v (+ Σ_{i<D} (v_i − center_i)² when ``center`` is set) s.t. row_lower ≤ A v ≤ row_upper, bounds;
    for ℓ2 (``center`` set) also Σ_{i<D} (v_i − center_i)² ≤ radius², the ball the program is asked in."""

    col_lower: np.ndarray
    col_upper: np.ndarray
    integer: np.ndarray
    cost: np.ndarray
    matrix: sparse.csr_matrix
    row_lower: np.ndarray
    row_upper: np.ndarray
    center: np.ndarray | None = None
    radius: float = INF
    margin_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    margin_binaries: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    def fixed(self, point: np.ndarray, shift: float) -> Program:
        """This program with every integer variable fixed at its value in ``point`` and the margin rows that
        ``point`` enforces raised by ``shift``: on one activation pattern, a convex program."""
        lower, upper = self.col_lower.copy(), self.col_upper.copy()
        lower[self.integer] = upper[self.integer] = np.round(point[self.integer])
        row_lower = self.row_lower.copy()
        binding = (self.margin_binaries < 0) | (np.round(point[np.maximum(self.margin_binaries, 0)]) == 1)
        row_lower[self.margin_rows[binding]] += shift
        return Program(lower, upper, np.zeros_like(self.integer), self.cost, self.matrix, row_lower,
                       self.row_upper, self.center, self.radius, self.margin_rows, self.margin_binaries)


@dataclass(frozen=True)
class Solution:
    """status: "optimal", "time_limit" or "infeasible"; objective/bound in the program's units (squared for ℓ2)."""

    status: str
    point: np.ndarray | None
    objective: float
    bound: float


@dataclass
class _Builder:
    col_lower: list[float] = field(default_factory=list)
    col_upper: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    row_lower: list[float] = field(default_factory=list)
    row_upper: list[float] = field(default_factory=list)
    margin_rows: list[int] = field(default_factory=list)
    margin_binaries: list[int] = field(default_factory=list)

    def add_cols(self, lower: np.ndarray, upper: np.ndarray, *, integer: bool = False,
                 cost: float = 0.0) -> np.ndarray:
        start = len(self.col_lower)
        self.col_lower.extend(np.asarray(lower, dtype=float).tolist())
        self.col_upper.extend(np.asarray(upper, dtype=float).tolist())
        self.integer.extend([integer] * len(lower))
        self.cost.extend([cost] * len(lower))
        return np.arange(start, len(self.col_lower))

    def add_row(self, cols: np.ndarray, values: np.ndarray, lower: float, upper: float) -> None:
        self.rows.extend([len(self.row_lower)] * len(cols))
        self.cols.extend(np.asarray(cols).tolist())
        self.values.extend(np.asarray(values, dtype=float).tolist())
        self.row_lower.append(lower)
        self.row_upper.append(upper)

    def add_rows(self, matrix: sparse.spmatrix, lower: np.ndarray, upper: np.ndarray) -> None:
        coo = sparse.coo_matrix(matrix)
        self.rows.extend((coo.row + len(self.row_lower)).tolist())
        self.cols.extend(coo.col.tolist())
        self.values.extend(coo.data.tolist())
        self.row_lower.extend(np.broadcast_to(lower, (coo.shape[0],)).tolist())
        self.row_upper.extend(np.broadcast_to(upper, (coo.shape[0],)).tolist())

    def program(self, *, center: np.ndarray | None = None, radius: float = INF) -> Program:
        shape = (len(self.row_lower), len(self.col_lower))
        matrix = sparse.csr_matrix((self.values, (self.rows, self.cols)), shape=shape)
        return Program(np.array(self.col_lower), np.array(self.col_upper), np.array(self.integer, dtype=bool),
                       np.array(self.cost), matrix, np.array(self.row_lower), np.array(self.row_upper),
                       center, radius, np.array(self.margin_rows, dtype=int),
                       np.array(self.margin_binaries, dtype=int))


@dataclass(frozen=True)
class Bounds:
    """Bounds of the perturbed input, of each layer's output but the logits, and of the margins g_j."""

    input: tuple[np.ndarray, np.ndarray]
    layers: list[tuple[np.ndarray, np.ndarray]]
    margin: tuple[np.ndarray, np.ndarray]


def margin_rows(network: Network, label: int, *, targeted: bool) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Rows D, d with g = D·a + d over the logits' input a: z_j − z_label (targeted: z_target − z_j), j ≠ label."""
    last = network.layers[-1]
    assert isinstance(last, Affine)
    others = np.array([j for j in range(network.num_classes) if j != label])
    weight, bias = last.weight.tocsr(), last.bias
    if targeted:
        return (weight[[label] * len(others)] - weight[others]).tocsr(), bias[label] - bias[others]
    return (weight[others] - weight[[label] * len(others)]).tocsr(), bias[others] - bias[label]


def input_box(x: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    return np.maximum(0.0, x - radius), np.minimum(1.0, x + radius)


def _affine_interval(weight: sparse.csr_matrix, bias: np.ndarray, lower: np.ndarray,
                     upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    positive, negative = weight.maximum(0), weight.minimum(0)
    return positive @ lower + negative @ upper + bias, positive @ upper + negative @ lower + bias


def _first_layer_l2(weight: sparse.csr_matrix, bias: np.ndarray, x: np.ndarray,
                    radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of w·x' + b over [0, 1] ∩ {‖x' − x‖₂ ≤ radius}, per row: by the KKT conditions the maximizer is
    δ(λ) = clip(λ w, −x, 1 − x) with the smallest λ ≥ 0 at which ‖δ(λ)‖₂ reaches the radius (the box corner
    where it never does). ‖δ(λ)‖ and w·δ(λ) grow with λ, so λ is bisected and the end above the radius kept:
    a sound bound, within 2⁻⁶⁰ of λ's range of the exact one. Cauchy-Schwarz (w·x ± radius‖w‖₂) ignores the
    box, which stops every dark pixel of an image from moving down: up to √2 looser on Fashion-MNIST."""
    dense = weight.toarray()
    center = dense @ x + bias
    ends = []
    for direction in (1.0, -1.0):
        w = direction * dense
        room = np.where(w > 0, 1.0 - x, x)
        with np.errstate(divide="ignore", invalid="ignore"):
            saturate = np.where(w != 0, room / np.abs(w), 0.0)
        # From λ = 0 to the λ that saturates every coordinate (the box corner). Where the corner lies inside the
        # ball every midpoint is inside, the upper end never moves, and the corner is the maximizer.
        low, high = np.zeros(len(w)), saturate.max(axis=1, initial=0.0)

        def step(lam: np.ndarray, w: np.ndarray = w, room: np.ndarray = room) -> np.ndarray:
            return np.minimum(np.abs(w) * lam[:, None], room)

        for _ in range(60):
            middle = (low + high) / 2
            inside = np.sqrt((step(middle) ** 2).sum(axis=1)) <= radius
            low, high = np.where(inside, middle, low), np.where(inside, high, middle)
        ends.append(direction * (np.abs(w) * step(high)).sum(axis=1))
    return center + ends[1], center + ends[0]


def _first_layer_l1(weight: sparse.csr_matrix, bias: np.ndarray, x: np.ndarray,
                    radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact min and max of w·x' + b over [0, 1] ∩ {‖x' − x‖₁ ≤ radius}: a fractional knapsack per row, the
    budget spent on the largest |w_i| first, each up to its room in the box (what an LP would give, in closed
    form)."""
    dense = weight.toarray()
    center = dense @ x + bias
    order = np.argsort(-np.abs(dense), axis=1)
    magnitude = np.take_along_axis(np.abs(dense), order, axis=1)
    ends = []
    for direction in (1.0, -1.0):
        # Room along direction·sign(w_i): up to 1 − x_i when that moves x' up, x_i when it moves x' down.
        up = direction * np.take_along_axis(dense, order, axis=1) > 0
        room = np.where(up, (1.0 - x)[order], x[order])
        spent = np.cumsum(room, axis=1) - room
        take = np.clip(radius - spent, 0.0, room)
        ends.append(direction * (magnitude * take).sum(axis=1))
    return center + ends[1], center + ends[0]


def _maxpool_interval(groups: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pad = np.append(lower, -INF), np.append(upper, -INF)
    return pad[0][groups].max(axis=1), pad[1][groups].max(axis=1)


def build(network: Network, x: np.ndarray, norm: str, radius: float, bounds: Bounds, *, label: int,
          targeted: bool, tolerance: float, upto: int | None = None,
          feasibility: bool = False) -> tuple[Program, np.ndarray]:
    """The program of one sample, or with ``upto`` = k the part before layer k (for LP tightening).

    ``feasibility``: no objective, "is there an adversarial within ``radius``?" (ℓ∞: the input columns' box is
    then the whole ball, and the 2D rows |x' − x| ≤ t are left out; ℓ2: the program is the minimization's, whose
    quadratic Σ (x' − x)² is bounded by radius², and the solver stops at its first point).
    Returns the program and the columns of the values entering layer ``upto`` (or the logits' layer): -1
    marks a unit that is the constant 0 (a ReLU fixed inactive).
    """
    builder = _Builder()
    values = builder.add_cols(*bounds.input)
    _add_norm(builder, values, x, norm, radius, objective=upto is None and not feasibility)
    stop = len(network.layers) - 1 if upto is None else upto
    entering = [bounds.input, *bounds.layers]
    for k, layer in enumerate(network.layers[:stop]):
        if isinstance(layer, Affine):
            values = _add_affine(builder, layer, values, *entering[k + 1])
        elif isinstance(layer, ReLU):
            values = _add_relu(builder, values, *entering[k])
        else:
            values = _add_maxpool(builder, layer, values, *entering[k])
    if upto is None:
        _add_adversarial(builder, network, values, bounds, label=label, targeted=targeted, tolerance=tolerance)
    return builder.program(center=x if norm == "l2" else None, radius=radius), values


def _add_norm(builder: _Builder, inputs: np.ndarray, x: np.ndarray, norm: str, radius: float, *,
              objective: bool) -> None:
    """The norm's variables and rows; without an objective the ℓ∞ ball is the input columns' box already."""
    size = len(inputs)
    rows = np.arange(size)
    if norm == "linf" and not objective:
        return
    if norm == "linf":
        (t,) = builder.add_cols(np.zeros(1), np.array([radius]), cost=1.0 if objective else 0.0)
        where = (np.r_[rows, rows], np.r_[inputs, [t] * size])
        minus_t = sparse.coo_matrix((np.r_[np.ones(size), -np.ones(size)], where), shape=(size, t + 1))
        plus_t = sparse.coo_matrix((np.ones(2 * size), where), shape=(size, t + 1))
        builder.add_rows(minus_t, np.full(size, -INF), x)      # x' − t ≤ x
        builder.add_rows(plus_t, x, np.full(size, INF))        # x' + t ≥ x
    elif norm == "l1":
        reach = np.minimum(radius, np.maximum(x, 1.0 - x))
        e = builder.add_cols(np.zeros(size), reach, cost=1.0 if objective else 0.0)
        width = int(e[-1]) + 1
        minus = sparse.coo_matrix((np.r_[np.ones(size), -np.ones(size)], (np.r_[rows, rows], np.r_[e, inputs])),
                                  shape=(size, width))
        plus = sparse.coo_matrix((np.ones(2 * size), (np.r_[rows, rows], np.r_[e, inputs])), shape=(size, width))
        builder.add_rows(minus, -x, np.full(size, INF))        # e − x' ≥ −x
        builder.add_rows(plus, x, np.full(size, INF))          # e + x' ≥ x
        if np.isfinite(radius):
            builder.add_row(e, np.ones(size), -INF, radius)


def _add_affine(builder: _Builder, layer: Affine, values: np.ndarray, low: np.ndarray,
                high: np.ndarray) -> np.ndarray:
    z = builder.add_cols(low, high)
    active = values >= 0
    weight = layer.weight[:, np.flatnonzero(active)].tocoo()
    # z − W a = b, over the columns of a that are variables (a constant-0 unit contributes nothing).
    matrix = sparse.coo_matrix(
        (np.concatenate([-weight.data, np.ones(len(z))]),
         (np.concatenate([weight.row, np.arange(len(z))]), np.concatenate([values[active][weight.col], z]))),
        shape=(len(z), len(builder.col_lower)))
    builder.add_rows(matrix, layer.bias, layer.bias)
    return z


def _add_relu(builder: _Builder, values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """ReLU of the z columns ``values`` with bounds [low, high] (eq. 5); fixed units get no binary."""
    out = np.where(low >= 0, values, -1)
    for i in np.flatnonzero((low < 0) & (high > 0)):
        bottom, top = low[i], high[i]
        (a,) = builder.add_cols(np.zeros(1), np.array([top]))
        (s,) = builder.add_cols(np.zeros(1), np.ones(1), integer=True)
        builder.add_row(np.array([a, values[i]]), np.array([1.0, -1.0]), 0.0, INF)    # a ≥ z
        builder.add_row(np.array([a, s]), np.array([1.0, -top]), -INF, 0.0)           # a ≤ u s
        builder.add_row(np.array([a, values[i], s]), np.array([1.0, -1.0, -bottom]), -INF, -bottom)  # a ≤ z − l (1 − s)
        out[i] = a
    return out


def _add_maxpool(builder: _Builder, layer: MaxPool, values: np.ndarray, low: np.ndarray,
                 high: np.ndarray) -> np.ndarray:
    """y = max over each group (eq. 6); only inputs whose upper bound reaches the largest lower bound compete."""
    out = np.full(len(layer.groups), -1)
    for o, group in enumerate(layer.groups):
        group = group[group >= 0]
        floor = low[group].max()
        candidates = group[high[group] >= floor]
        if len(candidates) == 1 or (values[candidates] < 0).all():
            out[o] = values[candidates[np.argmax(low[candidates])]]
            continue
        top = high[candidates].max()
        (y,) = builder.add_cols(np.array([floor]), np.array([top]))
        q = builder.add_cols(np.zeros(len(candidates)), np.ones(len(candidates)), integer=True)
        for i, qi in zip(candidates, q, strict=True):
            variable = values[i] >= 0
            cols = np.array([y, values[i]]) if variable else np.array([y])
            coefs = np.array([1.0, -1.0]) if variable else np.array([1.0])
            builder.add_row(cols, coefs, 0.0, INF)                                       # y ≥ x_i
            spread = top - low[i]
            builder.add_row(np.append(cols, qi), np.append(coefs, spread), -INF, spread)  # y ≤ x_i + M (1 − q_i)
        builder.add_row(q, np.ones(len(q)), 1.0, 1.0)
        out[o] = y
    return out


def _add_adversarial(builder: _Builder, network: Network, values: np.ndarray, bounds: Bounds, *, label: int,
                     targeted: bool, tolerance: float) -> None:
    weight, bias = margin_rows(network, label, targeted=targeted)
    active = np.flatnonzero(values >= 0)
    weight = weight[:, active].tocsr()
    low, high = bounds.margin
    reachable = np.flatnonzero(high >= -tolerance)
    assert reachable_region(bounds, targeted=targeted, tolerance=tolerance)
    if targeted or len(reachable) == 1:
        # Every margin (targeted), or the one reachable class (untargeted), must be ≥ −τ.
        for j in range(len(bias)) if targeted else reachable:
            row = weight[j].tocoo()
            builder.margin_rows.append(len(builder.row_lower))
            builder.margin_binaries.append(-1)
            builder.add_row(values[active][row.col], row.data, -tolerance - bias[j], INF)
        return
    t = builder.add_cols(np.zeros(len(reachable)), np.ones(len(reachable)), integer=True)
    for j, tj in zip(reachable, t, strict=True):
        row = weight[j].tocoo()
        big = max(0.0, -tolerance - low[j])
        # g_j ≥ −τ − M (1 − t_j)
        builder.margin_rows.append(len(builder.row_lower))
        builder.margin_binaries.append(int(tj))
        builder.add_row(np.append(values[active][row.col], tj), np.append(row.data, -big),
                        -tolerance - big - bias[j], INF)
    builder.add_row(t, np.ones(len(t)), 1.0, 1.0)


def reachable_region(bounds: Bounds, *, targeted: bool, tolerance: float) -> bool:
    """False when the bounds alone prove that no input of the region is adversarial."""
    high = bounds.margin[1]
    return bool((high >= -tolerance).all() if targeted else (high >= -tolerance).any())


def compute_bounds(network: Network, x: np.ndarray, norm: str, radius: float, *, label: int, targeted: bool,
                   tolerance: float, lp: Callable[[Program, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
                   | None) -> Bounds:
    """Interval bounds of every layer inside [0, 1] ∩ ball(x, radius), tightened by ``lp`` where given.

    ``lp(program, cols, weights)`` returns, for each row of the sparse ``weights`` over ``cols``, the min and max
    of that linear function over the program's LP relaxation.
    """
    box = input_box(x, radius)
    bounds = Bounds(box, [], (np.zeros(0), np.zeros(0)))
    low, high = box
    for k, layer in enumerate(network.layers[:-1]):
        if isinstance(layer, Affine):
            low, high = _affine_interval(layer.weight, layer.bias, low, high)
            if k == 0 and norm == "l1" and np.isfinite(radius):
                low, high = _first_layer_l1(layer.weight, layer.bias, x, radius)
            elif k == 0 and norm == "l2" and np.isfinite(radius):
                low, high = _first_layer_l2(layer.weight, layer.bias, x, radius)
            unstable = np.flatnonzero((low < 0) & (high > 0))
            # The first layer's bounds are exact already (the ℓ∞ box's interval, ℓ1's knapsack): LPs from layer 2.
            if lp is not None and k > 0 and len(unstable):
                program, cols = build(network, x, norm, radius, bounds, label=label, targeted=targeted,
                                      tolerance=tolerance, upto=k)
                lp_low, lp_high = lp(program, cols, layer.weight[unstable])
                bias = layer.bias[unstable]
                low[unstable] = np.maximum(low[unstable], lp_low + bias - LP_SLACK * (1 + np.abs(lp_low + bias)))
                high[unstable] = np.minimum(high[unstable], lp_high + bias + LP_SLACK * (1 + np.abs(lp_high + bias)))
        elif isinstance(layer, ReLU):
            low, high = np.maximum(low, 0.0), np.maximum(high, 0.0)
        else:
            low, high = _maxpool_interval(layer.groups, low, high)
        bounds.layers.append((low.copy(), high.copy()))
    weight, bias = margin_rows(network, label, targeted=targeted)
    margin_low, margin_high = _affine_interval(weight, bias, low, high)
    if lp is not None:
        program, cols = build(network, x, norm, radius, bounds, label=label, targeted=targeted,
                              tolerance=tolerance, upto=len(network.layers) - 1)
        lp_low, lp_high = lp(program, cols, weight)
        margin_low = np.maximum(margin_low, lp_low + bias - LP_SLACK * (1 + np.abs(lp_low + bias)))
        margin_high = np.minimum(margin_high, lp_high + bias + LP_SLACK * (1 + np.abs(lp_high + bias)))
    return Bounds(box, bounds.layers, (margin_low, margin_high))
