from .pos_field import (DEFAULT_BETA, DEFAULT_PLACEMENT, Placement, PositionField, mean_placement,
                        place_boxes, sample_field, sample_placement, sincos_field, view_grid)

__all__ = ['DEFAULT_BETA', 'DEFAULT_PLACEMENT', 'Placement', 'PositionField', 'mean_placement', 'place_boxes',
           'sample_field', 'sample_placement', 'sincos_field', 'view_grid']
