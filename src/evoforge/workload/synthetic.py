"""Generated datasets for the real-architecture tasks: numpy (and scikit-learn's bundled digits)
only, deterministic, offline, a few seconds each.

- `colour_digits`: 10 classes of 3x32x32 colour images (the ``img32`` dataset behind
  ``resnet18-img32``). Each of scikit-learn's 1797 bundled 8x8 digits is upsampled, warped
  (scale, rotation, shear, shift, stroke width) and drawn in a random colour over a textured
  background (gradients, stripes, blobs) with clutter (a fragment of another digit, line
  segments) and noise. The source images are first split into four pools (train, calib, val,
  test; stratified by class) and every example is drawn from one pool only, so no source image
  is shared between splits. A ResNet-18 trained from scratch reaches about 91% test accuracy.
- `topic_tokens`: token sequences for a small BERT (the ``tokens`` dataset behind
  ``bert-tokens``): which of four topics has the most keywords, where a keyword right after the
  token "not" does not count, with 5% of labels redrawn at random. The small BERT of
  ``bert-tokens`` reaches about 84% test accuracy from scratch (the best possible is about 96%).
"""

from __future__ import annotations

import numpy as np

_SIZE = 32
_FRACTIONS = (0.6, 0.1, 0.15, 0.15)  # train, calib, val, test (source-image pools)
IMG32_EXAMPLES = 12_000
IMG32_DIFFICULTY = 0.4  # scales clutter, warping and noise: 0.4 gives ResNet-18 about 91% test accuracy


def _cubic_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix doing 1-D Keys-cubic (a = -0.5) resampling with edge clamping."""
    s = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    base = np.floor(s).astype(int)
    m = np.zeros((n_out, n_in))
    for k in range(-1, 3):
        idx = base + k
        d = np.abs(s - idx)
        w = np.where(d <= 1, 1.5 * d**3 - 2.5 * d**2 + 1,
                     np.where(d < 2, -0.5 * d**3 + 2.5 * d**2 - 4 * d + 2, 0.0))
        np.add.at(m, (np.arange(n_out), np.clip(idx, 0, n_in - 1)), w)
    return m


def _bilinear(pad: np.ndarray, which: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Sample images ``pad[which]`` at float coords ``sy``/``sx`` (N, h, w); zero outside.

    ``pad`` is the (M, H + 2, W + 2) source stack with a one-pixel zero border (coords refer to
    the unpadded image)."""
    _, hp, wp = pad.shape
    flat = pad.reshape(-1)
    sy = np.clip(sy + 1, 0, hp - 1 - 1e-3)
    sx = np.clip(sx + 1, 0, wp - 1 - 1e-3)
    y0, x0 = sy.astype(np.int64), sx.astype(np.int64)
    fy, fx = sy - y0, sx - x0
    i00 = which[:, None, None] * (hp * wp) + y0 * wp + x0
    top = flat[i00] * (1 - fx) + flat[i00 + 1] * fx
    bot = flat[i00 + wp] * (1 - fx) + flat[i00 + wp + 1] * fx
    out: np.ndarray = top * (1 - fy) + bot * fy
    return out


def _affine_render(pad: np.ndarray, which: np.ndarray, scale: np.ndarray,
                   rot: np.ndarray, shift: np.ndarray, shear: np.ndarray, aspect: np.ndarray) -> np.ndarray:
    """Warp source masks ``pad[which]`` (see `_bilinear`) into (N, 32, 32) with per-example
    affine params: ``scale`` is the digit size relative to the 32-px canvas, ``rot``/``shear`` in
    radians, ``shift`` (N, 2) in pixels (y, x), ``aspect`` stretches x relative to y."""
    n = len(which)
    s_in = pad.shape[1] - 2
    c_out, c_in = (_SIZE - 1) / 2, (s_in - 1) / 2
    g = np.arange(_SIZE, dtype=np.float32) - c_out
    k = scale * _SIZE / s_in
    sx, sy = k * np.sqrt(aspect), k / np.sqrt(aspect)
    cr, sr = np.cos(rot), np.sin(rot)
    # forward map (y, x): out = R(rot) @ [[1, 0], [shear, 1]] @ diag(sy, sx) @ (src - c_in) + shift
    a = np.empty((n, 2, 2))
    a[:, 0, 0] = cr * sy - sr * shear * sy
    a[:, 0, 1] = -sr * sx
    a[:, 1, 0] = sr * sy + cr * shear * sy
    a[:, 1, 1] = cr * sx
    inv = np.linalg.inv(a).astype(np.float32)
    py = (g[None, :, None] - shift[:, 0, None, None].astype(np.float32))       # (n, 32, 1)
    px = (g[None, None, :] - shift[:, 1, None, None].astype(np.float32))       # (n, 1, 32)
    srcy = inv[:, 0, 0, None, None] * py + inv[:, 0, 1, None, None] * px + c_in
    srcx = inv[:, 1, 0, None, None] * py + inv[:, 1, 1, None, None] * px + c_in
    return _bilinear(pad, which, srcy, srcx)


def _stroke(mask: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Soft threshold of a [0, 1] intensity map; larger ``lo`` gives thinner strokes."""
    t = np.clip((mask - lo[:, None, None]) / 0.25, 0.0, 1.0)
    out: np.ndarray = t * t * (3 - 2 * t)
    return out


def _source_pools(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Assign every source image to one pool (0 train, 1 calib, 2 val, 3 test), stratified by class."""
    pool = np.empty(len(y), np.int64)
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        cuts = np.round(np.cumsum(_FRACTIONS)[:-1] * len(idx)).astype(int)
        for p, chunk in enumerate(np.split(idx, cuts)):
            pool[chunk] = p
    return pool


def _render(rng: np.random.Generator, src: np.ndarray, picks: np.ndarray, other: np.ndarray,
            difficulty: float) -> np.ndarray:
    """Render examples of source digits ``picks`` with fragments of ``other`` as clutter;
    returns unnormalized float32 (n, 3, 32, 32)."""
    n, D, S = len(picks), difficulty, _SIZE
    # --- main digit: affine + stroke jitter
    mask = _affine_render(
        src, picks,
        scale=rng.uniform(0.55, 0.95, n), rot=rng.normal(0, 0.22 * D, n).clip(-0.6, 0.6),
        shift=rng.uniform(-4.5, 4.5, (n, 2)) * D, shear=rng.normal(0, 0.18 * D, n).clip(-0.45, 0.45),
        aspect=np.exp(rng.normal(0, 0.15, n)))
    mask = _stroke(mask, rng.uniform(0.15, 0.5, n).astype(np.float32))

    # --- background: base colour + linear gradient + stripes + blobs
    g = (np.arange(S, dtype=np.float32) - (S - 1) / 2) / S
    gy, gx = np.meshgrid(g, g, indexing="ij")
    bg_col = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    img = np.broadcast_to(bg_col[:, :, None, None], (n, 3, S, S)).copy()
    grad_dir = rng.normal(0, 1, (n, 2)).astype(np.float32)
    grad_col = rng.normal(0, 0.35 * D, (n, 3)).astype(np.float32)
    ramp = grad_dir[:, 0, None, None] * gy + grad_dir[:, 1, None, None] * gx
    img += grad_col[:, :, None, None] * ramp[:, None]

    has_stripes = rng.random(n) < 0.45
    th = rng.uniform(0, np.pi, n).astype(np.float32)
    period = rng.uniform(3.0, 10.0, n).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    wave = np.sin(2 * np.pi * (np.cos(th)[:, None, None] * gy + np.sin(th)[:, None, None] * gx) * S
                  / period[:, None, None] + phase[:, None, None])
    st_col = rng.normal(0, 0.22 * D, (n, 3)).astype(np.float32) * has_stripes[:, None]
    img += st_col[:, :, None, None] * wave[:, None]

    n_blobs = 5
    by, bx = rng.uniform(-0.6, 0.6, (2, n, n_blobs)).astype(np.float32)
    bs = rng.uniform(0.06, 0.25, (n, n_blobs)).astype(np.float32)
    bcol = rng.normal(0, 0.3 * D, (n, n_blobs, 3)).astype(np.float32) * (rng.random((n, n_blobs, 1)) < 0.7)
    for b in range(n_blobs):
        blob = np.exp(-((gy - by[:, b, None, None]) ** 2 + (gx - bx[:, b, None, None]) ** 2)
                      / (2 * bs[:, b, None, None] ** 2))
        img += bcol[:, b, :, None, None] * blob[:, None]

    # --- clutter 1: fragment of another digit from the same pool, pushed towards the border
    has_frag = rng.random(n) < 0.65 * min(D, 1.0 / 0.65)
    ang = rng.uniform(0, 2 * np.pi, n)
    rad = rng.uniform(14, 20, n)
    frag = _affine_render(
        src, other, scale=rng.uniform(0.5, 0.9, n), rot=rng.normal(0, 0.4, n),
        shift=np.stack([rad * np.sin(ang), rad * np.cos(ang)], 1), shear=rng.normal(0, 0.2, n),
        aspect=np.exp(rng.normal(0, 0.2, n)))
    frag = _stroke(frag, rng.uniform(0.1, 0.5, n).astype(np.float32)) * has_frag[:, None, None]
    frag_col = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    frag_a = rng.uniform(0.3, 0.6 + 0.4 * min(D, 1.0), n).astype(np.float32)[:, None, None, None] * frag[:, None]
    img = img * (1 - frag_a) + frag_col[:, :, None, None] * frag_a

    # --- clutter 2: random thick line segments (distractor strokes)
    n_lines = 2
    for _ in range(n_lines):
        on = rng.random(n) < 0.5 * D
        p0 = rng.uniform(-0.55, 0.55, (n, 2)).astype(np.float32)
        p1 = p0 + rng.normal(0, 0.3, (n, 2)).astype(np.float32)
        v = p1 - p0
        t = ((gy[None] - p0[:, 0, None, None]) * v[:, 0, None, None] + (gx[None] - p0[:, 1, None, None]) * v[:, 1, None, None]) \
            / ((v**2).sum(1)[:, None, None] + 1e-6)
        t = np.clip(t, 0, 1)
        dy = gy[None] - (p0[:, 0, None, None] + t * v[:, 0, None, None])
        dx = gx[None] - (p0[:, 1, None, None] + t * v[:, 1, None, None])
        wid = rng.uniform(0.02, 0.05, n).astype(np.float32)[:, None, None]
        line = np.clip(1.5 - np.sqrt(dy**2 + dx**2) / wid, 0, 1) * on[:, None, None]
        lcol = rng.uniform(0, 1, (n, 3)).astype(np.float32)
        la = line[:, None] * rng.uniform(0.4, 1.0, n).astype(np.float32)[:, None, None, None]
        img = img * (1 - la) + lcol[:, :, None, None] * la

    # --- foreground colour with a minimum (difficulty-dependent) luminance contrast to the local bg
    lum_w = np.array([0.299, 0.587, 0.114], np.float32)
    bg_lum = np.einsum("c,nchw,nhw->n", lum_w, img, mask) / (mask.sum((1, 2)) + 1e-6)
    fg_col = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    min_c = float(np.clip(0.4 - 0.18 * D, 0.1, 0.35))
    for _ in range(30):
        bad = np.abs(fg_col @ lum_w - bg_lum) < min_c
        if not bad.any():
            break
        fg_col[bad] = rng.uniform(0, 1, (bad.sum(), 3))
    # texture inside the digit: multiplicative shading
    shade = 1 + rng.normal(0, 0.12 * D, (n, 1, 1, 1)).astype(np.float32) * wave[:, None]
    fa = mask[:, None] * rng.uniform(0.75, 1.0, n).astype(np.float32)[:, None, None, None]
    img = img * (1 - fa) + (fg_col[:, :, None, None] * shade) * fa

    # --- noise, per-image contrast/brightness jitter
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(0.02, 0.12 * D, n).astype(np.float32)[:, None, None, None]
    jitter = rng.uniform(0.7, 1.3, n).astype(np.float32)[:, None, None, None]
    out: np.ndarray = img * jitter + rng.normal(0, 0.1, (n, 1, 1, 1)).astype(np.float32)
    return out


def colour_digits(seed: int = 0, *, examples: int = IMG32_EXAMPLES, difficulty: float = IMG32_DIFFICULTY,
                  chunk: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x, y, pool)``: float32 images (N, 3, 32, 32) standardized per channel with the train
    pool's statistics, int64 labels, and each example's pool (0 train, 1 calib, 2 val, 3 test)."""
    from sklearn.datasets import load_digits

    rng = np.random.default_rng([seed, 0x1A632])
    digits = load_digits()
    src_y = digits.target.astype(np.int64)
    up = _cubic_matrix(_SIZE, 8)
    src = np.clip(np.einsum("ij,njk,lk->nil", up, digits.images / 16.0, up), 0, 1).astype(np.float32)
    src = np.pad(src, ((0, 0), (1, 1), (1, 1)))  # zero border for sampling
    pool_of_src = _source_pools(src_y, rng)
    per_class = examples // 10
    picks: list[np.ndarray] = []
    groups: list[np.ndarray] = []
    for p, frac in enumerate(_FRACTIONS):  # per (pool, class) as many as the fractions ask, sources round-robin
        k = int(round(per_class * frac))
        for c in range(10):
            candidates = np.flatnonzero((pool_of_src == p) & (src_y == c))
            reps = int(np.ceil(k / len(candidates)))
            picks.append(np.concatenate([rng.permutation(candidates) for _ in range(reps)])[:k])
            groups.append(np.full(k, p))
    chosen, pool = np.concatenate(picks), np.concatenate(groups)
    other = np.empty(len(chosen), np.int64)  # clutter fragments come from a source image of the same pool
    for p in range(len(_FRACTIONS)):
        sel = pool == p
        other[sel] = rng.choice(np.flatnonzero(pool_of_src == p), sel.sum())
    x = np.concatenate([
        _render(np.random.default_rng([seed, 0x1A632, i]), src, chosen[i:i + chunk], other[i:i + chunk], difficulty)
        for i in range(0, len(chosen), chunk)
    ])
    train = pool == 0
    mean = x[train].mean(axis=(0, 2, 3), keepdims=True)
    std = x[train].std(axis=(0, 2, 3), keepdims=True) + 1e-6
    order = rng.permutation(len(chosen))
    return ((x - mean) / std).astype(np.float32)[order], src_y[chosen][order], pool[order].astype(np.int64)


TOKENS_EXAMPLES = 20_000
TOKENS_LENGTH = 32
PAD, CLS, SEP, NOT = 0, 1, 2, 3
TOPICS, KEYWORDS_PER_TOPIC = 4, 15
_KEYWORD0 = 10  # keywords are ids 10..69, filler ids 100..999
TOKENS_LABEL_NOISE = 0.05
TOKENS_NEGATED = 0.2  # share of keywords preceded by NOT


def topic_tokens(
    seed: int = 0, *, examples: int = TOKENS_EXAMPLES, length: int = TOKENS_LENGTH
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(input_ids, attention_mask, labels)``: int64 (N, length), int64 (N, length), int64 (N,).

    A sequence is ``CLS``, 12 to ``length - 2`` content tokens, ``SEP``, then padding (id 0).
    Content is filler with 2 to 4 keywords of random topics; ``TOKENS_NEGATED`` of them follow a
    ``NOT`` token and do not count. The label is the topic with the most counted keywords
    (sequences with a tie are drawn again), replaced by a random topic for ``TOKENS_LABEL_NOISE``
    of the examples, so the best possible accuracy is about 96%."""
    rng = np.random.default_rng([seed, 0x70CE])
    ids = np.zeros((examples, length), np.int64)
    labels = np.zeros(examples, np.int64)
    keywords = _KEYWORD0 + np.arange(TOPICS * KEYWORDS_PER_TOPIC).reshape(TOPICS, KEYWORDS_PER_TOPIC)
    i = 0
    while i < examples:
        size = int(rng.integers(12, length - 1))
        content = rng.integers(100, 1000, size)
        for slot in np.sort(rng.choice(np.arange(1, size), size=int(rng.integers(2, 5)), replace=False)):
            content[slot] = keywords[rng.integers(TOPICS), rng.integers(KEYWORDS_PER_TOPIC)]
            if rng.random() < TOKENS_NEGATED:
                content[slot - 1] = NOT
        counted = (content >= _KEYWORD0) & (content < _KEYWORD0 + keywords.size) & (np.r_[PAD, content[:-1]] != NOT)
        counts = np.bincount((content[counted] - _KEYWORD0) // KEYWORDS_PER_TOPIC, minlength=TOPICS)
        if counts.max() == 0 or np.sum(counts == counts.max()) > 1:
            continue
        ids[i, : size + 2] = np.r_[CLS, content, SEP]
        labels[i] = int(counts.argmax()) if rng.random() >= TOKENS_LABEL_NOISE else int(rng.integers(TOPICS))
        i += 1
    return ids, (ids != PAD).astype(np.int64), labels
