from .dino_projection_neck import DINOProjectionNeck

__all__ = ['DINOProjectionNeck']
