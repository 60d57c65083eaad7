"""Models: a small playground CNN, a hand-built planted net and loaders."""

from .planted import PlantedNet, planted_model
from .playground_cnn import PlaygroundCNN, evaluate, load_or_train, train_playground_cnn
from .resnet_cifar import BasicBlock, CifarResNet, load_resnet20, resnet20
from .zoo import torchvision_model
from .planted_dissect import PlantedDissectNet, planted_dissect_model  # noqa: F401
from .planted_copies import PlantedCopiesNet, planted_copies_atlas, planted_copies_model
from .circuit import CircuitNet, circuit_model
