"""A generated "toy world" in exact PASCAL VOC 2012 (or MS COCO 2014) layout, for running the pipeline offline.

No real dataset can be downloaded on CI machines, so every step is tested on images drawn here with
numpy + OpenCV. The folder written under ``root`` looks like ``VOCdevkit/VOC2012``::

    JPEGImages/<id>.jpg              RGB, JPEG quality 95, ids toy_000001, toy_000002, ...
    Annotations/<id>.xml             VOC XML: one <object> per object (XML class name, pose, truncated,
                                     difficult=0, 1-based bndbox); some persons carry a <part> (head)
    SegmentationClass/<id>.png       VOC-paletted PNG: 0 background, 1..20 class, 255 void border
                                     (train and val images only; "extra" images are SBD-like: no PNG)
    ImageSets/Segmentation/{train,val,train_aug}.txt
    ToyMeta/<id>.json                what was drawn: {"scene", "objects": [{"class" (XML name), "class_name"
                                     (question spelling), "subtype", "bbox", "color"}], "things"}; objects in
                                     drawing order (later ones occlude earlier ones), bbox = [x0, y0, x1, y1]
                                     of the visible pixels, 0-based with exclusive ends (XML = x0 + 1, ..., x1)
    toy_world.json                   parameters and counts, written last: the completion marker

The statistics matter more than the looks: every class has its own shape, colour and texture and 2-3
visibly different sub-types, and lives mostly on one scene (a train on rails, a boat on water, an
aeroplane in the sky, a cow on grass, a sofa in a room ...). With probability ``scene_correlation`` an
image's scene is its first object's scene, so a plain CAM classifier can use the scene as a shortcut
(activating rails for "train", water for "boat") -- the failure QA-CLIMS's background questions fix.
The ``ToyMeta`` sidecars hold the answers a toy VQA model is trained on (sub-types and aliases answer
"what kind of X", scene and things answer the background questions).

``write_coco_layout`` (``--layout coco``) writes the same drawings in MS COCO 2014 layout instead:
``train2014/``, ``val2014/`` JPEGs, ``annotations/instances_{train,val}2014.json`` (polygon / RLE
segmentations with the COCO category ids of the VOC classes, a crowd annotation and images without
annotations in each split) and ``mask/`` rendered from that JSON by ``coco14.make_coco_masks``.

Everything is a pure function of the seed and the parameters: image ``i`` draws from its own
``numpy.random.Generator`` seeded with ``(seed, i)``, so two runs write byte-identical files.
"""
from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from tool.engine.io import read_json, write_bytes, write_json, write_text
from tool.data.palette import save_label_png
from voc12.dataset import CLASS_NAMES, XML_NAMES

log = logging.getLogger(__name__)

GENERATOR_VERSION = 1
MARKER = "toy_world.json"
# Written before the first image and removed after the marker: a folder holding only this file (and
# our own sub-folders) is an interrupted generation we may safely redo; anything else is user data.
PARTIAL_MARKER = ".toy_world.partial.json"
_OWN_DIRS = ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets", "ToyMeta")
_COCO_OWN_DIRS = ("train2014", "val2014", "annotations", "mask", "lists", "ToyMeta")
LAYOUTS = ("voc", "coco")

SCENES: tuple[str, ...] = ("sky", "water", "railway", "grass", "road", "room")

# The scenes each class mostly lives on (its "home"); person lives anywhere.
CLASS_SCENES: dict[str, tuple[str, ...]] = {
    "aeroplane": ("sky",), "bicycle": ("road",), "bird": ("sky",), "boat": ("water",),
    "bottle": ("room",), "bus": ("road",), "car": ("road",), "cat": ("room",), "chair": ("room",),
    "cow": ("grass",), "diningtable": ("room",), "dog": ("grass", "room"), "horse": ("grass",),
    "motorbike": ("road",), "person": SCENES, "pottedplant": ("room",), "sheep": ("grass",),
    "sofa": ("room",), "train": ("railway",), "tvmonitor": ("room",),
}

# Other words for each class (XML name -> aliases), for the toy VQA model's vocabulary.
CLASS_ALIASES: dict[str, tuple[str, ...]] = {
    "aeroplane": ("airplane", "plane", "aircraft"), "bicycle": ("bike", "cycle"), "bird": ("birdie",),
    "boat": ("ship", "vessel"), "bottle": ("flask",), "bus": ("coach",), "car": ("automobile", "vehicle"),
    "cat": ("kitten", "kitty"), "chair": ("seat",), "cow": ("cattle",), "diningtable": ("table", "dining table"),
    "dog": ("puppy", "hound"), "horse": ("pony", "steed"), "motorbike": ("motorcycle", "motor bike"),
    "person": ("man", "woman", "child", "people"), "pottedplant": ("plant", "houseplant", "potted plant"),
    "sheep": ("lamb",), "sofa": ("couch", "settee"), "train": ("locomotive", "railway train"),
    "tvmonitor": ("tv", "television", "monitor", "screen"),
}

# Every scene "thing" that can be drawn, per scene (the sidecar lists those actually drawn).
SCENE_THINGS: dict[str, tuple[str, ...]] = {
    "sky": ("cloud", "sun", "hill"),
    "water": ("sky", "waves", "cloud", "buoy"),
    "railway": ("sky", "gravel", "rails", "sleepers", "pole"),
    "grass": ("sky", "grass tuft", "fence", "tree"),
    "road": ("sky", "road", "lane marking", "sidewalk", "building"),
    "room": ("wall", "floor", "window", "shelf", "picture frame"),
}

COLORS: dict[str, tuple[int, int, int]] = {
    "white": (236, 236, 232), "black": (32, 32, 36), "grey": (128, 128, 134), "silver": (192, 194, 200),
    "dark grey": (72, 72, 78), "red": (200, 36, 36), "dark red": (128, 26, 32), "blue": (36, 76, 204),
    "light blue": (140, 192, 236), "navy": (30, 40, 104), "green": (44, 152, 60), "dark green": (26, 84, 42),
    "yellow": (238, 204, 40), "orange": (236, 126, 36), "brown": (126, 80, 40), "dark brown": (74, 46, 26),
    "tan": (202, 162, 112), "golden": (216, 172, 72), "pink": (232, 140, 172), "purple": (122, 60, 164),
    "cream": (240, 230, 200),
}


class SubType(NamedTuple):
    """One visibly different kind of a class: its name, box aspect (width / height) and body colours."""

    name: str
    aspect: float
    colors: tuple[str, ...]


SUBTYPES: dict[str, tuple[SubType, ...]] = {
    "aeroplane": (SubType("airliner", 1.35, ("white", "silver")),
                  SubType("propeller plane", 1.25, ("red", "yellow", "orange")),
                  SubType("fighter jet", 1.2, ("grey", "dark grey"))),
    "bicycle": (SubType("road bike", 1.7, ("red", "blue", "black")),
                SubType("mountain bike", 1.55, ("green", "orange", "black")),
                SubType("tandem", 2.4, ("blue", "red", "yellow"))),
    "bird": (SubType("parrot", 1.25, ("green", "red", "blue")), SubType("crow", 1.3, ("black",)),
             SubType("seagull", 1.35, ("white",))),
    "boat": (SubType("sailboat", 1.0, ("white", "blue", "red")),
             SubType("canoe", 3.2, ("red", "orange", "green", "yellow")),
             SubType("ship", 2.2, ("dark grey", "navy", "dark red"))),
    "bottle": (SubType("wine bottle", 0.3, ("dark green", "dark red")), SubType("beer bottle", 0.34, ("brown",)),
               SubType("water bottle", 0.42, ("light blue",))),
    "bus": (SubType("city bus", 2.0, ("white", "blue", "green")), SubType("double-decker bus", 1.35, ("red",)),
            SubType("school bus", 2.1, ("yellow",))),
    "car": (SubType("sedan", 2.1, ("red", "blue", "silver", "black", "white")),
            SubType("hatchback", 1.8, ("yellow", "green", "red", "blue")),
            SubType("pickup truck", 2.2, ("white", "grey", "navy", "red"))),
    "cat": (SubType("tabby cat", 1.35, ("orange",)), SubType("black cat", 1.35, ("black",)),
            SubType("white cat", 1.35, ("white",))),
    "chair": (SubType("wooden chair", 0.7, ("brown", "tan")), SubType("office chair", 0.72, ("black", "grey")),
              SubType("armchair", 1.0, ("red", "green", "blue"))),
    "cow": (SubType("dairy cow", 1.6, ("white",)), SubType("brown cow", 1.6, ("brown",)),
            SubType("bull", 1.55, ("black", "dark brown"))),
    "diningtable": (SubType("wooden table", 1.7, ("brown", "tan")),
                    SubType("round table", 1.3, ("dark brown", "white")),
                    SubType("glass table", 1.7, ("light blue",))),
    "dog": (SubType("labrador", 1.45, ("golden",)), SubType("dalmatian", 1.45, ("white",)),
            SubType("dachshund", 2.0, ("brown",))),
    "horse": (SubType("chestnut horse", 1.25, ("brown",)), SubType("white horse", 1.25, ("white",)),
              SubType("pony", 1.35, ("tan", "grey"))),
    "motorbike": (SubType("sport bike", 1.6, ("red", "blue", "green")),
                  SubType("scooter", 1.4, ("light blue", "pink", "cream")),
                  SubType("dirt bike", 1.5, ("orange", "yellow"))),
    "person": (SubType("man", 0.4, ("blue", "red", "green", "grey", "white")),
               SubType("woman", 0.44, ("red", "purple", "pink", "yellow")),
               SubType("child", 0.5, ("orange", "yellow", "green", "light blue"))),
    "pottedplant": (SubType("fern", 0.75, ("green",)), SubType("cactus", 0.6, ("green", "dark green")),
                    SubType("flowering plant", 0.8, ("red", "pink", "yellow", "purple"))),
    "sheep": (SubType("white sheep", 1.4, ("white", "cream")), SubType("black sheep", 1.4, ("dark grey",)),
              SubType("lamb", 1.25, ("cream",))),
    "sofa": (SubType("couch", 2.3, ("red", "blue", "grey", "green")),
             SubType("loveseat", 1.6, ("pink", "purple", "yellow")),
             SubType("leather sofa", 2.2, ("dark brown", "black"))),
    "train": (SubType("passenger train", 3.0, ("white", "red", "blue")),
              SubType("steam locomotive", 2.0, ("black", "dark green")),
              SubType("freight train", 3.2, ("brown", "dark red"))),
    "tvmonitor": (SubType("flat-screen tv", 1.5, ("black",)), SubType("crt tv", 1.15, ("grey", "cream")),
                  SubType("computer monitor", 1.25, ("black", "silver"))),
}

# How often a further object of an image comes from the classes living on the image's scene.
_SAME_SCENE_PROB = 0.8
# Target fraction of the image covered by one object's drawn pixels (before occlusion).
_COVER_RANGE = (0.06, 0.30)
_TRUNCATE_PROB = 0.2  # chance that an object may run off the image edge (VOC "truncated")
_MIN_VISIBLE = 0.45  # a later object may hide at most 55 % of an earlier one
_MIN_INSIDE = 0.7  # a truncated object keeps at least 70 % of its pixels inside the image
_PLACEMENT_TRIES = 12


# ----------------------------------------------------------------------------------------------------
# colours and small drawing helpers
# ----------------------------------------------------------------------------------------------------

Color = tuple[int, int, int]


def _dark(c: Sequence[int], f: float = 0.6) -> Color:
    return (int(c[0] * f), int(c[1] * f), int(c[2] * f))


def _light(c: Sequence[int], f: float = 0.4) -> Color:
    return tuple(int(v + (255 - v) * f) for v in c)  # type: ignore[return-value]


def _jitter(rng: np.random.Generator, c: Sequence[int], amp: int = 14) -> Color:
    d = rng.integers(-amp, amp + 1, size=3)
    return tuple(int(np.clip(v + dv, 0, 255)) for v, dv in zip(c, d))  # type: ignore[return-value]


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: [h, w] float32 (a coarse grid upsampled bilinearly)."""
    small = rng.standard_normal((h // cell + 2, w // cell + 2)).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR) * 0.5


class _Canvas:
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

    def _both(self, draw: Callable[[np.ndarray, Any], None], color: Color, solid: bool) -> None:
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
# the 20 classes: each draws itself facing right into a _Canvas
# ----------------------------------------------------------------------------------------------------

_GLASS = (150, 200, 235)
_TYRE = (28, 28, 30)


def _wheel(c: _Canvas, x: float, y: float, rad: float, hub: Color = (170, 170, 176)) -> None:
    c.circle(x, y, rad, _TYRE)
    c.circle(x, y, rad * 0.45, hub, solid=False)


def _draw_aeroplane(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    # Seen from below, nose to the right: the fuselage and the wings make a cross.
    dark = _dark(col, 0.55)
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


def _draw_bicycle(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    tandem = sub == "tandem"
    rad = 0.3 if sub != "mountain bike" else 0.32
    tyre = 0.09 if sub == "mountain bike" else 0.07
    xr, xf = (0.12, 0.88) if tandem else (0.2, 0.8)
    yw = 1.0 - rad - 0.01
    for x in (xr, xf):
        c.circle(x, yw, rad, _TYRE, thick=tyre)
        c.circle(x, yw, 0.05, (170, 170, 176))
        c.line([(x, yw), (x, yw - rad)], (180, 180, 186), 0.02, solid=False)  # a spoke
    seats = (0.35, 0.6) if tandem else (0.4,)
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


def _draw_bird(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    wing = {"parrot": _jitter(rng, COLORS[str(rng.choice(["yellow", "blue", "red"]))]),
            "crow": (60, 60, 68), "seagull": (150, 154, 162)}[sub]
    beak = {"parrot": (60, 60, 60), "crow": (52, 52, 52), "seagull": (240, 190, 40)}[sub]
    c.line([(0.42, 0.7), (0.4, 0.98)], (200, 120, 60), 0.04)
    c.line([(0.52, 0.7), (0.54, 0.98)], (200, 120, 60), 0.04)
    c.poly([(0.2, 0.5), (0.0, 0.38), (0.0, 0.7), (0.22, 0.66)], _dark(col, 0.8))  # tail
    c.ellipse(0.45, 0.58, 0.3, 0.2, col)
    c.circle(0.76, 0.36, 0.16, col)
    c.poly([(0.86, 0.3), (1.0, 0.39), (0.86, 0.46)], beak)
    c.poly([(0.3, 0.55), (0.62, 0.52), (0.26, 0.0), (0.2, 0.05)], wing)  # a raised wing
    if sub == "seagull":
        c.poly([(0.26, 0.0), (0.2, 0.05), (0.23, 0.12), (0.3, 0.08)], _TYRE)
    c.circle(0.8, 0.32, 0.035, (10, 10, 10), solid=False)


def _draw_boat(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    if sub == "sailboat":
        c.poly([(0.0, 0.72), (1.0, 0.72), (0.82, 0.97), (0.18, 0.97)], col)
        c.line([(0.03, 0.76), (0.97, 0.76)], _light(col, 0.6), 0.03, solid=False)
        c.line([(0.5, 0.02), (0.5, 0.72)], (90, 60, 30), 0.03)
        sail = _jitter(rng, (238, 236, 226), 8)
        c.poly([(0.47, 0.04), (0.47, 0.68), (0.08, 0.68)], sail)
        c.poly([(0.53, 0.1), (0.53, 0.68), (0.86, 0.68)], _dark(sail, 0.92))
    elif sub == "canoe":
        xs = np.linspace(0.0, 1.0, 17)
        top = [(x, 0.3 - 0.25 * (abs(2 * x - 1) ** 4)) for x in xs]
        bottom = [(x, 0.3 + 0.62 * math.sin(math.pi * x) ** 0.7) for x in xs[::-1]]
        c.poly(top + bottom, col)
        c.line([(0.04, 0.3), (0.96, 0.3)], _dark(col, 0.5), 0.06, solid=False)
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


def _draw_bottle(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    label = _jitter(rng, (236, 226, 196), 10)
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


def _draw_bus(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    decker = sub == "double-decker bus"
    wr = 0.1 if decker else 0.14
    c.rrect(0.0, 0.04, 1.0, 0.87, 0.08, col)
    rows = [(0.1, 0.34), (0.5, 0.7)] if decker else [(0.14, 0.44)]
    for y0, y1 in rows:
        for x in np.arange(0.05, 0.8, 0.13):
            c.rect(x, y0, x + 0.1, y1, _GLASS, solid=False)
    c.rect(0.88, rows[-1][0], 0.98, rows[-1][1], _GLASS, solid=False)  # windscreen
    if not decker:
        c.rect(0.81, 0.3, 0.86, 0.8, _dark(col, 0.5), solid=False)  # door
    stripe = _TYRE if sub == "school bus" else _dark(col, 0.6)
    c.rect(0.0, 0.5 if not decker else 0.42, 1.0, 0.55 if not decker else 0.46, stripe, solid=False)
    for x in (0.2, 0.8):
        _wheel(c, x, 1.0 - wr - 0.01, wr)


def _draw_car(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    if sub == "pickup truck":
        c.poly([(0.45, 0.44), (0.5, 0.08), (0.72, 0.08), (0.84, 0.44)], col)
        c.poly([(0.53, 0.42), (0.55, 0.15), (0.7, 0.15), (0.78, 0.42)], _GLASS, solid=False)
        c.rrect(0.0, 0.3, 1.0, 0.8, 0.08, col)
        c.line([(0.02, 0.36), (0.42, 0.36)], _dark(col, 0.6), 0.04, solid=False)  # bed rim
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


def _draw_cat(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    legc = _dark(col, 0.85)
    for x in (0.24, 0.34, 0.58, 0.68):
        c.rect(x, 0.65, x + 0.06, 0.97, legc)
    c.line([(0.17, 0.56), (0.07, 0.42), (0.05, 0.18), (0.1, 0.05)], col, 0.07)  # tail up
    c.ellipse(0.45, 0.6, 0.3, 0.19, col)
    c.circle(0.78, 0.38, 0.17, col)
    c.poly([(0.67, 0.3), (0.69, 0.04), (0.78, 0.22)], col)  # pointed ears
    c.poly([(0.79, 0.22), (0.88, 0.04), (0.9, 0.3)], col)
    inner = (230, 150, 160) if sub == "white cat" else _dark(col, 0.7)
    c.poly([(0.69, 0.27), (0.7, 0.1), (0.75, 0.22)], inner, solid=False)
    if sub == "tabby cat":
        for x in np.arange(0.25, 0.65, 0.08):
            c.line([(x, 0.43), (x + 0.03, 0.62)], _dark(col, 0.6), 0.04, solid=False)
    eye = (240, 210, 40) if sub == "black cat" else (80, 180, 80)
    for x in (0.73, 0.84):
        c.circle(x, 0.35, 0.035, eye, solid=False)
        c.circle(x, 0.35, 0.015, (5, 5, 5), solid=False)
    c.circle(0.79, 0.45, 0.025, (230, 120, 140), solid=False)


def _draw_chair(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
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
        c.rect(0.0, 0.76, 1.0, 0.9, _dark(col, 0.75))
        c.rect(0.06, 0.9, 0.12, 1.0, (60, 40, 20))
        c.rect(0.88, 0.9, 0.94, 1.0, (60, 40, 20))
    else:  # wooden chair: open back of slats
        c.rect(0.12, 0.0, 0.88, 0.09, col)
        for x in (0.12, 0.78):
            c.rect(x, 0.0, x + 0.1, 0.52, col)
        for x in (0.33, 0.46, 0.59):
            c.rect(x, 0.09, x + 0.07, 0.5, _dark(col, 0.85))
        c.poly([(0.08, 0.5), (0.92, 0.5), (1.0, 0.62), (0.0, 0.62)], _light(col, 0.15))
        for x0, y1 in ((0.02, 1.0), (0.88, 1.0), (0.2, 0.9), (0.72, 0.9)):
            c.rect(x0, 0.62, x0 + 0.09, y1, _dark(col, 0.8))


def _draw_cow(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    patch = {"dairy cow": (25, 25, 28), "brown cow": (236, 232, 224), "bull": _dark(col, 0.6)}[sub]
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
    c.ellipse(0.76, 0.18, 0.05, 0.04, _dark(col, 0.8))  # ear
    c.ellipse(0.9, 0.44, 0.075, 0.07, (226, 150, 150))  # muzzle
    c.circle(0.88, 0.26, 0.025, (10, 10, 10), solid=False)


def _draw_diningtable(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    if sub == "round table":
        c.rect(0.45, 0.3, 0.55, 0.92, _dark(col, 0.8))
        c.ellipse(0.5, 0.94, 0.25, 0.05, _dark(col, 0.7))
        c.ellipse(0.5, 0.28, 0.5, 0.14, _dark(col, 0.8))
        c.ellipse(0.5, 0.24, 0.5, 0.14, col)
    else:
        legc = (190, 192, 198) if sub == "glass table" else _dark(col, 0.75)
        for x0, y1 in ((0.03, 1.0), (0.9, 1.0), (0.16, 0.84), (0.78, 0.84)):
            c.rect(x0, 0.4, x0 + 0.06, y1, legc)
        c.poly([(0.06, 0.18), (0.94, 0.18), (1.0, 0.32), (0.0, 0.32)], _light(col, 0.2))
        c.rect(0.0, 0.32, 1.0, 0.42, col)
    # a plate and a cup on the top (drawn as part of the table, as VOC masks do)
    c.ellipse(0.32, 0.24, 0.09, 0.035, (245, 245, 245), solid=False)
    c.rect(0.62, 0.12, 0.68, 0.25, _jitter(rng, (200, 60, 60), 30))
    if sub == "wooden table":
        for x in np.arange(0.15, 0.95, 0.2):
            c.line([(x, 0.33), (x, 0.41)], _dark(col, 0.8), 0.01, solid=False)


def _draw_dog(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    low = sub == "dachshund"
    leg_top = 0.68 if low else 0.55
    for x in (0.22, 0.32, 0.62, 0.72):
        c.rect(x, leg_top, x + 0.07, 0.98, col)
    c.line([(0.17, 0.48), (0.07, 0.3), (0.03, 0.14)], col, 0.06)  # wagging tail
    c.ellipse(0.46, 0.6 if low else 0.5, 0.32, 0.15 if low else 0.18, col)
    c.circle(0.78, 0.3, 0.15, col)
    c.rrect(0.84, 0.28, 1.0, 0.45, 0.05, col)  # snout
    c.circle(0.98, 0.31, 0.04, (15, 15, 15))
    c.ellipse(0.72, 0.38, 0.05, 0.15, _dark(col, 0.65), angle=10)  # floppy ear
    c.circle(0.82, 0.25, 0.03, (10, 10, 10), solid=False)
    if sub == "dalmatian":
        for _ in range(14):
            c.circle(float(rng.uniform(0.16, 0.76)), float(rng.uniform(0.34, 0.95)), 0.03, (20, 20, 20), solid=False)


def _draw_horse(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
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


def _draw_motorbike(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
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


def _draw_person(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    skin = _SKIN[int(rng.integers(len(_SKIN)))]
    hair = _HAIR[int(rng.integers(len(_HAIR)))]
    legs = _jitter(rng, ((40, 50, 90), (50, 50, 50), (110, 90, 70))[int(rng.integers(3))], 10)
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


def _draw_pottedplant(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    pot = _jitter(rng, ((196, 100, 56), (236, 236, 232), (60, 90, 170))[int(rng.integers(3))], 10)
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
            c.ellipse(cx, cy, 0.12, 0.1, _jitter(rng, leaf, 20), angle=-math.degrees(ang))
        c.ellipse(0.5, 0.45, 0.28, 0.16, _dark(leaf, 0.85))
        if sub == "flowering plant":
            for _ in range(6):
                x, y = float(rng.uniform(0.2, 0.8)), float(rng.uniform(0.12, 0.45))
                c.circle(x, y, 0.06, col)
                c.circle(x, y, 0.022, (250, 220, 60), solid=False)
    c.poly([(0.22, 0.62), (0.78, 0.62), (0.68, 1.0), (0.32, 1.0)], pot)
    c.rect(0.18, 0.58, 0.82, 0.66, _dark(pot, 0.85))


def _draw_sheep(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
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


def _draw_sofa(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    n_seats = 2 if sub == "loveseat" else 3
    c.rrect(0.04, 0.04, 0.96, 0.56, 0.08, col)
    c.rect(0.0, 0.5, 1.0, 0.88, _dark(col, 0.85))
    for i in range(n_seats):  # seat cushions
        x0 = 0.1 + i * 0.8 / n_seats
        c.rrect(x0 + 0.01, 0.48, x0 + 0.8 / n_seats - 0.01, 0.66, 0.04, _light(col, 0.12))
        c.line([(x0 + 0.8 / n_seats, 0.1), (x0 + 0.8 / n_seats, 0.46)], _dark(col, 0.75), 0.02, solid=False)
    c.rrect(0.0, 0.3, 0.11, 0.88, 0.05, _light(col, 0.08))
    c.rrect(0.89, 0.3, 1.0, 0.88, 0.05, _light(col, 0.08))
    for x in (0.04, 0.92):
        c.rect(x, 0.88, x + 0.04, 1.0, (50, 34, 20))
    if sub == "leather sofa":
        c.line([(0.15, 0.12), (0.3, 0.1)], _light(col, 0.5), 0.02, solid=False)


def _draw_train(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    if sub == "steam locomotive":
        c.rect(0.35, 0.3, 0.95, 0.76, col)
        c.circle(0.95, 0.53, 0.23, _dark(col, 0.7))
        c.rect(0.78, 0.02, 0.86, 0.32, col)
        c.rect(0.05, 0.1, 0.38, 0.76, col)
        c.rect(0.03, 0.06, 0.4, 0.12, _dark(col, 0.6))
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
            car = _jitter(rng, col, 18)
            c.rect(x0, 0.14, x0 + 0.31, 0.86, car)
            for x in np.arange(x0 + 0.03, x0 + 0.3, 0.04):
                c.line([(x, 0.16), (x, 0.84)], _dark(car, 0.75), 0.015, solid=False)
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


def _draw_tvmonitor(c: _Canvas, sub: str, col: Color, rng: np.random.Generator) -> None:
    if sub == "crt tv":
        c.rrect(0.0, 0.0, 1.0, 0.93, 0.08, col)
        scr = (0.07, 0.08, 0.76, 0.84)
        for y in (0.3, 0.5):
            c.circle(0.88, y, 0.05, _dark(col, 0.5), solid=False)
        c.rect(0.1, 0.93, 0.2, 1.0, _dark(col, 0.6))
        c.rect(0.8, 0.93, 0.9, 1.0, _dark(col, 0.6))
    else:
        bottom = 0.84 if sub == "flat-screen tv" else 0.76
        c.rect(0.0, 0.0, 1.0, bottom, col)
        scr = (0.035, 0.05, 0.965, bottom - 0.05)
        c.rect(0.45, bottom, 0.55, 0.94, _dark(col, 0.8) if col[0] > 100 else (70, 70, 76))
        if sub == "flat-screen tv":
            c.rect(0.28, 0.93, 0.72, 1.0, (70, 70, 76))
        else:
            c.ellipse(0.5, 0.95, 0.24, 0.05, (70, 70, 76))
    # a bright screen with some picture on it
    base = _jitter(rng, (150, 210, 250), 30)
    c.rect(*scr, base, solid=False)
    x0, y0, x1, y1 = scr
    c.rect(x0, (y0 + y1) / 2, x1, y1, _jitter(rng, (120, 200, 120), 40), solid=False)
    c.circle(float(rng.uniform(x0 + 0.1, x1 - 0.1)), y0 + 0.2, 0.08, _jitter(rng, (250, 230, 120), 20), solid=False)


_DRAW: dict[str, Callable[[_Canvas, str, Color, np.random.Generator], None]] = {
    "aeroplane": _draw_aeroplane, "bicycle": _draw_bicycle, "bird": _draw_bird, "boat": _draw_boat,
    "bottle": _draw_bottle, "bus": _draw_bus, "car": _draw_car, "cat": _draw_cat, "chair": _draw_chair,
    "cow": _draw_cow, "diningtable": _draw_diningtable, "dog": _draw_dog, "horse": _draw_horse,
    "motorbike": _draw_motorbike, "person": _draw_person, "pottedplant": _draw_pottedplant,
    "sheep": _draw_sheep, "sofa": _draw_sofa, "train": _draw_train, "tvmonitor": _draw_tvmonitor,
}
# Objects seen from the side face right when drawn; these are symmetric (pose Frontal / Unspecified).
_FRONTAL = {"person": "Frontal", "tvmonitor": "Frontal", "bottle": "Unspecified", "pottedplant": "Unspecified"}


def _draw_object(cls: str, sub: SubType, color: str, h: int, w: int, rng: np.random.Generator) -> _Canvas:
    """Draw one object in an [h, w] box with a little texture: the canvas (layer, mask, parts)."""
    c = _Canvas(h, w)
    _DRAW[cls](c, sub.name, _jitter(rng, COLORS[color], 10), rng)
    # Texture: smooth blotches plus fine grain, so a surface is never a flat colour.
    tex = _smooth_noise(rng, h, w, cell=max(3, min(h, w) // 6)) * 14 + rng.normal(0, 4, (h, w)).astype(np.float32)
    c.img = np.clip(c.img.astype(np.float32) + tex[..., None], 0, 255).astype(np.uint8)
    return c


@functools.cache
def _fill_fraction(cls: str, sub_index: int) -> float:
    """Fraction of its box an object's mask covers, measured once per sub-type at a reference size.

    Lets the placer size the box so the object, not its box, covers the sampled share of the image.
    It draws with its own fixed generator, so it never disturbs an image's random stream.
    """
    sub = SUBTYPES[cls][sub_index]
    h = 96
    w = max(8, round(h * sub.aspect))
    c = _draw_object(cls, sub, sub.colors[0], h, w, np.random.default_rng(0))
    return float((c.mask > 0).mean())


# ----------------------------------------------------------------------------------------------------
# the 6 scenes
# ----------------------------------------------------------------------------------------------------


@dataclass
class _Scene:
    """A drawn background: image [H, W, 3] float32 RGB, the things drawn, the ground line and rest lines."""

    img: np.ndarray
    things: list[str]
    horizon: int  # first row of ground / floor (H when there is none)
    rest_ys: list[int]  # rows objects can stand on (the rails), empty when any ground row will do


def _sky(img: np.ndarray, y1: int, rng: np.random.Generator) -> None:
    """Fill rows [0, y1) with a blue gradient sky, deeper at the top."""
    top = np.array(_jitter(rng, (50, 100, 205), 15), np.float32)
    bottom = np.array(_jitter(rng, (165, 205, 245), 10), np.float32)
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
    m = cv2.GaussianBlur(m, (5, 5), 0)[..., None]
    img[:] = img * (1 - m) + np.array([246, 246, 250], np.float32) * m


def _textured(img: np.ndarray, y0: int, y1: int, color: Color, rng: np.random.Generator, blotch: float,
              grain: float) -> None:
    """Fill rows [y0, y1) with ``color`` plus smooth blotches and per-pixel grain (grass, gravel, asphalt)."""
    h, w = y1 - y0, img.shape[1]
    if h <= 0:
        return
    n = _smooth_noise(rng, h, w, cell=8)[..., None] * blotch + rng.normal(0, grain, (h, w, 1)).astype(np.float32)
    img[y0:y1] = np.array(color, np.float32) + n


def _scene_sky(H: int, W: int, rng: np.random.Generator) -> _Scene:
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
        cv2.fillPoly(img, [pts], _jitter(rng, (90, 140, 90), 12))
        things.append("hill")
    return _Scene(img, things, H, [])


def _scene_water(H: int, W: int, rng: np.random.Generator) -> _Scene:
    img = np.zeros((H, W, 3), np.float32)
    hz = int(rng.uniform(0.2, 0.38) * H)
    _sky(img, hz, rng)
    things = ["sky", "waves"]
    if rng.random() < 0.5:
        _clouds(img, hz, 1, rng)
        things.append("cloud")
    water = np.array(_jitter(rng, (30, 96, 150), 12), np.float32)
    t = np.linspace(0, 1, H - hz, dtype=np.float32)[:, None, None]
    img[hz:] = water * (1.15 - 0.35 * t) + _smooth_noise(rng, H - hz, W, 10)[..., None] * 10
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
    return _Scene(img, things, hz, [])


def _scene_railway(H: int, W: int, rng: np.random.Generator) -> _Scene:
    img = np.zeros((H, W, 3), np.float32)
    hz = int(rng.uniform(0.25, 0.4) * H)
    _sky(img, hz, rng)
    _textured(img, hz, H, _jitter(rng, (130, 118, 104), 10), rng, blotch=12, grain=16)  # gravel ballast
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
    return _Scene(img, things, hz, rest)


def _scene_grass(H: int, W: int, rng: np.random.Generator) -> _Scene:
    img = np.zeros((H, W, 3), np.float32)
    hz = int(rng.uniform(0.22, 0.42) * H)
    _sky(img, hz, rng)
    green = _jitter(rng, (76, 146, 56), 14)
    _textured(img, hz, H, green, rng, blotch=18, grain=8)
    things = ["sky", "grass tuft"]
    if rng.random() < 0.4:
        x = int(rng.choice([rng.uniform(0.02, 0.3), rng.uniform(0.7, 0.98)]) * W)
        cv2.rectangle(img, (x - 2, hz - H // 8), (x + 2, hz + 2), (90, 60, 34), -1)
        cv2.circle(img, (x, hz - H // 6), max(5, H // 9), _jitter(rng, (40, 110, 44), 10), -1)
        things.append("tree")
    tufts = []
    for _ in range(int(W * (H - hz) / 40)):
        x, y = rng.uniform(0, W), rng.uniform(hz + 2, H)
        s = 1.5 + 3.0 * (y - hz) / (H - hz)
        tufts.append(np.array([[x - s, y - 2 * s], [x, y], [x + s, y - 2 * s]], np.int32))
    cv2.polylines(img, tufts, False, _dark(green, 0.6), 1)
    if rng.random() < 0.5:  # a wooden fence just below the horizon
        fy, fh = hz + int(0.08 * H), max(6, int(0.1 * H))
        wood = _jitter(rng, (150, 110, 70), 12)
        for x in range(int(rng.integers(0, 10)), W, max(8, W // 12)):
            cv2.rectangle(img, (x, fy - fh), (x + 2, fy), wood, -1)
        for y in (fy - fh + 2, fy - fh // 2):
            cv2.line(img, (0, y), (W - 1, y), wood, 2)
        things.append("fence")
    return _Scene(img, things, hz, [])


def _scene_road(H: int, W: int, rng: np.random.Generator) -> _Scene:
    img = np.zeros((H, W, 3), np.float32)
    hz = int(rng.uniform(0.22, 0.38) * H)
    _sky(img, hz, rng)
    things = ["sky", "road", "lane marking"]
    if rng.random() < 0.5:  # a row of buildings on the horizon
        x = 0
        while x < W:
            bw, bh = int(rng.uniform(0.1, 0.25) * W), int(rng.uniform(0.3, 0.9) * hz)
            col = _jitter(rng, (150, 140, 130), 30)
            cv2.rectangle(img, (x, hz - bh), (x + bw, hz), col, -1)
            for wy in range(hz - bh + 3, hz - 3, 6):
                for wx in range(x + 2, x + bw - 3, 5):
                    cv2.rectangle(img, (wx, wy), (wx + 2, wy + 2), (240, 230, 170), -1)
            x += bw + int(rng.integers(0, 6))
        things.append("building")
    _textured(img, hz, H, _jitter(rng, (78, 78, 84), 8), rng, blotch=6, grain=6)  # asphalt
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
    return _Scene(img, things, hz, [])


def _scene_room(H: int, W: int, rng: np.random.Generator) -> _Scene:
    img = np.zeros((H, W, 3), np.float32)
    fl = int(rng.uniform(0.55, 0.72) * H)
    wall = _jitter(rng, ((232, 220, 190), (200, 222, 200), (200, 214, 236), (236, 206, 200))[int(rng.integers(4))], 8)
    _textured(img, 0, fl, wall, rng, blotch=5, grain=2)
    things = ["wall", "floor"]
    if rng.random() < 0.5:  # floorboards
        _textured(img, fl, H, _jitter(rng, (150, 104, 64), 12), rng, blotch=10, grain=4)
        for y in range(fl + 4, H, 6):
            cv2.line(img, (0, y), (W - 1, y), (110, 74, 44), 1)
    else:  # carpet
        _textured(img, fl, H, _jitter(rng, ((150, 60, 60), (80, 90, 130), (120, 120, 110))[int(rng.integers(3))], 10),
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
            cv2.rectangle(img, (x, y - bh), (x + bw, y - 1), _jitter(rng, (140, 90, 90), 80), -1)
            x += bw + 1
        things.append("shelf")
    if rng.random() < 0.4:
        x0 = int((slots[2] / 3 + 0.08) * W)
        x1, y0, y1 = x0 + int(0.16 * W), int(0.15 * H), int(0.15 * H + 0.22 * fl)
        cv2.rectangle(img, (x0, y0), (x1, y1), (90, 60, 30), -1)
        cv2.rectangle(img, (x0 + 2, y0 + 2), (x1 - 2, y1 - 2), _jitter(rng, (120, 160, 140), 60), -1)
        things.append("picture frame")
    return _Scene(img, things, fl, [])


_SCENE_DRAW: dict[str, Callable[[int, int, np.random.Generator], _Scene]] = {
    "sky": _scene_sky, "water": _scene_water, "railway": _scene_railway, "grass": _scene_grass,
    "road": _scene_road, "room": _scene_room,
}


# ----------------------------------------------------------------------------------------------------
# one image
# ----------------------------------------------------------------------------------------------------


@dataclass
class _Placed:
    cls: str
    sub: str
    color: str
    canvas: _Canvas
    x0: int  # top-left of the object's box in the image (may be negative: truncated)
    y0: int
    flipped: bool
    truncated: bool


@dataclass
class ToyImage:
    """One generated image: RGB [H, W, 3] uint8, VOC label [H, W] uint8, the XML text and the sidecar.

    ``instances`` int16 [H, W]: the index (in ``meta["objects"]``) of the object visible at each pixel,
    -1 where none (the COCO layout's instance masks; no void border).
    """

    image: np.ndarray
    label: np.ndarray
    xml: str
    meta: dict
    instances: np.ndarray | None = None


def _box_mask(p: _Placed, H: int, W: int) -> np.ndarray:
    """The object's mask pasted into the image frame: bool [H, W]."""
    m = np.zeros((H, W), bool)
    h, w = p.canvas.mask.shape
    ya, yb, xa, xb = max(0, p.y0), min(H, p.y0 + h), max(0, p.x0), min(W, p.x0 + w)
    if ya < yb and xa < xb:
        m[ya:yb, xa:xb] = p.canvas.mask[ya - p.y0:yb - p.y0, xa - p.x0:xb - p.x0] > 0
    return m


def _place(cls: str, scene: _Scene, H: int, W: int, rng: np.random.Generator) -> _Placed:
    """Sample an object of ``cls`` (sub-type, colour, size, position, flip) and draw it."""
    si = int(rng.integers(len(SUBTYPES[cls])))
    sub = SUBTYPES[cls][si]
    color = str(rng.choice(sub.colors))
    cover = rng.uniform(*_COVER_RANGE)
    box_area = cover * H * W / _fill_fraction(cls, si)
    aspect = sub.aspect * math.exp(rng.normal(0, 0.08))
    w, h = math.sqrt(box_area * aspect), math.sqrt(box_area / aspect)
    shrink = min(1.0, 0.98 * W / w, 0.98 * H / h)  # a long train is capped by the image width
    w, h = max(12, int(w * shrink)), max(12, int(h * shrink))
    canvas = _draw_object(cls, sub, color, h, w, rng)
    flipped = cls not in _FRONTAL and bool(rng.random() < 0.5)
    if flipped:
        canvas.img, canvas.mask = canvas.img[:, ::-1].copy(), canvas.mask[:, ::-1].copy()
        canvas.parts = {k: (w - b[2], b[1], w - b[0], b[3]) for k, b in canvas.parts.items()}
    # Position: flyers (and everything in a sky scene) anywhere; others stand on the ground, a train on a rail.
    slack_x, slack_y = (int(0.25 * w), int(0.15 * h)) if rng.random() < _TRUNCATE_PROB else (0, 0)
    x0 = int(rng.integers(-slack_x, W - w + slack_x + 1))
    if cls == "aeroplane" or scene.horizon >= H:
        y0 = int(rng.integers(-slack_y, H - h + slack_y + 1))
    else:
        if cls == "train" and scene.rest_ys:
            y1 = int(rng.choice(scene.rest_ys))
        else:
            y1 = int(rng.integers(min(scene.horizon + int(0.3 * (H - scene.horizon)), H), H + slack_y + 1))
        y0 = min(max(y1 - h, -slack_y), H - h + slack_y)
    return _Placed(cls, sub.name, color, canvas, x0, y0, flipped, False)


def _choose_classes(classes: Sequence[str], first_scene_prob: float, max_objects: int,
                    rng: np.random.Generator) -> tuple[str, list[str]]:
    """The image's scene and its object classes, the first object deciding the scene (with a probability)."""
    first = str(rng.choice(classes))
    if rng.random() < first_scene_prob:
        scene = str(rng.choice(CLASS_SCENES[first]))
    else:
        scene = str(rng.choice(SCENES))
    at_home = [c for c in classes if scene in CLASS_SCENES[c]]
    out = [first]
    for _ in range(int(rng.integers(1, max_objects + 1)) - 1):
        pool = at_home if at_home and rng.random() < _SAME_SCENE_PROB else list(classes)
        out.append(str(rng.choice(pool)))
    return scene, out


def _void_band(vis: np.ndarray, width: int) -> np.ndarray:
    """The VOC "void" outline of one visible object mask: bool [H, W], ``width`` px across the edge.

    ``width // 2`` pixels inside the outline and the rest outside, like the devkit's border that is
    drawn centred on the polygon; the image edge is not an outline (cv2's erode pads with the max).
    """
    inner, outer = width // 2, width - width // 2
    m = vis.astype(np.uint8)
    band = np.zeros_like(vis)
    if outer > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * outer + 1, 2 * outer + 1))
        band |= (cv2.dilate(m, k) > 0) & ~vis
    if inner > 0:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * inner + 1, 2 * inner + 1))
        band |= vis & ~(cv2.erode(m, k) > 0)
    return band


def render_image(image_id: str, index: int, *, seed: int, image_size: tuple[int, int], classes: Sequence[str],
                 scene_correlation: float, max_objects: int, void_width: int, segmented: bool) -> ToyImage:
    """Draw image number ``index`` of the world (a pure function of ``(seed, index)`` and the parameters).

    Returns the RGB image [H, W, 3] uint8, the VOC label [H, W] uint8 (0 background, 1..20 class index
    = position in XML_NAMES + 1, 255 void border), the Annotations XML text and the ToyMeta sidecar.
    """
    H, W = image_size
    rng = np.random.default_rng([seed, index])
    scene_name, wanted = _choose_classes(classes, scene_correlation, max_objects, rng)
    scene = _SCENE_DRAW[scene_name](H, W, rng)

    # Place objects in order; a later one is redrawn elsewhere if it would hide too much of an earlier one.
    owner = np.full((H, W), -1, np.int16)  # index of the object on top at each pixel
    drawn: list[int] = []  # pixels of each object inside the image when it was placed
    placed: list[_Placed] = []
    for cls in wanted:
        for _ in range(_PLACEMENT_TRIES):
            p = _place(cls, scene, H, W, rng)
            m = _box_mask(p, H, W)
            inside, total = int(m.sum()), int((p.canvas.mask > 0).sum())
            if inside < _MIN_INSIDE * total:
                continue
            if all(int(((owner == j) & ~m).sum()) >= _MIN_VISIBLE * drawn[j] for j in range(len(placed))):
                p.truncated = inside < total
                owner[m] = len(placed)
                drawn.append(inside)
                placed.append(p)
                break
    if not placed:  # only if the first object never fitted: cannot happen with the sizes above
        raise RuntimeError(f"toy world: could not place a {wanted[0]} in image {image_id}")

    img = scene.img
    for p in placed:
        m = _box_mask(p, H, W)
        h, w = p.canvas.mask.shape
        layer = np.zeros((H, W, 3), np.float32)
        ya, yb, xa, xb = max(0, p.y0), min(H, p.y0 + h), max(0, p.x0), min(W, p.x0 + w)
        layer[ya:yb, xa:xb] = p.canvas.img[ya - p.y0:yb - p.y0, xa - p.x0:xb - p.x0]
        img[m] = layer[m]
    img = np.clip(img + rng.normal(0, 2.5, img.shape).astype(np.float32), 0, 255).astype(np.uint8)

    label = np.zeros((H, W), np.uint8)
    void = np.zeros((H, W), bool)
    objects, boxes, parts = [], [], []
    for j, p in enumerate(placed):
        vis = owner == j
        label[vis] = XML_NAMES.index(p.cls) + 1
        void |= _void_band(vis, void_width)
        box = _tight_box(vis)
        boxes.append(box)
        # Person layout, as in VOC: the visible extent of the head, for some persons.
        head = None
        if p.cls == "person" and "head" in p.canvas.parts and rng.random() < 0.5:
            hx0, hy0, hx1, hy1 = p.canvas.parts["head"]
            in_head = np.zeros_like(vis)
            in_head[max(0, p.y0 + hy0):max(0, p.y0 + hy1), max(0, p.x0 + hx0):max(0, p.x0 + hx1)] = True
            if (vis & in_head).any():
                head = _tight_box(vis & in_head)
        parts.append({"head": head} if head else {})
        objects.append({"class": p.cls, "class_name": CLASS_NAMES[XML_NAMES.index(p.cls)], "subtype": p.sub,
                        "bbox": box, "color": p.color})
    label[void] = 255
    meta = {"scene": scene_name, "objects": objects, "things": scene.things}
    xml = _annotation_xml(image_id, H, W, placed, boxes, parts, segmented)
    return ToyImage(img, label, xml, meta, owner)


def _tight_box(m: np.ndarray) -> list[int]:
    """The tight box of a non-empty bool [H, W] mask: [x0, y0, x1, y1], 0-based, ends exclusive."""
    ys, xs = np.nonzero(m)
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def _annotation_xml(image_id: str, H: int, W: int, placed: list[_Placed], boxes: list[list[int]],
                    parts: list[dict[str, list[int]]], segmented: bool) -> str:
    """The VOC Annotations XML (1-based inclusive boxes, like the devkit's)."""
    def sub(parent: ET.Element, tag: str, text: object | None = None) -> ET.Element:
        e = ET.SubElement(parent, tag)
        if text is not None:
            e.text = str(text)
        return e

    def bndbox(parent: ET.Element, b: Sequence[int]) -> None:
        bb = sub(parent, "bndbox")
        for tag, v in zip(("xmin", "ymin", "xmax", "ymax"), (b[0] + 1, b[1] + 1, b[2], b[3])):
            sub(bb, tag, v)

    root = ET.Element("annotation")
    sub(root, "folder", "VOC2012")
    sub(root, "filename", f"{image_id}.jpg")
    src = sub(root, "source")
    sub(src, "database", "QA-CLIMS toy world")
    size = sub(root, "size")
    sub(size, "width", W)
    sub(size, "height", H)
    sub(size, "depth", 3)
    sub(root, "segmented", int(segmented))
    for p, box, parts_of in zip(placed, boxes, parts):
        o = sub(root, "object")
        sub(o, "name", p.cls)
        sub(o, "pose", _FRONTAL.get(p.cls, "Left" if p.flipped else "Right"))
        sub(o, "truncated", int(p.truncated))
        sub(o, "difficult", 0)
        bndbox(o, box)
        for name, b in parts_of.items():  # a <part> name is not a class name: parsers must filter
            part = sub(o, "part")
            sub(part, "name", name)
            bndbox(part, b)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


# ----------------------------------------------------------------------------------------------------
# the whole world on disk
# ----------------------------------------------------------------------------------------------------


def _params(seed: int, num_train: int, num_val: int, num_extra_aug: int, image_size: Sequence[int],
            classes: Sequence[str] | None, scene_correlation: float, max_objects: int,
            void_width: int | None) -> dict:
    """Validate and normalise the parameters into the JSON-able dict stored in the marker."""
    if len(image_size) != 2 or any(int(v) != v or v < 48 for v in image_size):
        raise ValueError(f"toy world: image_size must be (H, W) integers >= 48, got {tuple(image_size)}")
    for name, v in (("num_train", num_train), ("num_val", num_val), ("num_extra_aug", num_extra_aug)):
        if int(v) != v or v < 0:
            raise ValueError(f"toy world: {name} must be an integer >= 0, got {v!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"toy world: seed must be an integer >= 0, got {seed!r}")
    if num_train + num_val == 0:
        raise ValueError("toy world: num_train + num_val must be > 0")
    if not 0.0 <= scene_correlation <= 1.0:
        raise ValueError(f"toy world: scene_correlation must be in [0, 1], got {scene_correlation}")
    if int(max_objects) != max_objects or max_objects < 1:
        raise ValueError(f"toy world: max_objects must be an integer >= 1, got {max_objects!r}")
    if classes is None:
        classes = XML_NAMES
    if isinstance(classes, str) or not classes:
        raise ValueError(f"toy world: classes must be a non-empty list of XML class names, got {classes!r}")
    unknown = [c for c in classes if c not in XML_NAMES]
    if unknown:
        raise ValueError(f"toy world: unknown class {unknown[0]!r}; use the VOC XML names: {', '.join(XML_NAMES)}")
    H, W = int(image_size[0]), int(image_size[1])
    if void_width is None:
        # VOC draws a 5 px border on ~500 x 375 images: 1.3 % of the short side, about 2 px at 128 px
        void_width = max(1, round(min(H, W) / 64))
    if int(void_width) != void_width or void_width < 1:
        raise ValueError(f"toy world: void_width must be an integer >= 1, got {void_width!r}")
    return {
        "version": GENERATOR_VERSION, "seed": int(seed), "num_train": int(num_train), "num_val": int(num_val),
        "num_extra_aug": int(num_extra_aug), "image_size": [H, W],
        # XML order, so --classes cow,train and train,cow are the same world
        "classes": [c for c in XML_NAMES if c in set(classes)],
        "scene_correlation": float(scene_correlation), "max_objects": int(max_objects), "void_width": int(void_width),
    }


def _check_folder(root: Path, params: dict, own_dirs: Sequence[str] = _OWN_DIRS) -> dict | None:
    """The stored summary when ``root`` already holds this world; an error when it holds anything else."""
    marker = root / MARKER
    if marker.exists():
        stored = read_json(marker)
        if stored.get("params") == params:
            return stored
        diff = sorted(k for k in set(params) | set(stored.get("params", {}))
                      if stored.get("params", {}).get(k) != params.get(k))
        raise FileExistsError(
            f"{root} already holds a toy world generated with other parameters (differing: {', '.join(diff)}); "
            f"pick another folder or delete {root} to generate this one")
    if root.exists() and any(root.iterdir()):
        partial = root / PARTIAL_MARKER
        ours = partial.exists() and read_json(partial).get("params") == params
        # our own atomic-write temp files (".toy_world.*") may be left by a killed run
        foreign = [e.name for e in root.iterdir() if e.name not in own_dirs and not e.name.startswith(".toy_world.")]
        if not ours or foreign:
            raise FileExistsError(
                f"{root} is not empty and holds no toy world with these parameters ({MARKER} missing); "
                f"pick an empty or new folder, or delete it to generate the toy world there")
        log.info("toy world: %s holds an interrupted generation with the same parameters; redoing it", root)
    return None


def generate_toy_world(root: str | os.PathLike, *, seed: int = 0, num_train: int = 80, num_val: int = 20,
                       num_extra_aug: int = 40, image_size: Sequence[int] = (128, 160),
                       classes: Sequence[str] | None = None, scene_correlation: float = 0.85,
                       max_objects: int = 3, void_width: int | None = None, layout: str = "voc") -> dict:
    """Write a toy world in VOC 2012 layout under ``root`` and return its summary (see module docstring).

    ``layout="coco"`` writes the same drawings in COCO 2014 layout instead (``write_coco_layout``).

    Ids are ``toy_000001``...: first the ``num_train`` train images, then ``num_val`` val images, then
    ``num_extra_aug`` extra (SBD-like: XML + JPEG, no SegmentationClass PNG) images; ``train_aug.txt`` is
    train + extra. ``classes`` restricts the world to some XML names (class indices stay the VOC ones).
    ``void_width`` is the width in pixels of the 255 border around each object (default min(H, W) / 64).

    Idempotent: when ``root/toy_world.json`` holds the same parameters nothing is written and the stored
    summary is returned; other parameters, or a non-empty folder that is not ours, raise FileExistsError.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"toy world: layout must be one of {LAYOUTS}, got {layout!r}")
    if layout == "coco":
        return write_coco_layout(root, seed=seed, num_train=num_train, num_val=num_val, num_extra_aug=num_extra_aug,
                                 image_size=image_size, classes=classes, scene_correlation=scene_correlation,
                                 max_objects=max_objects, void_width=void_width)
    root = Path(root)
    params = _params(seed, num_train, num_val, num_extra_aug, image_size, classes, scene_correlation, max_objects,
                     void_width)
    stored = _check_folder(root, params)
    if stored is not None:
        log.info("toy world: %s already generated with these parameters", root)
        return stored
    write_json(root / PARTIAL_MARKER, {"params": params})

    H, W = params["image_size"]
    n_seg = params["num_train"] + params["num_val"]
    total = n_seg + params["num_extra_aug"]
    ids = [f"toy_{i:06d}" for i in range(1, total + 1)]
    train, val, extra = ids[:params["num_train"]], ids[params["num_train"]:n_seg], ids[n_seg:]
    class_images = dict.fromkeys(params["classes"], 0)
    scenes = dict.fromkeys(SCENES, 0)
    n_objects = correlated = 0
    for i, image_id in enumerate(ids):
        t = render_image(image_id, i, seed=params["seed"], image_size=(H, W), classes=params["classes"],
                         scene_correlation=params["scene_correlation"], max_objects=params["max_objects"],
                         void_width=params["void_width"], segmented=i < n_seg)
        write_bytes(root / "JPEGImages" / f"{image_id}.jpg", _jpeg(t.image, image_id), durable=False)
        write_text(root / "Annotations" / f"{image_id}.xml", t.xml)
        if i < n_seg:
            save_label_png(root / "SegmentationClass" / f"{image_id}.png", t.label)
        write_json(root / "ToyMeta" / f"{image_id}.json", t.meta)
        for c in sorted({o["class"] for o in t.meta["objects"]}):
            class_images[c] += 1
        scenes[t.meta["scene"]] += 1
        n_objects += len(t.meta["objects"])
        correlated += t.meta["scene"] in CLASS_SCENES[t.meta["objects"][0]["class"]]

    seg_dir = root / "ImageSets" / "Segmentation"
    write_text(seg_dir / "train.txt", "".join(f"{i}\n" for i in train))
    write_text(seg_dir / "val.txt", "".join(f"{i}\n" for i in val))
    write_text(seg_dir / "train_aug.txt", "".join(f"{i}\n" for i in sorted(train + extra)))
    summary = {
        "generator": "tool.toy.world", "params": params,
        "counts": {"train": len(train), "val": len(val), "extra_aug": len(extra), "train_aug": len(train) + len(extra),
                   "images": total, "objects": n_objects},
        "class_images": class_images, "scenes": scenes,
        # share of images whose scene is a home scene of their first object (>= scene_correlation)
        "scene_on_first_object": correlated / total,
    }
    write_json(root / MARKER, summary)  # last: the completion marker
    (root / PARTIAL_MARKER).unlink()
    log.info("toy world: wrote %d images (%d train, %d val, %d extra) to %s", total, len(train), len(val),
             len(extra), root)
    return summary


def _jpeg(image: np.ndarray, image_id: str) -> bytes:
    """JPEG bytes (quality 95) of an RGB [H, W, 3] uint8 image."""
    ok, jpg = cv2.imencode(".jpg", image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])  # cv2 wants BGR
    if not ok:
        raise RuntimeError(f"toy world: JPEG encoding failed for {image_id}")
    return jpg.tobytes()


# ----------------------------------------------------------------------------------------------------
# the same drawings in COCO 2014 layout
# ----------------------------------------------------------------------------------------------------


def render_empty_image(index: int, *, seed: int, image_size: tuple[int, int]) -> ToyImage:
    """A scene without objects (a COCO image without annotations): a pure function of ``(seed, index)``."""
    H, W = image_size
    rng = np.random.default_rng([seed, index])
    scene_name = str(rng.choice(SCENES))
    scene = _SCENE_DRAW[scene_name](H, W, rng)
    img = np.clip(scene.img + rng.normal(0, 2.5, scene.img.shape).astype(np.float32), 0, 255).astype(np.uint8)
    return ToyImage(img, np.zeros((H, W), np.uint8), "", {"scene": scene_name, "objects": [], "things": scene.things},
                    np.full((H, W), -1, np.int16))


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a bool/uint8 [H, W] mask: ``{"size": [H, W], "counts": [...]}``.

    Runs over the column-major (Fortran-order) pixels, alternating 0s and 1s, starting with 0s.
    """
    flat = np.asarray(mask, np.uint8).flatten(order="F")                 # [H * W] column-major
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def mask_segmentation(mask: np.ndarray) -> list[list[float]] | dict:
    """COCO segmentation of a non-empty bool [H, W] mask: polygons when they reproduce it exactly, else RLE.

    Contours are traced on the mask upsampled 2x, so their vertices lie on pixel edges, and pycocotools
    rasterises them back to exactly the mask; a mask with a hole (a ring) cannot be a polygon union and
    becomes a compressed RLE (``counts`` a string), which pycocotools reads as well.
    """
    from pycocotools import mask as mask_utils

    from coco14.make_coco_masks import ann_to_mask

    H, W = mask.shape
    up = cv2.resize(mask.astype(np.uint8), (2 * W, 2 * H), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = [((c.reshape(-1, 2) + 0.5) / 2).reshape(-1).tolist() for c in contours if len(c) >= 3]  # [2P] x, y
    if polys and np.array_equal(ann_to_mask(polys, H, W) > 0, mask):
        return polys
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [H, W], "counts": rle["counts"].decode("ascii")}


def _coco_annotation(ann_id: int, image_id: int, category_id: int, mask: np.ndarray, crowd: bool) -> dict:
    from pycocotools import mask as mask_utils

    from coco14.make_coco_masks import ann_to_rle

    H, W = mask.shape
    seg = uncompressed_rle(mask) if crowd else mask_segmentation(mask)
    rle = ann_to_rle(seg, H, W)
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": seg,
            "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
            "iscrowd": int(crowd)}


def write_coco_layout(root: str | os.PathLike, *, seed: int = 0, num_train: int = 80, num_val: int = 20,
                      num_extra_aug: int = 40, image_size: Sequence[int] = (128, 160),
                      classes: Sequence[str] | None = None, scene_correlation: float = 0.85, max_objects: int = 3,
                      void_width: int | None = None, num_empty: int = 1, masks: bool = True) -> dict:
    """Write the toy world in MS COCO 2014 layout under ``root`` and return its summary.

    The drawings are those of ``generate_toy_world`` with the same parameters: drawing ``i`` (VOC id
    ``toy_{i+1:06d}``) becomes COCO image id ``i + 1``, in ``train2014/`` for the train and extra
    drawings and in ``val2014/`` for the val ones (JPEG bytes identical to the VOC layout's)::

        train2014/COCO_train2014_<12-digit id>.jpg   val2014/COCO_val2014_<12-digit id>.jpg
        annotations/instances_{train,val}2014.json   all 80 COCO categories; one annotation per visible
                                                     object (COCO category id of its VOC class, ``VOC_TO_COCO``),
                                                     polygons (RLE when a polygon cannot be exact)
        mask/{train2014,val2014}/<id>.png            GT rendered from the JSON by coco14.make_coco_masks (``masks``)
        ToyMeta/<stem>.json                          as in the VOC layout; objects' ``class_name`` is the COCO
                                                     name, plus their ``category_id``
        toy_world.json                               parameters and counts, written last

    Each split also gets ``num_empty`` scenes without objects and without annotations (ids after the
    drawings'), and one crowd annotation: the last object of the split's first image with >= 2 objects
    (else its first annotation) is written ``iscrowd: 1`` with an uncompressed RLE, as COCO writes crowds.
    Idempotent like ``generate_toy_world``.
    """
    from coco14.dataset import CATEGORIES, VOC_TO_COCO

    if int(num_empty) != num_empty or num_empty < 0:
        raise ValueError(f"toy world: num_empty must be an integer >= 0, got {num_empty!r}")
    root = Path(root)
    params = {**_params(seed, num_train, num_val, num_extra_aug, image_size, classes, scene_correlation,
                        max_objects, void_width), "layout": "coco", "num_empty": int(num_empty), "masks": bool(masks)}
    stored = _check_folder(root, params, _COCO_OWN_DIRS)
    if stored is not None:
        log.info("toy world: %s already generated with these parameters", root)
        return stored
    write_json(root / PARTIAL_MARKER, {"params": params})

    H, W = params["image_size"]
    n_seg = params["num_train"] + params["num_val"]
    total = n_seg + params["num_extra_aug"]
    # (drawing index, release split, empty); ascending ids within each split
    plan = [(i, "val2014" if params["num_train"] <= i < n_seg else "train2014", False) for i in range(total)]
    plan += [(total + k, "train2014", True) for k in range(num_empty)]
    plan += [(total + num_empty + k, "val2014", True) for k in range(num_empty)]
    plan.sort(key=lambda p: (p[1], p[0]))
    coco_name = {cid: name for cid, name, _ in CATEGORIES}
    files: dict[str, dict[str, list]] = {b: {"images": [], "annotations": []} for b in ("train2014", "val2014")}
    first_ann: dict[str, tuple[int, np.ndarray]] = {}   # split -> (position, mask) of its first annotation
    has_crowd = dict.fromkeys(files, False)
    class_images: dict[str, int] = {coco_name[VOC_TO_COCO[c]]: 0 for c in params["classes"]}
    scenes = dict.fromkeys(SCENES, 0)
    ann_id = n_objects = correlated = 0
    for index, base, empty in plan:
        coco_id = index + 1
        stem = f"COCO_{base}_{coco_id:012d}"
        if empty:
            t = render_empty_image(index, seed=params["seed"], image_size=(H, W))
        else:
            t = render_image(stem, index, seed=params["seed"], image_size=(H, W), classes=params["classes"],
                             scene_correlation=params["scene_correlation"], max_objects=params["max_objects"],
                             void_width=params["void_width"], segmented=True)
            correlated += t.meta["scene"] in CLASS_SCENES[t.meta["objects"][0]["class"]]
        write_bytes(root / base / f"{stem}.jpg", _jpeg(t.image, stem), durable=False)
        files[base]["images"].append({"id": coco_id, "file_name": f"{stem}.jpg", "height": H, "width": W})
        objects = t.meta["objects"]
        crowd_at = len(objects) - 1 if len(objects) >= 2 and not has_crowd[base] else -1
        for j, obj in enumerate(objects):
            ann_id += 1
            cid = VOC_TO_COCO[obj["class"]]
            obj.update(class_name=coco_name[cid], category_id=cid)
            assert t.instances is not None
            mask = t.instances == j
            files[base]["annotations"].append(_coco_annotation(ann_id, coco_id, cid, mask, j == crowd_at))
            first_ann.setdefault(base, (len(files[base]["annotations"]) - 1, mask))
        has_crowd[base] |= crowd_at >= 0
        write_json(root / "ToyMeta" / f"{stem}.json", t.meta)
        for name in sorted({o["class_name"] for o in objects}):
            class_images[name] += 1
        scenes[t.meta["scene"]] += 1
        n_objects += len(objects)
    for base, (pos, mask) in first_ann.items():
        if not has_crowd[base]:  # no image with two objects: the split's first annotation becomes its crowd
            a = files[base]["annotations"][pos]
            files[base]["annotations"][pos] = _coco_annotation(a["id"], a["image_id"], a["category_id"], mask, True)
    categories = [{"supercategory": sup, "id": cid, "name": name} for cid, name, sup in CATEGORIES]
    for base, f in files.items():
        write_json(root / "annotations" / f"instances_{base}.json",
                   {"info": {"description": "QA-CLIMS toy world in COCO 2014 layout (tool.toy.world)",
                             "version": str(GENERATOR_VERSION), "year": 2014},
                    "licenses": [], "images": f["images"], "annotations": f["annotations"],
                    "categories": categories}, indent=None)
    if params["masks"]:
        from coco14.make_coco_masks import make_masks
        make_masks(root, progress=False)

    def annotated(base: str) -> int:
        return len({a["image_id"] for a in files[base]["annotations"]})

    summary = {
        "generator": "tool.toy.world", "params": params,
        "counts": {"train": annotated("train2014"), "val": annotated("val2014"),
                   "train_all": len(files["train2014"]["images"]), "val_all": len(files["val2014"]["images"]),
                   "images": len(plan), "objects": n_objects, "annotations": ann_id,
                   "crowd": sum(a["iscrowd"] for f in files.values() for a in f["annotations"])},
        "class_images": class_images, "scenes": scenes,
        "scene_on_first_object": correlated / total,
    }
    write_json(root / MARKER, summary)  # last: the completion marker
    (root / PARTIAL_MARKER).unlink()
    log.info("toy world (COCO layout): wrote %d images (%d train2014, %d val2014) to %s", len(plan),
             summary["counts"]["train_all"], summary["counts"]["val_all"], root)
    return summary


def read_toy_meta(root: str | os.PathLike, image_id: str) -> dict:
    """The ``ToyMeta/<id>.json`` sidecar of one image: scene, objects (class, sub-type, bbox, colour), things."""
    path = Path(root) / "ToyMeta" / f"{image_id}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no toy-world sidecar; is {root} a toy world (tool.toy.world)?")
    return read_json(path)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m tool.toy.world --out DIR --seed 0 --num-train N --num-val N --num-extra-aug N --size H W
    [--layout voc|coco] [--num-empty N]``."""
    ap = argparse.ArgumentParser(prog="python -m tool.toy.world", description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the VOC2012-like (or COCO-like, --layout coco) folder to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--num-train", type=int, default=80)
    ap.add_argument("--num-val", type=int, default=20)
    ap.add_argument("--num-extra-aug", type=int, default=40)
    ap.add_argument("--size", type=int, nargs=2, default=(128, 160), metavar=("H", "W"))
    ap.add_argument("--classes", default=None, help="comma-separated XML class names (default: all 20)")
    ap.add_argument("--scene-correlation", type=float, default=0.85)
    ap.add_argument("--max-objects", type=int, default=3)
    ap.add_argument("--void-width", type=int, default=None)
    ap.add_argument("--layout", default="voc", choices=LAYOUTS, help="VOC 2012 (default) or MS COCO 2014 layout")
    ap.add_argument("--num-empty", type=int, default=1,
                    help="COCO layout: images without annotations per split (default 1)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    common = {"seed": args.seed, "num_train": args.num_train, "num_val": args.num_val,
              "num_extra_aug": args.num_extra_aug, "image_size": tuple(args.size), "classes": classes,
              "scene_correlation": args.scene_correlation, "max_objects": args.max_objects,
              "void_width": args.void_width}
    try:
        if args.layout == "coco":
            summary = write_coco_layout(args.out, num_empty=args.num_empty, **common)
        else:
            summary = generate_toy_world(args.out, **common)
    except (FileExistsError, ValueError) as e:  # a user error: the message says what to do
        log.error("%s", e)
        return 2
    log.info("toy world counts: %s", summary["counts"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
