"""Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 28x28 greyscale images of 10 kinds of clothing,
60,000 training and 10,000 test images, in MNIST's IDX format (``idx.py``). The files are those
Debian's package ``dataset-fashion-mnist`` installs (taken from there when it is)."""

from __future__ import annotations

from .acquire import Download
from .idx import IdxImages

DOWNLOAD = Download(
    name="fashion_mnist",
    md5={
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
    debian_dir="/usr/share/datasets/fashion-mnist",
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
)
DATASET = IdxImages(DOWNLOAD, classes=10, image=(28, 28), train=60000, test=10000)
