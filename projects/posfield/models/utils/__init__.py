from .pos_field import (
                        DEFAULT_BETA,
                        DEFAULT_PLACEMENT,
                        POS_EMBED_TYPES,
                        Placement,
                        PositionField,
                        mean_placement,
                        patch_positions,
                        place_boxes,
                        resize_grid_embedding,
                        sample_field,
                        sample_placement,
                        sincos_field,
                        view_grid,
)

__all__ = ['DEFAULT_BETA', 'DEFAULT_PLACEMENT', 'POS_EMBED_TYPES', 'Placement', 'PositionField', 'mean_placement',
           'patch_positions', 'place_boxes', 'resize_grid_embedding', 'sample_field', 'sample_placement',
           'sincos_field', 'view_grid']
