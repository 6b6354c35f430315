"""MS COCO 2014 dataset description (same interface as ``voc12``); implemented with issue 7."""
