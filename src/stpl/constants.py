"""Facts every layer shares, at the bottom of the package so that no layer reaches up for them."""

IGNORE_INDEX = 255  # label value of void / unlabelled / invalid pixels: never scored, never learned
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # the backbones' input normalisation (RGB in [0, 1])
IMAGENET_STD = (0.229, 0.224, 0.225)
