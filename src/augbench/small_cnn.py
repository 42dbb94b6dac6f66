"""Compact CNNs for images of 16 to 32 pixels, beside torchvision's models as ``classifier.arch``.

torchvision's smallest classifiers are built for 224-pixel photos: a ResNet-18 on the
mini-world's 16-pixel digits spends most of its time on channels the images cannot fill.
These VGG-style networks (three stages of 3x3 convolutions with BatchNorm, two 2x2 poolings,
global average pooling, one linear layer) train 5 to 10 times faster per step on a CPU, so a
demo can afford the seeds that separate its methods. The study's presets keep ResNet-50.

torch is imported inside :func:`small_cnn` so that the config check can read the names
without it.
"""

from __future__ import annotations

# name: channels of the first stage (the second and third have twice and four times as many)
SMALL_CNNS = {"small_cnn": 32}


def small_cnn(name: str, num_classes: int):
    """The network ``name`` of :data:`SMALL_CNNS`, newly initialised, ending in ``num_classes`` logits."""
    from torch import nn

    width = SMALL_CNNS[name]

    def stage(channels_in: int, channels_out: int, convolutions: int) -> list[nn.Module]:
        layers = []
        for index in range(convolutions):
            layers += [
                nn.Conv2d(channels_in if index == 0 else channels_out, channels_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels_out),
                nn.ReLU(inplace=True),
            ]
        return layers

    return nn.Sequential(
        *stage(3, width, 2),
        nn.MaxPool2d(2),
        *stage(width, 2 * width, 2),
        nn.MaxPool2d(2),
        *stage(2 * width, 4 * width, 1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * width, num_classes),
    )
