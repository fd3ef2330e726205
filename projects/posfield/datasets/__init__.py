from .multiview_collate import DEFAULT_MASKING, build_multiview_batch, multiview_collate  # noqa: F401
from .transforms import *  # noqa: F401,F403
