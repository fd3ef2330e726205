from .backbone_loading import BackboneCheckpointMismatch, load_backbone_weights

__all__ = ['load_backbone_weights', 'BackboneCheckpointMismatch']
