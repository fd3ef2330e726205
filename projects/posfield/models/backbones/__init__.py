from .pos_field_vit import PosFieldViT

__all__ = ['PosFieldViT']
