from atomtrain.architectures.soap_bpnn.model import SoapBpnn
from atomtrain.architectures.soap_bpnn.trainer import Trainer


__model__ = SoapBpnn
__trainer__ = Trainer

__authors__ = [("atomtrain developers", "@atomtrain")]
__maintainers__ = [("atomtrain developers", "@atomtrain")]
