from . import algorithms, backbones, data_preprocessor, heads, losses, necks  # noqa: F401 (registration)
from .algorithms import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .data_preprocessor import MultiViewDataPreprocessor  # noqa: F401
from .heads import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .photometric import MultiCropPhotometric  # noqa: F401
from .utils import PositionField  # noqa: F401
