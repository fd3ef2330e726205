from .pos_field import (
                        POS_EMBED_TYPES,
                        PositionField,
                        patch_positions,
                        resize_grid_embedding,
                        sample_field,
                        sincos_field,
                        view_grid,
)

__all__ = ['POS_EMBED_TYPES', 'PositionField', 'patch_positions', 'resize_grid_embedding', 'sample_field',
           'sincos_field', 'view_grid']
