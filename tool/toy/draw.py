"""The 20 toy classes drawn with numpy + OpenCV: a canvas, small drawing helpers, one function per class
(each draws itself facing right), and how much of its box a class fills."""
from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np

from tool.toy.vocab import COLORS, SUBTYPES, SubType

log = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------
# colours and small drawing helpers
# ----------------------------------------------------------------------------------------------------

Color = tuple[int, int, int]


def darker(c: Sequence[int], f: float = 0.6) -> Color:
    return (int(c[0] * f), int(c[1] * f), int(c[2] * f))


def _light(c: Sequence[int], f: float = 0.4) -> Color:
    return (int(c[0] + (255 - c[0]) * f), int(c[1] + (255 - c[1]) * f), int(c[2] + (255 - c[2]) * f))


def jitter(rng: np.random.Generator, c: Sequence[int], amp: int = 14) -> Color:
    d = rng.integers(-amp, amp + 1, size=3)
    r, g, b = (int(np.clip(v + dv, 0, 255)) for v, dv in zip(c, d))
    return r, g, b


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: [h, w] float32 (a coarse grid upsampled bilinearly)."""
    small = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) * 0.5


class Canvas:
    """One object drawn in its own box: colour layer [h, w, 3] uint8 RGB and mask [h, w] uint8 {0, 255}.

    Coordinates are fractions of the box (x of its width, y of its height); radii and line widths are
    fractions of the box height, so circles stay round whatever the aspect. ``solid=False`` paints
    detail (windows, spots) into the colour layer only: it is visible only where the body already is.
    """

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.img = np.zeros((h, w, 3), np.uint8)
        self.mask = np.zeros((h, w), np.uint8)
        self.parts: dict[str, tuple[int, int, int, int]] = {}  # name -> (x0, y0, x1, y1) local pixels, exclusive

    def p(self, fx: float, fy: float) -> tuple[int, int]:
        return round(fx * (self.w - 1)), round(fy * (self.h - 1))

    def r(self, fr: float) -> int:
        return max(1, round(fr * self.h))

    def _both(self, draw: Callable[[np.ndarray, Any], object], color: Color, solid: bool) -> None:
        # draw(image, colour) paints in place (cv2's return value is the same array)
        draw(self.img, tuple(int(v) for v in color))
        if solid:
            draw(self.mask, 255)

    def poly(self, pts: Sequence[tuple[float, float]], color: Color, solid: bool = True) -> None:
        arr = np.array([self.p(x, y) for x, y in pts], np.int32)
        self._both(lambda a, c: cv2.fillPoly(a, [arr], c), color, solid)

    def rect(self, x0: float, y0: float, x1: float, y1: float, color: Color, solid: bool = True) -> None:
        a, b = self.p(x0, y0), self.p(x1, y1)
        self._both(lambda im, c: cv2.rectangle(im, a, b, c, -1), color, solid)

    def rrect(self, x0: float, y0: float, x1: float, y1: float, rad: float, color: Color, solid: bool = True) -> None:
        """A rectangle with round corners of radius ``rad`` (fraction of the box height)."""
        (a0, b0), (a1, b1) = self.p(x0, y0), self.p(x1, y1)
        rr = min(self.r(rad), (a1 - a0) // 2, (b1 - b0) // 2)

        def draw(im: np.ndarray, c: Any) -> None:
            cv2.rectangle(im, (a0 + rr, b0), (a1 - rr, b1), c, -1)
            cv2.rectangle(im, (a0, b0 + rr), (a1, b1 - rr), c, -1)
            for cx, cy in ((a0 + rr, b0 + rr), (a1 - rr, b0 + rr), (a0 + rr, b1 - rr), (a1 - rr, b1 - rr)):
                cv2.circle(im, (cx, cy), rr, c, -1)

        self._both(draw, color, solid)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, color: Color, solid: bool = True,
                angle: float = 0.0) -> None:
        """An ellipse with semi-axes ``rx`` (fraction of width) and ``ry`` (fraction of height)."""
        c = self.p(cx, cy)
        axes = (max(1, round(rx * (self.w - 1))), max(1, round(ry * (self.h - 1))))
        self._both(lambda im, col: cv2.ellipse(im, c, axes, angle, 0, 360, col, -1), color, solid)

    def circle(self, cx: float, cy: float, rad: float, color: Color, solid: bool = True, thick: float = 0.0) -> None:
        """A disc (``thick`` 0) or a ring of width ``thick``; both as fractions of the box height."""
        c, rr = self.p(cx, cy), self.r(rad)
        t = -1 if thick <= 0 else self.r(thick)
        self._both(lambda im, col: cv2.circle(im, c, rr, col, t), color, solid)

    def line(self, pts: Sequence[tuple[float, float]], color: Color, thick: float, solid: bool = True) -> None:
        arr = np.array([self.p(x, y) for x, y in pts], np.int32)
        t = self.r(thick)
        self._both(lambda im, c: cv2.polylines(im, [arr], False, c, t), color, solid)

    def part(self, name: str, x0: float, y0: float, x1: float, y1: float) -> None:
        (a0, b0), (a1, b1) = self.p(x0, y0), self.p(x1, y1)
        self.parts[name] = (a0, b0, a1 + 1, b1 + 1)


# ----------------------------------------------------------------------------------------------------
# the 20 classes: each draws itself facing right into a Canvas
# ----------------------------------------------------------------------------------------------------

_GLASS = (150, 200, 235)
_TYRE = (28, 28, 30)


def _wheel(c: Canvas, x: float, y: float, rad: float, hub: Color = (170, 170, 176)) -> None:
    c.circle(x, y, rad, _TYRE)
    c.circle(x, y, rad * 0.45, hub, solid=False)


def _draw_aeroplane(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    # Seen from below, nose to the right: the fuselage and the wings make a cross.
    dark = darker(col, 0.55)
    if sub == "fighter jet":
        c.poly([(1.0, 0.5), (0.3, 0.03), (0.16, 0.03), (0.3, 0.5), (0.16, 0.97), (0.3, 0.97)], col)
        c.ellipse(0.5, 0.5, 0.5, 0.08, col)
        c.poly([(0.0, 0.3), (0.1, 0.3), (0.16, 0.5), (0.1, 0.7), (0.0, 0.7)], dark)
        c.ellipse(0.78, 0.5, 0.09, 0.045, (40, 60, 96), solid=False)
    elif sub == "airliner":
        c.ellipse(0.5, 0.5, 0.5, 0.09, col)
        for s in (1, -1):  # the upper (s = 1) and lower wing mirror each other about y = 0.5
            c.poly([(0.62, 0.5 - s * 0.05), (0.5, 0.5 - s * 0.05), (0.36, 0.5 - s * 0.5), (0.44, 0.5 - s * 0.5)], col)
            c.poly([(0.14, 0.5 - s * 0.03), (0.06, 0.5 - s * 0.03), (0.0, 0.5 - s * 0.24), (0.05, 0.5 - s * 0.24)],
                   col)  # tailplane
            c.ellipse(0.5, 0.5 - s * 0.24, 0.05, 0.035, dark)  # engine
        c.line([(0.1, 0.5), (0.9, 0.5)], _light(col, 0.5), 0.02, solid=False)
        c.ellipse(0.96, 0.5, 0.03, 0.05, (40, 60, 96), solid=False)
    else:  # propeller plane: straight wings, a stripe and a propeller on the nose
        c.ellipse(0.5, 0.5, 0.46, 0.11, col)
        c.rrect(0.5, 0.0, 0.64, 1.0, 0.05, col)
        c.rrect(0.04, 0.3, 0.14, 0.7, 0.03, col)
        c.rect(0.55, 0.0, 0.59, 1.0, (240, 240, 240), solid=False)
        c.line([(0.97, 0.32), (0.97, 0.68)], _TYRE, 0.04)
        c.circle(0.95, 0.5, 0.04, _TYRE)


def _draw_bicycle(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    tandem = sub == "tandem"
    rad = 0.3 if sub != "mountain bike" else 0.32
    tyre = 0.09 if sub == "mountain bike" else 0.07
    xr, xf = (0.12, 0.88) if tandem else (0.2, 0.8)
    yw = 1.0 - rad - 0.01
    for x in (xr, xf):
        c.circle(x, yw, rad, _TYRE, thick=tyre)
        c.circle(x, yw, 0.05, (170, 170, 176))
        c.line([(x, yw), (x, yw - rad)], (180, 180, 186), 0.02, solid=False)  # a spoke
    seats: tuple[float, ...] = (0.35, 0.6) if tandem else (0.4,)
    bb = (0.45, yw) if not tandem else (0.5, yw)
    frame = [(xr, yw), (seats[0], 0.3), bb, (xr, yw)]
    c.line(frame, col, 0.06)
    c.line([(seats[0], 0.3), (0.76 if not tandem else 0.82, 0.3), (xf, yw)], col, 0.06)
    c.line([bb, (0.74 if not tandem else 0.8, 0.3)], col, 0.06)
    if tandem:
        c.line([(seats[1], 0.3), bb], col, 0.06)
    for s in seats:
        c.line([(s - 0.05, 0.24), (s + 0.05, 0.24)], _TYRE, 0.06)
        c.line([(s, 0.3), (s, 0.24)], (150, 150, 156), 0.04)
    hx = 0.78 if not tandem else 0.84
    c.line([(hx - 0.03, 0.18), (hx, 0.3)], (150, 150, 156), 0.04)
    c.line([(hx - 0.08, 0.16), (hx + 0.02, 0.16)], _TYRE, 0.06)


def _draw_bird(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    wing = {"parrot": jitter(rng, COLORS[str(rng.choice(["yellow", "blue", "red"]))]),
            "crow": (60, 60, 68), "seagull": (150, 154, 162)}[sub]
    beak = {"parrot": (60, 60, 60), "crow": (52, 52, 52), "seagull": (240, 190, 40)}[sub]
    c.line([(0.42, 0.7), (0.4, 0.98)], (200, 120, 60), 0.04)
    c.line([(0.52, 0.7), (0.54, 0.98)], (200, 120, 60), 0.04)
    c.poly([(0.2, 0.5), (0.0, 0.38), (0.0, 0.7), (0.22, 0.66)], darker(col, 0.8))  # tail
    c.ellipse(0.45, 0.58, 0.3, 0.2, col)
    c.circle(0.76, 0.36, 0.16, col)
    c.poly([(0.86, 0.3), (1.0, 0.39), (0.86, 0.46)], beak)
    c.poly([(0.3, 0.55), (0.62, 0.52), (0.26, 0.0), (0.2, 0.05)], wing)  # a raised wing
    if sub == "seagull":
        c.poly([(0.26, 0.0), (0.2, 0.05), (0.23, 0.12), (0.3, 0.08)], _TYRE)
    c.circle(0.8, 0.32, 0.035, (10, 10, 10), solid=False)


def _draw_boat(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    if sub == "sailboat":
        c.poly([(0.0, 0.72), (1.0, 0.72), (0.82, 0.97), (0.18, 0.97)], col)
        c.line([(0.03, 0.76), (0.97, 0.76)], _light(col, 0.6), 0.03, solid=False)
        c.line([(0.5, 0.02), (0.5, 0.72)], (90, 60, 30), 0.03)
        sail = jitter(rng, (238, 236, 226), 8)
        c.poly([(0.47, 0.04), (0.47, 0.68), (0.08, 0.68)], sail)
        c.poly([(0.53, 0.1), (0.53, 0.68), (0.86, 0.68)], darker(sail, 0.92))
    elif sub == "canoe":
        xs = np.linspace(0.0, 1.0, 17)
        top = [(x, 0.3 - 0.25 * (abs(2 * x - 1) ** 4)) for x in xs]
        bottom = [(x, 0.3 + 0.62 * math.sin(math.pi * x) ** 0.7) for x in xs[::-1]]
        c.poly(top + bottom, col)
        c.line([(0.04, 0.3), (0.96, 0.3)], darker(col, 0.5), 0.06, solid=False)
        c.line([(0.55, 0.0), (0.66, 0.55)], (120, 80, 40), 0.06)
        c.ellipse(0.66, 0.58, 0.025, 0.16, (120, 80, 40), angle=-10)
    else:  # ship: dark hull, white superstructure with windows, red funnel
        c.poly([(0.0, 0.5), (1.0, 0.42), (0.9, 1.0), (0.06, 1.0)], col)
        c.line([(0.04, 0.9), (0.94, 0.9)], (170, 40, 40), 0.08, solid=False)
        c.rect(0.25, 0.22, 0.66, 0.5, (236, 236, 236))
        c.rect(0.55, 0.1, 0.68, 0.25, (236, 236, 236))
        for x in np.arange(0.28, 0.62, 0.06):
            c.rect(x, 0.3, x + 0.03, 0.38, (50, 70, 100), solid=False)
        c.rect(0.38, 0.0, 0.47, 0.23, (200, 40, 36))
        c.rect(0.38, 0.0, 0.47, 0.05, _TYRE)


def _draw_bottle(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    label = jitter(rng, (236, 226, 196), 10)
    if sub == "water bottle":
        c.rrect(0.05, 0.24, 0.95, 1.0, 0.04, col)
        c.rect(0.3, 0.08, 0.7, 0.26, col)
        c.rect(0.26, 0.0, 0.74, 0.1, (30, 80, 200))
        for y in np.arange(0.34, 0.95, 0.1):
            c.line([(0.05, y), (0.95, y)], _light(col, 0.5), 0.012, solid=False)
        c.rect(0.05, 0.5, 0.95, 0.66, (40, 110, 210), solid=False)
    else:
        neck_top = 0.02 if sub == "wine bottle" else 0.08
        c.rrect(0.08, 0.36, 0.92, 1.0, 0.06, col)
        c.ellipse(0.5, 0.38, 0.42, 0.09, col)
        c.rect(0.36, neck_top, 0.64, 0.38, col)
        cap = (150, 30, 40) if sub == "wine bottle" else (200, 170, 60)
        c.rect(0.34, neck_top - 0.02 if neck_top > 0.02 else 0.0, 0.66, neck_top + 0.1, cap)
        c.rect(0.08, 0.6, 0.92, 0.82, label, solid=False)
        c.line([(0.22, 0.42), (0.22, 0.94)], _light(col, 0.35), 0.015, solid=False)


def _draw_bus(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    decker = sub == "double-decker bus"
    wr = 0.1 if decker else 0.14
    c.rrect(0.0, 0.04, 1.0, 0.87, 0.08, col)
    rows = [(0.1, 0.34), (0.5, 0.7)] if decker else [(0.14, 0.44)]
    for y0, y1 in rows:
        for x in np.arange(0.05, 0.8, 0.13):
            c.rect(x, y0, x + 0.1, y1, _GLASS, solid=False)
    c.rect(0.88, rows[-1][0], 0.98, rows[-1][1], _GLASS, solid=False)  # windscreen
    if not decker:
        c.rect(0.81, 0.3, 0.86, 0.8, darker(col, 0.5), solid=False)  # door
    stripe = _TYRE if sub == "school bus" else darker(col, 0.6)
    c.rect(0.0, 0.5 if not decker else 0.42, 1.0, 0.55 if not decker else 0.46, stripe, solid=False)
    for x in (0.2, 0.8):
        _wheel(c, x, 1.0 - wr - 0.01, wr)


def _draw_car(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    if sub == "pickup truck":
        c.poly([(0.45, 0.44), (0.5, 0.08), (0.72, 0.08), (0.84, 0.44)], col)
        c.poly([(0.53, 0.42), (0.55, 0.15), (0.7, 0.15), (0.78, 0.42)], _GLASS, solid=False)
        c.rrect(0.0, 0.3, 1.0, 0.8, 0.08, col)
        c.line([(0.02, 0.36), (0.42, 0.36)], darker(col, 0.6), 0.04, solid=False)  # bed rim
    else:
        cabin = ([(0.2, 0.46), (0.33, 0.1), (0.68, 0.1), (0.82, 0.46)] if sub == "sedan"
                 else [(0.06, 0.46), (0.12, 0.1), (0.6, 0.1), (0.8, 0.46)])
        c.poly(cabin, col)
        x0, x1 = cabin[1][0], cabin[2][0]
        mid = (x0 + x1) / 2
        c.poly([(cabin[0][0] + 0.06, 0.44), (x0 + 0.03, 0.16), (mid - 0.01, 0.16), (mid - 0.01, 0.44)], _GLASS,
               solid=False)
        c.poly([(mid + 0.01, 0.44), (mid + 0.01, 0.16), (x1 - 0.01, 0.16), (cabin[3][0] - 0.06, 0.44)], _GLASS,
               solid=False)
        c.rrect(0.0, 0.42, 1.0, 0.8, 0.12, col)
    c.ellipse(0.97, 0.52, 0.02, 0.05, (250, 230, 120), solid=False)
    c.ellipse(0.02, 0.52, 0.015, 0.05, (200, 20, 20), solid=False)
    for x in (0.2, 0.8):
        _wheel(c, x, 0.8, 0.19)


def _draw_cat(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    legc = darker(col, 0.85)
    for x in (0.24, 0.34, 0.58, 0.68):
        c.rect(x, 0.65, x + 0.06, 0.97, legc)
    c.line([(0.17, 0.56), (0.07, 0.42), (0.05, 0.18), (0.1, 0.05)], col, 0.07)  # tail up
    c.ellipse(0.45, 0.6, 0.3, 0.19, col)
    c.circle(0.78, 0.38, 0.17, col)
    c.poly([(0.67, 0.3), (0.69, 0.04), (0.78, 0.22)], col)  # pointed ears
    c.poly([(0.79, 0.22), (0.88, 0.04), (0.9, 0.3)], col)
    inner = (230, 150, 160) if sub == "white cat" else darker(col, 0.7)
    c.poly([(0.69, 0.27), (0.7, 0.1), (0.75, 0.22)], inner, solid=False)
    if sub == "tabby cat":
        for x in np.arange(0.25, 0.65, 0.08):
            c.line([(x, 0.43), (x + 0.03, 0.62)], darker(col, 0.6), 0.04, solid=False)
    eye = (240, 210, 40) if sub == "black cat" else (80, 180, 80)
    for x in (0.73, 0.84):
        c.circle(x, 0.35, 0.035, eye, solid=False)
        c.circle(x, 0.35, 0.015, (5, 5, 5), solid=False)
    c.circle(0.79, 0.45, 0.025, (230, 120, 140), solid=False)


def _draw_chair(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    if sub == "office chair":
        c.rrect(0.15, 0.0, 0.85, 0.46, 0.08, col)
        c.rrect(0.06, 0.5, 0.94, 0.62, 0.04, col)
        c.rect(0.45, 0.62, 0.55, 0.86, (150, 150, 156))
        for x in (0.04, 0.3, 0.7, 0.96):
            c.line([(0.5, 0.86), (x, 0.95)], (90, 90, 96), 0.04)
            c.circle(x, 0.96, 0.035, _TYRE)
    elif sub == "armchair":
        c.rrect(0.1, 0.0, 0.9, 0.62, 0.1, col)
        c.rrect(0.0, 0.32, 0.2, 0.86, 0.06, _light(col, 0.15))
        c.rrect(0.8, 0.32, 1.0, 0.86, 0.06, _light(col, 0.15))
        c.rrect(0.2, 0.52, 0.8, 0.76, 0.05, _light(col, 0.25))
        c.rect(0.0, 0.76, 1.0, 0.9, darker(col, 0.75))
        c.rect(0.06, 0.9, 0.12, 1.0, (60, 40, 20))
        c.rect(0.88, 0.9, 0.94, 1.0, (60, 40, 20))
    else:  # wooden chair: open back of slats
        c.rect(0.12, 0.0, 0.88, 0.09, col)
        for x in (0.12, 0.78):
            c.rect(x, 0.0, x + 0.1, 0.52, col)
        for x in (0.33, 0.46, 0.59):
            c.rect(x, 0.09, x + 0.07, 0.5, darker(col, 0.85))
        c.poly([(0.08, 0.5), (0.92, 0.5), (1.0, 0.62), (0.0, 0.62)], _light(col, 0.15))
        for x0, y1 in ((0.02, 1.0), (0.88, 1.0), (0.2, 0.9), (0.72, 0.9)):
            c.rect(x0, 0.62, x0 + 0.09, y1, darker(col, 0.8))


def _draw_cow(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    patch = {"dairy cow": (25, 25, 28), "brown cow": (236, 232, 224), "bull": darker(col, 0.6)}[sub]
    for x in (0.2, 0.3, 0.62, 0.72):
        c.rect(x, 0.6, x + 0.08, 0.97, col)
        c.rect(x, 0.92, x + 0.08, 1.0, (30, 30, 30))
    c.line([(0.13, 0.3), (0.06, 0.66)], col, 0.04)
    c.rrect(0.12, 0.22, 0.82, 0.68, 0.15, col)
    if sub != "bull":
        n = int(rng.integers(4, 8)) if sub == "dairy cow" else 3
        for _ in range(n):
            c.ellipse(float(rng.uniform(0.18, 0.76)), float(rng.uniform(0.28, 0.62)), float(rng.uniform(0.05, 0.1)),
                      float(rng.uniform(0.06, 0.14)), patch, solid=False, angle=float(rng.uniform(0, 180)))
        c.ellipse(0.5, 0.69, 0.06, 0.05, (236, 160, 170))  # udder
    else:
        c.poly([(0.8, 0.14), (0.76, 0.0), (0.84, 0.1)], (236, 226, 200))  # horns
        c.poly([(0.94, 0.14), (0.99, 0.0), (0.91, 0.1)], (236, 226, 200))
    c.ellipse(0.87, 0.3, 0.1, 0.17, col)
    c.ellipse(0.76, 0.18, 0.05, 0.04, darker(col, 0.8))  # ear
    c.ellipse(0.9, 0.44, 0.075, 0.07, (226, 150, 150))  # muzzle
    c.circle(0.88, 0.26, 0.025, (10, 10, 10), solid=False)


def _draw_diningtable(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    if sub == "round table":
        c.rect(0.45, 0.3, 0.55, 0.92, darker(col, 0.8))
        c.ellipse(0.5, 0.94, 0.25, 0.05, darker(col, 0.7))
        c.ellipse(0.5, 0.28, 0.5, 0.14, darker(col, 0.8))
        c.ellipse(0.5, 0.24, 0.5, 0.14, col)
    else:
        legc = (190, 192, 198) if sub == "glass table" else darker(col, 0.75)
        for x0, y1 in ((0.03, 1.0), (0.9, 1.0), (0.16, 0.84), (0.78, 0.84)):
            c.rect(x0, 0.4, x0 + 0.06, y1, legc)
        c.poly([(0.06, 0.18), (0.94, 0.18), (1.0, 0.32), (0.0, 0.32)], _light(col, 0.2))
        c.rect(0.0, 0.32, 1.0, 0.42, col)
    # a plate and a cup on the top (drawn as part of the table, as VOC masks do)
    c.ellipse(0.32, 0.24, 0.09, 0.035, (245, 245, 245), solid=False)
    c.rect(0.62, 0.12, 0.68, 0.25, jitter(rng, (200, 60, 60), 30))
    if sub == "wooden table":
        for x in np.arange(0.15, 0.95, 0.2):
            c.line([(x, 0.33), (x, 0.41)], darker(col, 0.8), 0.01, solid=False)


def _draw_dog(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    low = sub == "dachshund"
    leg_top = 0.68 if low else 0.55
    for x in (0.22, 0.32, 0.62, 0.72):
        c.rect(x, leg_top, x + 0.07, 0.98, col)
    c.line([(0.17, 0.48), (0.07, 0.3), (0.03, 0.14)], col, 0.06)  # wagging tail
    c.ellipse(0.46, 0.6 if low else 0.5, 0.32, 0.15 if low else 0.18, col)
    c.circle(0.78, 0.3, 0.15, col)
    c.rrect(0.84, 0.28, 1.0, 0.45, 0.05, col)  # snout
    c.circle(0.98, 0.31, 0.04, (15, 15, 15))
    c.ellipse(0.72, 0.38, 0.05, 0.15, darker(col, 0.65), angle=10)  # floppy ear
    c.circle(0.82, 0.25, 0.03, (10, 10, 10), solid=False)
    if sub == "dalmatian":
        for _ in range(14):
            c.circle(float(rng.uniform(0.16, 0.76)), float(rng.uniform(0.34, 0.95)), 0.03, (20, 20, 20), solid=False)


def _draw_horse(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    hair = (40, 30, 24) if sub != "white horse" else (200, 200, 200)
    leg_top = 0.55 if sub != "pony" else 0.6
    for x in (0.22, 0.3, 0.6, 0.68):
        c.rect(x, leg_top, x + 0.055, 0.96, col)
        c.rect(x, 0.94, x + 0.055, 1.0, (40, 40, 40))
    c.poly([(0.16, 0.36), (0.06, 0.5), (0.04, 0.82), (0.12, 0.78), (0.18, 0.46)], hair)  # tail
    c.ellipse(0.45, 0.45, 0.3, 0.15, col)
    c.poly([(0.6, 0.44), (0.7, 0.08), (0.82, 0.1), (0.76, 0.5)], col)  # neck
    c.ellipse(0.85, 0.2, 0.13, 0.07, col, angle=35)
    c.line([(0.62, 0.36), (0.69, 0.1), (0.76, 0.02)], hair, 0.05)  # mane
    c.circle(0.84, 0.14, 0.022, (10, 10, 10), solid=False)
    if sub == "pony":
        for _ in range(4):
            c.ellipse(float(rng.uniform(0.25, 0.65)), float(rng.uniform(0.38, 0.55)), 0.05, 0.06,
                      (240, 240, 236), solid=False)


def _draw_motorbike(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    if sub == "scooter":
        _wheel(c, 0.18, 0.8, 0.18)
        _wheel(c, 0.82, 0.8, 0.18)
        c.rect(0.25, 0.66, 0.72, 0.78, col)
        c.ellipse(0.26, 0.56, 0.2, 0.17, col)
        c.poly([(0.62, 0.78), (0.7, 0.2), (0.8, 0.2), (0.84, 0.62)], col)
        c.rrect(0.12, 0.34, 0.42, 0.42, 0.03, _TYRE)
        c.line([(0.64, 0.12), (0.86, 0.12)], _TYRE, 0.05)
        c.line([(0.75, 0.12), (0.75, 0.22)], (150, 150, 156), 0.04)
    else:
        rad = 0.27 if sub == "dirt bike" else 0.25
        for x in (0.2, 0.8):
            _wheel(c, x, 1.0 - rad - 0.01, rad)
        c.line([(0.8, 0.72), (0.7, 0.22)], (180, 180, 186), 0.05)  # fork
        c.line([(0.32, 0.68), (0.05, 0.58)], (180, 180, 186), 0.05)  # exhaust
        if sub == "dirt bike":
            c.line([(0.22, 0.46), (0.5, 0.62), (0.72, 0.42)], (60, 60, 64), 0.06)  # thin frame
            c.poly([(0.25, 0.3), (0.55, 0.34), (0.62, 0.48), (0.3, 0.45)], col)
            c.poly([(0.72, 0.4), (0.98, 0.34), (0.96, 0.42)], col)  # high front fender
            c.rrect(0.1, 0.26, 0.42, 0.32, 0.02, _TYRE)
        else:
            c.poly([(0.3, 0.45), (0.62, 0.3), (0.9, 0.34), (0.86, 0.6), (0.46, 0.72), (0.3, 0.62)], col)
            c.poly([(0.18, 0.38), (0.44, 0.38), (0.44, 0.45), (0.2, 0.47)], _TYRE)
            c.poly([(0.72, 0.3), (0.8, 0.1), (0.86, 0.32)], _GLASS)  # windshield
        c.line([(0.62, 0.18), (0.78, 0.16)], _TYRE, 0.05)
        c.circle(0.9, 0.4, 0.04, (250, 240, 160), solid=False)


_SKIN = ((240, 200, 170), (200, 150, 110), (140, 96, 64), (90, 60, 40))
_HAIR = ((30, 24, 20), (90, 60, 30), (200, 170, 90), (120, 120, 120))


def _draw_person(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    skin = _SKIN[int(rng.integers(len(_SKIN)))]
    hair = _HAIR[int(rng.integers(len(_HAIR)))]
    legs = jitter(rng, ((40, 50, 90), (50, 50, 50), (110, 90, 70))[int(rng.integers(3))], 10)
    hr = 0.12 if sub == "child" else 0.09
    hy = hr + 0.005
    body_top, waist = hy + hr, 0.58 if sub != "child" else 0.64
    c.line([(0.24, body_top + 0.03), (0.06, waist - 0.02)], col, 0.07)  # arms in sleeves
    c.line([(0.76, body_top + 0.03), (0.94, waist - 0.02)], col, 0.07)
    c.circle(0.06, waist, 0.03, skin)
    c.circle(0.94, waist, 0.03, skin)
    if sub == "woman":
        c.rect(0.33, 0.7, 0.44, 0.97, skin)
        c.rect(0.56, 0.7, 0.67, 0.97, skin)
        c.poly([(0.26, body_top), (0.74, body_top), (0.9, 0.74), (0.1, 0.74)], col)  # dress
    else:
        c.rect(0.26, waist, 0.48, 0.97, legs)
        c.rect(0.52, waist, 0.74, 0.97, legs)
        c.rrect(0.22, body_top, 0.78, waist + 0.02, 0.03, col)
    c.rect(0.22, 0.96, 0.46, 1.0, (30, 26, 24))
    c.rect(0.54, 0.96, 0.78, 1.0, (30, 26, 24))
    c.rect(0.43, body_top - 0.03, 0.57, body_top + 0.01, skin)  # neck
    c.circle(0.5, hy, hr, skin)
    half_w = hr * c.h / max(c.w - 1, 1)  # the head radius as a fraction of the box width
    c.ellipse(0.5, hy - hr * 0.45, half_w, hr * 0.6, hair)
    c.circle(0.4, hy, 0.012, (20, 20, 20), solid=False)
    c.circle(0.6, hy, 0.012, (20, 20, 20), solid=False)
    # the head's extent as a VOC person-layout part
    c.part("head", 0.5 - half_w, 0.0, 0.5 + half_w, hy + hr)


def _draw_pottedplant(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    pot = jitter(rng, ((196, 100, 56), (236, 236, 232), (60, 90, 170))[int(rng.integers(3))], 10)
    if sub == "cactus":
        c.rrect(0.38, 0.08, 0.62, 0.64, 0.12, col)
        c.rrect(0.14, 0.22, 0.3, 0.46, 0.06, col)
        c.rect(0.2, 0.38, 0.42, 0.46, col)
        c.rrect(0.7, 0.3, 0.86, 0.52, 0.06, col)
        c.rect(0.58, 0.44, 0.8, 0.52, col)
        for _ in range(12):
            c.circle(float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.12, 0.6)), 0.008, (230, 230, 200),
                     solid=False)
    else:
        leaf = (44, 152, 60) if sub == "flowering plant" else col
        for k in range(9):
            ang = math.pi * (0.05 + 0.9 * k / 8)
            cx, cy = 0.5 - 0.3 * math.cos(ang), 0.5 - 0.36 * math.sin(ang)
            c.ellipse(cx, cy, 0.12, 0.1, jitter(rng, leaf, 20), angle=-math.degrees(ang))
        c.ellipse(0.5, 0.45, 0.28, 0.16, darker(leaf, 0.85))
        if sub == "flowering plant":
            for _ in range(6):
                x, y = float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.12, 0.45))
                c.circle(x, y, 0.06, col)
                c.circle(x, y, 0.022, (250, 220, 60), solid=False)
    c.poly([(0.22, 0.62), (0.78, 0.62), (0.68, 1.0), (0.32, 1.0)], pot)
    c.rect(0.18, 0.58, 0.82, 0.66, darker(pot, 0.85))


def _draw_sheep(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    for x in (0.26, 0.36, 0.56, 0.66):
        c.rect(x, 0.6, x + 0.05, 0.98, (30, 30, 30))
    # A fluffy outline: discs along an ellipse around the body.
    for k in range(14):
        a = 2 * math.pi * k / 14
        c.circle(0.45 + 0.3 * math.cos(a), 0.48 + 0.22 * math.sin(a), 0.11, col)
    c.ellipse(0.45, 0.48, 0.33, 0.25, col)
    for _ in range(16):
        c.circle(float(rng.uniform(0.18, 0.72)), float(rng.uniform(0.3, 0.66)), 0.035, _light(col, 0.3), solid=False)
    c.ellipse(0.84, 0.38, 0.09, 0.15, (30, 30, 30), angle=-20)
    c.ellipse(0.77, 0.26, 0.06, 0.04, (40, 40, 40))


def _draw_sofa(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    n_seats = 2 if sub == "loveseat" else 3
    c.rrect(0.04, 0.04, 0.96, 0.56, 0.08, col)
    c.rect(0.0, 0.5, 1.0, 0.88, darker(col, 0.85))
    for i in range(n_seats):  # seat cushions
        x0 = 0.1 + i * 0.8 / n_seats
        c.rrect(x0 + 0.01, 0.48, x0 + 0.8 / n_seats - 0.01, 0.66, 0.04, _light(col, 0.12))
        c.line([(x0 + 0.8 / n_seats, 0.1), (x0 + 0.8 / n_seats, 0.46)], darker(col, 0.75), 0.02, solid=False)
    c.rrect(0.0, 0.3, 0.11, 0.88, 0.05, _light(col, 0.08))
    c.rrect(0.89, 0.3, 1.0, 0.88, 0.05, _light(col, 0.08))
    for x in (0.04, 0.92):
        c.rect(x, 0.88, x + 0.04, 1.0, (50, 34, 20))
    if sub == "leather sofa":
        c.line([(0.15, 0.12), (0.3, 0.1)], _light(col, 0.5), 0.02, solid=False)


def _draw_train(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    if sub == "steam locomotive":
        c.rect(0.35, 0.3, 0.95, 0.76, col)
        c.circle(0.95, 0.53, 0.23, darker(col, 0.7))
        c.rect(0.78, 0.02, 0.86, 0.32, col)
        c.rect(0.05, 0.1, 0.38, 0.76, col)
        c.rect(0.03, 0.06, 0.4, 0.12, darker(col, 0.6))
        c.rect(0.12, 0.2, 0.3, 0.42, (250, 220, 140), solid=False)
        for x in (0.5, 0.68, 0.86):
            c.circle(x, 0.82, 0.17, (190, 36, 36))
            c.circle(x, 0.82, 0.05, (40, 40, 40), solid=False)
        c.circle(0.2, 0.88, 0.11, (190, 36, 36))
        c.line([(0.5, 0.82), (0.86, 0.82)], (180, 180, 186), 0.04, solid=False)
        return
    c.rect(0.02, 0.84, 0.98, 0.92, (40, 40, 44))  # undercarriage
    for x in np.arange(0.05, 0.98, 0.11):
        c.circle(x, 0.92, 0.075, _TYRE)
    if sub == "freight train":
        for i in range(3):
            x0 = 0.01 + i * 0.33
            car = jitter(rng, col, 18)
            c.rect(x0, 0.14, x0 + 0.31, 0.86, car)
            for x in np.arange(x0 + 0.03, x0 + 0.3, 0.04):
                c.line([(x, 0.16), (x, 0.84)], darker(car, 0.75), 0.015, solid=False)
            c.line([(x0 + 0.1, 0.3), (x0 + 0.21, 0.7)], _light(car, 0.3), 0.03, solid=False)
            c.line([(x0 + 0.21, 0.3), (x0 + 0.1, 0.7)], _light(car, 0.3), 0.03, solid=False)
            c.line([(x0 + 0.31, 0.7), (x0 + 0.33, 0.7)], (40, 40, 40), 0.04)
    else:  # passenger train: long body, a row of windows, a stripe and a sloped nose
        c.rrect(0.0, 0.08, 0.92, 0.86, 0.08, col)
        c.poly([(0.9, 0.08), (0.96, 0.1), (1.0, 0.5), (1.0, 0.86), (0.9, 0.86)], col)
        c.poly([(0.92, 0.14), (0.96, 0.16), (0.99, 0.45), (0.92, 0.45)], (40, 56, 80), solid=False)
        for x in np.arange(0.04, 0.86, 0.07):
            c.rect(x, 0.2, x + 0.045, 0.45, _GLASS, solid=False)
        stripe = (200, 30, 30) if col[0] < 150 or col[2] > 150 else (30, 60, 180)
        c.rect(0.0, 0.55, 1.0, 0.63, stripe, solid=False)


def _draw_tvmonitor(c: Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    if sub == "crt tv":
        c.rrect(0.0, 0.0, 1.0, 0.93, 0.08, col)
        scr = (0.07, 0.08, 0.76, 0.84)
        for y in (0.3, 0.5):
            c.circle(0.88, y, 0.05, darker(col, 0.5), solid=False)
        c.rect(0.1, 0.93, 0.2, 1.0, darker(col, 0.6))
        c.rect(0.8, 0.93, 0.9, 1.0, darker(col, 0.6))
    else:
        bottom = 0.84 if sub == "flat-screen tv" else 0.76
        c.rect(0.0, 0.0, 1.0, bottom, col)
        scr = (0.035, 0.05, 0.965, bottom - 0.05)
        c.rect(0.45, bottom, 0.55, 0.94, darker(col, 0.8) if col[0] > 100 else (70, 70, 76))
        if sub == "flat-screen tv":
            c.rect(0.28, 0.93, 0.72, 1.0, (70, 70, 76))
        else:
            c.ellipse(0.5, 0.95, 0.24, 0.05, (70, 70, 76))
    # a bright screen with some picture on it
    base = jitter(rng, (150, 210, 250), 30)
    c.rect(*scr, base, solid=False)
    x0, y0, x1, y1 = scr
    c.rect(x0, (y0 + y1) / 2, x1, y1, jitter(rng, (120, 200, 120), 40), solid=False)
    c.circle(float(rng.uniform(x0 + 0.1, x1 - 0.1)), y0 + 0.2, 0.08, jitter(rng, (250, 230, 120), 20), solid=False)


_DRAW: dict[str, Callable[[Canvas, str, Color, np.random.Generator], None]] = {
    "aeroplane": _draw_aeroplane, "bicycle": _draw_bicycle, "bird": _draw_bird, "boat": _draw_boat,
    "bottle": _draw_bottle, "bus": _draw_bus, "car": _draw_car, "cat": _draw_cat, "chair": _draw_chair,
    "cow": _draw_cow, "diningtable": _draw_diningtable, "dog": _draw_dog, "horse": _draw_horse,
    "motorbike": _draw_motorbike, "person": _draw_person, "pottedplant": _draw_pottedplant,
    "sheep": _draw_sheep, "sofa": _draw_sofa, "train": _draw_train, "tvmonitor": _draw_tvmonitor,
}
# Objects seen from the side face right when drawn; these are symmetric (pose Frontal / Unspecified).
FRONTAL = {"person": "Frontal", "tvmonitor": "Frontal", "bottle": "Unspecified", "pottedplant": "Unspecified"}


def draw_object(cls: str, sub: SubType, color: str, h: int, w: int, rng: np.random.Generator) -> Canvas:
    """Draw one object in an [h, w] box with a little texture: the canvas (layer, mask, parts)."""
    c = Canvas(h, w)
    _DRAW[cls](c, sub.name, jitter(rng, COLORS[color], 10), rng)
    # Texture: smooth blotches plus fine grain, so a surface is never a flat colour.
    tex = smooth_noise(rng, h, w, cell=max(3, min(h, w) // 6)) * 14 + rng.normal(0, 4, (h, w)).astype(np.float32)
    c.img = np.clip(c.img.astype(np.float32) + tex[..., None], 0, 255).astype(np.uint8)
    return c


@functools.cache
def fill_fraction(cls: str, sub_index: int) -> float:
    """Fraction of its box an object's mask covers, measured once per sub-type at a reference size.

    Lets the placer size the box so the object, not its box, covers the sampled share of the image.
    It draws with its own fixed generator, so it never disturbs an image's random stream.
    """
    sub = SUBTYPES[cls][sub_index]
    h = 96
    w = max(8, round(h * sub.aspect))
    c = draw_object(cls, sub, sub.colors[0], h, w, np.random.default_rng(0))
    return float((c.mask > 0).mean())
