"""pylgn: differentiable logic gate networks with the input-wise parametrization, on numpy + numba."""
from .circuit import Circuit
from .layers import GroupSum, LogicLayer
from .conv import LogicConv2d, OrPool2d
from .loss import softmax_cross_entropy
from .model import Sequential
from .optim import Adam
from .checkpoint import load, save
from .train import Trainer
from .thresholds import LearnableThermometer

__version__ = "0.1.0"

__all__ = ["Adam", "Circuit", "Trainer", "load", "save", "GroupSum", "LearnableThermometer", "LogicConv2d", "LogicLayer", "OrPool2d", "Sequential", "softmax_cross_entropy"]
