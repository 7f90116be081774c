from atomtrain.architectures.ace_mp.model import AceMp
from atomtrain.architectures.ace_mp.trainer import Trainer


__model__ = AceMp
__trainer__ = Trainer

__authors__ = [("atomtrain developers", "@atomtrain")]
__maintainers__ = [("atomtrain developers", "@atomtrain")]
