"""Models a user loads: the playground CNN, the CIFAR ResNet-20 and torchvision models.

The hand-built test oracles (planted nets, the planted circuit) are in ``notebookcarto.testing``.
"""

from .playground_cnn import PlaygroundCNN, evaluate, load_or_train, train_playground_cnn
from .resnet_cifar import BasicBlock, CifarResNet, load_resnet20, resnet20
from .zoo import torchvision_model

__all__ = ["BasicBlock", "CifarResNet", "PlaygroundCNN", "evaluate", "load_or_train",
           "load_resnet20", "resnet20", "torchvision_model", "train_playground_cnn"]
