"""MTCNN face detector (Zhang et al. 2016) with five landmarks, as a small torch module.

P-Net, R-Net and O-Net have the layer names and shapes of facenet-pytorch (MIT), so its published
state dicts load unchanged (files mtcnn_{pnet,rnet,onet}.pt in the torch hub cache, downloaded on
first use like torchvision's weights; offline: scripts/offline-weights.sh). The cascade follows
facenet-pytorch's detect_face: an image pyramid down to 12-px faces through P-Net, NMS, then R-Net
and O-Net on the candidates. It runs on a batch of equal-sized frames at once; the pyramid levels and the candidates' crops
for R-Net and O-Net are area-resampled by OpenCV from the uint8 frames (facenet-pytorch resamples
with torch's area interpolation: the same filter), and the networks run channels-last.

Landmarks: left eye, right eye, nose, left and right mouth corner (as seen in the image)."""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch
from torch import nn
from torchvision.ops import batched_nms

from ..weights import hub_file

URL = "https://github.com/timesler/facenet-pytorch/raw/master/data/{}.pt"
SHA256 = {"pnet": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
          "rnet": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
          "onet": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d"}
OFFLINE_HINT = "offline: scripts/offline-weights.sh TOOLS_DIR puts it there (from the facenet-pytorch==2.6.0 wheel)"
THRESHOLDS = (0.6, 0.7, 0.7)  # P-Net, R-Net, O-Net face probability (facenet-pytorch's defaults)
FACTOR = 0.709  # pyramid step (each level 0.709 x the previous: half the area)
LAYOUT = torch.channels_last  # 3x faster than NCHW on CPU here (max pooling with ceil_mode above all)


class PNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), torch.softmax(self.conv4_1(x), dim=1)


class RNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x)).permute(0, 3, 2, 1).contiguous()  # the Caffe weights' flatten order
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x), torch.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x)).permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), torch.softmax(self.dense6_1(x), dim=1)


def weight_paths() -> dict:
    """The three state-dict files, downloaded to the torch hub cache when absent (StageError when that fails)."""
    return {net: hub_file(f"mtcnn_{net}.pt", URL.format(net), SHA256[net], OFFLINE_HINT) for net in SHA256}


class MTCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.pnet, self.rnet, self.onet = PNet(), RNet(), ONet()

    @classmethod
    def pretrained(cls) -> MTCNN:
        model = cls()
        for net, path in weight_paths().items():
            getattr(model, net).load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return model.eval().to(memory_format=LAYOUT)

    @torch.inference_mode()
    def detect(self, images: np.ndarray, min_face: float) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Faces in a batch of equal-sized RGB uint8 images (n, h, w, 3): per image (boxes (k, 4) as
        x1, y1, x2, y2 in pixels, scores (k,), landmarks (k, 5, 2)). `min_face`: smallest face side in px."""
        images = np.ascontiguousarray(images)
        boxes, image_ids = self._propose(images, max(12.0, float(min_face)))
        if len(boxes):
            boxes, image_ids = self._refine(images, boxes, image_ids)
        points = torch.zeros(0, 5, 2)
        if len(boxes):
            boxes, image_ids, points = self._output(images, boxes, image_ids)
        boxes, image_ids, points = boxes.numpy(), image_ids.numpy(), points.numpy()
        return [(boxes[image_ids == i, :4], boxes[image_ids == i, 4], points[image_ids == i])
                for i in range(len(images))]

    def _propose(self, images: np.ndarray, min_face: float):
        h, w = images.shape[1:3]
        scale, side = 12.0 / min_face, min(h, w) * 12.0 / min_face
        found, ids = [], []
        while side >= 12:
            size = (int(w * scale + 1), int(h * scale + 1))
            level = np.stack([cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in images])
            reg, probs = self.pnet(_normalise(level))
            mask = probs[:, 1] >= THRESHOLDS[0]
            where = mask.nonzero()  # (image, row, col)
            if len(where):
                cells = where[:, 1:].flip(1).float()  # x, y of each 12-px cell at stride 2
                box = torch.cat([((2 * cells + 1) / scale).floor(), ((2 * cells + 12) / scale).floor(),
                                 probs[:, 1][mask].unsqueeze(1), reg.permute(0, 2, 3, 1)[mask]], dim=1)
                keep = batched_nms(box[:, :4], box[:, 4], where[:, 0], 0.5)
                found.append(box[keep])
                ids.append(where[keep, 0])
            scale, side = scale * FACTOR, side * FACTOR
        if not found:
            return torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)
        boxes, ids = torch.cat(found), torch.cat(ids)
        keep = batched_nms(boxes[:, :4], boxes[:, 4], ids, 0.7)
        boxes, ids = boxes[keep], ids[keep]
        width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        refined = torch.stack([boxes[:, 0] + boxes[:, 5] * width, boxes[:, 1] + boxes[:, 6] * height,
                               boxes[:, 2] + boxes[:, 7] * width, boxes[:, 3] + boxes[:, 8] * height,
                               boxes[:, 4]], dim=1)
        return _square(refined), ids

    def _refine(self, images, boxes, ids):
        reg, probs = self.rnet(_crops(images, boxes, ids, 24))
        keep = probs[:, 1] > THRESHOLDS[1]
        boxes = torch.cat([boxes[keep, :4], probs[keep, 1:2]], dim=1)
        ids, reg = ids[keep], reg[keep]
        pick = batched_nms(boxes[:, :4], boxes[:, 4], ids, 0.7)
        return _square(_regress(boxes[pick], reg[pick])), ids[pick]

    def _output(self, images, boxes, ids):
        reg, marks, probs = self.onet(_crops(images, boxes, ids, 48))
        keep = probs[:, 1] > THRESHOLDS[2]
        boxes = torch.cat([boxes[keep, :4], probs[keep, 1:2]], dim=1)
        ids, reg, marks = ids[keep], reg[keep], marks[keep]
        points = _landmarks(boxes, marks)
        boxes = _regress(boxes, reg)
        pick = _nms_min(boxes, ids, 0.7)
        return boxes[pick], ids[pick], points[pick]

    @torch.inference_mode()
    def refine(self, images, boxes: np.ndarray, bgr: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """O-Net alone on one given box (x1, y1, x2, y2) per image (a sequence of uint8 images, RGB or
        `bgr`): the refined boxes, their face probabilities and landmarks. A cheap check of a face
        predicted by tracking."""
        box = _square(torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4))
        reg, marks, probs = self.onet(_crops(images, box, torch.arange(len(box)), 48, bgr))
        return _regress(box, reg).numpy(), probs[:, 1].numpy(), _landmarks(box, marks).numpy()


def _landmarks(boxes, marks):
    """O-Net's landmark outputs (relative to the input box) in pixels: (k, 5, 2)."""
    width = (boxes[:, 2] - boxes[:, 0] + 1).unsqueeze(1)
    height = (boxes[:, 3] - boxes[:, 1] + 1).unsqueeze(1)
    return torch.stack([width * marks[:, :5] + boxes[:, 0:1] - 1, height * marks[:, 5:] + boxes[:, 1:2] - 1], dim=2)


def _regress(boxes, reg):
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    out = boxes.clone()
    out[:, 0] += reg[:, 0] * width
    out[:, 1] += reg[:, 1] * height
    out[:, 2] += reg[:, 2] * width
    out[:, 3] += reg[:, 3] * height
    return out


def _square(boxes):
    """Grow each box to a square around its centre (facenet-pytorch's rerec)."""
    out = boxes.clone()
    height, width = boxes[:, 3] - boxes[:, 1], boxes[:, 2] - boxes[:, 0]
    side = torch.maximum(width, height)
    out[:, 0] = boxes[:, 0] + width * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + height * 0.5 - side * 0.5
    out[:, 2], out[:, 3] = out[:, 0] + side, out[:, 1] + side
    return out


def _normalise(batch: np.ndarray) -> torch.Tensor:
    """(n, h, w, 3) uint8 -> (n, 3, h, w) float in about [-1, 1], channels-last in memory."""
    return ((torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float() - 127.5) * 0.0078125).contiguous(
        memory_format=LAYOUT)


def _crops(images, boxes, ids, size: int, bgr: bool = False) -> torch.Tensor:
    """Each box's pixels, clipped to its image and truncated to whole pixels as facenet-pytorch's pad,
    area-resampled to size x size (`images`: an (n, h, w, 3) array or a sequence of equal-sized images)."""
    h, w = images[0].shape[:2]
    coords = boxes[:, :4].trunc().int().tolist()
    out = np.empty((len(coords), size, size, 3), dtype=np.uint8)
    for k, ((x1, y1, x2, y2), image) in enumerate(zip(coords, ids.tolist())):
        x1, y1 = min(max(x1, 1), w) - 1, min(max(y1, 1), h) - 1
        x2, y2 = max(min(x2, w), x1 + 1), max(min(y2, h), y1 + 1)
        out[k] = cv2.resize(images[image][y1:y2, x1:x2], (size, size), interpolation=cv2.INTER_AREA)
    return _normalise(out[..., ::-1] if bgr else out)


def _nms_min(boxes, ids, threshold: float):
    """NMS by intersection over the smaller box, per image (facenet-pytorch's final 'Min' step)."""
    order = torch.argsort(boxes[:, 4], descending=True, stable=True).tolist()
    area = ((boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)).tolist()
    coords, image = boxes[:, :4].tolist(), ids.tolist()
    kept: list[int] = []
    for i in order:
        ok = True
        for j in kept:
            if image[i] != image[j]:
                continue
            iw = min(coords[i][2], coords[j][2]) - max(coords[i][0], coords[j][0]) + 1
            ih = min(coords[i][3], coords[j][3]) - max(coords[i][1], coords[j][1]) + 1
            if iw > 0 and ih > 0 and iw * ih / min(area[i], area[j]) > threshold:
                ok = False
                break
        if ok:
            kept.append(i)
    return torch.tensor(kept, dtype=torch.long)


@lru_cache(maxsize=1)
def load_mtcnn() -> MTCNN:
    """One pretrained detector per process (worker processes load their own)."""
    return MTCNN.pretrained()
