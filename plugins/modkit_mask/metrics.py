"""Segmentation metrics: a confusion matrix accumulated on the device, per-class IoU and their mean (mIoU)."""
from __future__ import annotations

import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> Tensor:
    """(C, C) counts, rows = true class, columns = predicted; pixels whose target is ``ignore_index`` are left out."""
    pred, target = torch.as_tensor(pred).long().flatten(), torch.as_tensor(target).long().flatten()
    keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
    index = target[keep] * num_classes + pred[keep].clamp(0, num_classes - 1)
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def iou_from_confusion(confusion: Tensor) -> Tensor:
    """Per-class IoU = TP / (TP + FP + FN); NaN for a class absent from both prediction and target."""
    confusion = confusion.double()
    tp = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def mean_iou(pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = 255) -> float:
    """mIoU over the whole set (not per image): the mean IoU of the classes that occur in prediction or target."""
    iou = iou_from_confusion(confusion_matrix(pred, target, num_classes, ignore_index))
    return float(torch.nanmean(iou))


class MeanIoUState:
    """What ``modkit eval`` accumulates for the ``miou`` metric: one confusion matrix over every batch."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.confusion: Tensor | None = None

    def update(self, predicted: Tensor, target: Tensor) -> None:
        counts = confusion_matrix(predicted, target, self.num_classes, self.ignore_index)
        self.confusion = counts if self.confusion is None else self.confusion + counts

    def compute(self) -> float | None:
        return None if self.confusion is None else float(torch.nanmean(iou_from_confusion(self.confusion)))


def voc_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """The Pascal VOC colour map (bit-interleaved class ids): class 0 black, 1 dark red, 2 dark green, …"""
    colours = []
    for i in range(num_classes):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append((r, g, b))
    return colours


__all__ = ["MeanIoUState", "confusion_matrix", "iou_from_confusion", "mean_iou", "voc_palette"]
