"""The 6 toy scenes (sky, water, railway, grass, road, room): backgrounds with the things drawn on them
and the lines objects stand on."""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from tool.toy.draw import Color, darker, jitter, smooth_noise

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------
# the 6 scenes
# ----------------------------------------------------------------------------------------------------


@dataclass
class Scene:
    """A drawn background: image [H, W, 3] float32 RGB, the things drawn, the ground line and rest lines."""

    img: np.ndarray
    things: list[str]
    horizon: int  # first row of ground / floor (H when there is none)
    rest_ys: list[int]  # rows objects can stand on (the rails), empty when any ground row will do


def _sky(img: np.ndarray, y1: int, rng: np.random.Generator) -> None:
    """Fill rows [0, y1) with a blue gradient sky, deeper at the top."""
    top = np.array(jitter(rng, (50, 100, 205), 15), np.float32)
    bottom = np.array(jitter(rng, (165, 205, 245), 10), np.float32)
    t = np.linspace(0.0, 1.0, max(y1, 1), dtype=np.float32)[:, None, None]
    img[:y1] = top * (1 - t) + bottom * t


def _clouds(img: np.ndarray, y1: int, n: int, rng: np.random.Generator) -> None:
    H, W = img.shape[:2]
    m = np.zeros((H, W), np.float32)
    for _ in range(n):
        cx, cy = int(rng.integers(0, W)), int(rng.integers(0, max(1, int(y1 * 0.8))))
        s = float(rng.uniform(0.05, 0.1)) * W
        for _ in range(int(rng.integers(3, 6))):
            ox, oy = rng.normal(0, s * 0.7), rng.normal(0, s * 0.2)
            cv2.ellipse(m, (int(cx + ox), int(cy + oy)), (int(s), int(s * 0.55)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(m, (5, 5), 0)[..., None]                       # [H, W, 1]
    img[:] = img * (1 - alpha) + np.array([246, 246, 250], np.float32) * alpha


def _textured(img: np.ndarray, y0: int, y1: int, color: Color, rng: np.random.Generator, blotch: float,
              grain: float) -> None:
    """Fill rows [y0, y1) with ``color`` plus smooth blotches and per-pixel grain (grass, gravel, asphalt)."""
    h, w = y1 - y0, img.shape[1]
    if h <= 0:
        return
    n = smooth_noise(rng, h, w, cell=8)[..., None] * blotch + rng.normal(0, grain, (h, w, 1)).astype(np.float32)
    img[y0:y1] = np.array(color, np.float32) + n


def _scene_sky(H: int, W: int, rng: np.random.Generator) -> Scene:
    img = np.zeros((H, W, 3), np.float32)
    _sky(img, H, rng)
    things = ["cloud"]
    _clouds(img, H, int(rng.integers(1, 4)), rng)
    if rng.random() < 0.3:
        cx, cy = int(rng.uniform(0.1, 0.9) * W), int(rng.uniform(0.08, 0.3) * H)
        cv2.circle(img, (cx, cy), max(4, H // 12), (255, 236, 120), -1)
        things.append("sun")
    if rng.random() < 0.3:  # distant hills along the bottom edge
        xs = np.arange(W)
        ph = rng.uniform(0, 2 * math.pi)
        top = H - (0.1 + 0.05 * np.sin(xs / W * 2 * math.pi * rng.uniform(1, 2) + ph)) * H
        pts = np.concatenate([np.stack([xs, top], 1), [[W - 1, H - 1], [0, H - 1]]]).astype(np.int32)
        cv2.fillPoly(img, [pts], jitter(rng, (90, 140, 90), 12))
        things.append("hill")
    return Scene(img, things, H, [])


def _scene_water(H: int, W: int, rng: np.random.Generator) -> Scene:
    img = np.zeros((H, W, 3), np.float32)
    hz = int(rng.uniform(0.2, 0.38) * H)
    _sky(img, hz, rng)
    things = ["sky", "waves"]
    if rng.random() < 0.5:
        _clouds(img, hz, 1, rng)
        things.append("cloud")
    water = np.array(jitter(rng, (30, 96, 150), 12), np.float32)
    t = np.linspace(0, 1, H - hz, dtype=np.float32)[:, None, None]
    img[hz:] = water * (1.15 - 0.35 * t) + smooth_noise(rng, H - hz, W, 10)[..., None] * 10
    # Waves: short light arcs, denser and larger towards the viewer.
    waves = []
    for _ in range(int(H * W / 90)):
        y = hz + 2 + (H - hz - 2) * rng.random() ** 0.7
        x, ln = rng.uniform(-10, W), 4 + 10 * (y - hz) / (H - hz)
        xs = np.linspace(x, x + ln, 5)
        waves.append(np.stack([xs, y - 1.5 * np.sin(np.linspace(0, math.pi, 5))], 1).astype(np.int32))
    cv2.polylines(img, waves, False, (190, 222, 240), 1)
    if rng.random() < 0.3:
        bx, by = int(rng.uniform(0.05, 0.95) * W), int(hz + rng.uniform(0.2, 0.8) * (H - hz))
        cv2.circle(img, (bx, by), max(2, H // 40), (220, 40, 30), -1)
        things.append("buoy")
    return Scene(img, things, hz, [])


def _scene_railway(H: int, W: int, rng: np.random.Generator) -> Scene:
    img = np.zeros((H, W, 3), np.float32)
    hz = int(rng.uniform(0.25, 0.4) * H)
    _sky(img, hz, rng)
    _textured(img, hz, H, jitter(rng, (130, 118, 104), 10), rng, blotch=12, grain=16)  # gravel ballast
    things = ["sky", "gravel", "rails", "sleepers"]
    if rng.random() < 0.5:  # catenary poles with a wire
        for x in range(int(rng.integers(5, 25)), W, int(W * 0.45)):
            cv2.line(img, (x, int(hz * 0.3)), (x, hz + 4), (70, 70, 74), 2)
        cv2.line(img, (0, int(hz * 0.35)), (W - 1, int(hz * 0.35)), (50, 50, 54), 1)
        things.append("pole")
    rest = []
    n_tracks = 2 if rng.random() < 0.4 else 1
    for f in ([rng.uniform(0.55, 0.95)] if n_tracks == 1 else [rng.uniform(0.5, 0.62), rng.uniform(0.85, 0.95)]):
        yb = int(hz + f * (H - hz))
        gauge = max(4, int(0.05 * H * (0.5 + f)))
        step = max(5, gauge + 2)
        for x in range(int(rng.integers(0, step)), W, step):  # sleepers under the rails
            cv2.rectangle(img, (x, yb - gauge - 2), (x + max(2, step // 3), yb + 2), (96, 66, 40), -1)
        for y in (yb - gauge, yb):
            cv2.line(img, (0, y), (W - 1, y), (196, 196, 204), 2)
            cv2.line(img, (0, y + 1), (W - 1, y + 1), (80, 80, 88), 1)
        rest.append(min(H, yb + 2))
    return Scene(img, things, hz, rest)


def _scene_grass(H: int, W: int, rng: np.random.Generator) -> Scene:
    img = np.zeros((H, W, 3), np.float32)
    hz = int(rng.uniform(0.22, 0.42) * H)
    _sky(img, hz, rng)
    green = jitter(rng, (76, 146, 56), 14)
    _textured(img, hz, H, green, rng, blotch=18, grain=8)
    things = ["sky", "grass tuft"]
    if rng.random() < 0.4:
        x = int(rng.choice([rng.uniform(0.02, 0.3), rng.uniform(0.7, 0.98)]) * W)
        cv2.rectangle(img, (x - 2, hz - H // 8), (x + 2, hz + 2), (90, 60, 34), -1)
        cv2.circle(img, (x, hz - H // 6), max(5, H // 9), jitter(rng, (40, 110, 44), 10), -1)
        things.append("tree")
    tufts = []
    for _ in range(int(W * (H - hz) / 40)):
        tx, ty = rng.uniform(0, W), rng.uniform(hz + 2, H)
        s = 1.5 + 3.0 * (ty - hz) / (H - hz)
        tufts.append(np.array([[tx - s, ty - 2 * s], [tx, ty], [tx + s, ty - 2 * s]], np.int32))
    cv2.polylines(img, tufts, False, darker(green, 0.6), 1)
    if rng.random() < 0.5:  # a wooden fence just below the horizon
        fy, fh = hz + int(0.08 * H), max(6, int(0.1 * H))
        wood = jitter(rng, (150, 110, 70), 12)
        for x in range(int(rng.integers(0, 10)), W, max(8, W // 12)):
            cv2.rectangle(img, (x, fy - fh), (x + 2, fy), wood, -1)
        for y in (fy - fh + 2, fy - fh // 2):
            cv2.line(img, (0, y), (W - 1, y), wood, 2)
        things.append("fence")
    return Scene(img, things, hz, [])


def _scene_road(H: int, W: int, rng: np.random.Generator) -> Scene:
    img = np.zeros((H, W, 3), np.float32)
    hz = int(rng.uniform(0.22, 0.38) * H)
    _sky(img, hz, rng)
    things = ["sky", "road", "lane marking"]
    if rng.random() < 0.5:  # a row of buildings on the horizon
        x = 0
        while x < W:
            bw, bh = int(rng.uniform(0.1, 0.25) * W), int(rng.uniform(0.3, 0.9) * hz)
            col = jitter(rng, (150, 140, 130), 30)
            cv2.rectangle(img, (x, hz - bh), (x + bw, hz), col, -1)
            for wy in range(hz - bh + 3, hz - 3, 6):
                for wx in range(x + 2, x + bw - 3, 5):
                    cv2.rectangle(img, (wx, wy), (wx + 2, wy + 2), (240, 230, 170), -1)
            x += bw + int(rng.integers(0, 6))
        things.append("building")
    _textured(img, hz, H, jitter(rng, (78, 78, 84), 8), rng, blotch=6, grain=6)  # asphalt
    if rng.random() < 0.6:
        sw = max(4, int(0.08 * H))
        _textured(img, hz, hz + sw, (176, 172, 166), rng, blotch=4, grain=4)
        cv2.line(img, (0, hz + sw), (W - 1, hz + sw), (220, 220, 220), 1)
        things.append("sidewalk")
    # Dashed lane markings, one or two lines across the road.
    for f in ([0.55] if rng.random() < 0.5 else [0.45, 0.78]):
        y = int(hz + f * (H - hz))
        dash, gap = max(6, W // 14), max(5, W // 18)
        color = (236, 236, 236) if rng.random() < 0.7 else (236, 200, 40)
        for x in range(int(rng.integers(0, dash + gap)) - dash - gap, W, dash + gap):
            cv2.rectangle(img, (x, y), (x + dash, y + 1), color, -1)
    return Scene(img, things, hz, [])


def _scene_room(H: int, W: int, rng: np.random.Generator) -> Scene:
    img = np.zeros((H, W, 3), np.float32)
    fl = int(rng.uniform(0.55, 0.72) * H)
    wall = jitter(rng, ((232, 220, 190), (200, 222, 200), (200, 214, 236), (236, 206, 200))[int(rng.integers(4))], 8)
    _textured(img, 0, fl, wall, rng, blotch=5, grain=2)
    things = ["wall", "floor"]
    if rng.random() < 0.5:  # floorboards
        _textured(img, fl, H, jitter(rng, (150, 104, 64), 12), rng, blotch=10, grain=4)
        for y in range(fl + 4, H, 6):
            cv2.line(img, (0, y), (W - 1, y), (110, 74, 44), 1)
    else:  # carpet
        _textured(img, fl, H, jitter(rng, ((150, 60, 60), (80, 90, 130), (120, 120, 110))[int(rng.integers(3))], 10),
                  rng, blotch=8, grain=8)
    cv2.rectangle(img, (0, fl - 2), (W - 1, fl), (245, 245, 240), -1)  # skirting board
    slots = list(rng.permutation(3))  # wall thirds for window, shelf, picture: no overlaps
    if rng.random() < 0.6:
        x0 = int((slots[0] / 3 + 0.04) * W)
        x1, y0, y1 = x0 + int(0.24 * W), int(0.1 * H), int(0.1 * H + 0.3 * fl)
        cv2.rectangle(img, (x0, y0), (x1, y1), (240, 240, 240), -1)
        cv2.rectangle(img, (x0 + 2, y0 + 2), (x1 - 2, y1 - 2), (170, 210, 245), -1)
        cv2.line(img, ((x0 + x1) // 2, y0), ((x0 + x1) // 2, y1), (240, 240, 240), 2)
        cv2.line(img, (x0, (y0 + y1) // 2), (x1, (y0 + y1) // 2), (240, 240, 240), 2)
        things.append("window")
    if rng.random() < 0.5:
        x0 = int((slots[1] / 3 + 0.02) * W)
        x1, y = x0 + int(0.28 * W), int(0.42 * fl)
        cv2.rectangle(img, (x0, y), (x1, y + 2), (120, 80, 44), -1)
        x = x0 + 1
        while x < x1 - 3:
            bw, bh = int(rng.integers(2, 5)), int(rng.integers(5, 10))
            cv2.rectangle(img, (x, y - bh), (x + bw, y - 1), jitter(rng, (140, 90, 90), 80), -1)
            x += bw + 1
        things.append("shelf")
    if rng.random() < 0.4:
        x0 = int((slots[2] / 3 + 0.08) * W)
        x1, y0, y1 = x0 + int(0.16 * W), int(0.15 * H), int(0.15 * H + 0.22 * fl)
        cv2.rectangle(img, (x0, y0), (x1, y1), (90, 60, 30), -1)
        cv2.rectangle(img, (x0 + 2, y0 + 2), (x1 - 2, y1 - 2), jitter(rng, (120, 160, 140), 60), -1)
        things.append("picture frame")
    return Scene(img, things, fl, [])


SCENE_DRAW: dict[str, Callable[[int, int, np.random.Generator], Scene]] = {
    "sky": _scene_sky, "water": _scene_water, "railway": _scene_railway, "grass": _scene_grass,
    "road": _scene_road, "room": _scene_room,
}
