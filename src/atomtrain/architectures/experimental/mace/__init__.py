from atomtrain.architectures.experimental.mace.model import Mace
from atomtrain.architectures.experimental.mace.trainer import Trainer


__model__ = Mace
__trainer__ = Trainer

__stage__ = "experimental"
__authors__ = [("atomtrain developers", "@atomtrain")]
__maintainers__ = [("atomtrain developers", "@atomtrain")]
__requirements__ = ["mace-torch==0.3.16"]
