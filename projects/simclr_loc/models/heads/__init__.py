from .cls_loc_head import ClsLocHead

__all__ = ['ClsLocHead']
