"""The toy world's vocabulary: its scenes, the classes' home scenes, aliases and sub-types, the scene things
and the named colours (what the toy VQA model answers with, and what the drawing uses)."""
from __future__ import annotations

import logging
from typing import NamedTuple

log = logging.getLogger(__name__)

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
