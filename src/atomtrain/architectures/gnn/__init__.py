from atomtrain.architectures.gnn.model import Gnn
from atomtrain.architectures.gnn.trainer import Trainer


__model__ = Gnn
__trainer__ = Trainer

__authors__ = [("atomtrain developers", "@atomtrain")]
__maintainers__ = [("atomtrain developers", "@atomtrain")]
