from .pos_field import (Placement, PositionField, mean_placement, sample_field, sample_placement,
                        sincos_field, view_grid)

__all__ = ['Placement', 'PositionField', 'mean_placement', 'sample_field', 'sample_placement',
           'sincos_field', 'view_grid']
