"""Models: a small playground CNN, a hand-built planted net and loaders."""

from .planted import PlantedNet, planted_model
from .playground_cnn import PlaygroundCNN, evaluate, load_or_train, train_playground_cnn
from .resnet_cifar import BasicBlock, CifarResNet, load_resnet20, resnet20
from .zoo import torchvision_model
