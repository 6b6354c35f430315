"""Every path of a run, derived from ``work_dir`` in one place (docs/design.md §3)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CAM_SOURCES = ("baseline", "ritc")
# The measured stages in pipeline order, with their short names (the report's and tool.compare's rows).
STAGE_NAMES = {"cam_baseline": "baseline CAM", "cam_ritc": "RITC CAM", "sem_seg": "pseudo masks", "deeplab": "DeepLab"}


@dataclass(frozen=True)
class WorkPaths:
    root: Path

    # run-level files
    @property
    def config_yaml(self) -> Path:
        return self.root / "config.yaml"

    @property
    def meta_json(self) -> Path:
        return self.root / "meta.json"

    @property
    def log_txt(self) -> Path:
        return self.root / "log.txt"

    @property
    def metrics_jsonl(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def done_marker(self, step: str) -> Path:
        return self.root / "steps" / f"{step}.done.json"

    def skip_note(self, step: str) -> Path:
        """Why ``step`` was skipped in the last run (no GT masks to evaluate against); absent when it ran."""
        return self.root / "steps" / f"{step}.skipped.json"

    def events_jsonl(self, step: str) -> Path:
        """Training scalars of ``step``, one JSON line per logged iteration (tool/engine/events.py;
        docs/tracking.md)."""
        return self.root / "events" / f"{step}.jsonl"

    @property
    def tb_dir(self) -> Path:
        """TensorBoard event files (``tracking.tensorboard``), one folder per training step."""
        return self.root / "tb"

    def checkpoint(self, step: str) -> Path:
        """The resumable training state of ``step`` (deleted when the step finishes)."""
        return self.root / "checkpoints" / f"{step}.pth"

    # stage artefacts
    @property
    def qape_dir(self) -> Path:
        return self.root / "qape"

    @property
    def corpus_jsonl(self) -> Path:
        """QAPE answers: one JSON line per (image, class) with raw FG/BG question-answer pairs."""
        return self.qape_dir / "corpus.jsonl"

    @property
    def texts_json(self) -> Path:
        """Post-processed texts: the unique prompted texts and, per pair, indices into them."""
        return self.qape_dir / "texts.json"

    def text_feats(self, clip_id: str) -> Path:
        """CLIP text features of ``texts.json``'s unique texts (safetensors), tied to the CLIP id."""
        return self.qape_dir / f"text_feats.{clip_id}.safetensors"

    @property
    def cam_baseline_model(self) -> Path:
        return self.root / "cam_baseline" / "model.pth"

    @property
    def ritc_model(self) -> Path:
        return self.root / "ritc" / "model.pth"

    def cam_model(self, source: str) -> Path:
        return self.cam_baseline_model if _check_source(source) == "baseline" else self.ritc_model

    def cam_dir(self, source: str) -> Path:
        """Exported CAMs: ``cam_baseline/cam/`` for the baseline, ``cam/`` for RITC."""
        return self.root / "cam_baseline" / "cam" if _check_source(source) == "baseline" else self.root / "cam"

    def eval_cam_json(self, source: str) -> Path:
        if _check_source(source) == "baseline":
            return self.root / "cam_baseline" / "eval_cam.json"
        return self.root / "eval_cam.json"

    @property
    def ir_label_dir(self) -> Path:
        """IR labels of cam_to_ir_label: ``ir_label/<id>.png`` (0 bg, 1..C class, 255 uncertain)."""
        return self.root / "ir_label"

    @property
    def irn_model(self) -> Path:
        return self.root / "irn" / "model.pth"

    @property
    def sem_seg_dir(self) -> Path:
        """Pseudo masks of make_sem_seg: ``sem_seg/<id>.png`` (uint8 class indices)."""
        return self.root / "sem_seg"

    # DeepLab (steps train_deeplab, eval_deeplab)
    @property
    def deeplab_model(self) -> Path:
        return self.root / "deeplab" / "model.pth"

    def deeplab_pred_dir(self, tag: str = "") -> Path:
        """Prediction PNGs: ``deeplab_pred/`` for ``dataset.val_split``, ``deeplab_pred_<split>/`` otherwise."""
        return self.root / f"deeplab_pred{tag}"

    def eval_deeplab_json(self, tag: str = "") -> Path:
        return self.root / f"eval_deeplab{tag}.json"

    @property
    def eval_sem_seg_json(self) -> Path:
        """Pseudo-mask quality (step eval_sem_seg): the shared metric schema."""
        return self.root / "eval_sem_seg.json"

    def stage_metrics(self) -> dict[str, Path]:
        """The metric file of each stage of ``STAGE_NAMES``, in the same order."""
        return {"cam_baseline": self.eval_cam_json("baseline"), "cam_ritc": self.eval_cam_json("ritc"),
                "sem_seg": self.eval_sem_seg_json, "deeplab": self.eval_deeplab_json()}

    # run report (step report)
    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def report_dir(self) -> Path:
        """The report's pictures: ``report/*.png``."""
        return self.root / "report"

    @property
    def voc_results_dir(self) -> Path:
        """The VOC evaluation-server tree ``results/VOC2012/Segmentation/<comp>_<split>_cls/`` lives here."""
        return self.root / "results"


def _check_source(source: str) -> str:
    if source not in CAM_SOURCES:
        raise ValueError(f"make_cam.source: unknown CAM source {source!r}; expected one of {CAM_SOURCES}")
    return source
