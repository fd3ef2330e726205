from .pos_field_vit import PosFieldViT
from .vit_block import ViTBlock

__all__ = ['PosFieldViT', 'ViTBlock']
