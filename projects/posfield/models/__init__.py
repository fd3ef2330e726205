from . import algorithms, backbones, heads, losses, necks  # noqa: F401 (registration)
from .algorithms import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .necks import *  # noqa: F401,F403
from .utils import PositionField  # noqa: F401
