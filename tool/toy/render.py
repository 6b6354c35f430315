"""One toy image: choosing its classes (scene correlation), placing and drawing its objects over a scene,
its label map with a void band, and its VOC XML annotation. A pure function of (seed, index)."""
from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from tool.toy.draw import FRONTAL, Canvas, draw_object, fill_fraction
from tool.toy.scenes import SCENE_DRAW, Scene
from tool.toy.vocab import CLASS_SCENES, SCENES, SUBTYPES
from voc12.dataset import CLASS_NAMES, XML_NAMES

log = logging.getLogger(__name__)

# How often a further object of an image comes from the classes living on the image's scene.
_SAME_SCENE_PROB = 0.8
# Target fraction of the image covered by one object's drawn pixels (before occlusion).
_COVER_RANGE = (0.06, 0.30)
_TRUNCATE_PROB = 0.2  # chance that an object may run off the image edge (VOC "truncated")
_MIN_VISIBLE = 0.45  # a later object may hide at most 55 % of an earlier one
_MIN_INSIDE = 0.7  # a truncated object keeps at least 70 % of its pixels inside the image
_PLACEMENT_TRIES = 12


# ----------------------------------------------------------------------------------------------------
# one image
# ----------------------------------------------------------------------------------------------------


@dataclass
class _Placed:
    cls: str
    sub: str
    color: str
    canvas: Canvas
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


def _place(cls: str, scene: Scene, H: int, W: int, rng: np.random.Generator) -> _Placed:
    """Sample an object of ``cls`` (sub-type, colour, size, position, flip) and draw it."""
    si = int(rng.integers(len(SUBTYPES[cls])))
    sub = SUBTYPES[cls][si]
    color = str(rng.choice(sub.colors))
    cover = rng.uniform(*_COVER_RANGE)
    box_area = cover * H * W / fill_fraction(cls, si)
    aspect = sub.aspect * math.exp(rng.normal(0, 0.08))
    w, h = math.sqrt(box_area * aspect), math.sqrt(box_area / aspect)
    shrink = min(1.0, 0.98 * W / w, 0.98 * H / h)  # a long train is capped by the image width
    w, h = max(12, int(w * shrink)), max(12, int(h * shrink))
    canvas = draw_object(cls, sub, color, h, w, rng)
    flipped = cls not in FRONTAL and bool(rng.random() < 0.5)
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
    scene = SCENE_DRAW[scene_name](H, W, rng)

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
        sub(o, "pose", FRONTAL.get(p.cls, "Left" if p.flipped else "Right"))
        sub(o, "truncated", int(p.truncated))
        sub(o, "difficult", 0)
        bndbox(o, box)
        for name, b in parts_of.items():  # a <part> name is not a class name: parsers must filter
            part = sub(o, "part")
            sub(part, "name", name)
            bndbox(part, b)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"
