from .cls_loc_model import INIT_MODES, ClsLocModel

__all__ = ['ClsLocModel', 'INIT_MODES']
