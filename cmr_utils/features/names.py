"""The extraction parameters' choices, torch-free: the runner checks parameters against them without
loading torch, and the encoders and runtimes take theirs from here (one definition)."""

IMAGE_ENCODERS = ("efficientnet-lite0", "efficientnet-lite2", "resnet50")  # see ``images.BACKBONES``
IMAGE_VIEWS = (1, 2, 5, 10)
IMAGE_NORMALIZATIONS = ("own", "imagenet")
BACKENDS = ("auto", "torch", "openvino", "onnxruntime")
PRECISIONS = ("float32", "bfloat16", "float16")
